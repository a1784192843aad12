//! The Linux terminal line discipline (N_TTY) as a pure state machine, and the termios ABI.
//!
//! [`Termios`] and [`Winsize`] are the structures the `TCGETS`/`TCSETS*` and `TIOCGWINSZ`/
//! `TIOCSWINSZ` ioctls copy, in the x86-64 kernel layout (the kernel's 36-byte `struct termios`,
//! not glibc's larger one). [`LineDiscipline`] follows `drivers/tty/n_tty.c`: input mapping
//! (`ISTRIP`, `IUCLC`, `IGNCR`, `ICRNL`, `INLCR`), XON/XOFF flow control, signal characters with
//! their flush, canonical line editing with Linux's echo strings (`ECHOE`, `ECHOK`, `ECHOKE`,
//! `ECHOCTL`, `ECHOPRT`, `ECHONL`), literal-next, reprint, end-of-file markers, and output
//! post-processing (`OPOST`, `ONLCR`, `OCRNL`, `ONOCR`, `ONLRET`, `OLCUC`, `XTABS`) with the
//! column tracking that tab erasure needs.
//!
//! The kernel drives it like this: every byte typed goes through [`LineDiscipline::receive`];
//! the returned [`Input`] says what to write back to the terminal, which signal (if any) to send
//! to the terminal's foreground process group, whether to discard queued output, and whether
//! sleeping readers should re-check [`LineDiscipline::read_ready`]. Program output goes through
//! [`LineDiscipline::process_output`]. Blocking, `O_NONBLOCK`, and the `VMIN`/`VTIME` timers are
//! the kernel's: it asks [`LineDiscipline::read_ready`], [`LineDiscipline::available`],
//! [`LineDiscipline::vmin`] and [`LineDiscipline::vtime`].

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::cell::Cell;

use crate::errno::{Errno, KResult};
use crate::signal::{SIGINT, SIGQUIT, SIGTSTP};

// ---- c_iflag ----
/// Ignore break conditions.
pub const IGNBRK: u32 = 0o1;
/// A break flushes the queues and sends SIGINT.
pub const BRKINT: u32 = 0o2;
/// Ignore framing and parity errors.
pub const IGNPAR: u32 = 0o4;
/// Mark parity errors (and double a literal `\xff`).
pub const PARMRK: u32 = 0o10;
/// Enable input parity checking.
pub const INPCK: u32 = 0o20;
/// Strip the eighth bit of input bytes.
pub const ISTRIP: u32 = 0o40;
/// Map NL to CR on input.
pub const INLCR: u32 = 0o100;
/// Ignore CR on input.
pub const IGNCR: u32 = 0o200;
/// Map CR to NL on input.
pub const ICRNL: u32 = 0o400;
/// Map upper case to lower case on input (with `IEXTEN`).
pub const IUCLC: u32 = 0o1000;
/// XON/XOFF output flow control: `VSTOP` stops output, `VSTART` restarts it.
pub const IXON: u32 = 0o2000;
/// Any input byte restarts stopped output.
pub const IXANY: u32 = 0o4000;
/// XON/XOFF input flow control.
pub const IXOFF: u32 = 0o10000;
/// Ring the bell when the input queue is full.
pub const IMAXBEL: u32 = 0o20000;
/// Input is UTF-8: erase removes whole characters.
pub const IUTF8: u32 = 0o40000;

// ---- c_oflag ----
/// Enable output post-processing.
pub const OPOST: u32 = 0o1;
/// Map lower case to upper case on output.
pub const OLCUC: u32 = 0o2;
/// Map NL to CR NL on output.
pub const ONLCR: u32 = 0o4;
/// Map CR to NL on output.
pub const OCRNL: u32 = 0o10;
/// Do not output CR at column 0.
pub const ONOCR: u32 = 0o20;
/// NL also performs the carriage-return function.
pub const ONLRET: u32 = 0o40;
/// Use fill characters for delays.
pub const OFILL: u32 = 0o100;
/// The fill character is DEL.
pub const OFDEL: u32 = 0o200;
/// Mask of the horizontal-tab delay field.
pub const TABDLY: u32 = 0o14000;
/// Tab delay 3: expand tabs to spaces (same value as [`XTABS`]).
pub const TAB3: u32 = 0o14000;
/// Expand tabs to spaces on output.
pub const XTABS: u32 = 0o14000;

// ---- c_cflag ----
/// Mask of the baud-rate field.
pub const CBAUD: u32 = 0o10017;
/// Hang up.
pub const B0: u32 = 0;
/// 9600 baud.
pub const B9600: u32 = 0o15;
/// 19200 baud.
pub const B19200: u32 = 0o16;
/// 38400 baud (Linux's console default).
pub const B38400: u32 = 0o17;
/// 115200 baud.
pub const B115200: u32 = 0o10002;
/// Mask of the character-size field.
pub const CSIZE: u32 = 0o60;
/// 5-bit characters.
pub const CS5: u32 = 0;
/// 6-bit characters.
pub const CS6: u32 = 0o20;
/// 7-bit characters.
pub const CS7: u32 = 0o40;
/// 8-bit characters.
pub const CS8: u32 = 0o60;
/// Two stop bits.
pub const CSTOPB: u32 = 0o100;
/// Enable the receiver.
pub const CREAD: u32 = 0o200;
/// Enable parity.
pub const PARENB: u32 = 0o400;
/// Odd parity.
pub const PARODD: u32 = 0o1000;
/// Hang up on last close.
pub const HUPCL: u32 = 0o2000;
/// Ignore modem control lines.
pub const CLOCAL: u32 = 0o4000;

// ---- c_lflag ----
/// Generate signals for `VINTR`, `VQUIT` and `VSUSP`.
pub const ISIG: u32 = 0o1;
/// Canonical mode: line editing, reads return lines.
pub const ICANON: u32 = 0o2;
/// Upper-case-only terminal presentation (unsupported, as in Linux).
pub const XCASE: u32 = 0o4;
/// Echo input.
pub const ECHO: u32 = 0o10;
/// `VERASE` (and `VWERASE`) visually erase with backspace-space-backspace.
pub const ECHOE: u32 = 0o20;
/// `VKILL` erases the line (with `ECHOKE`) or echoes a newline.
pub const ECHOK: u32 = 0o40;
/// Echo NL even without `ECHO`.
pub const ECHONL: u32 = 0o100;
/// Do not flush the queues on a signal character.
pub const NOFLSH: u32 = 0o200;
/// Background writes raise SIGTTOU (enforced by the kernel's tty layer).
pub const TOSTOP: u32 = 0o400;
/// Echo control characters as `^X`.
pub const ECHOCTL: u32 = 0o1000;
/// Echo erased characters between `\` and `/` (hard-copy terminals).
pub const ECHOPRT: u32 = 0o2000;
/// `VKILL` visually erases the whole line.
pub const ECHOKE: u32 = 0o4000;
/// Output is being flushed (toggled by `VDISCARD`; not implemented).
pub const FLUSHO: u32 = 0o10000;
/// Retype pending input at the next read (not implemented).
pub const PENDIN: u32 = 0o40000;
/// Enable the extended characters `VWERASE`, `VLNEXT`, `VREPRINT`, `VEOL2`.
pub const IEXTEN: u32 = 0o100000;
/// External processing (pty packet mode; not implemented).
pub const EXTPROC: u32 = 0o200000;

