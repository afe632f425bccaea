//! Line-by-line capture of a container's stdout/stderr.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::SyncSender;

use guest_proto::{GuestMessage, LogStream};

use crate::clock::now_ms;

/// Longest line sent as one message; longer lines are split (as Docker's 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// Splits a byte stream into lines of at most `max` bytes (without the newline), calling
/// `f` for each; a final unterminated line is delivered too.
pub fn for_each_line<R: Read>(r: R, max: usize, mut f: impl FnMut(&[u8])) {
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        let buf = match r.fill_buf() {
            Ok([]) => break,
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let (take, newline) = match buf.iter().position(|&b| b == b'\n') {
            Some(p) => (p, true),
            None => (buf.len(), false),
        };
        let room = max - line.len();
        let n = take.min(room);
        line.extend_from_slice(&buf[..n]);
        if n < take {
            // Line too long: emit what we have, keep reading the rest as a new line.
            r.consume(n);
            f(&line);
            line.clear();
            continue;
        }
        r.consume(take + usize::from(newline));
        if newline {
            f(&line);
            line.clear();
        }
    }
    if !line.is_empty() {
        f(&line);
    }
}

/// Forwards every line of `r` as a [`GuestMessage::Log`] until EOF.
pub fn pump<R: Read>(r: R, container: String, stream: LogStream, out: SyncSender<GuestMessage>) {
    for_each_line(r, MAX_LINE, |l| {
        let line = String::from_utf8_lossy(l).into_owned();
        let _ = out.send(GuestMessage::Log {
            container: container.clone(),
            stream,
            timestamp_ms: now_ms(),
            line,
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut v = Vec::new();
        for_each_line(input, max, |l| {
            v.push(String::from_utf8_lossy(l).into_owned())
        });
        v
    }

    #[test]
    fn splits_lines_and_long_lines() {
        assert_eq!(lines(b"a\nbb\n\nccc", 16), vec!["a", "bb", "", "ccc"]);
        assert_eq!(lines(b"abcdefgh\nxy\n", 3), vec!["abc", "def", "gh", "xy"]);
        assert!(lines(b"", 3).is_empty());
    }
}
