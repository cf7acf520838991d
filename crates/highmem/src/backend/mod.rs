//! Memory backends: where the "physical" frames live and how a virtual mapping of them is made.
//!
//! This module (with its children) is the only place in the workspace that contains `unsafe` code
//! (the crate root denies it everywhere else). Everything that turns an address into a slice
//! ([`Span`]), or asks the operating system for a mapping, lives here; the strategies in
//! [`crate::strategy`], the pool and the folios only call the safe functions below.
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

/// The address and length of bytes this module mapped: part of the linear map, a window slot, a
/// vmap area, a pool entry, or a bounce buffer. Spans are made only in this module (or from a
/// real slice, [`Span::of_buffer`]), and they are the only way the crate turns a mapping into a
/// slice ([`Span::bytes`], [`Span::bytes_mut`]).
///
/// # The crate's invariant
/// The rest of the crate keeps a span no longer than its mapping lives and takes an exclusive
/// view only where it holds the pages exclusively: the guards of [`crate::strategy`] own the
/// span of their mapping and release the mapping only when they are dropped; a `MapMut` holds
/// `&mut FolioVec`, a `MapRef` `&FolioVec`; bounce buffers and vmap areas outlive the guards
/// that view them. Those rules are what the `unsafe` blocks below rely on; `#![deny(unsafe_code)]`
/// keeps every other module from making views of its own.
#[derive(Debug)]
pub(crate) struct Span {
    ptr: NonNull<u8>,
    len: usize,
}

impl Span {
    /// A span of a mapping this module just made.
    fn new(ptr: NonNull<u8>, len: usize) -> Self {
        Self { ptr, len }
    }

    /// The bytes of a buffer the caller keeps alive (and unmoved) while the span is used.
    pub(crate) fn of_buffer(buf: &mut [u8]) -> Self {
        Self { ptr: NonNull::from(&mut *buf).cast(), len: buf.len() }
    }

    /// Bytes in the span.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The `len` bytes at `off` of this span.
    pub(crate) fn sub(&self, off: usize, len: usize) -> Self {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.len), "span {off}+{len} past {}", self.len);
        let ptr = NonNull::new(self.ptr.as_ptr().wrapping_add(off)).expect("inside a mapping");
        Self { ptr, len }
    }

    /// A shared view of the span.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the span was made from a live mapping of `len` bytes, which by the crate's
        // invariant outlives it; no exclusive view of those bytes exists while the pages are
        // borrowed shared.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Read the byte just past the span, as a library handed a longer buffer than was mapped
    /// would. Used only for a kmap_local slot of the emulated-highmem backend, whose next byte
    /// is `PROT_NONE` reserved window: the read faults and the process gets SIGSEGV, which is
    /// the point ([`crate::FaultPolicy::Trap`]). Returns only if something is mapped there.
    #[cfg(unix)]
    pub(crate) fn read_past_end(&self) -> u8 {
        let p = self.ptr.as_ptr().wrapping_add(self.len);
        // SAFETY: a raw volatile read that forms no reference. The address lies inside the
        // slot window this crate reserved (each slot is `MAX_RANGE_BYTES` of virtual space, of
        // which a kmap_local mapping fills one page), so it is either a page of that window
        // mapped by this thread or `PROT_NONE`; the latter traps with SIGSEGV before any value
        // is produced, the deliberate model of the kernel's page fault.
        unsafe { core::ptr::read_volatile(p) }
    }

    /// An exclusive view of the span.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; exclusive because the holder of this span holds the pages (or
        // the bounce buffer) exclusively, by the crate's invariant.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// The bytes of `folio` through the linear map (`folio_address()`).
pub(crate) fn folio_bytes(folio: &crate::Folio) -> &[u8] {
    let (phys, len) = (folio.phys_off(), folio.size());
    let ptr = folio.store().span(phys, len).ptr;
    // SAFETY: the linear map covers the folio's frames (checked by `span`) for as long as the
    // folio (which holds its store) lives; the allocator gives each frame one owner, and the folio
    // is borrowed shared, so no exclusive view of its frames exists (by the crate's invariant,
    // write mappings are made through `&mut` of the owning pages).
    unsafe { core::slice::from_raw_parts(ptr.as_ptr(), len) }
}

/// The bytes of `folio`, exclusively: it is borrowed `&mut`.
pub(crate) fn folio_bytes_mut(folio: &mut crate::Folio) -> &mut [u8] {
    let (phys, len) = (folio.phys_off(), folio.size());
    let ptr = folio.store().span(phys, len).ptr;
    // SAFETY: as in `folio_bytes`; the exclusive borrow of the frames' one owner excludes every
    // other view.
    unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), len) }
}

impl Store {
    /// The span of `len` bytes at `phys` in the linear (direct) map.
    pub(crate) fn span(&self, phys: usize, len: usize) -> Span {
        assert!(phys.checked_add(len).is_some_and(|e| e <= self.len()), "frames out of range");
        Span::new(self.linear(phys), len)
    }
}
