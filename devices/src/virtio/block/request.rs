//! Parsing a virtio-blk request out of a descriptor chain, through checked views.
//!
//! A request is a 16-byte header (type, reserved, sector) the device reads, data buffers
//! (device-writable for reads, device-readable for writes), and one status byte the device
//! writes. Everything the guest supplies is validated here, once: descriptor directions and
//! lengths, the sector range against the disk size, the total size.

use super::{MAX_REQUEST_BYTES, MAX_SEGMENTS, SECTOR_SIZE};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Request kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    /// Read sectors into guest buffers.
    In,
    /// Write sectors from guest buffers.
    Out,
    /// Flush.
    Flush,
    /// Device id string.
    GetId,
    /// Anything else.
    Unsupported(u32),
}

/// A validated request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Kind.
    pub kind: RequestType,
    /// First sector.
    pub sector: u64,
    /// Data buffers (guest address, length).
    pub data: Vec<(GuestAddress, u32)>,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

/// Why a chain is not a valid request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Too short to hold header and status.
    #[error("descriptor chain too short")]
    TooShort,
    /// Too many descriptors.
    #[error("descriptor chain too long")]
    TooLong,
    /// The header descriptor is device-writable or short.
    #[error("bad request header descriptor")]
    BadHeader,
    /// The status descriptor is not a device-writable byte.
    #[error("bad status descriptor")]
    BadStatus,
    /// A data buffer has the wrong direction for the request.
    #[error("data descriptor with the wrong direction")]
    BadDirection,
    /// The data length is not a sector multiple, or too large.
    #[error("bad data length {0}")]
    BadLength(u64),
    /// The sectors are beyond the disk.
    #[error("sectors {0}+{1} beyond the disk")]
    OutOfRange(u64, u64),
    /// A buffer lies outside guest memory.
    #[error("buffer outside guest memory")]
    BadAddress,
}

