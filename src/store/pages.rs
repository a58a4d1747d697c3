//! Whether a file's bytes are in the page cache, and reading them in: `sendfile` runs on
//! async workers, which must not wait on the disk, so a range is sent only once resident.

use std::fs::File;
use std::io;

/// Where `resident` looks: every 256 KiB of a range, and its last byte.
const PROBE_EVERY: usize = 256 * 1024;

/// Whether a range of a file is in the page cache: `preadv2(RWF_NOWAIT)` reads only cached
/// bytes, so a byte read from each stretch of the range says its pages are there. Where the
/// flag is not supported every range counts as not resident.
pub fn resident(file: &File, pos: u64, len: usize) -> bool {
    let probe = |at: u64| {
        let mut byte = [0u8; 1];
        let read = rustix::io::preadv2(
            file,
            &mut [io::IoSliceMut::new(&mut byte)],
            at,
            rustix::io::ReadWriteFlags::NOWAIT,
        );
        matches!(read, Ok(1))
    };
    (0..len)
        .step_by(PROBE_EVERY)
        .chain([len - 1])
        .all(|offset| probe(pos + offset as u64))
}

/// Reads a range into the page cache, discarding the bytes. Blocking.
pub fn warm(file: &File, pos: u64, len: usize) -> io::Result<()> {
    let mut scratch = vec![0u8; PROBE_EVERY];
    let end = pos + len as u64;
    let mut at = pos;
    while at < end {
        let want = usize::try_from(end - at).unwrap_or(PROBE_EVERY).min(PROBE_EVERY);
        let n = std::os::unix::fs::FileExt::read_at(file, &mut scratch[..want], at)?;
        if n == 0 {
            return Err(super::blobs::truncated());
        }
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const RANGE: usize = 2 << 20;

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn the_page_cache_probe_and_the_warming_read() {
        let content: Vec<u8> = (0..RANGE + 5).map(|i| (i % 241) as u8).collect();
        let file = file_with(&content);
        file.sync_all().unwrap();
        let mut read_back = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut read_back).unwrap();
        assert!(resident(&file, 0, RANGE), "bytes just read are in the page cache");
        // Dropped from the page cache (clean pages, on a disk file system), the frame is
        // read back by `warm`, after which it is cached again.
        // The advice is only advice: a page under writeback or locked by a reader at that
        // moment stays, so ask again a few times.
        let dropped = (0..50).any(|_| {
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
            !resident(&file, 0, RANGE) || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                false
            }
        });
        assert!(dropped, "dropped pages are not cached");
        warm(&file, 0, RANGE).unwrap();
        assert!(resident(&file, 0, RANGE));
        let err = warm(&file, RANGE as u64, 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