// ---- c_cc indexes ----
/// Number of control characters in the kernel's `struct termios`.
pub const NCCS: usize = 19;
/// Interrupt character (SIGINT).
pub const VINTR: usize = 0;
/// Quit character (SIGQUIT).
pub const VQUIT: usize = 1;
/// Erase one character.
pub const VERASE: usize = 2;
/// Erase the line.
pub const VKILL: usize = 3;
/// End of file.
pub const VEOF: usize = 4;
/// Non-canonical read timeout, in tenths of a second.
pub const VTIME: usize = 5;
/// Non-canonical read minimum byte count.
pub const VMIN: usize = 6;
/// Switch character (unused by Linux).
pub const VSWTC: usize = 7;
/// Restart output (XON).
pub const VSTART: usize = 8;
/// Stop output (XOFF).
pub const VSTOP: usize = 9;
/// Suspend character (SIGTSTP).
pub const VSUSP: usize = 10;
/// Additional end-of-line character.
pub const VEOL: usize = 11;
/// Reprint the current line.
pub const VREPRINT: usize = 12;
/// Toggle output discarding (not implemented).
pub const VDISCARD: usize = 13;
/// Erase one word.
pub const VWERASE: usize = 14;
/// Take the next character literally.
pub const VLNEXT: usize = 15;
/// Second additional end-of-line character.
pub const VEOL2: usize = 16;

/// A `c_cc` value that disables the control character (`_POSIX_VDISABLE`).
pub const VDISABLE: u8 = 0;

// ---- ioctl request numbers (x86-64) ----
/// Get the terminal attributes (`struct termios`).
pub const TCGETS: u32 = 0x5401;
/// Set the terminal attributes now.
pub const TCSETS: u32 = 0x5402;
/// Set the terminal attributes after output drains.
pub const TCSETSW: u32 = 0x5403;
/// Set the terminal attributes after output drains, flushing input.
pub const TCSETSF: u32 = 0x5404;
/// Send a break / drain output.
pub const TCSBRK: u32 = 0x5409;
/// Suspend or restart transmission or reception.
pub const TCXONC: u32 = 0x540A;
/// Flush queues (`TCIFLUSH`, `TCOFLUSH`, `TCIOFLUSH`).
pub const TCFLSH: u32 = 0x540B;
/// Make the terminal the caller's controlling terminal.
pub const TIOCSCTTY: u32 = 0x540E;
/// Get the foreground process group.
pub const TIOCGPGRP: u32 = 0x540F;
/// Set the foreground process group.
pub const TIOCSPGRP: u32 = 0x5410;
/// Bytes in the output queue.
pub const TIOCOUTQ: u32 = 0x5411;
/// Insert a byte into the input queue.
pub const TIOCSTI: u32 = 0x5412;
/// Get the window size.
pub const TIOCGWINSZ: u32 = 0x5413;
/// Set the window size (raises SIGWINCH in the foreground group when it changes).
pub const TIOCSWINSZ: u32 = 0x5414;
/// Bytes readable now ([`LineDiscipline::available`]); also called `TIOCINQ`.
pub const FIONREAD: u32 = 0x541B;
/// Set or clear non-blocking mode.
pub const FIONBIO: u32 = 0x5421;
/// Give up the controlling terminal.
pub const TIOCNOTTY: u32 = 0x5422;
/// Get the session id of the terminal.
pub const TIOCGSID: u32 = 0x5429;
/// `TCFLSH` argument: flush received data.
pub const TCIFLUSH: u32 = 0;
/// `TCFLSH` argument: flush written data.
pub const TCOFLUSH: u32 = 1;
/// `TCFLSH` argument: flush both.
pub const TCIOFLUSH: u32 = 2;
/// `TCXONC` argument: suspend output.
pub const TCOOFF: u32 = 0;
/// `TCXONC` argument: restart output.
pub const TCOON: u32 = 1;

/// Size of the input queue, as Linux's `N_TTY_BUF_SIZE`.
pub const N_TTY_BUF_SIZE: usize = 4096;

/// The kernel's `struct termios` (x86-64): what `TCGETS` and `TCSETS` copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termios {
    /// Input modes.
    pub c_iflag: u32,
    /// Output modes.
    pub c_oflag: u32,
    /// Control modes.
    pub c_cflag: u32,
    /// Local modes.
    pub c_lflag: u32,
    /// Line discipline number (0, N_TTY).
    pub c_line: u8,
    /// Control characters, indexed by `VINTR` and friends.
    pub c_cc: [u8; NCCS],
}

impl Termios {
    /// Size of the ABI structure in bytes.
    pub const SIZE: usize = 36;
    /// Byte offset of `c_iflag`.
    pub const OFF_IFLAG: usize = 0;
    /// Byte offset of `c_oflag`.
    pub const OFF_OFLAG: usize = 4;
    /// Byte offset of `c_cflag`.
    pub const OFF_CFLAG: usize = 8;
    /// Byte offset of `c_lflag`.
    pub const OFF_LFLAG: usize = 12;
    /// Byte offset of `c_line`.
    pub const OFF_LINE: usize = 16;
    /// Byte offset of `c_cc`.
    pub const OFF_CC: usize = 17;

    /// The structure as user space sees it.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[Self::OFF_IFLAG..][..4].copy_from_slice(&self.c_iflag.to_le_bytes());
        b[Self::OFF_OFLAG..][..4].copy_from_slice(&self.c_oflag.to_le_bytes());
        b[Self::OFF_CFLAG..][..4].copy_from_slice(&self.c_cflag.to_le_bytes());
        b[Self::OFF_LFLAG..][..4].copy_from_slice(&self.c_lflag.to_le_bytes());
        b[Self::OFF_LINE] = self.c_line;
        b[Self::OFF_CC..][..NCCS].copy_from_slice(&self.c_cc);
        b
    }

    /// Reads the structure from user bytes; `EFAULT` when fewer than [`Self::SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> KResult<Self> {
        if bytes.len() < Self::SIZE {
            return Err(Errno::EFAULT);
        }
        let word =
            |off: usize| u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]);
        let mut c_cc = [0u8; NCCS];
        c_cc.copy_from_slice(&bytes[Self::OFF_CC..Self::OFF_CC + NCCS]);
        Ok(Self {
            c_iflag: word(Self::OFF_IFLAG),
            c_oflag: word(Self::OFF_OFLAG),
            c_cflag: word(Self::OFF_CFLAG),
            c_lflag: word(Self::OFF_LFLAG),
            c_line: bytes[Self::OFF_LINE],
            c_cc,
        })
    }

    /// Whether canonical mode is on.
    pub fn icanon(&self) -> bool {
        self.c_lflag & ICANON != 0
    }

    fn i(&self, flag: u32) -> bool {
        self.c_iflag & flag != 0
    }

    fn o(&self, flag: u32) -> bool {
        self.c_oflag & flag != 0
    }

    fn l(&self, flag: u32) -> bool {
        self.c_lflag & flag != 0
    }
}

impl Default for Termios {
    /// Linux's `tty_std_termios`: what a console starts with.
    fn default() -> Self {
        Self {
            c_iflag: ICRNL | IXON,
            c_oflag: OPOST | ONLCR,
            c_cflag: B38400 | CS8 | CREAD | HUPCL,
            c_lflag: ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN,
            c_line: 0,
            // ^C ^\ DEL ^U ^D 0 1 0 ^Q ^S ^Z 0 ^R ^O ^W ^V 0, then two unused slots.
            c_cc: [3, 0x1c, 0x7f, 0x15, 4, 0, 1, 0, 0x11, 0x13, 0x1a, 0, 0x12, 0x0f, 0x17, 0x16, 0, 0, 0],
        }
    }
}

