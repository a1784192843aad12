//! The superblock, the group descriptors and the geometry derived from them.

use super::{MountError, get16, get32, put16, put32};
use crate::errno::Errno;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// `s_magic`.
pub(crate) const MAGIC: u16 = 0xEF53;
/// Byte offset of the primary superblock.
pub(crate) const SB_OFFSET: u64 = 1024;
/// Size of the superblock.
pub(crate) const SB_SIZE: usize = 1024;
/// `s_state`: cleanly unmounted.
pub(crate) const STATE_VALID: u16 = 1;
/// `s_state`: errors were detected.
pub(crate) const STATE_ERROR: u16 = 2;

/// `s_feature_compat`: has an ext3 journal.
pub(crate) const COMPAT_HAS_JOURNAL: u32 = 0x4;
/// `s_feature_incompat`: directory entries carry the file type.
pub(crate) const INCOMPAT_FILETYPE: u32 = 0x2;
/// `s_feature_incompat`: the journal needs recovery.
pub(crate) const INCOMPAT_RECOVER: u32 = 0x4;
/// `s_feature_ro_compat`: superblock backups only in groups 0, 1 and powers of 3, 5, 7.
pub(crate) const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
/// `s_feature_ro_compat`: files may exceed 2 GiB.
pub(crate) const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// `s_feature_ro_compat`: (never used) b-tree directories.
pub(crate) const RO_COMPAT_BTREE_DIR: u32 = 0x4;

/// Incompatible features we understand.
const INCOMPAT_SUPPORTED: u32 = INCOMPAT_FILETYPE;
/// Read-only-compatible features we can keep valid while writing.
const RO_COMPAT_WRITABLE: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR;

const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "compression"),
    (0x2, "filetype"),
    (0x4, "needs_recovery"),
    (0x8, "journal_dev"),
    (0x10, "meta_bg"),
    (0x40, "extents"),
    (0x80, "64bit"),
    (0x100, "mmp"),
    (0x200, "flex_bg"),
    (0x400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x2000, "metadata_csum_seed"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x10000, "encrypt"),
    (0x20000, "casefold"),
];

const RO_COMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "sparse_super"),
    (0x2, "large_file"),
    (0x4, "btree_dir"),
    (0x8, "huge_file"),
    (0x10, "uninit_bg"),
    (0x20, "dir_nlink"),
    (0x40, "extra_isize"),
    (0x80, "has_snapshot"),
    (0x100, "quota"),
    (0x200, "bigalloc"),
    (0x400, "metadata_csum"),
    (0x800, "replica"),
    (0x1000, "read-only"),
    (0x2000, "project"),
    (0x4000, "shared_blocks"),
    (0x8000, "verity"),
    (0x10000, "orphan_present"),
];

/// Names the set bits of a feature word, e.g. `extents (0x40), 64bit (0x80)`.
fn describe(bits: u32, table: &[(u32, &str)]) -> String {
    let mut out = String::new();
    for bit in (0..32).map(|i| 1u32 << i).filter(|b| bits & b != 0) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let name = table.iter().find(|(b, _)| *b == bit).map_or("unknown", |(_, n)| n);
        out.push_str(&format!("{name} (0x{bit:x})"));
    }
    out
}

/// The on-disk superblock, kept whole so fields we do not know survive rewrites.
pub(crate) struct Superblock {
    raw: Vec<u8>,
}

macro_rules! field {
    ($get:ident, $set:ident, $ty:ty, $off:expr, $rd:ident, $wr:ident) => {
        #[allow(dead_code)]
        pub(crate) fn $get(&self) -> $ty {
            $rd(&self.raw, $off)
        }
        #[allow(dead_code)]
        pub(crate) fn $set(&mut self, v: $ty) {
            $wr(&mut self.raw, $off, v)
        }
    };
}

impl Superblock {
    /// Wraps the 1024 bytes read from [`SB_OFFSET`].
    pub(crate) fn new(raw: Vec<u8>) -> Self {
        Self { raw }
    }

    /// The bytes to write back.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.raw
    }

    field!(inodes_count, set_inodes_count, u32, 0, get32, put32);
    field!(blocks_count, set_blocks_count, u32, 4, get32, put32);
    field!(r_blocks_count, set_r_blocks_count, u32, 8, get32, put32);
    field!(free_blocks, set_free_blocks, u32, 12, get32, put32);
    field!(free_inodes, set_free_inodes, u32, 16, get32, put32);
    field!(first_data_block, set_first_data_block, u32, 20, get32, put32);
    field!(log_block_size, set_log_block_size, u32, 24, get32, put32);
    field!(blocks_per_group, set_blocks_per_group, u32, 32, get32, put32);
    field!(inodes_per_group, set_inodes_per_group, u32, 40, get32, put32);
    field!(mtime, set_mtime, u32, 44, get32, put32);
    field!(wtime, set_wtime, u32, 48, get32, put32);
    field!(mnt_count, set_mnt_count, u16, 52, get16, put16);
    field!(magic, set_magic, u16, 56, get16, put16);
    field!(state, set_state, u16, 58, get16, put16);
    field!(rev_level, set_rev_level, u32, 76, get32, put32);
    field!(first_ino_raw, set_first_ino_raw, u32, 84, get32, put32);
    field!(inode_size_raw, set_inode_size_raw, u16, 88, get16, put16);
    field!(feature_compat, set_feature_compat, u32, 92, get32, put32);
    field!(feature_incompat, set_feature_incompat, u32, 96, get32, put32);
    field!(feature_ro_compat, set_feature_ro_compat, u32, 100, get32, put32);
    field!(reserved_gdt_blocks, set_reserved_gdt_blocks, u16, 206, get16, put16);
}

