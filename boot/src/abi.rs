//! The `BootInfo` block: everything the VMM tells the guest kernel at boot.
//!
//! The block is plain old data (`#[repr(C)]`, integers only, no pointers) at a fixed guest
//! physical address ([`crate::layout::BOOT_INFO_GPA`]); its address is also passed in `rdi`.
//! It starts with a magic number, the ABI version and its own size, so a kernel can refuse a
//! block it does not understand. Compatible additions go at the end and bump
//! [`BOOT_INFO_VERSION`]'s minor part; anything else bumps the major part.

/// `"UMLVMBI1"` read as a little-endian u64.
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"UMLVMBI1");

/// ABI version: major in the high 16 bits, minor in the low 16 bits. 2.0: device entries
/// carry a role tag. 2.1: [`BootInfo::initrd`] is filled when the VMM loaded one, and its
/// pages are in the memory map as [`MemoryKind::Initrd`].
pub const BOOT_INFO_VERSION: u32 = (2 << 16) | 1;

/// Major part of [`BOOT_INFO_VERSION`]; a kernel accepts any block with the same major.
pub const fn version_major(version: u32) -> u16 {
    (version >> 16) as u16
}

/// Capacity of [`BootInfo::memory_map`].
pub const MAX_MEMORY_REGIONS: usize = 32;
/// Capacity of [`BootInfo::devices`].
pub const MAX_DEVICES: usize = 32;

/// [`BootInfo::flags`]: the host's `/dev/kvm` is the PVM flavour (`kvm_pvm`).
pub const FLAG_PVM_HOST: u64 = 1 << 0;
/// [`BootInfo::flags`]: run in PVM para-virtual mode: register the VIF page
/// ([`BootInfo::pvm_vif_msr_value`]) before anything else. The VMM built page tables with U=1
/// on every supervisor mapping, as that mode requires.
pub const FLAG_PVM_MODE: u64 = 1 << 1;

/// MSR whose write switches a vCPU on a `kvm_pvm` host to native supervisor execution.
pub const MSR_PVM_VIF: u32 = 0x4b56_4d10;
/// Read-only MSR that holds [`PVM_SIGNATURE`] on a `kvm_pvm` host.
pub const MSR_PVM_SIGNATURE: u32 = 0x4b56_4d11;
/// `"PVM"`, the value of [`MSR_PVM_SIGNATURE`].
pub const PVM_SIGNATURE: u64 = 0x004d_5650;
/// VIF feature bit: the host writes the page-fault address into the VIF page.
pub const PVM_VIF_FEATURE_CR2_CELL: u64 = 1 << 4;
/// VIF feature bits 0 and 1: the host runs user mode on the page-table root at CR3 + 4 KiB
/// and switches back to CR3 on every entry to supervisor mode (a KPTI-style flip, without
/// the two CR3-load hypercalls per round trip). Observed on our hosts: bit 0 alone hangs the
/// first return to user mode; bits 0 and 1 together work (docs/pvm.md).
pub const PVM_VIF_FEATURES_USER_ROOT_FLIP: u64 = 0b11;

/// The control mailbox at [`crate::layout::CONTROL_GPA`]: the VMM writes a request (a
/// management-console command line), raises [`crate::layout::CONTROL_GSI`]; the guest runs it,
/// writes its reply and `out`s the reply length to [`crate::ports::CONTROL_DONE`].
pub mod control {
    /// Offset of the request length (u32).
    pub const REQUEST_LEN: usize = 0;
    /// Offset of the request sequence number (u32): the VMM increments it with each request,
    /// so the guest can tell a new request from one it answered (and pick up a request whose
    /// interrupt came before it was ready for it).
    pub const REQUEST_SEQ: usize = 4;
    /// Offset of the request text.
    pub const REQUEST: usize = 16;
    /// Longest request.
    pub const REQUEST_MAX: usize = 512;
    /// Offset of the reply text.
    pub const REPLY: usize = REQUEST + REQUEST_MAX;
    /// Longest reply.
    pub const REPLY_MAX: usize = 4096 - REPLY;
    /// Reply-length bit meaning "error" (the rest is the length).
    pub const REPLY_ERROR: u32 = 1 << 31;
}

/// `"UMLVMPNC"`: magic of a [`PanicRecord`].
pub const PANIC_RECORD_MAGIC: u64 = u64::from_le_bytes(*b"UMLVMPNC");
/// Frames a [`PanicRecord`] holds.
pub const PANIC_FRAMES: usize = 32;

