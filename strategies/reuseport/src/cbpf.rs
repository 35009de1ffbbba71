//! The classic BPF program that picks a reuseport listener by receiving CPU.
//!
//! The kernel selftest `reuseport_bpf_cpu.c` attaches `A = cpu; return A`:
//! the listener at group index i gets the connections received on CPU i, and
//! worker i is pinned to CPU i, so a connection is served on the CPU that
//! received it. This builder generalises it to any set of allowed CPUs and
//! any worker count: the worker at group index p runs on `cpus[p % C]`; a
//! connection received on `cpus[j]` goes to one of the indexes j, j+C, j+2C,
//! ... (chosen with the kernel's random ancillary load when there are several);
//! one received on a CPU without a worker gets an out-of-range index, and the
//! kernel falls back to its 4-tuple hash.

use lab_common::sys::bpf::Instruction;

// Classic BPF opcodes, from libc's copies of linux/filter.h and bpf_common.h.
const fn op(parts: &[u32]) -> u16 {
    let mut code = 0;
    let mut i = 0;
    while i < parts.len() {
        code |= parts[i];
        i += 1;
    }
    code as u16
}
use libc::{
    BPF_A, BPF_ABS, BPF_ADD, BPF_ALU, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_MOD, BPF_MUL, BPF_RET,
    BPF_W,
};
const LD_W_ABS: u16 = op(&[BPF_LD, BPF_W, BPF_ABS]);
const JEQ_K: u16 = op(&[BPF_JMP, BPF_JEQ, BPF_K]);
const RET_K: u16 = op(&[BPF_RET, BPF_K]);
const RET_A: u16 = op(&[BPF_RET, BPF_A]);
const MOD_K: u16 = op(&[BPF_ALU, BPF_MOD, BPF_K]);
const MUL_K: u16 = op(&[BPF_ALU, BPF_MUL, BPF_K]);
const ADD_K: u16 = op(&[BPF_ALU, BPF_ADD, BPF_K]);

const SKF_AD_OFF: i32 = libc::SKF_AD_OFF;
const SKF_AD_CPU: i32 = libc::SKF_AD_CPU;
const SKF_AD_RANDOM: i32 = libc::SKF_AD_RANDOM;

/// Returned for a CPU without a worker: out of range, so the kernel hashes.
pub const NO_LISTENER: u32 = u32::MAX;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> Instruction {
    Instruction { code, jt, jf, k }
}

/// The CPU the worker at group index `position` is pinned to.
pub fn cpu_for_position(cpus: &[usize], position: usize) -> usize {
    cpus[position % cpus.len()]
}

/// Builds the program for `workers` listeners over the allowed `cpus`.
pub fn cpu_program(cpus: &[usize], workers: usize) -> Vec<Instruction> {
    assert!(!cpus.is_empty() && workers > 0);
    let c = cpus.len().min(workers);
    let mut prog = vec![ins(LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_CPU) as u32)];
    for (j, &cpu) in cpus.iter().take(c).enumerate() {
        // Indexes j, j+C, ... below `workers` live on this CPU.
        let here = (workers - j).div_ceil(c);
        let block: Vec<Instruction> = if here == 1 {
            vec![ins(RET_K, 0, 0, j as u32)]
        } else {
            vec![
                ins(LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_RANDOM) as u32),
                ins(MOD_K, 0, 0, here as u32),
                ins(MUL_K, 0, 0, c as u32),
                ins(ADD_K, 0, 0, j as u32),
                ins(RET_A, 0, 0, 0),
            ]
        };
        prog.push(ins(JEQ_K, 0, block.len() as u8, cpu as u32));
        prog.extend(block);
    }
    prog.push(ins(RET_K, 0, 0, NO_LISTENER));
    prog
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the subset of classic BPF the builder emits.
    fn run(prog: &[Instruction], cpu: u32, random: u32) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS if i.k == (SKF_AD_OFF + SKF_AD_CPU) as u32 => a = cpu,
                LD_W_ABS if i.k == (SKF_AD_OFF + SKF_AD_RANDOM) as u32 => a = random,
                JEQ_K => pc += if a == i.k { i.jt } else { i.jf } as usize,
                MOD_K => a %= i.k,
                MUL_K => a *= i.k,
                ADD_K => a += i.k,
                RET_K => return i.k,
                RET_A => return a,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn one_worker_per_cpu_is_the_kernel_selftest_mapping() {
        let prog = cpu_program(&[0, 1], 2);
        assert_eq!(run(&prog, 0, 7), 0);
        assert_eq!(run(&prog, 1, 7), 1);
        assert_eq!(
            run(&prog, 5, 7),
            NO_LISTENER,
            "CPU without a worker falls back to the hash"
        );
    }

    #[test]
    fn sparse_cpu_ids_map_to_dense_indexes() {
        let prog = cpu_program(&[4, 6], 2);
        assert_eq!(run(&prog, 4, 0), 0);
        assert_eq!(run(&prog, 6, 0), 1);
        assert_eq!(cpu_for_position(&[4, 6], 1), 6);
    }

    #[test]
    fn more_workers_than_cpus_spread_over_the_workers_of_that_cpu() {
        let cpus = [0, 1];
        let prog = cpu_program(&cpus, 5); // CPU 0: indexes 0, 2, 4; CPU 1: 1, 3
        let on0: std::collections::BTreeSet<u32> = (0..30).map(|r| run(&prog, 0, r)).collect();
        let on1: std::collections::BTreeSet<u32> = (0..30).map(|r| run(&prog, 1, r)).collect();
        assert_eq!(on0.into_iter().collect::<Vec<_>>(), [0, 2, 4]);
        assert_eq!(on1.into_iter().collect::<Vec<_>>(), [1, 3]);
        for p in 0..5 {
            assert_eq!(cpu_for_position(&cpus, p), p % 2);
        }
    }

    #[test]
    fn fewer_workers_than_cpus_use_the_first_cpus() {
        let prog = cpu_program(&[0, 1, 2, 3], 2);
        assert_eq!(run(&prog, 1, 0), 1);
        assert_eq!(run(&prog, 2, 0), NO_LISTENER);
    }
}
