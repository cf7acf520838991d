//! Heap backend: one zeroed, page-aligned allocation holding every frame.

use core::ptr::NonNull;
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// All frames in one allocation, always addressable (the 64-bit direct map).
///
/// # Invariants
/// `ptr` points to an allocation of `layout`, live until `drop`.
#[derive(Debug)]
pub(crate) struct HeapStore {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the store is plain memory; which thread may touch which bytes is decided by ownership
// of `Folio` handles (one owner per frame), so sharing the base pointer between threads is sound.
unsafe impl Send for HeapStore {}
// SAFETY: see `Send`; `&HeapStore` only hands out addresses, never references.
unsafe impl Sync for HeapStore {}

impl HeapStore {
    /// Allocate `len` zeroed bytes. The alignment is kept at 16 bytes on purpose: the system
    /// allocator then uses `calloc`, whose large allocations are fresh zero pages touched only
    /// when used; a page-aligned `alloc_zeroed` would memset (and fault in) the whole store.
    /// Nothing in the heap backend needs page-aligned frames.
    pub(crate) fn new(len: usize) -> std::io::Result<Self> {
        let layout = Layout::from_size_align(len.max(16), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `layout` has a non-zero size (at least 16 bytes).
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::OutOfMemory, "frame store allocation failed"))?;
        // INVARIANT: `ptr` was just allocated with `layout`.
        Ok(Self { ptr, layout })
    }

    pub(crate) fn at(&self, off: usize) -> NonNull<u8> {
        assert!(off <= self.layout.size(), "physical address out of range");
        // SAFETY: `off` is within (or one past) the allocation, checked above.
        unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(off)) }
    }

    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for HeapStore {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `ptr` was allocated with `layout` and not freed yet.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}
