//! Clock arithmetic: TSC ticks to nanoseconds.

/// Converts TSC ticks to nanoseconds at `tsc_khz`.
pub const fn ticks_to_ns(ticks: u64, tsc_khz: u64) -> u64 {
    if tsc_khz == 0 {
        return 0;
    }
    ((ticks as u128 * 1_000_000) / tsc_khz as u128) as u64
}

/// Converts nanoseconds to TSC ticks at `tsc_khz`.
pub const fn ns_to_ticks(ns: u64, tsc_khz: u64) -> u64 {
    ((ns as u128 * tsc_khz as u128) / 1_000_000) as u64
}

/// A monotonic clock over a TSC whose frequency the VMM measured.
#[derive(Clone, Copy, Debug)]
pub struct TscClock {
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// TSC value that counts as time zero (the VMM's start).
    pub origin: u64,
}

impl TscClock {
    /// Nanoseconds between the origin and the TSC reading `now` (0 if `now` is earlier).
    pub const fn ns_at(&self, now: u64) -> u64 {
        ticks_to_ns(now.saturating_sub(self.origin), self.tsc_khz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways_without_overflow() {
        let khz = 2_596_134;
        assert_eq!(ticks_to_ns(khz * 1000, khz), 1_000_000_000);
        assert_eq!(ns_to_ticks(1_000_000, khz), khz);
        // A year of ticks does not overflow.
        let year = 365 * 24 * 3600 * 1_000_000_000u64;
        assert_eq!(ticks_to_ns(ns_to_ticks(year, khz), khz) / 1_000_000_000, year / 1_000_000_000);
        assert_eq!(ticks_to_ns(5, 0), 0);
    }

    #[test]
    fn clock_counts_from_its_origin() {
        let c = TscClock { tsc_khz: 1_000_000, origin: 500 };
        assert_eq!(c.ns_at(1500), 1000);
        assert_eq!(c.ns_at(100), 0);
    }
}
