//! eBPF through `bpf(2)`: maps, loading a program, and attaching it to a
//! `SO_REUSEPORT` group; no loader library and no compiler.
//!
//! What this module does, each with the kernel's own interface (constants
//! from `include/uapi/linux/bpf.h`):
//! - [`create_map`]: `BPF_MAP_CREATE`, e.g. a `BPF_MAP_TYPE_REUSEPORT_SOCKARRAY`
//!   (a listener per index) or a one-element `BPF_MAP_TYPE_ARRAY` created with
//!   `BPF_F_MMAPABLE` that [`map_shared_array`] maps into memory, so that
//!   user space reads and writes its value with plain atomics, no system call;
//! - [`update_elem`] and [`lookup_elem`]: `BPF_MAP_UPDATE_ELEM`,
//!   `BPF_MAP_LOOKUP_ELEM` (on a sockarray, an update takes a socket's
//!   descriptor and a lookup returns that socket's cookie);
//! - [`load_program`]: `BPF_PROG_LOAD`; a program the verifier refuses comes
//!   back as an error that carries the verifier's log;
//! - [`attach_reuseport_ebpf`], with `SO_ATTACH_REUSEPORT_EBPF`;
//! - [`socket_cookie`]: `SO_COOKIE`, the socket's id in the kernel;
//! - for tests and tools, [`program_ids`] (`BPF_PROG_GET_NEXT_ID`) and
//!   [`map_fd_by_id`] (`BPF_MAP_GET_FD_BY_ID`).
//!
//! Everything here needs `CAP_BPF` (or root) unless the administrator allows
//! unprivileged BPF, which `kernel.unprivileged_bpf_disabled` does not by
//! default; and a program of type `SK_REUSEPORT` needs privileges in any case.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::mman::{mmap, MapFlags, ProtFlags};

use super::shm::SharedZeroed;
use super::syscall;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;