/// What a panicking guest kernel hands the VMM with [`crate::ports::PANIC`]: its backtrace,
/// so the VMM can resolve the addresses with the kernel's symbol table.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PanicRecord {
    /// [`PANIC_RECORD_MAGIC`].
    pub magic: u64,
    /// Valid entries in `frames`.
    pub count: u64,
    /// Return addresses, innermost first (frame 0 is the faulting or panicking address).
    pub frames: [u64; PANIC_FRAMES],
}

impl PanicRecord {
    /// An empty record.
    pub const fn new() -> Self {
        Self { magic: PANIC_RECORD_MAGIC, count: 0, frames: [0; PANIC_FRAMES] }
    }

    /// The valid frames, if the record is well formed (the guest wrote it, so it is checked).
    pub fn valid_frames(&self) -> Option<&[u64]> {
        (self.magic == PANIC_RECORD_MAGIC && self.count as usize <= PANIC_FRAMES)
            .then(|| &self.frames[..self.count as usize])
    }
}

impl Default for PanicRecord {
    fn default() -> Self {
        Self::new()
    }
}

/// A guest-physical byte range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Guest physical address of the first byte.
    pub gpa: u64,
    /// Length in bytes; 0 means "absent".
    pub len: u64,
}

impl Span {
    /// A span of `len` bytes at `gpa`.
    pub const fn new(gpa: u64, len: u64) -> Self {
        Self { gpa, len }
    }

    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.gpa + self.len
    }

    /// Whether the span is absent.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a [`MemoryRegion`] holds.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Free RAM the kernel may allocate.
    Usable = 1,
    /// Never to be touched (the null page, firmware-like holes).
    Reserved = 2,
    /// The loaded kernel image, `.bss` included.
    Kernel = 3,
    /// Boot structures the VMM wrote (this block, command line, GDT, page tables, console
    /// buffer, VIF page). Live during boot; the kernel decides what it keeps.
    Boot = 4,
    /// Device MMIO window (uncached), not RAM.
    Mmio = 5,
    /// The initial RAM disk the VMM loaded ([`BootInfo::initrd`], rounded up to whole pages).
    /// The kernel reads it in place and may free its pages once it has unpacked it.
    Initrd = 6,
}

impl MemoryKind {
    /// Decodes a raw kind; unknown values are `None`.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::Usable,
            2 => Self::Reserved,
            3 => Self::Kernel,
            4 => Self::Boot,
            5 => Self::Mmio,
            6 => Self::Initrd,
            _ => return None,
        })
    }
}

/// One entry of the memory map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryRegion {
    /// The range.
    pub span: Span,
    /// A [`MemoryKind`] as `u32`.
    pub kind: u32,
    /// Reserved, zero.
    pub _pad: u32,
}

/// Kinds of devices in [`BootInfo::devices`].
pub mod device_kind {
    /// A virtio-mmio transport (any virtio device type behind it).
    pub const VIRTIO_MMIO: u32 = 1;
}

/// Roles of devices ([`DeviceEntry::role`]): what the UML switch that made it calls it.
pub mod device_role {
    /// Role class in bits 8..16; the unit number in bits 0..8.
    pub const fn make(class: u32, unit: u32) -> u32 {
        (class << 8) | (unit & 0xff)
    }
    /// `ubdN`: block device N.
    pub const UBD: u32 = 1;
    /// `conN`: console N (the guest's `ttyN`).
    pub const CON: u32 = 2;
    /// `sslN`: serial line N (the guest's `ttySN`).
    pub const SSL: u32 = 3;
    /// The class of a role.
    pub const fn class(role: u32) -> u32 {
        role >> 8
    }
    /// The unit of a role.
    pub const fn unit(role: u32) -> u32 {
        role & 0xff
    }
}

/// One entry of the device table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceEntry {
    /// One of [`device_kind`].
    pub kind: u32,
    /// Interrupt line (GSI, routed through the IOAPIC).
    pub gsi: u32,
    /// MMIO window.
    pub mmio: Span,
    /// What it is for ([`device_role`]).
    pub role: u32,
    /// Reserved, zero.
    pub _pad: u32,
}

