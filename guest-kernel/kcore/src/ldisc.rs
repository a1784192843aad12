//! A minimal canonical-mode line discipline: echo, erase, carriage-return mapping, and output
//! newline translation (ONLCR), as a terminal user expects from a console.

/// Longest input line kept (more is dropped, as a full tty buffer would).
pub const MAX_LINE: usize = 1024;

/// What feeding one input byte produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Bytes to echo back to the terminal.
    pub echo: &'static [u8],
    /// The byte to echo when it is the typed character itself.
    pub echo_char: Option<u8>,
    /// Whether a line is complete (read it with [`LineDiscipline::take_line`]).
    pub line_done: bool,
}

/// Line assembly state.
#[derive(Clone, Debug)]
pub struct LineDiscipline {
    line: [u8; MAX_LINE],
    len: usize,
    done: bool,
    after_cr: bool,
}

impl LineDiscipline {
    /// An empty line.
    pub const fn new() -> Self {
        Self { line: [0; MAX_LINE], len: 0, done: false, after_cr: false }
    }

    /// Feeds one input byte.
    pub fn input(&mut self, b: u8) -> Step {
        // A terminal's Enter may arrive as CR LF (telnet): one line end, not two.
        let after_cr = core::mem::replace(&mut self.after_cr, b == b'\r');
        if b == b'\n' && after_cr {
            return Step::default();
        }
        match b {
            b'\r' | b'\n' => {
                self.done = true;
                Step { echo: b"\r\n", echo_char: None, line_done: true }
            }
            0x7f | 0x08 => {
                if self.len > 0 {
                    self.len -= 1;
                    Step { echo: b"\x08 \x08", ..Step::default() }
                } else {
                    Step::default()
                }
            }
            // Other control characters are kept out of the line.
            b if b < 0x20 => Step::default(),
            b => {
                if self.len < MAX_LINE {
                    self.line[self.len] = b;
                    self.len += 1;
                    Step { echo_char: Some(b), ..Step::default() }
                } else {
                    Step::default()
                }
            }
        }
    }

    /// The completed line (without its newline), and a fresh start.
    pub fn take_line(&mut self) -> Option<&[u8]> {
        if !self.done {
            return None;
        }
        self.done = false;
        let len = core::mem::take(&mut self.len);
        Some(&self.line[..len])
    }
}

impl Default for LineDiscipline {
    fn default() -> Self {
        Self::new()
    }
}

/// Output translation: `\n` becomes `\r\n`. Calls `out` with the pieces.
pub fn onlcr(bytes: &[u8], mut out: impl FnMut(&[u8])) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out(&bytes[start..i]);
            out(b"\r\n");
            start = i + 1;
        }
    }
    out(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_assemble_with_echo_and_erase() {
        let mut l = LineDiscipline::new();
        let mut echoed = Vec::new();
        for &b in b"helx\x7flo\r" {
            let s = l.input(b);
            echoed.extend_from_slice(s.echo);
            echoed.extend(s.echo_char);
        }
        assert_eq!(l.take_line(), Some(&b"hello"[..]));
        assert_eq!(echoed, b"helx\x08 \x08lo\r\n");
        assert_eq!(l.take_line(), None);
        l.input(b'x');
        l.input(0x7f);
        l.input(b'\n');
        assert_eq!(l.take_line(), Some(&b""[..]), "empty line");
        for &b in b"ab\r\ncd\r\n" {
            l.input(b);
            if b == b'\n' {
                assert_eq!(l.take_line(), None, "CR LF is one line end");
            } else if b == b'\r' {
                assert!(l.take_line().is_some());
            }
        }
    }

    #[test]
    fn newlines_become_crlf_once() {
        let mut out = Vec::new();
        onlcr(b"a\nb\r\nc\n", |p| out.extend_from_slice(p));
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
    }
}