/// One block group descriptor (the ext2 part of it: 32 bytes on disk).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupDesc {
    /// Block of the block bitmap.
    pub block_bitmap: u32,
    /// Block of the inode bitmap.
    pub inode_bitmap: u32,
    /// First block of the inode table.
    pub inode_table: u32,
    /// Free blocks in the group.
    pub free_blocks: u16,
    /// Free inodes in the group.
    pub free_inodes: u16,
    /// Directories in the group.
    pub used_dirs: u16,
}

/// Size of a group descriptor on disk.
pub(crate) const DESC_SIZE: usize = 32;

impl GroupDesc {
    /// Parses a descriptor.
    pub(crate) fn parse(b: &[u8]) -> Self {
        Self {
            block_bitmap: get32(b, 0),
            inode_bitmap: get32(b, 4),
            inode_table: get32(b, 8),
            free_blocks: get16(b, 12),
            free_inodes: get16(b, 14),
            used_dirs: get16(b, 16),
        }
    }

    /// Writes the fields we keep into `b`, leaving the rest alone.
    pub(crate) fn store(&self, b: &mut [u8]) {
        put32(b, 0, self.block_bitmap);
        put32(b, 4, self.inode_bitmap);
        put32(b, 8, self.inode_table);
        put16(b, 12, self.free_blocks);
        put16(b, 14, self.free_inodes);
        put16(b, 16, self.used_dirs);
    }
}

/// The fixed shape of a mounted file system.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    /// Block size in bytes.
    pub block_size: u32,
    /// Total blocks.
    pub blocks_count: u32,
    /// Total inodes.
    pub inodes_count: u32,
    /// Block number of the first group's first block (1 with 1 KiB blocks, else 0).
    pub first_data_block: u32,
    /// Blocks per group.
    pub blocks_per_group: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// Number of groups.
    pub groups: u32,
    /// Bytes per on-disk inode.
    pub inode_size: u32,
    /// First inode number for ordinary files.
    pub first_ino: u32,
    /// Revision (0 or 1).
    pub rev: u32,
    /// Directory entries carry a type byte.
    pub filetype: bool,
    /// Only some groups hold superblock backups.
    pub sparse_super: bool,
    /// Blocks of metadata (superblocks, descriptors, bitmaps, inode tables) for `statfs`.
    pub overhead: u32,
}

impl Geometry {
    /// Block pointers per block.
    pub(crate) fn ptrs(&self) -> u64 {
        u64::from(self.block_size / 4)
    }

    /// The first block of group `g`.
    pub(crate) fn group_first_block(&self, g: u32) -> u32 {
        self.first_data_block + g * self.blocks_per_group
    }

    /// Blocks in group `g` (the last one may be short).
    pub(crate) fn blocks_in_group(&self, g: u32) -> u32 {
        let start = self.group_first_block(g);
        self.blocks_per_group.min(self.blocks_count - start)
    }

    /// Blocks taken by the group descriptor table.
    pub(crate) fn gdt_blocks(&self) -> u32 {
        (self.groups * DESC_SIZE as u32).div_ceil(self.block_size)
    }

    /// Whether group `g` holds a superblock backup (and descriptor table copy).
    pub(crate) fn has_super(&self, g: u32) -> bool {
        if !self.sparse_super || g <= 1 {
            return true;
        }
        [3u32, 5, 7].iter().any(|&base| {
            let mut p = base;
            while p < g {
                p *= base;
            }
            p == g
        })
    }

