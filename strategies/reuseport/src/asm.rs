//! An eBPF instruction encoder: the few instructions the least-loaded
//! program uses, each a function that returns the kernel's `struct bpf_insn`
//! (see the kernel's `Documentation/bpf/standardization/instruction-set.rst`
//! and `include/uapi/linux/bpf.h`). Pure; nothing here talks to the kernel.

use lab_common::sys::ebpf::Insn;

/// A register, `r0` to `r10` (`r10` is the read-only frame pointer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub u8);

/// Return value, and a helper's result.
pub const R0: Reg = Reg(0);
/// First helper argument; the context pointer at entry.
pub const R1: Reg = Reg(1);
/// Second helper argument.
pub const R2: Reg = Reg(2);
/// Third helper argument.
pub const R3: Reg = Reg(3);
/// Fourth helper argument.
pub const R4: Reg = Reg(4);
/// Callee-saved.
pub const R5: Reg = Reg(5);
/// Callee-saved.
pub const R6: Reg = Reg(6);
/// Callee-saved.
pub const R7: Reg = Reg(7);
/// Callee-saved.
pub const R8: Reg = Reg(8);
/// Callee-saved.
pub const R9: Reg = Reg(9);
/// The frame pointer (read only).
pub const R10: Reg = Reg(10);

// Instruction classes.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
// Sizes.
const W: u8 = 0x00;
const DW: u8 = 0x18;
// Modes.
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
const ATOMIC: u8 = 0xc0;
// Sources.
const K: u8 = 0x00;
const X: u8 = 0x08;

/// An arithmetic operation (`BPF_ALU64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alu {
    /// `dst += src`
    Add = 0x00,
    /// `dst -= src`
    Sub = 0x10,
    /// `dst *= src`
    Mul = 0x20,
    /// `dst &= src`
    And = 0x50,
    /// `dst <<= src`
    Lsh = 0x60,
    /// `dst >>= src`, unsigned
    Rsh = 0x70,
    /// `dst %= src` (unsigned)
    Mod = 0x90,
    /// `dst ^= src`
    Xor = 0xa0,
    /// `dst = src`
    Mov = 0xb0,
    /// `dst >>= src`, sign-extending
    Arsh = 0xc0,
}

/// A conditional jump (`BPF_JMP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `==`
    Eq = 0x10,
    /// `>=`, unsigned
    Ge = 0x30,
    /// `!=`
    Ne = 0x50,
}

fn insn(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src.0 << 4) | (dst.0 & 0x0f),
        off,
        imm,
    }
}

/// `dst = dst op imm` on 64 bits.
pub fn alu_imm(op: Alu, dst: Reg, imm: i32) -> Insn {
    insn(ALU64 | K | op as u8, dst, R0, 0, imm)
}

/// `dst = dst op src` on 64 bits.
pub fn alu_reg(op: Alu, dst: Reg, src: Reg) -> Insn {
    insn(ALU64 | X | op as u8, dst, src, 0, 0)
}

/// `dst = imm`.
pub fn mov_imm(dst: Reg, imm: i32) -> Insn {
    alu_imm(Alu::Mov, dst, imm)
}

/// `dst = src`.
pub fn mov_reg(dst: Reg, src: Reg) -> Insn {
    alu_reg(Alu::Mov, dst, src)
}

/// `dst = *(u32 *)(src + off)`, zero-extended.
pub fn load_u32(dst: Reg, src: Reg, off: i16) -> Insn {
    insn(LDX | MEM | W, dst, src, off, 0)
}

/// `dst = *(u64 *)(src + off)`.
pub fn load_u64(dst: Reg, src: Reg, off: i16) -> Insn {
    insn(LDX | MEM | DW, dst, src, off, 0)
}

/// `*(u32 *)(dst + off) = src`.
pub fn store_u32(dst: Reg, off: i16, src: Reg) -> Insn {
    insn(STX | MEM | W, dst, src, off, 0)
}

/// `lock *(u64 *)(dst + off) += src` (`BPF_ATOMIC | BPF_ADD`, formerly `BPF_XADD`).
pub fn atomic_add_u64(dst: Reg, off: i16, src: Reg) -> Insn {
    insn(STX | ATOMIC | DW, dst, src, off, Alu::Add as i32)
}

/// The two instructions of a 64-bit immediate load whose source field says
/// what the immediate is (`BPF_LD | BPF_IMM | BPF_DW`): `pseudo` 1
/// (`BPF_PSEUDO_MAP_FD`) makes `dst` the map whose descriptor is `fd`;
/// `pseudo` 2 (`BPF_PSEUDO_MAP_VALUE`) makes it a pointer `offset` bytes into
/// the value of that one-element array map.
fn ld_imm64(dst: Reg, pseudo: u8, fd: i32, offset: i32) -> [Insn; 2] {
    [
        insn(LD | IMM | DW, dst, Reg(pseudo), 0, fd),
        insn(0, R0, R0, 0, offset),
    ]
}

/// `dst = &map` for a helper's map argument (`BPF_PSEUDO_MAP_FD`).
pub fn ld_map_fd(dst: Reg, fd: i32) -> [Insn; 2] {
    ld_imm64(dst, 1, fd, 0)
}

/// `dst = &value + offset` of a one-element array map (`BPF_PSEUDO_MAP_VALUE`).
pub fn ld_map_value(dst: Reg, fd: i32, offset: i32) -> [Insn; 2] {
    ld_imm64(dst, 2, fd, offset)
}

