//! Memory shared by the master and its workers across fork.
//!
//! An anonymous `MAP_SHARED` mapping made before fork is the same physical
//! memory in every process that inherits it: the lab keeps per-worker counters
//! and the accept mutex there, as nginx does (`ngx_shmtx_t` and its
//! statistics live in shared memory made by the master).

use std::io;
use std::num::NonZeroUsize;

use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};

/// Types that may live in the shared mapping.
///
/// # Safety
/// An all-zero bit pattern must be a valid value of the type, and every field
/// must be safe to change from several processes at once (atomics only), since
/// other processes write it without Rust's knowledge.
pub unsafe trait SharedZeroed: Sync {}

/// Maps `count` zeroed `T`s shared with every child forked afterwards.
///
/// The mapping is never unmapped: it lives as long as the process (the master
/// and the workers use it until they exit), so handing out `'static`
/// references is sound.
pub fn map_shared_zeroed<T: SharedZeroed>(count: usize) -> io::Result<&'static [T]> {
    let bytes = std::mem::size_of::<T>()
        .checked_mul(count)
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| io::Error::other("empty shared mapping"))?;
    // SAFETY: an anonymous mapping aliases no existing memory; the kernel
    // returns page-aligned, zero-filled memory of at least `bytes` bytes.
    let ptr = unsafe {
        mmap_anonymous(
            None,
            bytes,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )
    }?;
    assert!(
        std::mem::align_of::<T>() <= 4096,
        "shared type needs more than page alignment"
    );
    // SAFETY: the memory is page-aligned (enough for T, checked above), zeroed
    // (a valid T by the SharedZeroed contract), `count` elements long, never
    // unmapped (so 'static holds), and only accessed through atomics.
    Ok(unsafe { std::slice::from_raw_parts(ptr.as_ptr().cast::<T>(), count) })
}
