//! Tar archives of OCI image layouts, through the `tar` crate (which reads the pax and GNU
//! long-name headers other tools write, and writes sizes of 8 GiB and more in base-256).
//! What this adds: the shape the layout code needs (directories, files of a known size,
//! regular files only on reading, `./` prefixes dropped) and exact sizes both ways: a file
//! shorter than its header says is an error, never a silently short archive or blob.

use std::io::{self, Read, Write};

use tar::{Archive, Builder, EntryType, Header};

pub struct Writer<W: Write> {
    out: Builder<W>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out: Builder::new(out) }
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let mut h = header(EntryType::Directory, 0, 0o755);
        self.out
            .append_data(&mut h, format!("{}/", path.trim_end_matches('/')), io::empty())
    }

    /// Appends a file of exactly `size` bytes read from `content`.
    pub fn file(&mut self, path: &str, size: u64, content: impl Read) -> io::Result<()> {
        let mut h = header(EntryType::Regular, size, 0o644);
        self.out.append_data(&mut h, path, Exact::new(content, size, path))
    }

    /// Writes the end-of-archive marker and returns the output, flushed.
    pub fn finish(self) -> io::Result<W> {
        let mut out = self.out.into_inner()?;
        out.flush()?;
        Ok(out)
    }
}

/// A GNU header (base-256 sizes for 8 GiB and more), reproducible: no time, no owner.
fn header(kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h
}

/// Calls `each` with the path and content of every regular file of the archive, in order.
/// A truncated or malformed archive is an error.
pub fn read_files(input: impl Read, mut each: impl FnMut(&str, &mut dyn Read) -> io::Result<()>) -> io::Result<()> {
    let mut archive = Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !matches!(entry.header().entry_type(), EntryType::Regular | EntryType::Continuous) {
            continue;
        }
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
        let size = entry.size();
        each(&path, &mut Exact::new(&mut entry, size, &path))?;
    }
    Ok(())
}

/// At most `left` bytes of `inner`, and an error if it ends before them.
struct Exact<'p, R> {
    inner: R,
    left: u64,
    path: &'p str,
}

impl<'p, R: Read> Exact<'p, R> {
    fn new(inner: R, size: u64, path: &'p str) -> Self {
        Exact {
            inner,
            left: size,
            path,
        }
    }
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: {} bytes short of its size", self.path, self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn files(bytes: &[u8]) -> io::Result<Vec<(String, usize)>> {
        let mut seen = Vec::new();
        read_files(bytes, |path, content| {
            let mut all = Vec::new();
            content.read_to_end(&mut all)?;
            seen.push((path.to_owned(), all.len()));
            Ok(())
        })?;
        Ok(seen)
    }

    proptest! {
        #[test]
        fn reading_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = files(&bytes);
        }
    }

    #[test]
    fn round_trip() {
        let mut w = Writer::new(Vec::new());
        w.dir("blobs").unwrap();
        w.file("oci-layout", 5, &b"hello"[..]).unwrap();
        w.file("blobs/sha256/x", 600, &vec![7u8; 600][..]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        assert_eq!(
            files(&bytes).unwrap(),
            [("oci-layout".into(), 5), ("blobs/sha256/x".into(), 600)]
        );
    }

    #[test]
    fn long_names_and_dot_prefixes_read_as_other_tools_write_them() {
        let long = format!("blobs/sha512/{}", "a".repeat(128));
        let mut b = Builder::new(Vec::new());
        for path in [long.as_str(), "./index.json"] {
            let mut h = header(EntryType::Regular, 3, 0o644);
            b.append_data(&mut h, path, &b"abc"[..]).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        assert_eq!(files(&bytes).unwrap(), [(long, 3), ("index.json".into(), 3)]);
    }

    #[test]
    fn short_content_and_truncation_are_errors() {
        let mut w = Writer::new(Vec::new());
        assert!(w.file("a", 10, &b"only5"[..]).is_err(), "a file shorter than its size");
        let mut w = Writer::new(Vec::new());
        w.file("a", 2000, &vec![1u8; 2000][..]).unwrap();
        let bytes = w.finish().unwrap();
        assert!(files(&bytes[..1024]).is_err(), "cut inside the content");
        assert!(files(&[1u8; 512][..]).is_err(), "not a tar header");
    }

    #[test]
    fn large_sizes_fit() {
        let h = header(EntryType::Regular, 10 << 30, 0o644);
        assert_eq!(h.size().unwrap(), 10 << 30);
    }
}
