//! Frame-pointer stack walking.
//!
//! The kernel is built with frame pointers, so each frame starts with the caller's `rbp`
//! followed by the return address. The walk validates every step (alignment, growing
//! addresses inside the stack, readable memory) so a corrupt stack ends the walk instead of
//! faulting inside the panic handler.

/// Most frames a backtrace records.
pub const MAX_FRAMES: usize = 32;

/// Walks the frame chain starting at `rbp`, inside `stack` (start, end exclusive), reading
/// memory with `read`. Writes return addresses to `out` and returns how many it wrote.
pub fn walk(mut rbp: u64, stack: (u64, u64), read: impl Fn(u64) -> Option<u64>, out: &mut [u64]) -> usize {
    let mut n = 0;
    while n < out.len() {
        if rbp == 0 || !rbp.is_multiple_of(8) || rbp < stack.0 || rbp.saturating_add(16) > stack.1 {
            break;
        }
        let (Some(next), Some(ret)) = (read(rbp), read(rbp + 8)) else { break };
        if ret == 0 {
            break;
        }
        out[n] = ret;
        n += 1;
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn memory(words: &[(u64, u64)]) -> impl Fn(u64) -> Option<u64> + '_ {
        let m: HashMap<u64, u64> = words.iter().copied().collect();
        move |a| m.get(&a).copied()
    }

    #[test]
    fn follows_the_chain_until_a_null_frame() {
        let mem = [
            (0x1000, 0x1040),
            (0x1008, 0xaaa),
            (0x1040, 0x1100),
            (0x1048, 0xbbb),
            (0x1100, 0),
            (0x1108, 0xccc),
        ];
        let mut out = [0; MAX_FRAMES];
        let n = walk(0x1000, (0x1000, 0x2000), memory(&mem), &mut out);
        assert_eq!(&out[..n], &[0xaaa, 0xbbb, 0xccc]);
    }

    #[test]
    fn stops_on_loops_bad_alignment_and_out_of_stack_pointers() {
        let looped = [(0x1000, 0x1000), (0x1008, 0xaaa)];
        let mut out = [0; 4];
        assert_eq!(walk(0x1000, (0x1000, 0x2000), memory(&looped), &mut out), 1);
        assert_eq!(walk(0x1003, (0x1000, 0x2000), memory(&looped), &mut out), 0);
        assert_eq!(walk(0x9000, (0x1000, 0x2000), memory(&looped), &mut out), 0);
        let unreadable: [(u64, u64); 0] = [];
        assert_eq!(walk(0x1000, (0x1000, 0x2000), memory(&unreadable), &mut out), 0);
    }

    #[test]
    fn respects_the_output_capacity() {
        let mem: Vec<(u64, u64)> =
            (0..10).flat_map(|i| [(0x1000 + i * 16, 0x1010 + i * 16), (0x1008 + i * 16, i + 1)]).collect();
        let mut out = [0; 4];
        assert_eq!(walk(0x1000, (0x1000, 0x2000), memory(&mem), &mut out), 4);
        assert_eq!(out, [1, 2, 3, 4]);
    }
}