/// The kernel's `struct winsize`: what `TIOCGWINSZ` and `TIOCSWINSZ` copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Winsize {
    /// Rows, in characters.
    pub ws_row: u16,
    /// Columns, in characters.
    pub ws_col: u16,
    /// Width in pixels (unused).
    pub ws_xpixel: u16,
    /// Height in pixels (unused).
    pub ws_ypixel: u16,
}

impl Winsize {
    /// Size of the ABI structure in bytes.
    pub const SIZE: usize = 8;

    /// The structure as user space sees it.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..2].copy_from_slice(&self.ws_row.to_le_bytes());
        b[2..4].copy_from_slice(&self.ws_col.to_le_bytes());
        b[4..6].copy_from_slice(&self.ws_xpixel.to_le_bytes());
        b[6..8].copy_from_slice(&self.ws_ypixel.to_le_bytes());
        b
    }

    /// Reads the structure from user bytes; `EFAULT` when fewer than [`Self::SIZE`] bytes.
    pub fn decode(bytes: &[u8]) -> KResult<Self> {
        if bytes.len() < Self::SIZE {
            return Err(Errno::EFAULT);
        }
        let half = |off: usize| u16::from_le_bytes([bytes[off], bytes[off + 1]]);
        Ok(Self { ws_row: half(0), ws_col: half(2), ws_xpixel: half(4), ws_ypixel: half(6) })
    }
}

/// An XON/XOFF output flow-control change caused by input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Output must be held (`VSTOP` typed).
    Stop,
    /// Held output may go again (`VSTART` typed, a signal character, or any byte with `IXANY`).
    Start,
}

/// What one received byte asks of the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Input {
    /// Bytes to write to the terminal, already output-processed. Linux holds echoes while
    /// output is stopped; writing them anyway is also acceptable for a console.
    pub echo: Vec<u8>,
    /// Signal to send to the terminal's foreground process group (`SIGINT`, `SIGQUIT` or
    /// `SIGTSTP`).
    pub signal: Option<u32>,
    /// Whether output not yet written to the terminal must be discarded (a signal character
    /// without `NOFLSH`; the input queue is already flushed).
    pub flush_output: bool,
    /// Whether readers (and pollers) should re-check [`LineDiscipline::read_ready`].
    pub wake_readers: bool,
    /// An output flow-control change.
    pub flow: Option<Flow>,
}

// Queue entries: the byte in the low 8 bits, plus flags.
/// The entry ends a canonical line (Linux's `read_flags` bit).
const LINE_END: u16 = 0x100;
/// The entry is an end-of-file marker (the `__DISABLED_CHAR` Linux queues for `VEOF`).
const EOF_MARK: u16 = 0x200;

/// One terminal's N_TTY state: the input queue, line-editing state, and output column.
#[derive(Clone, Debug)]
pub struct LineDiscipline {
    termios: Termios,
    /// Received bytes not yet read, with [`LINE_END`] and [`EOF_MARK`] flags.
    queue: VecDeque<u16>,
    /// In canonical mode, the number of queue entries that form complete lines (Linux's
    /// `canon_head - read_tail`); the rest is the line being edited. Zero in raw mode.
    canon_len: usize,
    /// Bytes that need special handling, as Linux's `char_map`.
    char_map: [u64; 4],
    /// The previous byte was `VLNEXT`.
    lnext: bool,
    /// Inside an `ECHOPRT` `\...` erase sequence.
    erasing: bool,
    /// Output stopped by `VSTOP`.
    stopped: bool,
    /// Output column, for tab handling.
    column: Cell<u32>,
    /// Column where the current input line started, for tab erasure.
    canon_column: Cell<u32>,
}

fn iscntrl(c: u8) -> bool {
    c < 0x20 || c == 0x7f
}

/// What output processing does with one byte.
enum Out {
    Same,
    Byte(u8),
    CrLf,
    Spaces(usize),
    Skip,
}

impl LineDiscipline {
    /// A line discipline with Linux's console defaults ([`Termios::default`]).
    pub fn new() -> Self {
        Self::with_termios(Termios::default())
    }

    /// A line discipline with the given settings.
    pub fn with_termios(termios: Termios) -> Self {
        let mut l = Self {
            termios,
            queue: VecDeque::new(),
            canon_len: 0,
            char_map: [0; 4],
            lnext: false,
            erasing: false,
            stopped: false,
            column: Cell::new(0),
            canon_column: Cell::new(0),
        };
        l.rebuild_char_map();
        l
    }

    /// The current settings (for `TCGETS`).
    pub fn termios(&self) -> &Termios {
        &self.termios
    }

    /// Applies new settings (`TCSETS*`). Switching canonical mode off makes a partly typed
    /// line readable at once; switching it on makes everything queued one readable line (as
    /// Linux does). Turning `IXON` off restarts stopped output. The caller should re-check
    /// [`Self::read_ready`] afterwards and wake readers.
    pub fn set_termios(&mut self, new: Termios) {
        let old = self.termios;
        self.termios = new;
        self.rebuild_char_map();
        if (old.c_lflag ^ new.c_lflag) & (ICANON | EXTPROC) != 0 {
            for e in self.queue.iter_mut() {
                *e &= 0xff;
            }
            if !new.icanon() || self.queue.is_empty() {
                self.canon_len = 0;
            } else {
                if let Some(last) = self.queue.back_mut() {
                    *last |= LINE_END;
                }
                self.canon_len = self.queue.len();
            }
            self.erasing = false;
            self.lnext = false;
        }
        if !new.i(IXON) && old.i(IXON) {
            self.stopped = false;
        }
    }

    /// Whether canonical mode is on.
    pub fn is_canonical(&self) -> bool {
        self.termios.icanon()
    }

    /// `c_cc[VMIN]`: in non-canonical mode, the byte count a blocking read waits for (0: do not
    /// wait for bytes). Linux's rules, for the kernel to implement with [`Self::available`]:
    /// `VMIN=0, VTIME=0` returns what is there; `VMIN=0, VTIME>0` waits up to `VTIME` for one
    /// byte; `VMIN>0, VTIME=0` waits for `min(VMIN, count)` bytes; `VMIN>0, VTIME>0` waits for
    /// the first byte, then returns after `VMIN` bytes or a `VTIME` gap between bytes.
    pub fn vmin(&self) -> u8 {
        self.termios.c_cc[VMIN]
    }

    /// `c_cc[VTIME]`: the non-canonical read timer, in tenths of a second (see [`Self::vmin`]).
    pub fn vtime(&self) -> u8 {
        self.termios.c_cc[VTIME]
    }

    /// Whether output is stopped by XOFF (`VSTOP` with `IXON`).
    pub fn output_stopped(&self) -> bool {
        self.stopped
    }

    /// Stops or restarts output from the kernel side (`TCXONC` with `TCOOFF`/`TCOON`).
    pub fn set_output_stopped(&mut self, stopped: bool) {
        self.stopped = stopped;
    }

