//! virtio-console: umlvm's consoles (`conN`) and serial lines (`sslN`), each attached to a
//! host channel.

mod channel;
mod device;

pub use crate::sys::{make_raw as make_terminal_raw, restore_terminal};
pub use channel::{
    ChannelError, ChannelSpec, ConsoleKind, ConsoleName, ConsoleSpec, MAX_UNITS, OpenedChannel, PortServers,
    SharedOutput, TerminalEmulator, XtermSetup, XtermWindow, check_inputs, open, parse_switch,
    read_available, reattach, resolve, strip_telnet,
};
pub use device::{Console, InputBuffer};

/// virtio device type of a console.
pub const TYPE_CONSOLE: u32 = 3;