/// `BPF_MAP_TYPE_ARRAY`.
pub const MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_REUSEPORT_SOCKARRAY`.
pub const MAP_TYPE_REUSEPORT_SOCKARRAY: u32 = 20;
/// `BPF_F_MMAPABLE`: an array map user space may `mmap`.
pub const F_MMAPABLE: u32 = 1 << 10;
/// `BPF_PROG_TYPE_SK_REUSEPORT`.
pub const PROG_TYPE_SK_REUSEPORT: u32 = 21;
/// `BPF_SK_REUSEPORT_SELECT`: the attach type of a program that selects a
/// listener for a new connection (not for a migrated one).
pub const ATTACH_SK_REUSEPORT_SELECT: u32 = 39;
/// `BPF_ANY`: create the element or replace it.
const BPF_ANY: u64 = 0;
/// Size of the verifier log buffer asked for when a load fails.
const LOG_SIZE: usize = 1 << 20;

/// `union bpf_attr` for `BPF_MAP_CREATE` (the fields up to `map_name`).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for the element commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for `BPF_PROG_LOAD` (the fields up to `expected_attach_type`).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for the `*_GET_NEXT_ID` and `*_GET_FD_BY_ID` commands.
#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Calls `bpf(cmd, attr, size_of(attr))`.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live, initialised repr(C) struct laid out as the
    // kernel's `union bpf_attr` for `cmd`, and its size is passed with it;
    // every pointer it holds (keys, values, instructions, the log) points at
    // memory the caller keeps alive for the call and sized as the kernel
    // expects for that command.
    syscall!(syscall(
        libc::SYS_bpf,
        cmd,
        (attr as *mut T).cast::<libc::c_void>(),
        std::mem::size_of::<T>() as libc::c_uint,
    ))
}

/// Takes ownership of a descriptor the kernel has just returned.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// An object name as the kernel takes it: at most 15 bytes and a NUL.
fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// Creates a map. `name` is for people (`bpftool map`); 15 bytes are kept.
pub fn create_map(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        map_name: object_name(name),
        ..Default::default()
    };
    bpf(BPF_MAP_CREATE, &mut attr).map(owned)
}

/// Sets the element at `key` (a `u32` index) to `value` (`BPF_ANY`).
pub fn update_elem(map: BorrowedFd<'_>, key: u32, value: &[u8]) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: value.as_ptr() as u64,
        flags: BPF_ANY,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Reads the element at `key` into `value`, which must be the map's value
/// size. `ENOENT`: no element there (an empty sockarray slot).
pub fn lookup_elem(map: BorrowedFd<'_>, key: u32, value: &mut [u8]) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map(drop)
}

/// A sockarray element's socket cookie (what a lookup from user space
/// returns), or `None` for an empty slot.
pub fn sockarray_cookie(map: BorrowedFd<'_>, key: u32) -> io::Result<Option<u64>> {
    let mut value = [0u8; 8];
    match lookup_elem(map, key, &mut value) {
        Ok(()) => Ok(Some(u64::from_ne_bytes(value))),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One eBPF instruction (`struct bpf_insn`): opcode, destination register
/// (low nibble) and source register (high nibble), offset, immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// `dst_reg | src_reg << 4`.
    pub regs: u8,
    /// Signed offset (jumps, memory accesses).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

/// Loads `insns` as a program of `prog_type` with `expected_attach_type`.
/// A refusal comes back with the verifier's log (its last 4000 characters).
pub fn load_program(
    prog_type: u32,
    expected_attach_type: u32,
    insns: &[Insn],
    license: &str,
    name: &str,
) -> io::Result<OwnedFd> {
    let license = std::ffi::CString::new(license).map_err(io::Error::other)?;
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: u32::try_from(insns.len()).map_err(io::Error::other)?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: object_name(name),
        expected_attach_type,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(first) => {
            // Again with the log, to say why.
            let mut log = vec![0u8; LOG_SIZE];
            attr.log_level = 1;
            attr.log_size = LOG_SIZE as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            match bpf(BPF_PROG_LOAD, &mut attr) {
                Ok(fd) => Ok(owned(fd)),
                Err(_) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    let tail: String = {
                        let chars: Vec<char> = text.trim_end().chars().collect();
                        chars[chars.len().saturating_sub(4000)..].iter().collect()
                    };
                    Err(io::Error::new(
                        first.kind(),
                        format!("bpf(BPF_PROG_LOAD): {first}; verifier log: {tail}"),
                    ))
                }
            }
        }
    }
}

/// Attaches the program `prog` to the reuseport group of `socket`
/// (`SO_ATTACH_REUSEPORT_EBPF`); the group holds a reference to it until the
/// group's last socket closes.
pub fn attach_reuseport_ebpf(socket: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let fd: libc::c_int = prog.as_raw_fd();
    // SAFETY: the option value is a live c_int of the size passed; the kernel
    // only reads it.
    syscall!(setsockopt(
        socket.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_ATTACH_REUSEPORT_EBPF,
        (&fd as *const libc::c_int).cast(),
        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
    ))?;
    Ok(())
}

/// The socket's cookie (`SO_COOKIE`): the id the kernel gives a socket,
/// which a sockarray lookup and `ss -e` (`sk:`) show too.
pub fn socket_cookie(socket: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie and len are live and sized as passed; the kernel writes
    // at most len bytes.
    syscall!(getsockopt(
        socket.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_COOKIE,
        (&mut cookie as *mut u64).cast(),
        &mut len,
    ))?;
    Ok(cookie)
}

/// The length of a listening TCP socket's accept queue: connections whose
/// handshake is complete and that nobody has accepted yet. `TCP_INFO` on a
/// socket in `LISTEN` state puts `sk_ack_backlog` in `tcpi_unacked` (and the
/// backlog limit in `tcpi_sacked`; see `tcp_get_info`).
pub fn accept_queue_len(listener: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: tcp_info is plain integers; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len are live and sized as passed; the kernel writes at
    // most len bytes.
    syscall!(getsockopt(
        listener.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        (&mut info as *mut libc::tcp_info).cast(),
        &mut len,
    ))?;
    // TCP_LISTEN in the kernel's enum of TCP states.
    const TCP_LISTEN: u8 = 10;
    if info.tcpi_state != TCP_LISTEN {
        return Err(io::Error::other("accept_queue_len: not a listening socket"));
    }
    Ok(info.tcpi_unacked)
}

/// Maps the one value of an array map created with [`F_MMAPABLE`] and
/// `max_entries == 1`, as `count` `T`s, shared with every process forked
/// afterwards (the mapping is `MAP_SHARED`, and it stays valid after the
/// map's descriptor is closed: it holds a reference to the map).
///
/// The mapping is never unmapped, as with [`super::shm::map_shared_zeroed`].
pub fn map_shared_array<T: SharedZeroed>(
    map: BorrowedFd<'_>,
    count: usize,
) -> io::Result<&'static [T]> {
    let bytes = std::mem::size_of::<T>()
        .checked_mul(count)
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| io::Error::other("empty map mapping"))?;
    assert!(
        std::mem::align_of::<T>() <= 4096,
        "shared type needs more than page alignment"
    );
    // SAFETY: a new shared mapping of the map's value aliases no Rust
    // memory; the kernel refuses (EINVAL/EPERM) a map that is not a
    // mmapable array or is smaller than `bytes`.
    let ptr = unsafe {
        mmap(
            None,
            bytes,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            map,
            0,
        )
    }?;
    // SAFETY: the memory is page-aligned (enough for T, checked above), was
    // zeroed by the kernel when the map was created (a valid T by the
    // SharedZeroed contract), is `count` elements long, never unmapped (so
    // 'static holds), and is only accessed through atomics, here and by the
    // program (atomic adds).
    Ok(unsafe { std::slice::from_raw_parts(ptr.as_ptr().cast::<T>(), count) })
}

/// The ids of every BPF program loaded in the system now (needs `CAP_SYS_ADMIN`).
pub fn program_ids() -> io::Result<Vec<u32>> {
    let mut ids = Vec::new();
    let mut attr = IdAttr::default();
    loop {
        match bpf(BPF_PROG_GET_NEXT_ID, &mut attr) {
            Ok(_) => {
                ids.push(attr.next_id);
                attr.id = attr.next_id;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(ids),
            Err(e) => return Err(e),
        }
    }
}

/// A descriptor for the map with id `id` (needs `CAP_SYS_ADMIN`).
pub fn map_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = IdAttr {
        id,
        ..Default::default()
    };
    bpf(BPF_MAP_GET_FD_BY_ID, &mut attr).map(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_layouts_match_the_kernel() {
        // Offsets of union bpf_attr's fields for these commands.
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 44);
        assert_eq!(std::mem::size_of::<ElemAttr>(), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn tcp_info_of_a_listener_gives_its_accept_queue() {
        use std::os::fd::AsFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(accept_queue_len(listener.as_fd()).unwrap(), 0);
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // On loopback the handshake is complete when connect returns.
        assert_eq!(accept_queue_len(listener.as_fd()).unwrap(), 3);
        drop(listener.accept().unwrap());
        assert_eq!(accept_queue_len(listener.as_fd()).unwrap(), 2);
        assert!(
            accept_queue_len(clients[0].as_fd()).is_err(),
            "not a listener"
        );
    }

    #[test]
    fn cookies_are_per_socket() {
        use std::os::fd::AsFd;
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (ca, cb) = (
            socket_cookie(a.as_fd()).unwrap(),
            socket_cookie(b.as_fd()).unwrap(),
        );
        assert!(ca != 0 && cb != 0 && ca != cb);
        assert_eq!(socket_cookie(a.as_fd()).unwrap(), ca, "stable");
    }

    #[test]
    fn object_names_keep_fifteen_bytes_and_a_nul() {
        let n = object_name("a_name_longer_than_fifteen");
        assert_eq!(&n[..15], b"a_name_longer_t");
        assert_eq!(n[15], 0);
    }
}
