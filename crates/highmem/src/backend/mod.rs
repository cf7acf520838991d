//! Memory backends: where the "physical" frames live and how a virtual mapping of them is made.
//!
//! This module (with its children) is the only place in the workspace that contains `unsafe` code.
//! Everything that turns a raw address into a slice, or asks the operating system for a mapping,
//! lives here; the strategies in [`crate::strategy`] only call the safe functions below.
//!
//! * [`Store::Heap`]: all frames sit in one heap allocation and are always addressable, like the
//!   64-bit direct map. No system calls; runs under Miri.
//! * [`Store::Memfd`]: the emulated highmem backend. Frames live in a `memfd`. A linear mapping of
//!   the whole file stands for the kernel's direct map (used only by `page_address()`-style
//!   access); every other mapping is a real `mmap(MAP_FIXED)` of the frames into a per-thread
//!   window and a real removal afterwards, so a map/unmap costs page-table and TLB work as a
//!   kmap on a 32-bit highmem kernel does.

mod heap;
#[cfg(unix)]
mod memfd;

pub(crate) use heap::HeapStore;
#[cfg(unix)]
pub(crate) use memfd::{MemfdStore, VaRegion};

use core::ptr::NonNull;

/// The storage of all frames of one [`crate::PhysMem`].
#[derive(Debug)]
pub(crate) enum Store {
    /// Heap backend: every frame always mapped.
    Heap(HeapStore),
    /// Emulated highmem backend: frames in a memfd.
    #[cfg(unix)]
    Memfd(MemfdStore),
}

impl Store {
    /// Address of byte `phys` of "physical memory" in the linear (direct) map.
    pub(crate) fn linear(&self, phys: usize) -> NonNull<u8> {
        match self {
            Store::Heap(h) => h.at(phys),
            #[cfg(unix)]
            Store::Memfd(m) => m.at(phys),
        }
    }

    /// Total bytes of physical memory.
    pub(crate) fn len(&self) -> usize {
        match self {
            Store::Heap(h) => h.len(),
            #[cfg(unix)]
            Store::Memfd(m) => m.len(),
        }
    }

    /// True for the emulated highmem backend (mappings cost real system calls).
    pub(crate) fn is_highmem(&self) -> bool {
        !matches!(self, Store::Heap(_))
    }
}

/// A shared view of `len` bytes at `ptr`.
///
/// # Safety
/// `ptr` must come from a live mapping made by this module (the linear map, a [`VaRegion`]
/// slot, a vmap area or a bounce buffer) that stays valid for `len` bytes for all of `'a`, and
/// no exclusive reference to those bytes may exist during `'a`.
pub(crate) unsafe fn slice_at<'a>(ptr: NonNull<u8>, len: usize) -> &'a [u8] {
    // SAFETY: validity and the absence of `&mut` aliases for `'a` are the caller's contract.
    unsafe { core::slice::from_raw_parts(ptr.as_ptr(), len) }
}

/// An exclusive view of `len` bytes at `ptr`.
///
/// # Safety
/// As for [`slice_at`], and in addition no other reference to those bytes may exist during `'a`.
pub(crate) unsafe fn slice_at_mut<'a>(ptr: NonNull<u8>, len: usize) -> &'a mut [u8] {
    // SAFETY: validity and exclusivity for `'a` are the caller's contract.
    unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), len) }
}