    /// Whether a read would return now without blocking: in canonical mode a complete line (or
    /// an end-of-file) is queued, otherwise at least one byte is.
    pub fn read_ready(&self) -> bool {
        if self.is_canonical() { self.canon_len > 0 } else { !self.queue.is_empty() }
    }

    /// Bytes a read could return now (`FIONREAD`): in canonical mode the complete lines without
    /// their end-of-file markers, otherwise everything queued.
    pub fn available(&self) -> usize {
        if self.is_canonical() {
            self.queue.iter().take(self.canon_len).filter(|&&e| e & EOF_MARK == 0).count()
        } else {
            self.queue.len()
        }
    }

    /// Discards all queued input, including the line being edited (`TCFLSH`, `TCSETSF`).
    pub fn flush_input(&mut self) {
        self.queue.clear();
        self.canon_len = 0;
        self.erasing = false;
    }

    /// Copies queued input to `buf`. Canonical mode: at most one line, ending with its
    /// terminator (NL, `VEOL`, `VEOL2`); a line ended by `VEOF` comes without terminator, and a
    /// `VEOF` at the start of a line reads as 0 bytes (end of file). Non-canonical mode:
    /// whatever is queued. Returns the byte count; 0 with [`Self::read_ready`] false means
    /// nothing was there (block or `EAGAIN`), 0 with it true beforehand means end of file.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        if buf.is_empty() {
            return 0;
        }
        if !self.is_canonical() {
            let n = buf.len().min(self.queue.len());
            for (dst, e) in buf.iter_mut().zip(self.queue.drain(..n)) {
                *dst = e as u8;
            }
            return n;
        }
        let mut n = 0;
        while self.canon_len > 0 {
            let e = self.queue[0];
            // The EOF marker is consumed but not copied, also when it follows the rest of a
            // line that an earlier short read took part of (Linux's `eof_push` case).
            if e & EOF_MARK != 0 {
                self.queue.pop_front();
                self.canon_len -= 1;
                break;
            }
            if n == buf.len() {
                break;
            }
            buf[n] = e as u8;
            n += 1;
            self.queue.pop_front();
            self.canon_len -= 1;
            if e & LINE_END != 0 {
                break;
            }
        }
        n
    }

    /// Feeds one byte received from the terminal.
    pub fn receive(&mut self, byte: u8) -> Input {
        let mut inp = Input::default();
        let mut c = byte;
        let t = self.termios;
        if t.i(ISTRIP) {
            c &= 0x7f;
        }
        if t.i(IUCLC) && t.l(IEXTEN) {
            c = c.to_ascii_lowercase();
        }
        if self.lnext {
            self.lnext = false;
            self.receive_normal(c, &mut inp);
        } else if self.char_map[usize::from(c >> 6)] & (1 << (c & 63)) != 0 {
            self.receive_special(c, &mut inp);
        } else {
            self.receive_normal(c, &mut inp);
        }
        inp
    }

    /// Post-processes program output for the terminal (`OPOST`: `ONLCR`, `OCRNL`, `ONOCR`,
    /// `ONLRET`, `OLCUC`, `XTABS`), calling `out` with the pieces, and tracks the column.
    pub fn process_output(&self, bytes: &[u8], mut out: impl FnMut(&[u8])) {
        if !self.termios.o(OPOST) {
            out(bytes);
            return;
        }
        let mut start = 0;
        for (i, &c) in bytes.iter().enumerate() {
            let action = self.output_char(c);
            if matches!(action, Out::Same) {
                continue;
            }
            if start < i {
                out(&bytes[start..i]);
            }
            start = i + 1;
            match action {
                Out::Same | Out::Skip => {}
                Out::Byte(b) => out(&[b]),
                Out::CrLf => out(b"\r\n"),
                Out::Spaces(n) => out(&b"        "[..n]),
            }
        }
        if start < bytes.len() {
            out(&bytes[start..]);
        }
    }

    // ---- internals ----

    fn rebuild_char_map(&mut self) {
        let t = self.termios;
        let mut map = [0u64; 4];
        let mut set = |c: u8| map[usize::from(c >> 6)] |= 1 << (c & 63);
        if t.i(IGNCR) || t.i(ICRNL) {
            set(b'\r');
        }
        if t.i(INLCR) {
            set(b'\n');
        }
        if t.l(ICANON) {
            set(t.c_cc[VERASE]);
            set(t.c_cc[VKILL]);
            set(t.c_cc[VEOF]);
            set(b'\n');
            set(t.c_cc[VEOL]);
            if t.l(IEXTEN) {
                set(t.c_cc[VWERASE]);
                set(t.c_cc[VLNEXT]);
                set(t.c_cc[VEOL2]);
                if t.l(ECHO) {
                    set(t.c_cc[VREPRINT]);
                }
            }
        }
        if t.i(IXON) {
            set(t.c_cc[VSTART]);
            set(t.c_cc[VSTOP]);
        }
        if t.l(ISIG) {
            set(t.c_cc[VINTR]);
            set(t.c_cc[VQUIT]);
            set(t.c_cc[VSUSP]);
        }
        // A disabled character (0) is never special, so NUL bytes stay data.
        map[0] &= !1;
        self.char_map = map;
    }

    fn is_continuation(&self, c: u8) -> bool {
        self.termios.i(IUTF8) && c & 0xc0 == 0x80
    }

    /// Linux's `do_output_char`: the column bookkeeping and the translation of one byte.
    fn output_char(&self, c: u8) -> Out {
        let t = &self.termios;
        let col = self.column.get();
        match c {
            b'\n' => {
                if t.o(ONLRET) {
                    self.column.set(0);
                }
                if t.o(ONLCR) {
                    self.column.set(0);
                    self.canon_column.set(0);
                    return Out::CrLf;
                }
                self.canon_column.set(self.column.get());
                Out::Same
            }
            b'\r' => {
                if t.o(ONOCR) && col == 0 {
                    return Out::Skip;
                }
                if t.o(OCRNL) {
                    if t.o(ONLRET) {
                        self.column.set(0);
                        self.canon_column.set(0);
                    }
                    return Out::Byte(b'\n');
                }
                self.column.set(0);
                self.canon_column.set(0);
                Out::Same
            }
            b'\t' => {
                let spaces = 8 - (col & 7);
                self.column.set(col + spaces);
                if t.c_oflag & TABDLY == XTABS { Out::Spaces(spaces as usize) } else { Out::Same }
            }
            0x08 => {
                self.column.set(col.saturating_sub(1));
                Out::Same
            }
            _ if iscntrl(c) => Out::Same,
            _ => {
                if !self.is_continuation(c) {
                    self.column.set(col + 1);
                }
                if t.o(OLCUC) && c.is_ascii_lowercase() {
                    Out::Byte(c.to_ascii_uppercase())
                } else {
                    Out::Same
                }
            }
        }
    }

    /// Echoes one byte as it is (Linux's `echo_char_raw`), output-processed when `OPOST`.
    fn echo_raw(&self, c: u8, echo: &mut Vec<u8>) {
        if !self.termios.o(OPOST) {
            echo.push(c);
            return;
        }
        match self.output_char(c) {
            Out::Same => echo.push(c),
            Out::Byte(b) => echo.push(b),
            Out::CrLf => echo.extend_from_slice(b"\r\n"),
            Out::Spaces(n) => echo.extend(core::iter::repeat_n(b' ', n)),
            Out::Skip => {}
        }
    }

    /// Echoes a typed byte (Linux's `echo_char`): control characters as `^X` with `ECHOCTL`.
    fn echo_char(&self, c: u8, echo: &mut Vec<u8>) {
        if self.termios.l(ECHOCTL) && iscntrl(c) && c != b'\t' {
            echo.push(b'^');
            echo.push(c ^ 0x40);
            self.column.set(self.column.get() + 2);
        } else {
            self.echo_raw(c, echo);
        }
    }

    fn finish_erasing(&mut self, echo: &mut Vec<u8>) {
        if self.erasing {
            self.echo_raw(b'/', echo);
            self.erasing = false;
        }
    }

    fn at_line_start(&self) -> bool {
        self.queue.len() == self.canon_len
    }

    fn bell(&self, inp: &mut Input) {
        if self.termios.l(ECHO) {
            self.echo_raw(0x07, &mut inp.echo);
        }
    }

    fn restart_output_on_any(&mut self, inp: &mut Input) {
        if self.stopped && self.termios.i(IXON) && self.termios.i(IXANY) {
            self.stopped = false;
            inp.flow = Some(Flow::Start);
        }
    }

    /// Whether a data byte fits, keeping one slot free so that a line can always be ended.
    fn room_for(&self, c: u8) -> bool {
        let parmrk = c == 0xff && self.termios.i(PARMRK);
        self.queue.len() + usize::from(parmrk) + 1 < N_TTY_BUF_SIZE
    }

    /// Queues a data byte (doubling `\xff` with `PARMRK`); the caller checked [`Self::room_for`].
    fn queue_data(&mut self, c: u8, inp: &mut Input) {
        if c == 0xff && self.termios.i(PARMRK) {
            self.queue.push_back(u16::from(c));
        }
        self.queue.push_back(u16::from(c));
        if !self.is_canonical() {
            inp.wake_readers = true;
        }
    }

    /// Linux's `n_tty_receive_char`: an ordinary byte.
    fn receive_normal(&mut self, c: u8, inp: &mut Input) {
        self.restart_output_on_any(inp);
        if !self.room_for(c) {
            self.bell(inp);
            return;
        }
        if self.termios.l(ECHO) {
            self.finish_erasing(&mut inp.echo);
            if self.at_line_start() {
                self.canon_column.set(self.column.get());
            }
            self.echo_char(c, &mut inp.echo);
        }
        self.queue_data(c, inp);
    }

    /// Linux's `n_tty_receive_char_special`: a byte in the special-character map.
    fn receive_special(&mut self, mut c: u8, inp: &mut Input) {
        let t = self.termios;
        let cc = t.c_cc;
        if t.i(IXON) && (c == cc[VSTART] || c == cc[VSTOP]) {
            if c == cc[VSTART] {
                if self.stopped {
                    self.stopped = false;
                    inp.flow = Some(Flow::Start);
                }
            } else if !self.stopped {
                self.stopped = true;
                inp.flow = Some(Flow::Stop);
            }
            return;
        }
        if t.l(ISIG) {
            let sig = if c == cc[VINTR] {
                Some(SIGINT)
            } else if c == cc[VQUIT] {
                Some(SIGQUIT)
            } else if c == cc[VSUSP] {
                Some(SIGTSTP)
            } else {
                None
            };
            if let Some(sig) = sig {
                self.receive_signal_char(sig, c, inp);
                return;
            }
        }
        self.restart_output_on_any(inp);
        if c == b'\r' {
            if t.i(IGNCR) {
                return;
            }
            if t.i(ICRNL) {
                c = b'\n';
            }
        } else if c == b'\n' && t.i(INLCR) {
            c = b'\r';
        }
        if t.l(ICANON) {
            if c == cc[VERASE] || c == cc[VKILL] || (c == cc[VWERASE] && t.l(IEXTEN)) {
                self.eraser(c, &mut inp.echo);
                return;
            }
            if c == cc[VLNEXT] && t.l(IEXTEN) {
                self.lnext = true;
                if t.l(ECHO) {
                    self.finish_erasing(&mut inp.echo);
                    if t.l(ECHOCTL) {
                        self.echo_raw(b'^', &mut inp.echo);
                        self.echo_raw(0x08, &mut inp.echo);
                    }
                }
                return;
            }
            if c == cc[VREPRINT] && t.l(ECHO) && t.l(IEXTEN) {
                self.finish_erasing(&mut inp.echo);
                self.echo_char(c, &mut inp.echo);
                self.echo_raw(b'\n', &mut inp.echo);
                for i in self.canon_len..self.queue.len() {
                    self.echo_char(self.queue[i] as u8, &mut inp.echo);
                }
                return;
            }
            if c == b'\n' {
                if self.queue.len() >= N_TTY_BUF_SIZE {
                    self.bell(inp);
                    return;
                }
                if t.l(ECHO) || t.l(ECHONL) {
                    self.echo_raw(b'\n', &mut inp.echo);
                }
                self.end_line(u16::from(c), inp);
                return;
            }
            if c == cc[VEOF] {
                if self.queue.len() >= N_TTY_BUF_SIZE {
                    return;
                }
                self.end_line(EOF_MARK, inp);
                return;
            }
            if c == cc[VEOL] || (c == cc[VEOL2] && t.l(IEXTEN)) {
                if self.queue.len() >= N_TTY_BUF_SIZE {
                    self.bell(inp);
                    return;
                }
                if t.l(ECHO) {
                    if self.at_line_start() {
                        self.canon_column.set(self.column.get());
                    }
                    self.echo_char(c, &mut inp.echo);
                }
                if c == 0xff && t.i(PARMRK) && self.queue.len() + 1 < N_TTY_BUF_SIZE {
                    self.queue.push_back(0xff);
                }
                self.end_line(u16::from(c), inp);
                return;
            }
        }
        if !self.room_for(c) {
            self.bell(inp);
            return;
        }
        if t.l(ECHO) {
            self.finish_erasing(&mut inp.echo);
            if c == b'\n' {
                self.echo_raw(b'\n', &mut inp.echo);
            } else {
                if self.at_line_start() {
                    self.canon_column.set(self.column.get());
                }
                self.echo_char(c, &mut inp.echo);
            }
        }
        self.queue_data(c, inp);
    }

    /// Completes the canonical line with `entry` (a terminator byte, or the EOF marker).
    fn end_line(&mut self, entry: u16, inp: &mut Input) {
        self.queue.push_back(entry | LINE_END);
        self.canon_len = self.queue.len();
        inp.wake_readers = true;
    }

    /// Linux's `n_tty_receive_signal_char` and `isig`.
    fn receive_signal_char(&mut self, sig: u32, c: u8, inp: &mut Input) {
        inp.signal = Some(sig);
        if !self.termios.l(NOFLSH) {
            self.flush_input();
            inp.flush_output = true;
            inp.echo.clear();
        }
        if self.termios.i(IXON) && self.stopped {
            self.stopped = false;
            inp.flow = Some(Flow::Start);
        }
        if self.termios.l(ECHO) {
            self.echo_char(c, &mut inp.echo);
        }
    }

    /// Linux's `eraser`: `VERASE`, `VWERASE` and `VKILL` in canonical mode.
    fn eraser(&mut self, c: u8, echo: &mut Vec<u8>) {
        #[derive(PartialEq)]
        enum Kind {
            Erase,
            Werase,
            Kill,
        }
        if self.at_line_start() {
            return;
        }
        let t = self.termios;
        let kind = if c == t.c_cc[VERASE] {
            Kind::Erase
        } else if c == t.c_cc[VWERASE] {
            Kind::Werase
        } else {
            if !t.l(ECHO) {
                self.queue.truncate(self.canon_len);
                return;
            }
            if !t.l(ECHOK) || !t.l(ECHOKE) || !t.l(ECHOE) {
                self.queue.truncate(self.canon_len);
                self.finish_erasing(echo);
                self.echo_char(c, echo);
                if t.l(ECHOK) {
                    self.echo_raw(b'\n', echo);
                }
                return;
            }
            Kind::Kill
        };
        let mut seen_alnums = 0;
        while !self.at_line_start() {
            // Find the start of the last (possibly multi-byte) character.
            let mut head = self.queue.len();
            let mut ch;
            loop {
                head -= 1;
                ch = self.queue[head] as u8;
                if !(self.is_continuation(ch) && head > self.canon_len) {
                    break;
                }
            }
            if self.is_continuation(ch) {
                break; // do not erase part of a character
            }
            if kind == Kind::Werase {
                if ch.is_ascii_alphanumeric() || ch == b'_' {
                    seen_alnums += 1;
                } else if seen_alnums > 0 {
                    break;
                }
            }
            let erased: Vec<u8> = self.queue.drain(head..).map(|e| e as u8).collect();
            if t.l(ECHO) {
                if t.l(ECHOPRT) {
                    if !self.erasing {
                        self.echo_raw(b'\\', echo);
                        self.erasing = true;
                    }
                    self.echo_char(ch, echo);
                    for &b in &erased[1..] {
                        self.echo_raw(b, echo);
                        self.column.set(self.column.get().saturating_sub(1));
                    }
                } else if kind == Kind::Erase && !t.l(ECHOE) {
                    self.echo_char(t.c_cc[VERASE], echo);
                } else if ch == b'\t' {
                    self.erase_tab(echo);
                } else {
                    if iscntrl(ch) && t.l(ECHOCTL) {
                        for b in *b"\x08 \x08" {
                            self.echo_raw(b, echo);
                        }
                    }
                    if !iscntrl(ch) || t.l(ECHOCTL) {
                        for b in *b"\x08 \x08" {
                            self.echo_raw(b, echo);
                        }
                    }
                }
            }
            if kind == Kind::Erase {
                break;
            }
        }
        if self.at_line_start() && t.l(ECHO) {
            self.finish_erasing(echo);
        }
    }

    /// Backs the cursor up over an erased tab: to the column after the previous tab, or after
    /// the characters since the line started.
    fn erase_tab(&self, echo: &mut Vec<u8>) {
        let mut num_chars: u32 = 0;
        let mut after_tab = false;
        for i in (self.canon_len..self.queue.len()).rev() {
            let ch = self.queue[i] as u8;
            if ch == b'\t' {
                after_tab = true;
                break;
            } else if iscntrl(ch) {
                if self.termios.l(ECHOCTL) {
                    num_chars += 2;
                }
            } else if !self.is_continuation(ch) {
                num_chars += 1;
            }
        }
        if !after_tab {
            num_chars += self.canon_column.get();
        }
        for _ in 0..8 - (num_chars & 7) {
            echo.push(0x08);
            self.column.set(self.column.get().saturating_sub(1));
        }
    }
}

