//! A framed byte stream for the operator socket, so that one HTTP body can carry a tar
//! archive and then what became of it: `[kind: u8][length: u32, big-endian][bytes]`.
//!
//! - `D`: a piece of the archive;
//! - `J`: the JSON options of a request (first, before any `D`);
//! - `S`: the summary text, last, when all went well;
//! - `E`: the error text, last, when it did not.
//!
//! The blocking export and import code reads and writes `std::io` streams: `FrameWriter`
//! and `FrameReader` bridge them to channels that async bodies feed or drain, one bounded
//! piece at a time.

use std::io::{self, Read, Write};

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::mpsc;

pub const DATA: u8 = b'D';
pub const JSON: u8 = b'J';
pub const SUMMARY: u8 = b'S';
pub const ERROR: u8 = b'E';

/// The largest frame accepted: a bound on what a reader buffers.
const MAX_FRAME: usize = 4 << 20;
/// What a writer gathers before it sends a data frame.
const PIECE: usize = 1 << 20;

pub fn frame(kind: u8, bytes: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + bytes.len());
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out.freeze()
}

/// Cuts a byte stream back into frames.
#[derive(Default)]
pub struct Deframer {
    buf: BytesMut,
}

impl Deframer {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> io::Result<Option<(u8, Bytes)>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too large"));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        self.buf.advance(5);
        Ok(Some((kind, self.buf.split_to(len).freeze())))
    }

    /// Bytes left over that do not make a frame: a stream cut short.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// A `Write` that sends what it is given as data frames into a body channel. Blocking: use
/// it on the blocking pool.
pub struct FrameWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    piece: Vec<u8>,
}

impl FrameWriter {
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> FrameWriter {
        FrameWriter {
            tx,
            piece: Vec::with_capacity(PIECE),
        }
    }

    /// Sends a final frame (summary or error) after the data.
    pub fn finish(mut self, kind: u8, text: &str) -> io::Result<()> {
        self.flush()?;
        self.send(frame(kind, text.as_bytes()))
    }

    fn send(&self, b: Bytes) -> io::Result<()> {
        self.tx
            .blocking_send(Ok(b))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the other end went away"))
    }
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(PIECE - self.piece.len());
        self.piece.extend_from_slice(&buf[..n]);
        if self.piece.len() == PIECE {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let b = frame(DATA, &self.piece);
        self.piece.clear();
        self.send(b)
    }
}

/// A `Read` over the data frames an async task forwards into a channel; `None` in the
/// channel's place (it closed) is the end. Blocking: use it on the blocking pool.
pub struct FrameReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl FrameReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> FrameReader {
        FrameReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for FrameReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_cut_of_the_stream() {
        let stream: Vec<u8> = [frame(JSON, b"{}"), frame(DATA, &[7; 1000]), frame(SUMMARY, b"done")].concat();
        for cut in [1, 3, 5, 6, 999, stream.len()] {
            let mut d = Deframer::default();
            let mut got = Vec::new();
            for piece in stream.chunks(cut) {
                d.push(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert!(d.is_empty());
            let kinds: Vec<u8> = got.iter().map(|(k, _)| *k).collect();
            assert_eq!(kinds, vec![JSON, DATA, SUMMARY], "cut {cut}");
            assert_eq!(got[1].1.as_ref(), &[7; 1000][..]);
            assert_eq!(got[2].1.as_ref(), b"done");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused() {
        let mut d = Deframer::default();
        d.push(&[DATA, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn a_writer_and_a_reader_carry_bytes_through_channels() {
        let (tx, mut rx) = mpsc::channel(4);
        let data: Vec<u8> = (0..3 * PIECE + 17).map(|i| (i % 253) as u8).collect();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            let mut w = FrameWriter::new(tx);
            w.write_all(&sent).unwrap();
            w.finish(SUMMARY, "ok").unwrap();
        });
        let mut d = Deframer::default();
        let (fwd, frames) = mpsc::channel(4);
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            FrameReader::new(frames).read_to_end(&mut out).unwrap();
            out
        });
        let mut summary = None;
        while let Some(piece) = rx.blocking_recv() {
            d.push(&piece.unwrap());
            while let Some((kind, bytes)) = d.next_frame().unwrap() {
                match kind {
                    DATA => fwd.blocking_send(Ok(bytes)).unwrap(),
                    _ => summary = Some(bytes),
                }
            }
        }
        drop(fwd);
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), data);
        assert_eq!(summary.unwrap().as_ref(), b"ok");
    }
}
