//! The eBPF program of `reuseport:ebpf-least-loaded`, built for N workers.
//!
//! A `BPF_PROG_TYPE_SK_REUSEPORT` program runs for each new connection (at
//! the SYN, when the kernel picks the listener of the `SO_REUSEPORT` group
//! that will own it) and may select one with `bpf_sk_select_reuseport`. This
//! one reads, for each worker slot i, two counters from the one value of an
//! mmapable array map laid out as [`lab_common::stats::LoadSlot`] (64 bytes
//! per slot): `assigned`, the connections the program gave slot i, and
//! `finished`, those slot i's worker has closed. `assigned - finished` is the
//! slot's load. The program picks the slot with the smallest load, looking
//! from `hash % N` onwards (the connection's 4-tuple hash, so that idle
//! workers share new connections evenly; the first found wins a tie), selects
//! that slot's listener from a `BPF_MAP_TYPE_REUSEPORT_SOCKARRAY`, and on
//! success adds 1 to the slot's `assigned` with an atomic add. If the
//! selection fails (an empty array slot), it returns `SK_PASS` without a
//! selection, and the kernel falls back to its own hash.
//!
//! N is known when the program is loaded, so the loop over the slots is
//! unrolled, and the minimum is taken without branches, so that the verifier
//! walks one straight path whatever N is. A branch per slot would not do:
//! the two sides differ in the index they keep, so the verifier could not
//! prune one against the other and would walk 2^N paths. The choice is
//! "sign bit of `key - best`" (0 or 1, an unsigned shift by 63) times the
//! change. Not a mask (`s>> 63` then `&`): the verifier of Linux 6.18 splits
//! its state on that pattern (0 or -1), which is the 2^N paths again (it
//! refused the program from N = 16). The test `the_kernel_loads_it` loads
//! the program into the kernel for N up to 1024. In outline:
//!
//! ```text
//! start = ctx->hash % N
//! for i in 0..N:                      (unrolled)
//!     key  = (assigned[i] - finished[i]) * N + (i - start) mod N
//!     if key < best: best = key, idx = i      (branch-free)
//! if idx >= N: return SK_PASS          (never; bounds idx for the verifier)
//! if bpf_sk_select_reuseport(ctx, &sockarray, &idx, 0) == 0:
//!     lock assigned[idx] += 1
//! return SK_PASS
//! ```
//!
//! The key orders by load and then by distance from `start`; a load is
//! bounded by the connections a listener can hold, far below where
//! `load * N` could overflow.

use lab_common::sys::ebpf::Insn;

use crate::asm::*;

/// `BPF_FUNC_sk_select_reuseport`.
pub const HELPER_SK_SELECT_REUSEPORT: i32 = 82;
/// `SK_PASS`.
pub const SK_PASS: i32 = 1;
/// `offsetof(struct sk_reuseport_md, hash)`: after `data` and `data_end`
/// (8 bytes each) and four `__u32` (`len`, `eth_protocol`, `ip_protocol`,
/// `bind_inany`).
pub const MD_HASH_OFFSET: i16 = 32;
/// Bytes per slot in the load map's value (one cache line).
pub const SLOT_BYTES: usize = 64;
/// Offset of `assigned` in a slot.
pub const ASSIGNED_OFFSET: i16 = 0;
/// Offset of `finished` in a slot.
pub const FINISHED_OFFSET: i16 = 8;
/// Stack offset (from `r10`) of the `u32` key passed to the helper.
const KEY_SLOT: i16 = -4;

