//! The early console's line buffer.
//!
//! Every exit to the VMM costs tens of microseconds, so the kernel never exits per byte: it
//! fills a buffer shared with the VMM and kicks once per line, or when the buffer is full.

/// Where the console buffer lives and how to hand it to the host.
pub trait ConsoleSink {
    /// The shared buffer.
    fn buffer(&mut self) -> &mut [u8];
    /// Tells the host that the first `len` bytes of the buffer are ready. When this returns,
    /// the host has consumed them.
    fn kick(&mut self, len: usize);
}

/// Fills a [`ConsoleSink`]'s buffer and kicks it once per line or when full.
#[derive(Debug, Default)]
pub struct LineBuffer {
    len: usize,
    kicks: u64,
}

impl LineBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { len: 0, kicks: 0 }
    }

    /// Appends `bytes`, kicking after each newline and whenever the buffer fills up.
    pub fn write<S: ConsoleSink>(&mut self, sink: &mut S, bytes: &[u8]) {
        for &b in bytes {
            let buf = sink.buffer();
            if buf.is_empty() {
                return;
            }
            buf[self.len] = b;
            self.len += 1;
            if b == b'\n' || self.len == buf.len() {
                self.flush(sink);
            }
        }
    }

    /// Kicks out whatever is buffered.
    pub fn flush<S: ConsoleSink>(&mut self, sink: &mut S) {
        if self.len > 0 {
            sink.kick(self.len);
            self.len = 0;
            self.kicks += 1;
        }
    }

    /// Bytes waiting for the next kick.
    pub const fn pending(&self) -> usize {
        self.len
    }

    /// Kicks so far (each is one exit to the VMM).
    pub const fn kicks(&self) -> u64 {
        self.kicks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        buf: [u8; 8],
        out: Vec<u8>,
        kicks: usize,
    }

    impl ConsoleSink for Fake {
        fn buffer(&mut self) -> &mut [u8] {
            &mut self.buf
        }
        fn kick(&mut self, len: usize) {
            self.out.extend_from_slice(&self.buf[..len]);
            self.kicks += 1;
        }
    }

    #[test]
    fn kicks_once_per_line_and_when_full() {
        let mut f = Fake { buf: [0; 8], out: vec![], kicks: 0 };
        let mut lb = LineBuffer::new();
        lb.write(&mut f, b"ab\ncd");
        assert_eq!((f.kicks, lb.pending()), (1, 2));
        lb.write(&mut f, b"0123456789");
        assert_eq!(f.kicks, 2, "full buffer kicks");
        lb.write(&mut f, b"\n");
        assert_eq!(f.kicks, 3);
        lb.flush(&mut f);
        assert_eq!(f.kicks, 3, "nothing pending, no kick");
        assert_eq!(f.out, b"ab\ncd0123456789\n");
        assert_eq!(lb.kicks(), 3);
    }
}