/// The boot information block.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// [`BOOT_INFO_VERSION`] of the VMM that wrote the block.
    pub version: u32,
    /// `size_of::<BootInfo>()` as written.
    pub size: u32,
    /// `FLAG_*` bits.
    pub flags: u64,
    /// Value the kernel writes to [`MSR_PVM_VIF`] in PVM mode: VIF page GPA | feature bits.
    pub pvm_vif_msr_value: u64,
    /// The VMM's process start, in the guest's TSC time base.
    pub host_start_tsc: u64,
    /// Wall-clock time at VMM start, nanoseconds since the Unix epoch.
    pub host_start_unix_ns: u64,
    /// TSC frequency in kHz (KVM_GET_TSC_KHZ).
    pub tsc_khz: u64,
    /// Local APIC timer input frequency in Hz (KVM's APIC bus: 1 GHz).
    pub apic_bus_hz: u64,
    /// Total guest RAM in bytes.
    pub mem_bytes: u64,
    /// How many times this machine was rebooted before this boot (0 on the first boot).
    pub boot_count: u32,
    /// Number of vCPUs.
    pub vcpu_count: u32,
    /// Kernel command line, UTF-8, not NUL-terminated.
    pub cmdline: Span,
    /// Early-console buffer; the kernel fills it and kicks [`crate::ports::CONSOLE`].
    pub console: Span,
    /// Initial RAM disk (`--initrd`, `initrd=`): its exact bytes, at a page-aligned address
    /// at the top of RAM below the MMIO hole; empty when there is none (and from VMMs older
    /// than 2.1).
    pub initrd: Span,
    /// Loaded kernel image (physical, `.bss` included).
    pub kernel: Span,
    /// Page-table pool the VMM built the boot page tables in.
    pub page_tables: Span,
    /// Physical address of the boot PML4.
    pub pml4_gpa: u64,
    /// Virtual address where all of physical memory is mapped ([`crate::layout::DIRECT_MAP_BASE`]).
    pub direct_map_base: u64,
    /// Bytes of physical address space the direct map covers.
    pub direct_map_bytes: u64,
    /// Entries used in [`Self::memory_map`].
    pub memory_map_len: u32,
    /// Entries used in [`Self::devices`].
    pub device_count: u32,
    /// Physical memory map, sorted by address, non-overlapping.
    pub memory_map: [MemoryRegion; MAX_MEMORY_REGIONS],
    /// Devices.
    pub devices: [DeviceEntry; MAX_DEVICES],
}

impl BootInfo {
    /// An empty block with magic, version and size filled in.
    pub const fn new() -> Self {
        Self {
            magic: BOOT_INFO_MAGIC,
            version: BOOT_INFO_VERSION,
            size: core::mem::size_of::<Self>() as u32,
            flags: 0,
            pvm_vif_msr_value: 0,
            host_start_tsc: 0,
            host_start_unix_ns: 0,
            tsc_khz: 0,
            apic_bus_hz: 0,
            mem_bytes: 0,
            boot_count: 0,
            vcpu_count: 0,
            cmdline: Span::new(0, 0),
            console: Span::new(0, 0),
            initrd: Span::new(0, 0),
            kernel: Span::new(0, 0),
            page_tables: Span::new(0, 0),
            pml4_gpa: 0,
            direct_map_base: 0,
            direct_map_bytes: 0,
            memory_map_len: 0,
            device_count: 0,
            memory_map: [MemoryRegion { span: Span::new(0, 0), kind: 0, _pad: 0 }; MAX_MEMORY_REGIONS],
            devices: [DeviceEntry { kind: 0, gsi: 0, mmio: Span::new(0, 0), role: 0, _pad: 0 }; MAX_DEVICES],
        }
    }

    /// Checks magic, major version and size; the guest calls this before trusting the block.
    pub fn validate(&self) -> Result<(), BootInfoError> {
        if self.magic != BOOT_INFO_MAGIC {
            return Err(BootInfoError::BadMagic(self.magic));
        }
        if version_major(self.version) != version_major(BOOT_INFO_VERSION) {
            return Err(BootInfoError::UnsupportedVersion(self.version));
        }
        if (self.size as usize) < core::mem::size_of::<Self>() {
            return Err(BootInfoError::TooSmall(self.size));
        }
        if self.memory_map_len as usize > MAX_MEMORY_REGIONS || self.device_count as usize > MAX_DEVICES {
            return Err(BootInfoError::TableOverflow);
        }
        Ok(())
    }

    /// The used part of the memory map.
    pub fn memory_regions(&self) -> &[MemoryRegion] {
        &self.memory_map[..(self.memory_map_len as usize).min(MAX_MEMORY_REGIONS)]
    }

    /// The used part of the device table.
    pub fn device_entries(&self) -> &[DeviceEntry] {
        &self.devices[..(self.device_count as usize).min(MAX_DEVICES)]
    }

    /// Appends a memory region; `false` if the map is full.
    pub fn push_memory_region(&mut self, span: Span, kind: MemoryKind) -> bool {
        let i = self.memory_map_len as usize;
        if i >= MAX_MEMORY_REGIONS {
            return false;
        }
        self.memory_map[i] = MemoryRegion { span, kind: kind as u32, _pad: 0 };
        self.memory_map_len += 1;
        true
    }

