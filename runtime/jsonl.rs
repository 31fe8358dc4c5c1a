//! Reading JSON-lines input as a stranger may send it: one input per line, whatever the bytes.
//!
//! `bilayer run` reads its inputs from a file or stdin that nobody vetted. A reader built on
//! `lines()` stopped the whole run at the first byte that was not UTF-8 and held any line in
//! memory however long it grew (`--input /dev/zero` ran the allocator out). [`JsonLines`]
//! instead turns every bad line into that line's own refusal and goes on:
//!
//! - a line that is not UTF-8, or not JSON, is [`JsonLine::Refused`] with its line number and
//!   the reason;
//! - a line longer than the limit ([`DEFAULT_MAX_LINE_BYTES`], `bilayer run --max-line-bytes`)
//!   is refused as soon as it passes the limit, and the rest of it is skipped without being
//!   kept: memory stays at the limit, however long the line (an endless one is skipped until
//!   the input ends);
//! - a UTF-8 byte-order mark at the very start is accepted and dropped (editors on Windows
//!   write one); anywhere else it is an ordinary character, which JSON does not allow outside
//!   strings;
//! - blank lines are skipped, but still counted, so numbers match an editor's;
//! - a last line without a newline is read like any other.
//!
//! The line buffer is reused from line to line, so reading allocates only what the parsed
//! values hold.

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The default longest line, in bytes (16 MiB): far above any message an agent should get,
/// small enough that a stray binary file costs little.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// One line of the input, as read.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonLine {
    /// A line holding one JSON value.
    Input {
        /// The line's number, counted from 1 (blank lines included).
        number: u64,
        /// The value the line holds.
        value: Value,
    },
    /// A line that cannot be an input; `reason` names the line and says why.
    Refused {
        /// The line's number, counted from 1 (blank lines included).
        number: u64,
        /// What is wrong with the line, starting with `line N`.
        reason: String,
    },
}

/// Reads JSON values from an [`AsyncBufRead`], one per line; see the module docs.
#[derive(Debug)]
pub struct JsonLines<R> {
    reader: R,
    max_line_bytes: usize,
    /// The current line's bytes so far (cleared per line, its capacity kept).
    line: Vec<u8>,
    /// The number of the line being read.
    number: u64,
    /// The current line passed the limit and was refused; its bytes up to the next newline
    /// are skipped.
    skipping: bool,
}

impl<R: AsyncBufRead + Unpin> JsonLines<R> {
    /// A reader refusing lines longer than `max_line_bytes` (the newline not counted).
    pub fn new(reader: R, max_line_bytes: usize) -> Self {
        Self {
            reader,
            max_line_bytes,
            line: Vec::new(),
            number: 0,
            skipping: false,
        }
    }

    /// The next input or refusal, `None` at the end of the input. An error is the input
    /// itself failing (a read error of the file or stdin), not a bad line.
    pub async fn next(&mut self) -> std::io::Result<Option<JsonLine>> {
        loop {
            let Some(ended) = self.read_line().await? else {
                return Ok(None);
            };
            if let Some(line) = ended {
                return Ok(Some(line));
            }
        }
    }

    /// Reads up to the end of one line. `None`: the input is over. `Some(None)`: the line
    /// needs no outcome (blank, or refused already when it grew too long).
    async fn read_line(&mut self) -> std::io::Result<Option<Option<JsonLine>>> {
        if !self.skipping {
            // A new line (a refused one's rest is still the same line).
            self.line.clear();
            self.number += 1;
        }
        let mut read_any = false;
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if !read_any {
                    return Ok(None);
                }
                // The last line, without a newline.
                return Ok(Some(self.finish_line()));
            }
            read_any = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            let consumed = newline.map_or(chunk.len(), |at| at + 1);
            let mut refused_now = None;
            if !self.skipping {
                if self.line.len() + chunk.len() > self.max_line_bytes {
                    self.skipping = true;
                    self.line.clear();
                    refused_now = Some(self.too_long());
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            self.reader.consume(consumed);
            if let Some(refused) = refused_now {
                // Said at once, while the rest of the line is still to come (it may never
                // end); the rest is then skipped.
                if newline.is_some() {
                    self.skipping = false;
                }
                return Ok(Some(Some(refused)));
            }
            if newline.is_some() {
                if self.skipping {
                    self.skipping = false;
                    return Ok(Some(None));
                }
                return Ok(Some(self.finish_line()));
            }
        }
    }