impl Request {
    /// Parses `descs` (a chain, in order) for a disk of `capacity_sectors`.
    pub fn parse(
        descs: &[Descriptor],
        mem: &GuestMemoryMmap,
        capacity_sectors: u64,
    ) -> Result<Request, RequestError> {
        if descs.len() < 2 {
            return Err(RequestError::TooShort);
        }
        if descs.len() > MAX_SEGMENTS as usize + 2 {
            return Err(RequestError::TooLong);
        }
        let head = descs[0];
        if head.is_write_only() || head.len() < 16 {
            return Err(RequestError::BadHeader);
        }
        let kind_raw: u32 = mem.read_obj(head.addr()).map_err(|_| RequestError::BadAddress)?;
        let sector: u64 = mem
            .read_obj(head.addr().checked_add(8).ok_or(RequestError::BadAddress)?)
            .map_err(|_| RequestError::BadAddress)?;
        let status = descs[descs.len() - 1];
        if !status.is_write_only() || status.len() < 1 {
            return Err(RequestError::BadStatus);
        }
        if !mem.address_in_range(status.addr()) {
            return Err(RequestError::BadAddress);
        }
        let kind = match kind_raw {
            0 => RequestType::In,
            1 => RequestType::Out,
            4 => RequestType::Flush,
            8 => RequestType::GetId,
            other => RequestType::Unsupported(other),
        };
        let data_descs = &descs[1..descs.len() - 1];
        let mut data = Vec::with_capacity(data_descs.len());
        let mut total = 0u64;
        for d in data_descs {
            let want_write = matches!(kind, RequestType::In | RequestType::GetId);
            if matches!(kind, RequestType::In | RequestType::Out | RequestType::GetId)
                && d.is_write_only() != want_write
            {
                return Err(RequestError::BadDirection);
            }
            let end =
                d.addr().checked_add(u64::from(d.len()).saturating_sub(1)).ok_or(RequestError::BadAddress)?;
            if d.len() > 0 && !(mem.address_in_range(d.addr()) && mem.address_in_range(end)) {
                return Err(RequestError::BadAddress);
            }
            total += u64::from(d.len());
            data.push((d.addr(), d.len()));
        }
        if matches!(kind, RequestType::In | RequestType::Out) {
            if !total.is_multiple_of(SECTOR_SIZE) || total > MAX_REQUEST_BYTES {
                return Err(RequestError::BadLength(total));
            }
            let count = total / SECTOR_SIZE;
            if sector.checked_add(count).is_none_or(|end| end > capacity_sectors) {
                return Err(RequestError::OutOfRange(sector, count));
            }
        }
        Ok(Request { kind, sector, data, status: status.addr() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn header(m: &GuestMemoryMmap, kind: u32, sector: u64) -> Descriptor {
        m.write_obj(kind, GuestAddress(0x1000)).unwrap();
        m.write_obj(sector, GuestAddress(0x1008)).unwrap();
        Descriptor::new(0x1000, 16, F_NEXT, 1)
    }

    #[test]
    fn parses_reads_and_writes() {
        let m = mem();
        let chain = [
            header(&m, 0, 8),
            Descriptor::new(0x2000, 1024, F_NEXT | F_WRITE, 2),
            Descriptor::new(0x3000, 1, F_WRITE, 0),
        ];
        let r = Request::parse(&chain, &m, 100).unwrap();
        assert_eq!(r.kind, RequestType::In);
        assert_eq!(r.sector, 8);
        assert_eq!(r.data, vec![(GuestAddress(0x2000), 1024)]);
        let chain = [
            header(&m, 1, 0),
            Descriptor::new(0x2000, 512, F_NEXT, 2),
            Descriptor::new(0x3000, 1, F_WRITE, 0),
        ];
        assert_eq!(Request::parse(&chain, &m, 100).unwrap().kind, RequestType::Out);
    }

    #[test]
    fn refuses_bad_chains() {
        let m = mem();
        let st = Descriptor::new(0x3000, 1, F_WRITE, 0);
        let rd = |len| Descriptor::new(0x2000, len, F_NEXT | F_WRITE, 2);
        assert_eq!(Request::parse(&[st], &m, 100), Err(RequestError::TooShort));
        assert_eq!(
            Request::parse(&[Descriptor::new(0x1000, 8, F_NEXT, 1), st], &m, 100),
            Err(RequestError::BadHeader)
        );
        assert_eq!(
            Request::parse(&[header(&m, 0, 0), rd(512), Descriptor::new(0x3000, 1, 0, 0)], &m, 100),
            Err(RequestError::BadStatus)
        );
        // A read into a device-readable buffer.
        assert_eq!(
            Request::parse(&[header(&m, 0, 0), Descriptor::new(0x2000, 512, F_NEXT, 2), st], &m, 100),
            Err(RequestError::BadDirection)
        );
        assert_eq!(
            Request::parse(&[header(&m, 0, 0), rd(100), st], &m, 100),
            Err(RequestError::BadLength(100))
        );
        assert_eq!(
            Request::parse(&[header(&m, 0, 99), rd(1024), st], &m, 100),
            Err(RequestError::OutOfRange(99, 2))
        );
        assert_eq!(
            Request::parse(&[header(&m, 0, u64::MAX), rd(512), st], &m, 100),
            Err(RequestError::OutOfRange(u64::MAX, 1))
        );
        assert_eq!(
            Request::parse(
                &[header(&m, 0, 0), Descriptor::new(0xff000, 0x2000, F_NEXT | F_WRITE, 2), st],
                &m,
                100
            ),
            Err(RequestError::BadAddress)
        );
        let long: Vec<Descriptor> = std::iter::once(header(&m, 0, 0))
            .chain(std::iter::repeat_n(rd(512), MAX_SEGMENTS as usize + 1))
            .chain(std::iter::once(st))
            .collect();
        assert_eq!(Request::parse(&long, &m, 1000), Err(RequestError::TooLong));
        assert_eq!(
            Request::parse(&[header(&m, 77, 0), st], &m, 100).unwrap().kind,
            RequestType::Unsupported(77)
        );
    }
}
