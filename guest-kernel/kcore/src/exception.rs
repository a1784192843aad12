//! Names and decoding of x86 exceptions, for fault reports.

use core::fmt;

/// Mnemonic and name of CPU exception `vector` (0-31).
pub const fn name(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection fault"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point error"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        _ => ("#??", "reserved exception"),
    }
}

/// Whether the CPU pushes an error code for `vector`.
pub const fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}

/// A page-fault error code, displayed as words.
#[derive(Clone, Copy, Debug)]
pub struct PageFaultCode(pub u64);

impl fmt::Display for PageFaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        f.write_str(if c & 1 != 0 { "protection violation" } else { "not present" })?;
        f.write_str(if c & 2 != 0 { ", write" } else { ", read" })?;
        if c & 16 != 0 {
            f.write_str(", instruction fetch")?;
        }
        f.write_str(if c & 4 != 0 { ", user mode" } else { ", supervisor mode" })?;
        if c & 8 != 0 {
            f.write_str(", reserved bit set")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_error_codes() {
        assert_eq!(name(14), ("#PF", "page fault"));
        assert_eq!(name(0).0, "#DE");
        assert_eq!(name(15).0, "#??");
        assert!(has_error_code(14) && has_error_code(13) && has_error_code(8));
        assert!(!has_error_code(3) && !has_error_code(6) && !has_error_code(0));
    }

    #[test]
    fn page_fault_codes_read_as_words() {
        assert_eq!(PageFaultCode(2).to_string(), "not present, write, supervisor mode");
        assert_eq!(
            PageFaultCode(0x15).to_string(),
            "protection violation, read, instruction fetch, user mode"
        );
    }
}
