//! Emulated highmem backend: frames in a memfd, mapped on demand with real `mmap` calls.

use core::ptr::NonNull;

use super::Span;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Frames stored in an anonymous memory file.
///
/// # Invariants
/// `linear` is a `MAP_SHARED` mapping of the whole file (`len` bytes), live until `drop`.
#[derive(Debug)]
pub(crate) struct MemfdStore {
    fd: OwnedFd,
    linear: NonNull<u8>,
    len: usize,
}

// SAFETY: the store hands out addresses only; exclusive access to frames is decided by `Folio`
// ownership, and the file descriptor and mapping may be used from any thread.
unsafe impl Send for MemfdStore {}
// SAFETY: see `Send`.
unsafe impl Sync for MemfdStore {}

fn last_os_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A new read-write shared mapping of `len` bytes of `fd` at `off`, at an address the kernel
/// chooses.
fn map_shared_anywhere(fd: &OwnedFd, len: usize, off: libc::off_t, what: &str) -> io::Result<NonNull<u8>> {
    // SAFETY: a new mapping at a kernel-chosen address replaces no existing mapping, so no
    // reference anywhere is invalidated; `fd` is a valid open descriptor.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            off,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(last_os_error(what));
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(|| last_os_error(what))
}

impl MemfdStore {
    /// Create a memfd of `len` bytes and its linear (direct-map) mapping.
    pub(crate) fn new(len: usize) -> io::Result<Self> {
        let name = c"btrfs-compress-highmem";
        // SAFETY: `name` is a valid NUL-terminated string; flags are a valid combination.
        let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(last_os_error("memfd_create"));
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size =
            libc::off_t::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "memfd too large"))?;
        // SAFETY: `fd` is a valid memfd owned by us.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(last_os_error("ftruncate"));
        }
        let linear = map_shared_anywhere(&fd, len, 0, "mmap linear map")?;
        // INVARIANT: `linear` maps all `len` bytes of `fd`.
        Ok(Self { fd, linear, len })
    }

    pub(crate) fn at(&self, off: usize) -> NonNull<u8> {
        assert!(off <= self.len, "physical address out of range");
        // SAFETY: `off` is within (or one past) the linear mapping, checked above.
        unsafe { NonNull::new_unchecked(self.linear.as_ptr().add(off)) }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Map `len` bytes of frames at physical offset `phys` at an address the kernel chooses
    /// (models `vmap()`). One system call.
    pub(crate) fn map_anywhere(&self, phys: usize, len: usize) -> io::Result<Span> {
        assert!(phys.checked_add(len).is_some_and(|e| e <= self.len), "frames out of range");
        let off = libc::off_t::try_from(phys).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset"))?;
        // The range lies inside the file (callers pass folio extents).
        map_shared_anywhere(&self.fd, len, off, "mmap (vmap)").map(|p| Span::new(p, len))
    }

    /// Remove a mapping made by [`Self::map_anywhere`], given its span (models the purge of a
    /// lazy `vunmap`). By the crate's invariant ([`Span`]) no view into it is used any more.
    pub(crate) fn unmap_anywhere(&self, area: Span) {
        // SAFETY: `area` is a whole mapping made by `map_anywhere` (the vmap strategies keep its
        // span for this call only) and nothing views it any more.
        let rc = unsafe { libc::munmap(area.ptr.as_ptr().cast(), area.len) };
        debug_assert_eq!(rc, 0, "munmap of a vmap area failed");
    }
}

impl Drop for MemfdStore {
    fn drop(&mut self) {
        // SAFETY: by the invariant `linear` maps `len` bytes and is unmapped only here; every
        // `Folio` (which holds an `Arc` to the store) is gone, so no reference points into it.
        unsafe { libc::munmap(self.linear.as_ptr().cast(), self.len) };
    }
}

/// A reserved range of virtual addresses (a per-thread kmap window or the global pkmap area).
///
/// Reserved as `PROT_NONE` anonymous memory; frames are mapped into it with `MAP_FIXED` and
/// removed by mapping `PROT_NONE` anonymous memory over them again, so the reservation is never
/// given up while the region lives (a plain `munmap` would leave a hole another thread's
/// allocation could fill and a later `MAP_FIXED` would then clobber).
///
/// # Invariants
/// `base` is the start of a private mapping of `len` bytes owned by this value.
#[derive(Debug)]
pub(crate) struct VaRegion {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is just a range of addresses; the pool that shares one between threads
// serialises all changes to it under its lock.
unsafe impl Send for VaRegion {}
// SAFETY: see `Send`.
unsafe impl Sync for VaRegion {}

impl VaRegion {
    /// Reserve `len` bytes of address space.
    pub(crate) fn reserve(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh private PROT_NONE mapping at a kernel-chosen address.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_os_error("mmap window reservation"));
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| last_os_error("mmap"))?;
        Ok(Self { base, len })
    }

    /// The span of `len` bytes at `off` of the region (whatever is mapped there now).
    pub(crate) fn span(&self, off: usize, len: usize) -> Span {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.len), "window offset out of range");
        Span::new(self.base, self.len).sub(off, len)
    }

    /// Map `len` bytes of `store` at physical offset `phys` at `off` inside the region. One
    /// system call. Returns the span of the mapping.
    pub(crate) fn map(&self, store: &MemfdStore, off: usize, phys: usize, len: usize) -> io::Result<Span> {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.len), "window slot out of range");
        assert!(phys.checked_add(len).is_some_and(|e| e <= store.len), "frame out of range");
        let foff = libc::off_t::try_from(phys).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset"))?;
        // SAFETY: the target range lies inside our own reservation (checked above), so MAP_FIXED
        // replaces only pages of this region; callers ensure no reference points into that slot
        // (it is free on the slot stack / pool).
        let p = unsafe {
            libc::mmap(
                self.base.as_ptr().add(off).cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                store.fd.as_raw_fd(),
                foff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_os_error("mmap(MAP_FIXED) into kmap window"));
        }
        NonNull::new(p.cast::<u8>()).map(|p| Span::new(p, len)).ok_or_else(|| last_os_error("mmap"))
    }

    /// Remove whatever is mapped at `off..off+len` of the region (the `kunmap` PTE clear plus
    /// TLB invalidation). One system call. Called for a slot or pool entry whose guard is gone
    /// (by the crate's invariant, [`Span`], no view into it is used any more).
    pub(crate) fn clear(&self, off: usize, len: usize) {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.len), "window slot out of range");
        // SAFETY: inside our reservation (checked above); the slot or entry has no guard, so
        // nothing views the range.
        let p = unsafe {
            libc::mmap(
                self.base.as_ptr().add(off).cast(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        debug_assert!(p != libc::MAP_FAILED, "re-reserving a kmap slot failed");
    }
}

impl Drop for VaRegion {
    fn drop(&mut self) {
        // SAFETY: the region is ours (type invariant) and its owner is being dropped, so no
        // mapping guard that points into it is alive.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