impl Default for LineDiscipline {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds bytes; returns the concatenated echo and the signals raised.
    fn feed(l: &mut LineDiscipline, bytes: &[u8]) -> (Vec<u8>, Vec<u32>) {
        let mut echo = Vec::new();
        let mut sigs = Vec::new();
        for &b in bytes {
            let inp = l.receive(b);
            echo.extend_from_slice(&inp.echo);
            sigs.extend(inp.signal);
        }
        (echo, sigs)
    }

    fn read_all(l: &mut LineDiscipline) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let n = l.read(&mut buf);
        buf[..n].to_vec()
    }

    fn out(l: &LineDiscipline, bytes: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        l.process_output(bytes, |p| v.extend_from_slice(p));
        v
    }

    fn raw_termios() -> Termios {
        // What busybox's line editor sets while reading a command.
        let mut t = Termios::default();
        t.c_lflag &= !(ICANON | ECHO | ECHONL);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        t.c_cc[VINTR] = VDISABLE;
        t
    }

    #[test]
    fn termios_layout_and_round_trip() {
        let t = Termios::default();
        let b = t.encode();
        assert_eq!(b.len(), 36);
        assert_eq!(&b[0..4], &(ICRNL | IXON).to_le_bytes());
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 0o2400);
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 0o5);
        assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 0o2277);
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 0o105073);
        assert_eq!(b[16], 0, "c_line");
        assert_eq!(&b[17..34], b"\x03\x1c\x7f\x15\x04\x00\x01\x00\x11\x13\x1a\x00\x12\x0f\x17\x16\x00");
        assert_eq!(Termios::decode(&b), Ok(t));
        let mut odd = t;
        odd.c_lflag = 0xdead_beef;
        odd.c_line = 7;
        odd.c_cc[18] = 0x42;
        assert_eq!(Termios::decode(&odd.encode()), Ok(odd));
        assert_eq!(odd.encode()[35], 0x42);
        assert_eq!(Termios::decode(&b[..35]), Err(Errno::EFAULT));

        let w = Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 1, ws_ypixel: 2 };
        assert_eq!(w.encode(), [24, 0, 80, 0, 1, 0, 2, 0]);
        assert_eq!(Winsize::decode(&w.encode()), Ok(w));
        assert_eq!(Winsize::decode(&[0; 7]), Err(Errno::EFAULT));
    }

    #[test]
    fn canonical_line_with_echo_and_crlf() {
        let mut l = LineDiscipline::new();
        let (echo, sigs) = feed(&mut l, b"echo hi");
        assert_eq!(echo, b"echo hi");
        assert!(sigs.is_empty());
        assert!(!l.read_ready(), "no line yet");
        assert_eq!(l.available(), 0);
        let inp = l.receive(b'\r');
        assert_eq!(inp.echo, b"\r\n");
        assert!(inp.wake_readers);
        assert!(l.read_ready());
        assert_eq!(l.available(), 8);
        assert_eq!(read_all(&mut l), b"echo hi\n");
        assert!(!l.read_ready());
    }

    #[test]
    fn one_line_per_read_and_short_reads() {
        let mut l = LineDiscipline::new();
        feed(&mut l, b"ab\rcd\r");
        assert_eq!(read_all(&mut l), b"ab\n");
        let mut two = [0u8; 1];
        assert_eq!(l.read(&mut two), 1);
        assert_eq!(&two, b"c");
        assert_eq!(read_all(&mut l), b"d\n");
        assert_eq!(l.read(&mut []), 0);
    }

    #[test]
    fn eof_semantics() {
        let mut l = LineDiscipline::new();
        // ^D at the start of a line: a 0-byte read, nothing echoed.
        let (echo, _) = feed(&mut l, b"\x04");
        assert!(echo.is_empty());
        assert!(l.read_ready());
        assert_eq!(l.available(), 0);
        assert_eq!(read_all(&mut l), b"");
        assert!(!l.read_ready(), "the EOF was consumed");

        // ^D mid-line delivers the line without a newline.
        feed(&mut l, b"ab\x04");
        assert_eq!(l.available(), 2);
        assert_eq!(read_all(&mut l), b"ab");
        assert!(!l.read_ready());

        // A short read leaves the rest, and the EOF marker does not turn into a spurious EOF.
        feed(&mut l, b"abc\x04");
        let mut buf = [0u8; 3];
        assert_eq!(l.read(&mut buf), 3);
        assert_eq!(&buf, b"abc");
        assert!(!l.read_ready());
        feed(&mut l, b"abc\x04");
        let mut buf = [0u8; 2];
        assert_eq!(l.read(&mut buf), 2);
        assert_eq!(l.read(&mut buf), 1);
        assert_eq!(buf[0], b'c');
        assert!(!l.read_ready());

        // A line then an EOF: two reads.
        feed(&mut l, b"x\r\x04");
        assert_eq!(read_all(&mut l), b"x\n");
        assert!(l.read_ready());
        assert_eq!(read_all(&mut l), b"");
    }

    #[test]
    fn erase_kill_and_werase_echo() {
        let mut l = LineDiscipline::new();
        let (echo, _) = feed(&mut l, b"abc\x7f");
        assert_eq!(echo, b"abc\x08 \x08");
        // Nothing to erase at the start of a line: nothing echoed.
        let (echo, _) = feed(&mut l, b"\x7f\x7f\x7f");
        assert_eq!(echo, b"\x08 \x08\x08 \x08");
        // Kill with ECHOKE: every character visually erased.
        let (echo, _) = feed(&mut l, b"xyz\x15");
        assert_eq!(echo, b"xyz\x08 \x08\x08 \x08\x08 \x08");
        // Word erase removes trailing blanks and the word before them.
        let (echo, _) = feed(&mut l, b"foo bar  \x17");
        assert_eq!(&echo[9..], b"\x08 \x08".repeat(5).as_slice());
        feed(&mut l, b"\r");
        assert_eq!(read_all(&mut l), b"foo \n");

        // Without ECHOE, erase echoes the erase character; without ECHOKE, kill echoes ^U NL.
        let mut t = Termios::default();
        t.c_lflag &= !(ECHOE | ECHOKE);
        l.set_termios(t);
        let (echo, _) = feed(&mut l, b"ab\x7f");
        assert_eq!(echo, b"ab^?");
        let (echo, _) = feed(&mut l, b"\x15");
        assert_eq!(echo, b"^U\r\n");
        feed(&mut l, b"q\r");
        assert_eq!(read_all(&mut l), b"q\n");
    }

    #[test]
    fn echoctl_and_control_char_erase() {
        let mut l = LineDiscipline::new();
        let (echo, _) = feed(&mut l, b"a\x01\x1b\t");
        assert_eq!(echo, b"a^A^[\t");
        // Erasing a ^X takes two columns back.
        let (echo, _) = feed(&mut l, b"\x7f");
        // "a^A^[" fills columns 0..5; the tab went to column 8: three backspaces.
        assert_eq!(echo, b"\x08\x08\x08");
        let (echo, _) = feed(&mut l, b"\x7f");
        assert_eq!(echo, b"\x08 \x08\x08 \x08");
        feed(&mut l, b"\r");
        assert_eq!(read_all(&mut l), b"a\x01\n");

        // Without ECHOCTL control characters are echoed as they are and erase silently.
        let mut t = Termios::default();
        t.c_lflag &= !ECHOCTL;
        l.set_termios(t);
        let (echo, _) = feed(&mut l, b"\x01\x7f");
        assert_eq!(echo, b"\x01");
    }

    #[test]
    fn tab_erase_returns_to_the_right_column() {
        let mut l = LineDiscipline::new();
        // A prompt leaves the cursor at column 2.
        assert_eq!(out(&l, b"$ "), b"$ ");
        let (echo, _) = feed(&mut l, b"a\t\x7f");
        // "$ a" ends at column 3, the tab went to column 8: five backspaces.
        assert_eq!(echo, b"a\t\x08\x08\x08\x08\x08");
        // After an earlier tab, columns count from that tab.
        let (echo, _) = feed(&mut l, b"\tbc\t\x7f");
        assert_eq!(echo, b"\tbc\t\x08\x08\x08\x08\x08\x08");
    }

    #[test]
    fn signal_characters_flush_and_echo() {
        let mut l = LineDiscipline::new();
        feed(&mut l, b"partial");
        let inp = l.receive(0x03);
        assert_eq!(inp.signal, Some(SIGINT));
        assert!(inp.flush_output);
        assert_eq!(inp.echo, b"^C");
        assert_eq!(l.available(), 0);
        feed(&mut l, b"\r");
        assert_eq!(read_all(&mut l), b"\n", "the partial line was flushed");

        let inp = l.receive(0x1a);
        assert_eq!((inp.signal, inp.echo.as_slice()), (Some(SIGTSTP), &b"^Z"[..]));
        let inp = l.receive(0x1c);
        assert_eq!((inp.signal, inp.echo.as_slice()), (Some(SIGQUIT), &b"^\\"[..]));

        // NOFLSH: the signal, but no flush.
        let mut t = Termios::default();
        t.c_lflag |= NOFLSH;
        l.set_termios(t);
        feed(&mut l, b"keep");
        let inp = l.receive(0x03);
        assert_eq!(inp.signal, Some(SIGINT));
        assert!(!inp.flush_output);
        feed(&mut l, b"\r");
        assert_eq!(read_all(&mut l), b"keep\n");

        // Without ISIG, ^C is data.
        t.c_lflag &= !ISIG;
        l.set_termios(t);
        let (echo, sigs) = feed(&mut l, b"\x03\r");
        assert!(sigs.is_empty());
        assert_eq!(echo, b"^C\r\n");
        assert_eq!(read_all(&mut l), b"\x03\n");
    }

    #[test]
    fn raw_mode_as_busybox_line_editing_uses_it() {
        let mut l = LineDiscipline::new();
        l.set_termios(raw_termios());
        assert!(!l.is_canonical());
        assert_eq!((l.vmin(), l.vtime()), (1, 0));
        let inp = l.receive(b'l');
        assert!(inp.echo.is_empty(), "the shell echoes itself");
        assert!(inp.wake_readers);
        assert!(l.read_ready());
        feed(&mut l, b"s\r\x7f\x1b[A");
        assert_eq!(l.available(), 7);
        assert_eq!(read_all(&mut l), b"ls\n\x7f\x1b[A", "ICRNL still maps; no line editing");
        // VINTR disabled: ^C reaches the shell as a byte; ^Z still signals.
        let (_, sigs) = feed(&mut l, b"\x03");
        assert!(sigs.is_empty());
        assert_eq!(read_all(&mut l), b"\x03");
        let (_, sigs) = feed(&mut l, b"\x1a");
        assert_eq!(sigs, [SIGTSTP]);
        // NUL bytes are data even though disabled characters are 0.
        feed(&mut l, b"\0");
        assert_eq!(read_all(&mut l), b"\0");
        // ^D is data in raw mode.
        feed(&mut l, b"\x04");
        assert_eq!(read_all(&mut l), b"\x04");
    }

    #[test]
    fn busybox_session_switches_modes() {
        let mut l = LineDiscipline::new();
        let mut screen = Vec::new();
        // The shell prints a prompt and reads a command in raw mode, echoing it itself.
        l.set_termios(raw_termios());
        l.process_output(b"/ # ", |p| screen.extend_from_slice(p));
        feed(&mut l, b"cat\r");
        assert_eq!(read_all(&mut l), b"cat\n");
        l.process_output(b"cat\n", |p| screen.extend_from_slice(p));
        // It restores canonical mode and runs cat, which reads lines.
        l.set_termios(Termios::default());
        let (echo, _) = feed(&mut l, b"hello\r");
        screen.extend_from_slice(&echo);
        assert_eq!(read_all(&mut l), b"hello\n");
        l.process_output(b"hello\n", |p| screen.extend_from_slice(p));
        // ^D ends cat's input.
        feed(&mut l, b"\x04");
        assert_eq!(read_all(&mut l), b"");
        assert_eq!(screen, b"/ # cat\r\nhello\r\nhello\r\n");
        // Typing ahead before the shell switches to raw: the partial line becomes readable.
        feed(&mut l, b"ec");
        assert!(!l.read_ready());
        l.set_termios(raw_termios());
        assert!(l.read_ready());
        assert_eq!(read_all(&mut l), b"ec");
        // Raw input left over when switching to canonical becomes one line.
        feed(&mut l, b"xy");
        l.set_termios(Termios::default());
        assert!(l.read_ready());
        assert_eq!(read_all(&mut l), b"xy");
    }

    #[test]
    fn lnext_reprint_eol_and_echonl() {
        let mut l = LineDiscipline::new();
        // ^V ^C: a literal ^C, shown as ^\b then ^C.
        let (echo, sigs) = feed(&mut l, b"\x16\x03");
        assert!(sigs.is_empty());
        assert_eq!(echo, b"^\x08^C");
        // ^V CR is a CR, not mapped to NL.
        feed(&mut l, b"\x16\r");
        let (echo, _) = feed(&mut l, b"z\x12");
        assert_eq!(echo, b"z^R\r\n^C^Mz");
        feed(&mut l, b"\r");
        assert_eq!(read_all(&mut l), b"\x03\rz\n");

        // VEOL ends a line and is delivered.
        let mut t = Termios::default();
        t.c_cc[VEOL] = b';';
        l.set_termios(t);
        let (echo, _) = feed(&mut l, b"ls;");
        assert_eq!(echo, b"ls;");
        assert_eq!(read_all(&mut l), b"ls;");

        // ECHONL without ECHO: only the newline is echoed (a password prompt).
        t.c_lflag &= !ECHO;
        t.c_lflag |= ECHONL;
        l.set_termios(t);
        let (echo, _) = feed(&mut l, b"pw\r");
        assert_eq!(echo, b"\r\n");
        assert_eq!(read_all(&mut l), b"pw\n");
    }

    #[test]
    fn input_mapping() {
        let mut t = Termios::default();
        t.c_lflag &= !ECHO;
        t.c_iflag = IGNCR | ISTRIP;
        let mut l = LineDiscipline::with_termios(t);
        feed(&mut l, b"a\r\xe2\n");
        assert_eq!(read_all(&mut l), b"ab\n");
        t.c_iflag = INLCR;
        t.c_lflag &= !ICANON;
        l.set_termios(t);
        feed(&mut l, b"\n\r");
        assert_eq!(read_all(&mut l), b"\r\r");
    }

    #[test]
    fn xon_xoff() {
        let mut l = LineDiscipline::new();
        let inp = l.receive(0x13);
        assert_eq!(inp.flow, Some(Flow::Stop));
        assert!(l.output_stopped());
        assert!(inp.echo.is_empty());
        assert_eq!(l.available(), 0, "flow characters are not data");
        assert_eq!(l.receive(b'a').flow, None, "no IXANY");
        assert_eq!(l.receive(0x11).flow, Some(Flow::Start));
        assert!(!l.output_stopped());
        l.receive(0x13);
        // A signal character restarts output.
        assert_eq!(l.receive(0x03).flow, Some(Flow::Start));
    }

    #[test]
    fn buffer_limit_rings_the_bell() {
        let mut l = LineDiscipline::new();
        for _ in 0..N_TTY_BUF_SIZE - 1 {
            l.receive(b'x');
        }
        let inp = l.receive(b'y');
        assert_eq!(inp.echo, b"\x07");
        // The line can still be ended.
        let inp = l.receive(b'\r');
        assert_eq!(inp.echo, b"\r\n");
        let mut buf = alloc::vec![0u8; 8192];
        assert_eq!(l.read(&mut buf), N_TTY_BUF_SIZE);
        assert_eq!(buf[N_TTY_BUF_SIZE - 1], b'\n');
    }

    #[test]
    fn output_processing() {
        let mut l = LineDiscipline::new();
        assert_eq!(out(&l, b"a\nb\n"), b"a\r\nb\r\n");
        let mut t = Termios { c_oflag: OPOST | OCRNL, ..Termios::default() };
        l.set_termios(t);
        assert_eq!(out(&l, b"a\rb\n"), b"a\nb\n");
        // Without ONLCR or ONLRET a newline does not return to column 0 (as in Linux).
        assert_eq!(l.column.get(), 2);
        t.c_oflag = OPOST | ONLCR | XTABS;
        l.set_termios(t);
        l.process_output(b"\r", |_| {});
        assert_eq!(out(&l, b"ab\tc\n\t"), b"ab      c\r\n        ");
        t.c_oflag = OPOST | ONOCR;
        let fresh = LineDiscipline::with_termios(t);
        assert_eq!(out(&fresh, b"\r\rx\r"), b"x\r");
        t.c_oflag = ONLCR; // without OPOST nothing changes
        l.set_termios(t);
        assert_eq!(out(&l, b"a\n"), b"a\n");
    }

    #[test]
    fn flush_and_fionread() {
        let mut l = LineDiscipline::new();
        feed(&mut l, b"one\rtwo\r\x04thr");
        assert_eq!(l.available(), 8);
        l.flush_input();
        assert_eq!(l.available(), 0);
        assert!(!l.read_ready());
        feed(&mut l, b"\r");
        assert_eq!(read_all(&mut l), b"\n");
    }
}

