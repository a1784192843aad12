//! Directory blocks: linear entries (`inode`, `rec_len`, `name_len`, type, name), read,
//! inserted by splitting an entry's slack, removed by merging into the previous entry.

use super::inode::{INDEX_FL, RawInode};
use super::{State, get16, get32, put16, put32};
use crate::errno::{Errno, KResult};
use crate::vfs::{DirEntry, FileType};
use alloc::vec::Vec;

/// Room an entry with a name of `len` bytes needs.
pub(crate) const fn rec_len_for(len: usize) -> usize {
    (8 + len + 3) & !3
}

/// The type byte of a directory entry.
pub(crate) fn type_byte(t: FileType) -> u8 {
    match t {
        FileType::Regular => 1,
        FileType::Directory => 2,
        FileType::CharDevice => 3,
        FileType::BlockDevice => 4,
        FileType::Fifo => 5,
        FileType::Socket => 6,
        FileType::Symlink => 7,
    }
}

fn type_from_byte(b: u8) -> Option<FileType> {
    Some(match b {
        1 => FileType::Regular,
        2 => FileType::Directory,
        3 => FileType::CharDevice,
        4 => FileType::BlockDevice,
        5 => FileType::Fifo,
        6 => FileType::Socket,
        7 => FileType::Symlink,
        _ => return None,
    })
}

/// One parsed entry header.
#[derive(Clone, Copy, Debug)]
struct Raw {
    off: usize,
    ino: u32,
    rec_len: usize,
    name_len: usize,
    kind: u8,
}

/// Parses the entry at `off` of `block`, checking it stays inside the block.
fn parse(block: &[u8], off: usize, filetype: bool) -> KResult<Raw> {
    if off + 8 > block.len() {
        return Err(Errno::EUCLEAN);
    }
    let rec_len = usize::from(get16(block, off + 4));
    let (name_len, kind) = if filetype {
        (usize::from(block[off + 6]), block[off + 7])
    } else {
        (usize::from(get16(block, off + 6)), 0)
    };
    if rec_len < 8 || !rec_len.is_multiple_of(4) || off + rec_len > block.len() || 8 + name_len > rec_len {
        log::warn!("ext2: corrupt directory entry at offset {off}");
        return Err(Errno::EUCLEAN);
    }
    Ok(Raw { off, ino: get32(block, off), rec_len, name_len, kind })
}

fn name_of<'a>(block: &'a [u8], e: &Raw) -> &'a [u8] {
    &block[e.off + 8..e.off + 8 + e.name_len]
}

/// Writes an entry header and name at `off`.
fn put_entry(block: &mut [u8], off: usize, ino: u32, rec_len: usize, name: &[u8], kind: u8, filetype: bool) {
    put32(block, off, ino);
    put16(block, off + 4, rec_len as u16);
    if filetype {
        block[off + 6] = name.len() as u8;
        block[off + 7] = kind;
    } else {
        put16(block, off + 6, name.len() as u16);
    }
    block[off + 8..off + 8 + name.len()].copy_from_slice(name);
}

/// Where an entry was found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Found {
    /// Its inode.
    pub ino: u32,
    phys: u32,
    off: usize,
    prev: Option<usize>,
}

impl State {
    /// The entries of one directory block (physical `phys`), parsed.
    fn entries(&mut self, phys: u32) -> KResult<(Vec<Raw>, Vec<u8>)> {
        let filetype = self.geo.filetype;
        let block = self.cache.read(phys)?.to_vec();
        let mut out = Vec::new();
        let mut off = 0;
        while off < block.len() {
            let e = parse(&block, off, filetype)?;
            off += e.rec_len;
            out.push(e);
        }
        Ok((out, block))
    }

    /// Directory blocks: logical count.
    fn dir_blocks(&self, dir: &RawInode) -> u64 {
        dir.size() / u64::from(self.geo.block_size)
    }

    /// Finds `name` in directory `dir`.
    pub(crate) fn dir_find(&mut self, dir: &RawInode, name: &[u8]) -> KResult<Option<Found>> {
        for lblk in 0..self.dir_blocks(dir) {
            let phys = self.bmap(dir, lblk)?;
            if phys == 0 {
                continue;
            }
            let (entries, block) = self.entries(phys)?;
            let mut prev = None;
            for e in &entries {
                if e.ino != 0 && name_of(&block, e) == name {
                    return Ok(Some(Found { ino: e.ino, phys, off: e.off, prev }));
                }
                prev = Some(e.off);
            }
        }
        Ok(None)
    }

