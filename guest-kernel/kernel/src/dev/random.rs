//! Kernel random numbers for AT_RANDOM, `getrandom` and `/dev/urandom`: a xorshift-based
//! generator seeded from the TSC and RDRAND when the CPU has it. Not cryptographic.

use crate::arch::sync::IrqMutex;

static STATE: IrqMutex<[u64; 2]> = IrqMutex::new([0, 0]);

fn seed() -> [u64; 2] {
    let t = crate::arch::cpu::rdtsc();
    let r = crate::arch::cpu::rdrand().unwrap_or(0x9e37_79b9_7f4a_7c15);
    [t ^ 0x2545_f491_4f6c_dd1d, r ^ t.rotate_left(32) | 1]
}

fn next(s: &mut [u64; 2]) -> u64 {
    // xorshift128+
    let mut a = s[0];
    let b = s[1];
    s[0] = b;
    a ^= a << 23;
    s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    s[1].wrapping_add(b)
}

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) {
    let mut s = STATE.lock();
    if s[0] == 0 && s[1] == 0 {
        *s = seed();
    }
    s[0] ^= crate::arch::cpu::rdtsc();
    for chunk in buf.chunks_mut(8) {
        let v = next(&mut s).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}
