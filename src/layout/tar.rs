//! A streaming tar (ustar) writer and reader, enough for OCI image layouts: regular files
//! and directories, GNU base-256 sizes for blobs of 8 GiB and more, and on reading the pax
//! and GNU long-name headers other tools write. Nothing is buffered beyond one block.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out }
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let h = header(&format!("{}/", path.trim_end_matches('/')), 0, b'5', 0o755)?;
        self.out.write_all(&h)
    }

    /// Appends a file of exactly `size` bytes read from `content`.
    pub fn file(&mut self, path: &str, size: u64, content: impl Read) -> io::Result<()> {
        self.out.write_all(&header(path, size, b'0', 0o644)?)?;
        let copied = io::copy(&mut content.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: {copied} of {size} bytes"),
            ));
        }
        self.pad(size)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn header(path: &str, size: u64, kind: u8, mode: u32) -> io::Result<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    let name = path.as_bytes();
    if name.len() > 100 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tar path too long: {path}"),
        ));
    }
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size < 8u64.pow(11) {
        octal(&mut h[124..136], size);
    } else {
        // GNU base-256: a set high bit, then the size big-endian.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut h[136..148], 0);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let chk = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(chk.as_bytes());
    Ok(h)
}

/// Zero-padded octal, NUL-terminated, filling the field.
fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0width$o}\0", width = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

/// One entry of an archive being read.
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub is_file: bool,
}

/// Reads entries one after the other; the caller reads each file's content through
/// `content()` before asking for the next entry.
pub struct Reader<R: Read> {
    input: R,
    /// Content bytes of the current entry not read yet, and its padding.
    left: u64,
    padding: u64,
}

impl<R: Read> Reader<R> {
    pub fn new(input: R) -> Self {
        Reader {
            input,
            left: 0,
            padding: 0,
        }
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        let mut long_name: Option<String> = None;
        loop {
            self.skip_rest()?;
            let mut h = [0u8; BLOCK];
            match read_full(&mut self.input, &mut h)? {
                0 => return Ok(None),
                BLOCK => {}
                _ => return Err(truncated()),
            }
            if h.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            let stored: u32 = parse_octal(&h[148..156]).ok_or_else(|| bad("bad header checksum field"))? as u32;
            let mut sum_block = h;
            sum_block[148..156].copy_from_slice(b"        ");
            if sum_block.iter().map(|&b| b as u32).sum::<u32>() != stored {
                return Err(bad("header checksum mismatch"));
            }
            let size = parse_size(&h[124..136]).ok_or_else(|| bad("bad size field"))?;
            self.left = size;
            self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
            let kind = h[156];
            match kind {
                // pax extended header / GNU long name: they name the next entry.
                b'x' | b'L' => {
                    let mut data = Vec::new();
                    (&mut self.input).take(size.min(1 << 20)).read_to_end(&mut data)?;
                    self.left -= data.len() as u64;
                    long_name = if kind == b'L' {
                        Some(String::from_utf8_lossy(&data).trim_end_matches('\0').to_owned())
                    } else {
                        pax_path(&data).or(long_name)
                    };
                    continue;
                }
                b'g' => continue,
                _ => {}
            }
            let path = match long_name.take() {
                Some(p) => p,
                None => {
                    let name = cstr(&h[0..100]);
                    let prefix = cstr(&h[345..500]);
                    if prefix.is_empty() {
                        name
                    } else {
                        format!("{prefix}/{name}")
                    }
                }
            };
            let path = path.trim_start_matches("./").to_owned();
            return Ok(Some(Entry {
                path,
                size,
                is_file: kind == b'0' || kind == 0,
            }));
        }
    }

    /// The current entry's content.
    pub fn content(&mut self) -> impl Read + '_ {
        ContentReader { reader: self }
    }

    fn skip_rest(&mut self) -> io::Result<()> {
        let skip = self.left + self.padding;
        let skipped = io::copy(&mut (&mut self.input).take(skip), &mut io::sink())?;
        if skipped != skip {
            return Err(truncated());
        }
        self.left = 0;
        self.padding = 0;
        Ok(())
    }
}

struct ContentReader<'a, R: Read> {
    reader: &'a mut Reader<R>,
}

impl<R: Read> Read for ContentReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reader.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.reader.left as usize);
        let n = self.reader.input.read(&mut buf[..max])?;
        if n == 0 {
            return Err(truncated());
        }
        self.reader.left -= n as u64;
        Ok(n)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn parse_octal(b: &[u8]) -> Option<u64> {
    let s = cstr(b);
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn parse_size(b: &[u8]) -> Option<u64> {
    if b[0] & 0x80 != 0 {
        let mut v: u64 = (b[0] & 0x7f) as u64;
        for &c in &b[1..] {
            v = v.checked_mul(256)?.checked_add(c as u64)?;
        }
        return Some(v);
    }
    parse_octal(b)
}

/// The `path` record of a pax header (`<len> path=<value>\n`).
fn pax_path(data: &[u8]) -> Option<String> {
    String::from_utf8_lossy(data).lines().find_map(|l| {
        l.split_once(' ')
            .and_then(|(_, kv)| kv.strip_prefix("path="))
            .map(str::to_owned)
    })
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the archive is truncated")
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("not a tar archive: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn reading_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut r = Reader::new(&bytes[..]);
            for _ in 0..8 {
                match r.next_entry() {
                    Ok(Some(_)) => {
                        let mut sink = Vec::new();
                        if r.content().read_to_end(&mut sink).is_err() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
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
        let mut r = Reader::new(&bytes[..]);
        let mut seen = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            let mut content = Vec::new();
            r.content().read_to_end(&mut content).unwrap();
            seen.push((e.path, e.is_file, content.len()));
        }
        assert_eq!(
            seen,
            [
                ("blobs/".into(), false, 0),
                ("oci-layout".into(), true, 5),
                ("blobs/sha256/x".into(), true, 600)
            ]
        );
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let mut w = Writer::new(Vec::new());
        w.file("a", 2000, &vec![1u8; 2000][..]).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = Reader::new(&bytes[..1024]);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.size, 2000);
        let mut sink = Vec::new();
        assert!(r.content().read_to_end(&mut sink).is_err());
        let mut r = Reader::new(&[1u8; 512][..]);
        assert!(r.next_entry().is_err());
    }

    #[test]
    fn large_sizes_use_base_256() {
        let h = header("big", 10 << 30, b'0', 0o644).unwrap();
        assert_eq!(parse_size(&h[124..136]), Some(10 << 30));
        let h = header("small", 1234, b'0', 0o644).unwrap();
        assert_eq!(parse_size(&h[124..136]), Some(1234));
    }
}