    /// Adds entry `name` -> `ino` (of type `kind`) to directory `dir` (inode `dir_ino`),
    /// growing it by a block if no block has room. The caller checked the name is absent.
    pub(crate) fn dir_add(
        &mut self,
        dir_ino: u32,
        dir: &mut RawInode,
        name: &[u8],
        ino: u32,
        kind: FileType,
    ) -> KResult<()> {
        let filetype = self.geo.filetype;
        let tb = if filetype { type_byte(kind) } else { 0 };
        let need = rec_len_for(name.len());
        let bs = self.geo.block_size as usize;
        for lblk in 0..self.dir_blocks(dir) {
            let phys = self.bmap(dir, lblk)?;
            if phys == 0 {
                continue;
            }
            let (entries, _) = self.entries(phys)?;
            for e in entries {
                if e.ino == 0 && e.rec_len >= need {
                    put_entry(self.cache.write(phys)?, e.off, ino, e.rec_len, name, tb, filetype);
                    return self.dir_changed(dir);
                }
                let used = rec_len_for(e.name_len);
                if e.ino != 0 && e.rec_len >= used + need {
                    let block = self.cache.write(phys)?;
                    put16(block, e.off + 4, used as u16);
                    put_entry(block, e.off + used, ino, e.rec_len - used, name, tb, filetype);
                    return self.dir_changed(dir);
                }
            }
        }
        let lblk = self.dir_blocks(dir);
        let goal = match lblk {
            0 => self.geo.group_first_block(self.inode_group(dir_ino)),
            _ => self.bmap(dir, lblk - 1)? + 1,
        };
        let (phys, _) = self.bmap_alloc(dir, lblk, goal)?;
        let block = self.cache.zeroed(phys)?;
        put_entry(block, 0, ino, bs, name, tb, filetype);
        dir.set_size((lblk + 1) * bs as u64);
        self.dir_changed(dir)
    }

    /// A directory's entries changed: it is no longer a valid hashed tree.
    fn dir_changed(&mut self, dir: &mut RawInode) -> KResult<()> {
        dir.set_flags(dir.flags() & !INDEX_FL);
        let now = self.now();
        dir.set_mtime(now);
        dir.set_ctime(now);
        Ok(())
    }

    /// Removes the entry found by [`Self::dir_find`] from `dir`.
    pub(crate) fn dir_remove(&mut self, dir: &mut RawInode, f: &Found) -> KResult<()> {
        let block = self.cache.write(f.phys)?;
        match f.prev {
            Some(prev) => {
                let merged = get16(block, prev + 4).saturating_add(get16(block, f.off + 4));
                put16(block, prev + 4, merged);
            }
            None => put32(block, f.off, 0),
        }
        self.dir_changed(dir)
    }

    /// Points the entry found by [`Self::dir_find`] at another inode.
    pub(crate) fn dir_retarget(
        &mut self,
        dir: &mut RawInode,
        f: &Found,
        ino: u32,
        kind: FileType,
    ) -> KResult<()> {
        let filetype = self.geo.filetype;
        let block = self.cache.write(f.phys)?;
        put32(block, f.off, ino);
        if filetype {
            block[f.off + 7] = type_byte(kind);
        }
        self.dir_changed(dir)
    }

    /// Whether `dir` holds nothing but `.` and `..`.
    pub(crate) fn dir_is_empty(&mut self, dir: &RawInode) -> KResult<bool> {
        for lblk in 0..self.dir_blocks(dir) {
            let phys = self.bmap(dir, lblk)?;
            if phys == 0 {
                continue;
            }
            let (entries, block) = self.entries(phys)?;
            if entries.iter().any(|e| e.ino != 0 && !matches!(name_of(&block, e), b"." | b"..")) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes the first block of a new directory: `.` and `..`.
    pub(crate) fn dir_init(&mut self, ino: u32, dir: &mut RawInode, parent: u32) -> KResult<()> {
        let filetype = self.geo.filetype;
        let tb = if filetype { type_byte(FileType::Directory) } else { 0 };
        let bs = self.geo.block_size as usize;
        let goal = self.geo.group_first_block(self.inode_group(ino));
        let (phys, _) = self.bmap_alloc(dir, 0, goal)?;
        let block = self.cache.zeroed(phys)?;
        put_entry(block, 0, ino, 12, b".", tb, filetype);
        put_entry(block, 12, parent, bs - 12, b"..", tb, filetype);
        dir.set_size(bs as u64);
        Ok(())
    }

    /// The entry at or after byte `cursor` of `dir` (`.` and `..` come first, being first on
    /// disk), and the cursor of the one after it. A cursor left inside an entry that was
    /// merged away moves on to the next entry.
    pub(crate) fn dir_entry_at(&mut self, dir: &RawInode, cursor: u64) -> KResult<Option<(DirEntry, u64)>> {
        let bs = u64::from(self.geo.block_size);
        let mut lblk = cursor / bs;
        let mut within = (cursor % bs) as usize;
        while lblk < self.dir_blocks(dir) {
            let phys = self.bmap(dir, lblk)?;
            if phys != 0 {
                let (entries, block) = self.entries(phys)?;
                if let Some(e) = entries.iter().find(|e| e.off >= within && e.ino != 0) {
                    let kind = match type_from_byte(e.kind) {
                        Some(k) => k,
                        None => self.read_inode(e.ino)?.file_type().unwrap_or(FileType::Regular),
                    };
                    let entry = DirEntry { ino: u64::from(e.ino), kind, name: name_of(&block, e).to_vec() };
                    return Ok(Some((entry, lblk * bs + (e.off + e.rec_len) as u64)));
                }
            }
            lblk += 1;
            within = 0;
        }
        Ok(None)
    }
}