/// Builds the program for `workers` slots. `sockarray_fd`: the
/// `REUSEPORT_SOCKARRAY` map (slot i's listener at key i); `load_fd`: the
/// one-element mmapable array whose value holds the slots' counters.
pub fn least_loaded_program(workers: usize, sockarray_fd: i32, load_fd: i32) -> Vec<Insn> {
    assert!(workers > 0 && workers < 1 << 16);
    let n = workers as i32;
    let mut p = Vec::with_capacity(16 + workers * 22);
    // r6 = ctx, r7 = start, r8 = &slots[0], r5 = &slots[i], r9 = best key, r0 = best idx.
    p.push(mov_reg(R6, R1));
    p.push(load_u32(R7, R1, MD_HASH_OFFSET));
    p.push(alu_imm(Alu::Mod, R7, n));
    p.extend(ld_map_value(R8, load_fd, 0));
    p.push(mov_reg(R5, R8));
    for i in 0..n {
        // r1 = load * N
        p.push(load_u64(R1, R5, ASSIGNED_OFFSET));
        p.push(load_u64(R2, R5, FINISHED_OFFSET));
        p.push(alu_reg(Alu::Sub, R1, R2));
        p.push(alu_imm(Alu::Mul, R1, n));
        // r3 = (i - start) mod N, from r2 = i + N - start in [i + 1, i + N]:
        // r3 = r2 - N, plus N when that is negative (its sign bit times N).
        p.push(mov_imm(R2, i + n));
        p.push(alu_reg(Alu::Sub, R2, R7));
        p.push(mov_reg(R3, R2));
        p.push(alu_imm(Alu::Sub, R3, n));
        p.push(mov_reg(R4, R3));
        p.push(alu_imm(Alu::Rsh, R4, 63));
        p.push(alu_imm(Alu::Mul, R4, n));
        p.push(alu_reg(Alu::Add, R3, R4));
        // r1 = key
        p.push(alu_reg(Alu::Add, R1, R3));
        if i == 0 {
            p.push(mov_reg(R9, R1));
            p.push(mov_imm(R0, 0));
        } else {
            // r2 = 1 if key < best else 0 (the sign bit of key - best)
            p.push(mov_reg(R2, R1));
            p.push(alu_reg(Alu::Sub, R2, R9));
            p.push(mov_reg(R3, R2));
            p.push(alu_imm(Alu::Rsh, R2, 63));
            // best += (key - best) * r2
            p.push(alu_reg(Alu::Mul, R3, R2));
            p.push(alu_reg(Alu::Add, R9, R3));
            // idx ^= (idx ^ i) * r2
            p.push(mov_imm(R4, i));
            p.push(alu_reg(Alu::Xor, R4, R0));
            p.push(alu_reg(Alu::Mul, R4, R2));
            p.push(alu_reg(Alu::Xor, R0, R4));
        }
        p.push(alu_imm(Alu::Add, R5, SLOT_BYTES as i32));
    }
    let mut to_out = Vec::new();
    to_out.push(p.len());
    p.push(jump_imm(Cond::Ge, R0, n, 0));
    p.push(mov_reg(R7, R0));
    p.push(store_u32(R10, KEY_SLOT, R7));
    p.push(mov_reg(R1, R6));
    p.extend(ld_map_fd(R2, sockarray_fd));
    p.push(mov_reg(R3, R10));
    p.push(alu_imm(Alu::Add, R3, KEY_SLOT as i32));
    p.push(mov_imm(R4, 0));
    p.push(call(HELPER_SK_SELECT_REUSEPORT));
    to_out.push(p.len());
    p.push(jump_imm(Cond::Ne, R0, 0, 0));
    p.push(mov_reg(R1, R7));
    p.push(alu_imm(Alu::Lsh, R1, SLOT_BYTES.trailing_zeros() as i32));
    p.push(mov_reg(R2, R8));
    p.push(alu_reg(Alu::Add, R2, R1));
    p.push(mov_imm(R3, 1));
    p.push(atomic_add_u64(R2, ASSIGNED_OFFSET, R3));
    let out = p.len();
    for at in to_out {
        p[at].off = (out - at - 1) as i16;
    }
    p.push(mov_imm(R0, SK_PASS));
    p.push(exit());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the subset of eBPF the builder emits. `slots`: (assigned,
    /// finished) per slot; `select_ok`: whether the helper succeeds. Returns
    /// (return value, the key passed to the helper if it was called).
    fn run(
        prog: &[Insn],
        hash: u32,
        slots: &mut [(u64, u64)],
        select_ok: bool,
    ) -> (u64, Option<u32>) {
        // Memory: pointers are tagged by region. 1<<40: the load value;
        // 2<<40: the stack (r10 = its top); the context is 3<<40.
        const VALUE: u64 = 1 << 40;
        const STACK: u64 = 2 << 40;
        const CTX: u64 = 3 << 40;
        let mut stack = [0u8; 512];
        let mut r = [0u64; 11];
        r[1] = CTX;
        r[10] = STACK + 512;
        let mut selected = None;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize);
            pc += 1;
            let addr = |base: u64| base.wrapping_add(i.off as i64 as u64);
            match i.code {
                0xbf => r[dst] = r[src],
                0xb7 => r[dst] = i.imm as i64 as u64,
                0x0f => r[dst] = r[dst].wrapping_add(r[src]),
                0x07 => r[dst] = r[dst].wrapping_add(i.imm as i64 as u64),
                0x1f => r[dst] = r[dst].wrapping_sub(r[src]),
                0x17 => r[dst] = r[dst].wrapping_sub(i.imm as i64 as u64),
                0x27 => r[dst] = r[dst].wrapping_mul(i.imm as i64 as u64),
                0x2f => r[dst] = r[dst].wrapping_mul(r[src]),
                0x77 => r[dst] >>= i.imm,
                0x97 => r[dst] %= i.imm as u64,
                0x57 => r[dst] &= i.imm as i64 as u64,
                0x5f => r[dst] &= r[src],
                0xaf => r[dst] ^= r[src],
                0x67 => r[dst] <<= i.imm,
                0xc7 => r[dst] = ((r[dst] as i64) >> i.imm) as u64,
                0x61 => {
                    assert_eq!(addr(r[src]), CTX + MD_HASH_OFFSET as u64);
                    r[dst] = hash as u64;
                }
                0x79 => {
                    let a = addr(r[src]) - VALUE;
                    let (slot, field) = (a as usize / SLOT_BYTES, a as usize % SLOT_BYTES);
                    r[dst] = if field == 0 {
                        slots[slot].0
                    } else {
                        slots[slot].1
                    };
                }
                0x63 => {
                    let a = (addr(r[dst]) - STACK) as usize;
                    stack[a..a + 4].copy_from_slice(&(r[src] as u32).to_ne_bytes());
                }
                0xdb => {
                    let a = addr(r[dst]) - VALUE;
                    assert_eq!(a as usize % SLOT_BYTES, 0, "adds to assigned only");
                    slots[a as usize / SLOT_BYTES].0 += r[src];
                }
                0x18 => {
                    r[dst] = if src == 2 {
                        VALUE + prog[pc].imm as u64
                    } else {
                        0xdead
                    };
                    pc += 1;
                }
                0x35 => {
                    if r[dst] >= i.imm as u64 {
                        pc += i.off as usize
                    }
                }
                0x55 => {
                    if r[dst] != i.imm as u64 {
                        pc += i.off as usize
                    }
                }
                0x85 => {
                    assert_eq!(i.imm, HELPER_SK_SELECT_REUSEPORT);
                    assert_eq!(r[1], CTX);
                    assert_eq!(r[2], 0xdead, "the sockarray");
                    let a = (r[3] - STACK) as usize;
                    selected = Some(u32::from_ne_bytes(stack[a..a + 4].try_into().unwrap()));
                    r[0] = if select_ok { 0 } else { (-22i64) as u64 };
                    for reg in &mut r[1..=5] {
                        *reg = 0xbad; // clobbered by the call
                    }
                }
                0x95 => return (r[0], selected),
                other => panic!("unexpected opcode {other:#x} at {}", pc - 1),
            }
        }
    }

    #[test]
    fn idle_slots_are_taken_from_the_hash_onwards() {
        let prog = least_loaded_program(4, 3, 4);
        for hash in 0..8u32 {
            let mut slots = [(0, 0); 4];
            let (ret, key) = run(&prog, hash, &mut slots, true);
            assert_eq!(ret, SK_PASS as u64);
            assert_eq!(key, Some(hash % 4));
            assert_eq!(slots[(hash % 4) as usize].0, 1, "assigned counted");
        }
    }

    #[test]
    fn the_least_loaded_slot_wins_and_ties_go_to_the_first_after_start() {
        let prog = least_loaded_program(4, 3, 4);
        // loads 3, 1, 2, 1: slots 1 and 3 tie.
        let base = [(5, 2), (7, 6), (2, 0), (9, 8)];
        let mut s = base;
        assert_eq!(run(&prog, 0, &mut s, true).1, Some(1));
        let mut s = base;
        assert_eq!(run(&prog, 2, &mut s, true).1, Some(3));
        let mut s = base;
        assert_eq!(run(&prog, 3, &mut s, true).1, Some(3));
        let mut s = base;
        assert_eq!(run(&prog, 1, &mut s, true).1, Some(1));
    }

    #[test]
    fn a_stopped_slot_gets_nothing_until_it_catches_up() {
        let prog = least_loaded_program(4, 3, 4);
        let mut slots = [(0u64, 0u64); 4];
        let mut got = [0u32; 4];
        // Slot 2's worker finishes nothing; the others finish each at once.
        for hash in 0..40u32 {
            let (_, key) = run(&prog, hash.wrapping_mul(2654435761), &mut slots, true);
            let k = key.unwrap() as usize;
            got[k] += 1;
            if k != 2 {
                slots[k].1 += 1;
            }
        }
        assert!(got[2] <= 1, "{got:?}");
        assert_eq!(got.iter().sum::<u32>(), 40);
    }

    #[test]
    fn negative_loads_still_order() {
        // A correction may leave a load below zero for a moment.
        let prog = least_loaded_program(3, 3, 4);
        let mut s = [(0, 0), (0, 2), (1, 0)];
        assert_eq!(run(&prog, 0, &mut s, true).1, Some(1));
    }

    #[test]
    fn a_failed_selection_passes_without_counting() {
        let prog = least_loaded_program(2, 3, 4);
        let mut slots = [(0, 0); 2];
        let (ret, key) = run(&prog, 1, &mut slots, false);
        assert_eq!((ret, key), (SK_PASS as u64, Some(1)));
        assert_eq!(
            slots,
            [(0, 0); 2],
            "nothing assigned: the kernel's hash decides"
        );
    }

    /// The kernel's verifier accepts the program, for small and large N
    /// (the suite runs as root; elsewhere this says so and checks nothing).
    #[test]
    fn the_kernel_loads_it() {
        use lab_common::sys::ebpf::*;
        use std::os::fd::AsRawFd;
        if std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            !s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        }) {
            eprintln!("not root: the program is not loaded into the kernel");
            return;
        }
        for n in [1usize, 2, 4, 64, 1024] {
            let socks =
                create_map(MAP_TYPE_REUSEPORT_SOCKARRAY, 4, 8, n as u32, 0, "t_socks").unwrap();
            let load = create_map(
                MAP_TYPE_ARRAY,
                4,
                (n * SLOT_BYTES) as u32,
                1,
                F_MMAPABLE,
                "t_load",
            )
            .unwrap();
            let prog = least_loaded_program(n, socks.as_raw_fd(), load.as_raw_fd());
            load_program(
                PROG_TYPE_SK_REUSEPORT,
                ATTACH_SK_REUSEPORT_SELECT,
                &prog,
                "Dual MIT/GPL",
                "t_least_load",
            )
            .unwrap_or_else(|e| {
                panic!(
                    "N = {n}: {}",
                    &e.to_string()[..e.to_string().len().min(3000)]
                )
            });
        }
    }

    #[test]
    fn shape() {
        let one = least_loaded_program(1, 3, 4);
        let eight = least_loaded_program(8, 3, 4);
        // Straight-line but for two forward jumps to the one exit.
        for p in [&one, &eight] {
            let jumps: Vec<usize> = p
                .iter()
                .enumerate()
                .filter(|(_, i)| i.code & 0x07 == 0x05 && i.code != 0x85 && i.code != 0x95)
                .map(|(at, i)| at + 1 + i.off as usize)
                .collect();
            assert_eq!(jumps.len(), 2);
            assert!(jumps.iter().all(|&t| t == p.len() - 2));
            assert_eq!(p[p.len() - 1].code, 0x95);
            assert_eq!(p.iter().filter(|i| i.code == 0x85).count(), 1);
            assert_eq!(p.iter().filter(|i| i.code == 0xdb).count(), 1);
        }
        // Linear in N.
        assert_eq!(eight.len() - one.len(), 7 * 24);
    }
}
