//! A streaming text decoder: bytes in a declared encoding in, UTF-8 out,
//! failing at the first malformed sequence (never replacing it) and at the
//! first line longer than the limit, with the line and byte offset.

use encoding_rs::{Decoder, DecoderResult, Encoding};
use std::io::{self, Read};

/// Why decoding stopped; travels inside an `io::Error` through the CSV reader.
#[derive(Debug)]
pub(crate) enum DecodeProblem {
    Malformed { line: u64, offset: u64 },
    LineTooLong { line: u64 },
}

impl std::fmt::Display for DecodeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeProblem::Malformed { line, offset } => write!(f, "malformed text at line {line}, byte {offset}"),
            DecodeProblem::LineTooLong { line } => write!(f, "line {line} is too long"),
        }
    }
}

impl std::error::Error for DecodeProblem {}

pub(crate) struct DecodingReader<R> {
    inner: R,
    decoder: Decoder,
    input: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Decoded bytes not yet handed out.
    output: Vec<u8>,
    out_start: usize,
    output_len: usize,
    /// Bytes of input consumed so far.
    offset: u64,
    line: u64,
    line_bytes: usize,
    in_quotes: bool,
    max_line_bytes: usize,
    finished: bool,
}

impl<R: Read> DecodingReader<R> {
    pub(crate) fn new(inner: R, encoding: &'static Encoding, max_line_bytes: usize) -> Self {
        DecodingReader {
            inner,
            // The encoding's own byte-order mark, if any, is dropped.
            decoder: encoding.new_decoder_with_bom_removal(),
            input: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            eof: false,
            output: vec![0; 3 * 64 * 1024 + 16],
            out_start: 0,
            output_len: 0,
            offset: 0,
            line: 1,
            line_bytes: 0,
            in_quotes: false,
            max_line_bytes,
            finished: false,
        }
    }

    /// Decodes the next chunk into `output`; returns the number of bytes.
    fn fill(&mut self) -> io::Result<usize> {
        loop {
            if self.start == self.end && !self.eof {
                self.start = 0;
                self.end = self.inner.read(&mut self.input)?;
                if self.end == 0 {
                    self.eof = true;
                }
            }
            if self.finished {
                return Ok(0);
            }
            let last = self.eof;
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.input[self.start..self.end],
                &mut self.output,
                last,
            );
            self.start += read;
            self.offset += read as u64;
            // Track lines in what was decoded before any error. A record
            // ends at a newline outside quotes (`""` inside a quoted field
            // toggles twice), so a quoted field spanning many lines counts
            // as one long line: the CSV reader never buffers more than the
            // limit.
            for &b in &self.output[..written] {
                if b == b'"' {
                    self.in_quotes = !self.in_quotes;
                }
                if b == b'\n' {
                    self.line += 1;
                    if !self.in_quotes {
                        self.line_bytes = 0;
                    }
                } else {
                    self.line_bytes += 1;
                    if self.line_bytes > self.max_line_bytes {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            DecodeProblem::LineTooLong { line: self.line },
                        ));
                    }
                }
            }
            match result {
                DecoderResult::Malformed(bad, extra) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        DecodeProblem::Malformed {
                            line: self.line,
                            offset: self.offset.saturating_sub(u64::from(bad) + u64::from(extra)),
                        },
                    ));
                }
                DecoderResult::InputEmpty if last => {
                    self.finished = true;
                }
                DecoderResult::InputEmpty | DecoderResult::OutputFull => {}
            }
            if written > 0 || self.finished {
                return Ok(written);
            }
        }
    }
}

impl<R: Read> Read for DecodingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out_start >= self.output_len {
            self.output_len = self.fill()?;
            self.out_start = 0;
            if self.output_len == 0 {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.output_len - self.out_start);
        buf[..n].copy_from_slice(&self.output[self.out_start..self.out_start + n]);
        self.out_start += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], encoding: &'static Encoding, limit: usize) -> io::Result<String> {
        let mut s = String::new();
        DecodingReader::new(bytes, encoding, limit).read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn gb18030_decodes_and_utf8_rejects_it_with_the_line() {
        let (gb, _, _) = encoding_rs::GB18030.encode("a,b\n浦东新区,1\n");
        assert_eq!(
            decode(&gb, encoding_rs::GB18030, 100).expect("gb18030"),
            "a,b\n浦东新区,1\n"
        );
        let err = decode(&gb, encoding_rs::UTF_8, 100).expect_err("not utf-8");
        let problem = err.get_ref().and_then(|e| e.downcast_ref::<DecodeProblem>());
        assert!(
            matches!(problem, Some(DecodeProblem::Malformed { line: 2, offset: 4 })),
            "{problem:?}"
        );
    }

    #[test]
    fn a_utf8_bom_is_dropped_and_long_lines_stop() {
        assert_eq!(decode(b"\xEF\xBB\xBFx\n", encoding_rs::UTF_8, 10).expect("bom"), "x\n");
        let long = format!("ok\n{}\n", "y".repeat(50));
        let err = decode(long.as_bytes(), encoding_rs::UTF_8, 20).expect_err("long");
        let problem = err.get_ref().and_then(|e| e.downcast_ref::<DecodeProblem>());
        assert!(
            matches!(problem, Some(DecodeProblem::LineTooLong { line: 2 })),
            "{problem:?}"
        );
        // A quoted field of many short lines is one long record.
        let quoted = format!("a,\"{}\"\n", "short\n".repeat(10));
        let err = decode(quoted.as_bytes(), encoding_rs::UTF_8, 20).expect_err("long record");
        let problem = err.get_ref().and_then(|e| e.downcast_ref::<DecodeProblem>());
        assert!(
            matches!(problem, Some(DecodeProblem::LineTooLong { line: 4 })),
            "{problem:?}"
        );
        // Escaped quotes and short quoted fields are fine.
        let ok = "a,\"say \"\"hi\"\"\"\nb,\"x\ny\"\n".repeat(5);
        assert_eq!(decode(ok.as_bytes(), encoding_rs::UTF_8, 20).expect("fine"), ok);
    }
}