    /// Validates a superblock against the device and the features we support.
    pub(crate) fn from_superblock(
        sb: &Superblock,
        dev_size: u64,
        readonly: bool,
    ) -> Result<Self, MountError> {
        let bad = |m: String| MountError::new(Errno::EINVAL, m);
        if sb.magic() != MAGIC {
            return Err(bad(format!(
                "not an ext2 file system (bad magic 0x{:04x}, expected 0xef53)",
                sb.magic()
            )));
        }
        let rev = sb.rev_level();
        if rev > 1 {
            return Err(bad(format!("unsupported ext2 revision {rev}")));
        }
        let (compat, incompat, ro_compat) = if rev == 0 {
            (0, 0, 0)
        } else {
            (sb.feature_compat(), sb.feature_incompat(), sb.feature_ro_compat())
        };
        if incompat & INCOMPAT_RECOVER != 0 {
            let what = if compat & COMPAT_HAS_JOURNAL != 0 { "ext3/ext4 journal" } else { "journal" };
            return Err(bad(format!(
                "the {what} needs recovery (feature needs_recovery (0x4)); run e2fsck or mount it as ext3/ext4 first"
            )));
        }
        let unsupported = incompat & !INCOMPAT_SUPPORTED;
        if unsupported != 0 {
            let mut msg = String::new();
            for bit in (0..32).map(|i| 1u32 << i).filter(|b| unsupported & b != 0) {
                if !msg.is_empty() {
                    msg.push_str("; ");
                }
                let what = describe(bit, INCOMPAT_NAMES);
                msg.push_str(&match bit {
                    0x1 => format!("ext2 feature {what} is not supported"),
                    0x8 => format!("this is an external journal ({what}), not a file system"),
                    _ => format!("ext4 feature {what} is not supported"),
                });
            }
            return Err(bad(msg));
        }
        let unwritable = ro_compat & !RO_COMPAT_WRITABLE;
        if unwritable != 0 && !readonly {
            return Err(MountError::new(
                Errno::EROFS,
                format!(
                    "read-only compatible features {} cannot be kept valid when writing; mount read-only",
                    describe(unwritable, RO_COMPAT_NAMES)
                ),
            ));
        }
        let log = sb.log_block_size();
        if log > 2 {
            return Err(bad(format!(
                "block size {} is not supported (only 1, 2 and 4 KiB)",
                1u64 << (10 + log.min(40))
            )));
        }
        let block_size = 1024u32 << log;
        let (inode_size, first_ino) =
            if rev == 0 { (128, 11) } else { (u32::from(sb.inode_size_raw()), sb.first_ino_raw()) };
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
            return Err(bad(format!("bad inode size {inode_size}")));
        }
        let blocks_count = sb.blocks_count();
        let inodes_count = sb.inodes_count();
        let first_data_block = sb.first_data_block();
        let bpg = sb.blocks_per_group();
        let ipg = sb.inodes_per_group();
        if bpg == 0 || bpg > block_size * 8 || ipg == 0 || ipg > block_size * 8 {
            return Err(bad(format!("corrupt superblock: {bpg} blocks and {ipg} inodes per group")));
        }
        if first_data_block != u32::from(block_size == 1024) || blocks_count <= first_data_block {
            return Err(bad(format!(
                "corrupt superblock: first data block {first_data_block}, {blocks_count} blocks"
            )));
        }
        let groups = (blocks_count - first_data_block).div_ceil(bpg);
        if u64::from(groups) * u64::from(ipg) != u64::from(inodes_count) {
            return Err(bad(format!(
                "corrupt superblock: {inodes_count} inodes but {groups} groups of {ipg}"
            )));
        }
        if first_ino < 11 || first_ino > inodes_count {
            return Err(bad(format!("corrupt superblock: first inode {first_ino}")));
        }
        let dev_blocks = dev_size / u64::from(block_size);
        if u64::from(blocks_count) > dev_blocks {
            return Err(bad(format!(
                "truncated image: the file system has {blocks_count} blocks of {block_size} bytes but the device holds only {dev_blocks}"
            )));
        }
        let mut geo = Self {
            block_size,
            blocks_count,
            inodes_count,
            first_data_block,
            blocks_per_group: bpg,
            inodes_per_group: ipg,
            groups,
            inode_size,
            first_ino,
            rev,
            filetype: incompat & INCOMPAT_FILETYPE != 0,
            sparse_super: ro_compat & RO_COMPAT_SPARSE_SUPER != 0,
            overhead: 0,
        };
        let itable_blocks = (ipg * inode_size).div_ceil(block_size);
        let mut overhead = first_data_block;
        for g in 0..groups {
            if geo.has_super(g) {
                overhead += 1 + geo.gdt_blocks() + u32::from(sb.reserved_gdt_blocks());
            }
            overhead += 2 + itable_blocks;
        }
        geo.overhead = overhead.min(blocks_count);
        Ok(geo)
    }
}

/// Checks that a descriptor's bitmaps and table lie inside the file system.
pub(crate) fn check_desc(geo: &Geometry, g: u32, d: &GroupDesc) -> Result<(), MountError> {
    let itable_blocks = (geo.inodes_per_group * geo.inode_size).div_ceil(geo.block_size);
    let ok = |b: u32, n: u32| {
        b >= geo.first_data_block && u64::from(b) + u64::from(n) <= u64::from(geo.blocks_count)
    };
    if !ok(d.block_bitmap, 1) || !ok(d.inode_bitmap, 1) || !ok(d.inode_table, itable_blocks) {
        return Err(MountError::new(
            Errno::EINVAL,
            format!("corrupt group descriptor {g}: bitmaps or inode table outside the file system"),
        ));
    }
    Ok(())
}

/// A zeroed superblock buffer.
pub(crate) fn sb_buffer() -> Vec<u8> {
    vec![0; SB_SIZE]
}
