//! Memory shared by the master and its workers across fork.
//!
//! An anonymous `MAP_SHARED` mapping made before fork is the same physical
//! memory in every process that inherits it: the lab keeps per-worker counters
//! and the accept mutex there, as nginx does (`ngx_shmtx_t` and its
//! statistics live in shared memory made by the master).

use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicI32, AtomicU64};

use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};

/// Types that may live in the shared mapping.
///
/// # Safety
/// An all-zero bit pattern must be a valid value of the type, and every field
/// must be safe to change from several processes at once (atomics only), since
/// other processes write it without Rust's knowledge.
pub unsafe trait SharedZeroed: Sync {}

// SAFETY: all-zero is the value 0, and an atomic is made to be changed from
// several threads (processes, through the shared mapping) at once.
unsafe impl SharedZeroed for AtomicU64 {}

// SAFETY: as for `AtomicU64`.
unsafe impl SharedZeroed for AtomicI32 {}

/// Declares a struct that may live in the shared mapping, and implements
/// [`SharedZeroed`] for it: every field's type must be [`SharedZeroed`]
/// itself (an atomic above, or another struct declared this way), which the
/// compiler checks. A struct with named fields or a one-field tuple struct:
///
/// ```text
/// shared_struct! {
///     /// One counter per worker.
///     #[repr(C, align(64))]
///     pub struct Counters {
///         /// Requests served.
///         pub requests: AtomicU64,
///     }
/// }
/// ```
macro_rules! shared_struct {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fattr:meta])* $fvis:vis $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        $vis struct $name {
            $( $(#[$fattr])* $fvis $field : $fty ),*
        }
        $crate::sys::shm::shared_struct!(@impl $name; $($fty),*);
    };
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident ( $(#[$fattr:meta])* $fvis:vis $fty:ty ) ;
    ) => {
        $(#[$attr])*
        $vis struct $name ( $(#[$fattr])* $fvis $fty );
        $crate::sys::shm::shared_struct!(@impl $name; $fty);
    };
    (@impl $name:ident; $($fty:ty),*) => {
        // SAFETY: a struct is valid at all-zero bytes when each of its fields
        // is (padding bytes may hold anything), and it is safe to change from
        // several processes at once when each field is: both hold because
        // every field's type is `SharedZeroed`, which the `where` clause
        // checks (a field of any other type does not compile).
        unsafe impl $crate::sys::shm::SharedZeroed for $name
        where
            $($fty: $crate::sys::shm::SharedZeroed,)*
        {
        }
    };
}
pub(crate) use shared_struct;

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