    /// Whether the guest should enter PVM para-virtual mode.
    pub const fn pvm_mode(&self) -> bool {
        self.flags & FLAG_PVM_MODE != 0
    }

    /// Whether the host is a `kvm_pvm` host.
    pub const fn pvm_host(&self) -> bool {
        self.flags & FLAG_PVM_HOST != 0
    }
}

impl Default for BootInfo {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a [`BootInfo`] block was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// The magic number is wrong: not a umlvm boot block.
    BadMagic(u64),
    /// A major version this kernel does not speak.
    UnsupportedVersion(u32),
    /// The block is smaller than this kernel's `BootInfo`.
    TooSmall(u32),
    /// A table length is larger than its capacity.
    TableOverflow,
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "bad boot info magic {m:#x}"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "boot info version {}.{} unsupported (kernel speaks {}.x)",
                v >> 16,
                v & 0xffff,
                BOOT_INFO_VERSION >> 16
            ),
            Self::TooSmall(s) => write!(f, "boot info block of {s} bytes is too small"),
            Self::TableOverflow => write!(f, "boot info table length out of range"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn layout_is_stable() {
        // These offsets are ABI: the guest's entry assembly and older kernels rely on them.
        assert_eq!(offset_of!(BootInfo, magic), 0);
        assert_eq!(offset_of!(BootInfo, version), 8);
        assert_eq!(offset_of!(BootInfo, size), 12);
        assert_eq!(offset_of!(BootInfo, flags), 16);
        assert_eq!(offset_of!(BootInfo, pvm_vif_msr_value), 24);
        assert_eq!(offset_of!(BootInfo, host_start_tsc), 32);
        assert_eq!(offset_of!(BootInfo, cmdline), 80);
        assert_eq!(offset_of!(BootInfo, initrd), 112);
        assert_eq!(size_of::<Span>(), 16);
        assert_eq!(size_of::<MemoryRegion>(), 24);
        assert_eq!(size_of::<DeviceEntry>(), 32);
        assert_eq!(align_of::<BootInfo>(), 8);
        assert!(size_of::<BootInfo>() <= 4096, "BootInfo must fit its page");
    }

    #[test]
    fn panic_records_are_checked() {
        let mut r = PanicRecord::new();
        r.count = 2;
        r.frames[0] = 7;
        assert_eq!(r.valid_frames(), Some(&[7u64, 0][..]));
        r.count = PANIC_FRAMES as u64 + 1;
        assert_eq!(r.valid_frames(), None);
        r.count = 0;
        r.magic = 1;
        assert_eq!(r.valid_frames(), None);
        assert_eq!(size_of::<PanicRecord>(), 16 + 8 * PANIC_FRAMES);
    }

    #[test]
    fn new_block_validates() {
        assert_eq!(BootInfo::new().validate(), Ok(()));
    }

    #[test]
    fn wrong_magic_version_size_are_refused() {
        let mut b = BootInfo::new();
        b.magic = 0;
        assert_eq!(b.validate(), Err(BootInfoError::BadMagic(0)));
        let mut b = BootInfo::new();
        b.version = 1 << 16;
        assert_eq!(b.validate(), Err(BootInfoError::UnsupportedVersion(1 << 16)));
        let mut b = BootInfo::new();
        b.version = BOOT_INFO_VERSION + 7; // newer minor: accepted
        assert_eq!(b.validate(), Ok(()));
        b.size = 16;
        assert_eq!(b.validate(), Err(BootInfoError::TooSmall(16)));
        let mut b = BootInfo::new();
        b.memory_map_len = MAX_MEMORY_REGIONS as u32 + 1;
        assert_eq!(b.validate(), Err(BootInfoError::TableOverflow));
    }

    #[test]
    fn memory_map_push_stops_when_full() {
        let mut b = BootInfo::new();
        for i in 0..MAX_MEMORY_REGIONS as u64 {
            assert!(b.push_memory_region(Span::new(i * 4096, 4096), MemoryKind::Usable));
        }
        assert!(!b.push_memory_region(Span::new(0, 1), MemoryKind::Usable));
        assert_eq!(b.memory_regions().len(), MAX_MEMORY_REGIONS);
        assert_eq!(MemoryKind::from_raw(b.memory_regions()[0].kind), Some(MemoryKind::Usable));
        assert_eq!(MemoryKind::from_raw(6), Some(MemoryKind::Initrd));
        assert_eq!(MemoryKind::from_raw(99), None);
    }
}
