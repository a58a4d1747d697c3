//! Single byte-range requests (RFC 9110 §14). Multiple ranges are answered with the whole
//! blob, which the RFC allows.

/// A satisfiable range: `start..=end` within a blob of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    #[allow(clippy::len_without_is_empty)] // a satisfiable range is never empty
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.start, self.end)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: serve the whole representation.
    Whole,
    Partial(ByteRange),
    Unsatisfiable,
}

/// Evaluates a `Range` header value against a blob of `size` bytes.
pub fn evaluate(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let range = if first.is_empty() {
        // Suffix range: the last N bytes.
        let Some(n) = parse(last) else {
            return RangeRequest::Whole;
        };
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        ByteRange {
            start: size.saturating_sub(n),
            end: size - 1,
        }
    } else {
        let Some(start) = parse(first) else {
            return RangeRequest::Whole;
        };
        let end = if last.is_empty() {
            u64::MAX
        } else {
            match parse(last) {
                Some(e) if e >= start => e,
                _ => return RangeRequest::Whole,
            }
        };
        if start >= size {
            return RangeRequest::Unsatisfiable;
        }
        ByteRange {
            start,
            end: end.min(size - 1),
        }
    };
    RangeRequest::Partial(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn satisfiable_ranges_lie_within_the_blob(spec in "bytes=[0-9]{0,6}-[0-9]{0,6}", size in 0u64..1_000_000) {
            if let RangeRequest::Partial(r) = evaluate(Some(&spec), size) {
                prop_assert!(r.start <= r.end && r.end < size, "{spec} on {size}: {r:?}");
            }
        }
    }

    fn p(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange { start, end })
    }

    #[test]
    fn ranges() {
        assert_eq!(evaluate(None, 10), RangeRequest::Whole);
        assert_eq!(evaluate(Some("bytes=0-4"), 10), p(0, 4));
        assert_eq!(evaluate(Some("bytes=5-"), 10), p(5, 9));
        assert_eq!(evaluate(Some("bytes=5-100"), 10), p(5, 9));
        assert_eq!(evaluate(Some("bytes=-3"), 10), p(7, 9));
        assert_eq!(evaluate(Some("bytes=-30"), 10), p(0, 9));
        assert_eq!(evaluate(Some("bytes=10-"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(evaluate(Some("bytes=-0"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(evaluate(Some("bytes=0-0"), 0), RangeRequest::Unsatisfiable);
        assert_eq!(evaluate(Some("bytes=4-2"), 10), RangeRequest::Whole);
        assert_eq!(evaluate(Some("bytes=0-1,4-5"), 10), RangeRequest::Whole);
        assert_eq!(evaluate(Some("items=0-1"), 10), RangeRequest::Whole);
        assert_eq!(evaluate(Some("bytes=x-1"), 10), RangeRequest::Whole);
        assert_eq!(ByteRange { start: 2, end: 4 }.len(), 3);
        assert_eq!(ByteRange { start: 2, end: 4 }.content_range(10), "bytes 2-4/10");
    }
}