    fn too_long(&self) -> JsonLine {
        JsonLine::Refused {
            number: self.number,
            reason: format!(
                "line {} is longer than {} bytes (raise --max-line-bytes to accept it)",
                self.number, self.max_line_bytes
            ),
        }
    }

    /// Turns the bytes of a complete line into its input or refusal.
    fn finish_line(&mut self) -> Option<JsonLine> {
        if self.skipping {
            self.skipping = false;
            return None;
        }
        let mut bytes = &self.line[..];
        let mut skipped = 0;
        if self.number == 1 {
            if let Some(rest) = bytes.strip_prefix(BYTE_ORDER_MARK) {
                bytes = rest;
                skipped = BYTE_ORDER_MARK.len();
            }
        }
        let number = self.number;
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                return Some(JsonLine::Refused {
                    number,
                    reason: format!(
                        "line {number} is not valid UTF-8 (byte {} of the line)",
                        skipped + e.valid_up_to() + 1
                    ),
                })
            }
        };
        if text.trim().is_empty() {
            return None;
        }
        Some(match serde_json::from_str::<Value>(text) {
            Ok(value) => JsonLine::Input { number, value },
            Err(e) => JsonLine::Refused {
                number,
                // serde_json places the error in the text it was given, which is this one
                // line: its "line 1" would contradict the line number we give.
                reason: format!(
                    "line {number} is not valid JSON: {}",
                    e.to_string().replace(" at line 1 column ", " at column ")
                ),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &[u8], max: usize) -> Vec<JsonLine> {
        let mut lines = JsonLines::new(bytes, max);
        let mut out = Vec::new();
        while let Some(line) = lines.next().await.unwrap() {
            out.push(line);
        }
        out
    }

    fn numbers(lines: &[JsonLine]) -> Vec<(u64, bool)> {
        lines
            .iter()
            .map(|l| match l {
                JsonLine::Input { number, .. } => (*number, true),
                JsonLine::Refused { number, .. } => (*number, false),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_line_that_is_not_utf8_is_refused_and_the_next_lines_are_read() {
        let lines = read_all(b"{\"a\":1}\n{\"b\":\"\xff\"}\n\n{\"c\":3}", 1024).await;
        assert_eq!(numbers(&lines), vec![(1, true), (2, false), (4, true)]);
        let JsonLine::Refused { reason, .. } = &lines[1] else {
            unreachable!()
        };
        assert_eq!(reason, "line 2 is not valid UTF-8 (byte 7 of the line)");
    }

    #[tokio::test]
    async fn a_byte_order_mark_at_the_start_is_accepted_and_elsewhere_refused() {
        let lines = read_all(b"\xEF\xBB\xBF{\"a\":1}\n\xEF\xBB\xBF{\"a\":2}\n", 1024).await;
        assert_eq!(numbers(&lines), vec![(1, true), (2, false)]);
        // A bad byte is counted from the line's start, the mark included.
        let lines = read_all(b"\xEF\xBB\xBF[\xff]\n", 1024).await;
        assert!(
            matches!(&lines[0], JsonLine::Refused { reason, .. } if reason.contains("byte 5 of the line")),
            "{lines:?}"
        );
        // A JSON error is placed in the line, not in a one-line text of its own.
        let lines = read_all(b"1\n{\"a\" 1}\n", 1024).await;
        assert!(
            matches!(&lines[1], JsonLine::Refused { reason, .. } if reason == "line 2 is not valid JSON: expected `:` at column 6"),
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn an_over_long_line_is_refused_once_and_the_next_line_is_read() {
        let mut input = vec![b'1'; 100];
        input.extend_from_slice(b"\n[1]\n");
        let lines = read_all(&input, 10).await;
        assert_eq!(numbers(&lines), vec![(1, false), (2, true)]);
        // Exactly at the limit is accepted.
        let lines = read_all(b"1234567890\n", 10).await;
        assert_eq!(numbers(&lines), vec![(1, true)]);
    }

    #[tokio::test]
    async fn an_over_long_line_read_in_many_chunks_keeps_the_numbering() {
        let mut input = vec![b'1'; 1000];
        input.extend_from_slice(b"\n[2]\n[3]\n");
        let reader = tokio::io::BufReader::with_capacity(16, &input[..]);
        let mut lines = JsonLines::new(reader, 100);
        let mut read = Vec::new();
        while let Some(line) = lines.next().await.unwrap() {
            read.push(line);
        }
        assert_eq!(numbers(&read), vec![(1, false), (2, true), (3, true)]);
    }

    #[tokio::test]
    async fn an_over_long_last_line_without_a_newline_is_refused_once() {
        let lines = read_all(&[b' '; 50], 10).await;
        assert_eq!(numbers(&lines), vec![(1, false)]);
    }

    #[tokio::test]
    async fn an_endless_line_is_refused_without_being_held() {
        // A reader that never ends a line: the refusal comes as soon as the limit passes.
        let endless = tokio::io::BufReader::with_capacity(64, tokio::io::repeat(0));
        let mut lines = JsonLines::new(endless, 1000);
        let first = lines.next().await.unwrap().unwrap();
        assert!(
            matches!(&first, JsonLine::Refused { number: 1, reason } if reason.contains("longer than 1000 bytes")),
            "{first:?}"
        );
        assert!(lines.line.capacity() <= 2048, "{}", lines.line.capacity());
    }

    #[tokio::test]
    async fn crlf_line_ends_and_blank_lines_keep_the_numbering() {
        let lines = read_all(b"1\r\n\r\n  \n2\r\n", 16).await;
        assert_eq!(numbers(&lines), vec![(1, true), (4, true)]);
    }

    /// What the reader must produce for `input`, computed the obvious way: the whole input in
    /// memory, split at newlines.
    fn reference(input: &[u8], max: usize) -> Vec<(u64, Option<bool>)> {
        let mut expected = Vec::new();
        let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        if parts.last().is_some_and(|last| last.is_empty()) {
            parts.pop();
        }
        for (i, part) in parts.into_iter().enumerate() {
            let number = i as u64 + 1;
            let mut bytes = part;
            if number == 1 {
                bytes = bytes.strip_prefix(BYTE_ORDER_MARK).unwrap_or(bytes);
            }
            let read = if part.len() > max {
                Some(false)
            } else {
                match std::str::from_utf8(bytes) {
                    Err(_) => Some(false),
                    Ok(text) if text.trim().is_empty() => None,
                    Ok(text) => Some(serde_json::from_str::<Value>(text).is_ok()),
                }
            };
            expected.push((number, read));
        }
        expected
            .into_iter()
            .filter(|(_, read)| read.is_some())
            .collect()
    }

    /// Lines of JSON, junk, invalid UTF-8, blank lines, CRs and byte-order marks, joined.
    fn hostile_input() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let line = prop_oneof![
            Just(b"{\"a\":1}".to_vec()),
            Just(b"[1,2,{\"b\":null}]".to_vec()),
            Just(b"\"\xc3\xa9\"".to_vec()),
            Just(b"\xEF\xBB\xBF{}".to_vec()),
            Just(b"  \r".to_vec()),
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(
                prop_oneof![Just(b'['), Just(b']'), Just(b'1'), Just(b',')],
                0..60
            ),
        ];
        proptest::collection::vec(line, 0..12).prop_map(|lines| lines.join(&b'\n'))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever the bytes, the chunking and the limit, the reader says of every line what
        /// reading the whole input at once says, and never holds more than the limit and one
        /// chunk of a line.
        #[test]
        fn the_reader_agrees_with_reading_everything_at_once(
            input in hostile_input(),
            chunk in 1usize..64,
            max in 1usize..48,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (got, held) = runtime.block_on(async {
                let reader = tokio::io::BufReader::with_capacity(chunk, &input[..]);
                let mut lines = JsonLines::new(reader, max);
                let mut got = Vec::new();
                let mut held = 0;
                while let Some(line) = lines.next().await.unwrap() {
                    held = held.max(lines.line.len());
                    got.push(match line {
                        JsonLine::Input { number, .. } => (number, Some(true)),
                        JsonLine::Refused { number, reason } => {
                            assert!(reason.starts_with(&format!("line {number} ")), "{reason}");
                            (number, Some(false))
                        }
                    });
                }
                (got, held)
            });
            proptest::prop_assert_eq!(got, reference(&input, max));
            proptest::prop_assert!(held <= max);
        }
    }
}