/// `if dst cond imm goto +off`.
pub fn jump_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Insn {
    insn(JMP | K | cond as u8, dst, R0, off, imm)
}

/// `call helper`.
pub fn call(helper: i32) -> Insn {
    insn(JMP | 0x80, R0, R0, 0, helper)
}

/// `return r0`.
pub fn exit() -> Insn {
    insn(JMP | 0x90, R0, R0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 8 bytes as the kernel reads them (little-endian machine).
    fn bytes(i: Insn) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = i.code;
        b[1] = i.regs;
        b[2..4].copy_from_slice(&i.off.to_le_bytes());
        b[4..8].copy_from_slice(&i.imm.to_le_bytes());
        b
    }

    // Expected encodings as `llvm-objdump -d` prints them for clang's output
    // (the kernel selftests' disassemblies), byte for byte.
    #[test]
    fn known_encodings() {
        // r0 = 1            b7 00 00 00 01 00 00 00
        assert_eq!(bytes(mov_imm(R0, 1)), [0xb7, 0, 0, 0, 1, 0, 0, 0]);
        // r6 = r1           bf 16 00 00 00 00 00 00
        assert_eq!(bytes(mov_reg(R6, R1)), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        // r7 = *(u32 *)(r1 + 32)   61 17 20 00 00 00 00 00
        assert_eq!(
            bytes(load_u32(R7, R1, 32)),
            [0x61, 0x17, 0x20, 0, 0, 0, 0, 0]
        );
        // r2 = *(u64 *)(r9 + 8)    79 92 08 00 00 00 00 00
        assert_eq!(bytes(load_u64(R2, R9, 8)), [0x79, 0x92, 8, 0, 0, 0, 0, 0]);
        // *(u32 *)(r10 - 4) = r1   63 1a fc ff 00 00 00 00
        assert_eq!(
            bytes(store_u32(R10, -4, R1)),
            [0x63, 0x1a, 0xfc, 0xff, 0, 0, 0, 0]
        );
        // lock *(u64 *)(r1 + 0) += r2   db 21 00 00 00 00 00 00
        assert_eq!(
            bytes(atomic_add_u64(R1, 0, R2)),
            [0xdb, 0x21, 0, 0, 0, 0, 0, 0]
        );
        // r7 %= 4           97 07 00 00 04 00 00 00
        assert_eq!(bytes(alu_imm(Alu::Mod, R7, 4)), [0x97, 7, 0, 0, 4, 0, 0, 0]);
        // r3 >>= 63         77 03 00 00 3f 00 00 00
        assert_eq!(
            bytes(alu_imm(Alu::Rsh, R3, 63)),
            [0x77, 3, 0, 0, 63, 0, 0, 0]
        );
        // r3 *= r2          2f 23 00 00 00 00 00 00
        assert_eq!(
            bytes(alu_reg(Alu::Mul, R3, R2)),
            [0x2f, 0x23, 0, 0, 0, 0, 0, 0]
        );
        // r3 s>>= 63        c7 03 00 00 3f 00 00 00
        assert_eq!(
            bytes(alu_imm(Alu::Arsh, R3, 63)),
            [0xc7, 3, 0, 0, 63, 0, 0, 0]
        );
        // r3 -= r2          1f 23 00 00 00 00 00 00
        assert_eq!(
            bytes(alu_reg(Alu::Sub, R3, R2)),
            [0x1f, 0x23, 0, 0, 0, 0, 0, 0]
        );
        // r4 ^= r5          af 54 00 00 00 00 00 00
        assert_eq!(
            bytes(alu_reg(Alu::Xor, R4, R5)),
            [0xaf, 0x54, 0, 0, 0, 0, 0, 0]
        );
        // r1 <<= 6          67 01 00 00 06 00 00 00
        assert_eq!(bytes(alu_imm(Alu::Lsh, R1, 6)), [0x67, 1, 0, 0, 6, 0, 0, 0]);
        // if r0 != 0 goto +3   55 00 03 00 00 00 00 00
        assert_eq!(
            bytes(jump_imm(Cond::Ne, R0, 0, 3)),
            [0x55, 0, 3, 0, 0, 0, 0, 0]
        );
        // if r8 >= 4 goto +5   35 08 05 00 04 00 00 00
        assert_eq!(
            bytes(jump_imm(Cond::Ge, R8, 4, 5)),
            [0x35, 8, 5, 0, 4, 0, 0, 0]
        );
        // call 82           85 00 00 00 52 00 00 00
        assert_eq!(bytes(call(82)), [0x85, 0, 0, 0, 0x52, 0, 0, 0]);
        // exit              95 00 00 00 00 00 00 00
        assert_eq!(bytes(exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn map_references_are_two_instructions() {
        // r2 = map[fd 5]    18 12 00 00 05 00 00 00 00 00 00 00 00 00 00 00
        let [a, b] = ld_map_fd(R2, 5);
        assert_eq!(bytes(a), [0x18, 0x12, 0, 0, 5, 0, 0, 0]);
        assert_eq!(bytes(b), [0; 8]);
        // r8 = &map[fd 6].value + 64: src 2, second imm 64
        let [a, b] = ld_map_value(R8, 6, 64);
        assert_eq!(bytes(a), [0x18, 0x28, 0, 0, 6, 0, 0, 0]);
        assert_eq!(bytes(b), [0, 0, 0, 0, 64, 0, 0, 0]);
    }
}
