//! Pages, folios and the kernel's ways of mapping them, side by side.
//!
//! Models `include/linux/highmem.h`, `include/linux/highmem-internal.h`, `mm/highmem.c` and the
//! `vmap()` part of `mm/vmalloc.c`, as far as btrfs's compression loops use them:
//!
//! * [`PhysMem`] holds "physical" page frames (4, 16 or 64 KiB pages) on one of two
//!   [`Backend`]s: the heap (every frame always addressable, like a 64-bit direct map) or an
//!   emulated highmem whose frames live in a memfd and are mapped on demand with real
//!   `mmap(MAP_FIXED)` calls into a per-thread window.
//! * [`Folio`]s are `2^order` physically contiguous frames with one owner; [`FolioVec`] is a run
//!   of folios standing for a file range in the page cache or a compressed extent's pages.
//! * [`MapCtx`] is one thread's mapping context for one [`Strategy`]: direct map, kmap_local per
//!   page (15 usable slots, strict LIFO release), `kmap_local_range()` over consecutive slots,
//!   `vm_map_ram()`, `vmap_folio()`, `folio_map_local()`,
//!   the global `kmap()` pool, or bounce copies. Codec loops map through a [`Frame`] and never
//!   change with the strategy; every strategy counts what it does in [`MapCounters`].
//!
//! LIFO order is enforced by the borrow checker where it can be ([`Frame`]: a child mapping
//! borrows its parent) and checked at run time where it cannot (`mem::forget`): a debug build
//! panics with a clear message, a release build counts the violation. A 16th nested local
//! mapping is [`MapError::SlotsExhausted`]. Beside what the emulation does, every context counts
//! what a kernel would do for the same requests ([`KernelEvents`] under a [`KernelConfig`]):
//! zones, PTE writes and clears, TLB invalidations, IPIs, locks and allocations.
//!
//! ```
//! use highmem::{Backend, FolioVec, MapCtx, PhysMem, Strategy};
//! let mem = PhysMem::new(Backend::Heap, 4096, 64).unwrap();
//! let pages = FolioVec::from_slice(&mem, &[7u8; 3 * 4096], 0).unwrap();
//! let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
//! let mut frame = ctx.frame();
//! let m = frame.map(&pages, 100, 10_000).unwrap();
//! assert_eq!(m.len(), 4096 - 100); // kmap_local maps one page
//! drop(m);
//! drop(frame);
//! assert_eq!(ctx.counters().maps, 1);
//! assert_eq!(ctx.counters().unmaps, 1);
//! ```
//!
//! This crate is the only one in the workspace with `unsafe` code, all of it in `backend/`
//! (the crate denies it everywhere else), each block with a safety comment: the guards view
//! their mappings through the backend's `Span`.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod backend;
mod events;
mod phys;
mod pool;
mod strategy;

pub use events::{Event, KernelConfig, KernelEvents, Zone, TLB_SINGLE_PAGE_FLUSH_CEILING, VMAP_BLOCK_MAX_PAGES};
pub use phys::{Backend, Folio, FolioVec, PhysMem, SUPPORTED_PAGE_SIZES};
pub use pool::{KmapPool, PoolStats, LAST_PKMAP};
pub use strategy::{
    FaultPolicy, Frame, LifoPolicy, MapCounters, MapCtx, MapMut, MapRef, Strategy, DEFAULT_BOUNCE_BYTES,
    DEFAULT_RANGE_RESERVE, KM_MAX_IDX, MAX_RANGE_BYTES,
};

use std::fmt;

/// Errors of the mapping layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum MapError {
    /// A 16th nested kmap_local mapping (the kernel BUGs when the index reaches `KM_MAX_IDX`).
    SlotsExhausted,
    /// No free frames of the requested order.
    OutOfFrames,
    /// Page size not in [`SUPPORTED_PAGE_SIZES`].
    BadPageSize(usize),
    /// Folio order too large.
    BadOrder(u32),
    /// A mapping request outside the pages.
    OutOfRange {
        /// Requested offset.
        off: usize,
        /// Requested length.
        len: usize,
        /// Bytes the pages cover.
        size: usize,
    },
    /// The operating system refused a mapping call.
    Os(std::io::Error),
    /// Not available on this platform.
    Unsupported(&'static str),
    /// A page fault: the library read past what the mapping covers (a loop that hands it a
    /// folio-sized length from a `kmap_local_folio()` of one page, as 7.2-rc did under HIGHMEM
    /// with large folios). The kernel oopses here.
    Fault {
        /// Bytes the mapping covers from the address the library was given.
        mapped: usize,
        /// Bytes the library was handed.
        handed: usize,
        /// Bytes it read.
        read: usize,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::SlotsExhausted => {
                write!(f, "kmap_local: all {} usable per-thread slots are in use", KM_MAX_IDX - 1)
            }
            MapError::OutOfFrames => f.write_str("out of page frames"),
            MapError::BadPageSize(s) => write!(f, "unsupported page size {s} (use 4096, 16384 or 65536)"),
            MapError::BadOrder(o) => write!(f, "folio order {o} too large"),
            MapError::OutOfRange { off, len, size } => {
                write!(f, "mapping of {len} bytes at {off} outside pages of {size} bytes")
            }
            MapError::Os(e) => write!(f, "mapping system call failed: {e}"),
            MapError::Unsupported(w) => write!(f, "{w} is not supported on this platform"),
            MapError::Fault { mapped, handed, read } => write!(
                f,
                "page fault {} bytes past a mapping of {mapped}: the library was handed {handed} bytes and read {read}",
                read.saturating_sub(*mapped)
            ),
        }
    }
}

impl std::error::Error for MapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MapError::Os(e) => Some(e),
            _ => None,
        }
    }
}