#[cfg(test)]
mod eof_after_line_tests {
    use super::*;

    #[test]
    fn eof_after_a_line_that_was_read_is_an_end_of_file() {
        let mut l = LineDiscipline::new();
        for &b in b"abc\r" {
            l.receive(b);
        }
        let mut buf = [0u8; 64];
        assert_eq!(l.read(&mut buf), 4);
        assert!(!l.read_ready());
        let input = l.receive(0x04);
        assert!(input.wake_readers);
        assert!(l.read_ready(), "^D at the start of a line must make a read return");
        assert_eq!(l.read(&mut buf), 0);
    }

    #[test]
    fn eof_after_a_raw_to_canonical_switch_and_a_line() {
        let mut l = LineDiscipline::new();
        let canonical = *l.termios();
        let mut raw = canonical;
        raw.c_lflag &= !(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        let mut buf = [0u8; 64];
        l.set_termios(raw);
        for &b in b"cat\r" {
            l.receive(b);
            assert_eq!(l.read(&mut buf), 1);
        }
        l.set_termios(canonical);
        for &b in b"abc\r" {
            l.receive(b);
        }
        assert_eq!(l.read(&mut buf), 4);
        l.receive(0x04);
        assert!(l.read_ready(), "^D at the start of a line must make a read return");
        assert_eq!(l.read(&mut buf), 0);
    }
}
