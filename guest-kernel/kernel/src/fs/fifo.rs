//! Named pipes: every open of one fifo inode shares one pipe while any end is open.

use crate::arch::sync::IrqMutex;
use crate::fs::file::{FileKind, OpenFile, Pipe, oflags};
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::vfs::mount::Location;

static FIFOS: IrqMutex<BTreeMap<(u64, u64), Weak<Pipe>>> = IrqMutex::new(BTreeMap::new());

/// Opens fifo `loc` for reading or writing (not both; `O_RDWR` gives the read end).
pub fn open(loc: &Location, flags: u32) -> KResult<Arc<OpenFile>> {
    let key = (loc.inode.fs_id(), loc.inode.metadata().ino);
    let pipe = {
        let mut map = FIFOS.lock();
        match map.get(&key).and_then(Weak::upgrade) {
            Some(p) => {
                p.add_end(flags & oflags::ACCMODE == oflags::WRONLY);
                p
            }
            None => {
                let p = Pipe::new_fifo(flags & oflags::ACCMODE == oflags::WRONLY);
                map.insert(key, Arc::downgrade(&p));
                p
            }
        }
    };
    let kind = match flags & oflags::ACCMODE {
        oflags::WRONLY => FileKind::PipeWrite(pipe),
        oflags::RDWR | 0 => FileKind::PipeRead(pipe),
        _ => return Err(Errno::EINVAL),
    };
    Ok(OpenFile::new(kind, flags, Some(loc.clone())))
}
