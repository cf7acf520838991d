//! Mapping strategies behind one interface, the per-thread slot stack and the counters.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

#[cfg(unix)]
use crate::backend::VaRegion;
use crate::backend::{Span, Store};
use crate::events::{KernelConfig, KernelEvents, KernelModel, Undo, Zone, VMAP_BLOCK_MAX_PAGES};
use crate::pool::KmapPool;
use crate::{FolioVec, MapError, PhysMem};

/// Size of the per-task kmap_local index stack (`KM_MAX_IDX`). `kmap_local_idx_push()` BUGs
/// when the index reaches it, so [`KernelConfig::usable_slots`] (15) mappings nest.
pub const KM_MAX_IDX: usize = 16;

/// Largest request a multi-page strategy maps at once (one compressed extent, 32 pages of 4 KiB).
pub const MAX_RANGE_BYTES: usize = 128 * 1024;

/// Default slots a `kmap_local_range()` leaves free for interrupt handlers that kmap.
pub const DEFAULT_RANGE_RESERVE: usize = 2;

/// Default bounce buffer: four 4 KiB pages, like zlib.c's s390 DFLTCC workspace buffer.
pub const DEFAULT_BOUNCE_BYTES: usize = 16 * 1024;

/// What a read past the end of a mapping does ([`MapRef::check_read`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultPolicy {
    /// Count it ([`KernelEvents::faults`]) and return [`MapError::Fault`].
    #[default]
    Record,
    /// On the emulated-highmem backend, make the read for real: the byte after a kmap_local
    /// slot's page is `PROT_NONE`, so the process gets SIGSEGV, as the kernel took its page fault.
    /// Elsewhere as [`FaultPolicy::Record`].
    Trap,
}

/// How a codec loop gets at the bytes of its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// 64-bit direct map: `page_address()`/`folio_address()`, free, up to the end of the folio.
    Direct,
    /// `kmap_local_page()`/`kmap_local_folio()`: one page per call, one slot of the 16-deep
    /// per-task stack, strict LIFO release.
    KmapLocal,
    /// The proposed `kmap_local_range()` (Ira Weiny, June 2022; never posted) as x86-32 could
    /// build it: N consecutive fixmap slots, one page (one PTE) each, for a run of consecutive
    /// pages of the page array; N at most the free slots minus a reserve for interrupt users. A
    /// longer request is split: the caller gets the first N pages and asks again.
    Range,
    /// `kmap_local_range()` with the other policy: a request longer than the free slots allow
    /// falls back to one page (plain kmap_local).
    RangeFallback,
    /// `vm_map_ram()` of the page array (up to 32 pages from a per-CPU vmap block on i386;
    /// longer through a vmap area); PTEs cleared at unmap, the TLB flush deferred.
    VmMapRam,
    /// `vmap_folio()` as posted in August 2022 (Matthew Wilcox's RFC): the whole folio through
    /// `vmap()`; any release order; unmapping is lazy and purged in batches like `vunmap()`.
    VmapFolio,
    /// `folio_map_local()` as Wilcox proposed (16 Aug 2022): `folio_address()` on 64-bit,
    /// `kmap_local_page()` for an order-0 folio, `vmap_folio()` for a large one.
    FolioMapLocal,
    /// The old global `kmap()` pool: one page per call from [`crate::LAST_PKMAP`] shared entries
    /// behind one lock; mappings linger until the pool wraps and flushes.
    GlobalKmap,
    /// Copy into a per-thread bounce buffer (zlib.c's s390 path): each page is mapped with
    /// kmap_local, copied and unmapped at once; writes are copied back on release.
    Bounce,
    /// Our way out (b) for 7.x with large folios under HIGHMEM, as `tools/qemu-highmem-7x.py`
    /// patches it into 7.2.13's zstd.c and zlib.c: the requested pages of a large highmem folio
    /// (never past its end) through `vm_map_ram()`, PTEs cleared at release and the TLB flush
    /// deferred; a request within one page, an order-0 or a lowmem folio through
    /// `kmap_local_folio()`; `folio_address()` on 64-bit.
    VmMapRamLarge,
}

impl Strategy {
    /// Every strategy, in display order.
    pub const ALL: [Strategy; 10] = [
        Strategy::Direct,
        Strategy::KmapLocal,
        Strategy::Range,
        Strategy::RangeFallback,
        Strategy::VmMapRam,
        Strategy::VmapFolio,
        Strategy::FolioMapLocal,
        Strategy::GlobalKmap,
        Strategy::Bounce,
        Strategy::VmMapRamLarge,
    ];

    /// Short name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Direct => "direct",
            Strategy::KmapLocal => "kmap-local",
            Strategy::Range => "range-split",
            Strategy::RangeFallback => "range-fallback",
            Strategy::VmMapRam => "vm-map-ram",
            Strategy::VmapFolio => "vmap-folio",
            Strategy::FolioMapLocal => "folio-map-local",
            Strategy::GlobalKmap => "kmap-pool",
            Strategy::Bounce => "bounce",
            Strategy::VmMapRamLarge => "vm-map-ram-large",
        }
    }

    /// Parse a name given by [`Strategy::name`] ("range" is accepted for "range-split").
    pub fn from_name(s: &str) -> Option<Self> {
        if s == "range" {
            return Some(Strategy::Range);
        }
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Whether the strategy exists on a kernel of `config`: the direct map reaches no highmem
    /// page.
    pub fn exists_on(self, config: KernelConfig) -> bool {
        !(config.has_highmem() && self == Strategy::Direct)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one thread's mapping context did. All counts are per [`MapCtx`], i.e. per thread and
/// strategy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapCounters {
    /// Calls of the mapping interface (including free direct-map lookups).
    pub map_calls: u64,
    /// Mappings established (page-table work in the kernel; zero for the direct map).
    pub maps: u64,
    /// Mappings released.
    pub unmaps: u64,
    /// Re-mappings of a page that was unmapped only to respect LIFO order.
    pub forced_remaps: u64,
    /// Multi-page mapping calls (range and vmap).
    pub range_calls: u64,
    /// Pages mapped by multi-page calls.
    pub range_pages: u64,
    /// Bytes copied by the bounce strategy, both directions.
    pub bytes_copied: u64,
    /// System calls made by the emulated highmem backend.
    pub syscalls: u64,
    /// Out-of-order releases seen (always zero in correct code).
    pub lifo_violations: u64,
    /// Deepest nesting of local slots.
    pub max_depth: u64,
    /// Lazy vunmap purges.
    pub vmap_purges: u64,
    /// Calls into the compression library (`zlib_deflate()`, `zstd_compress_stream()`,
    /// `lzo1x_1_compress()`, their decompress sides), reported by the codec loops with
    /// [`MapCtx::note_library_call`]. A strategy that maps more at once may make fewer.
    pub library_calls: u64,
    /// Bytes handed to those calls (input for compress, output room for decompress): the
    /// weight of each call's share of the codec's time.
    pub library_bytes: u64,
    /// Σ over library calls of (kmap_local slots holding a PTE during the call × its bytes):
    /// divided by `library_bytes`, the slots a context switch during the codec's work finds
    /// held (`__kmap_local_sched_out()` clears and invalidates each, `sched_in` rewrites it).
    pub library_slot_bytes: u64,
}

impl MapCounters {
    /// Field-wise sum.
    pub fn add(&mut self, o: &MapCounters) {
        self.map_calls += o.map_calls;
        self.maps += o.maps;
        self.unmaps += o.unmaps;
        self.forced_remaps += o.forced_remaps;
        self.range_calls += o.range_calls;
        self.range_pages += o.range_pages;
        self.bytes_copied += o.bytes_copied;
        self.syscalls += o.syscalls;
        self.lifo_violations += o.lifo_violations;
        self.max_depth = self.max_depth.max(o.max_depth);
        self.vmap_purges += o.vmap_purges;
        self.library_calls += o.library_calls;
        self.library_bytes += o.library_bytes;
        self.library_slot_bytes += o.library_slot_bytes;
    }

    /// What happened since `before` was read (field-wise difference; `max_depth` is kept as the
    /// current value, a high-water mark).
    pub fn since(&self, before: &MapCounters) -> MapCounters {
        MapCounters {
            map_calls: self.map_calls - before.map_calls,
            maps: self.maps - before.maps,
            unmaps: self.unmaps - before.unmaps,
            forced_remaps: self.forced_remaps - before.forced_remaps,
            range_calls: self.range_calls - before.range_calls,
            range_pages: self.range_pages - before.range_pages,
            bytes_copied: self.bytes_copied - before.bytes_copied,
            syscalls: self.syscalls - before.syscalls,
            lifo_violations: self.lifo_violations - before.lifo_violations,
            max_depth: self.max_depth,
            vmap_purges: self.vmap_purges - before.vmap_purges,
            library_calls: self.library_calls - before.library_calls,
            library_bytes: self.library_bytes - before.library_bytes,
            library_slot_bytes: self.library_slot_bytes - before.library_slot_bytes,
        }
    }
}

/// What happens when a local mapping is released out of LIFO order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifoPolicy {
    /// Panic with a clear message (the default in debug builds, like the kernel's WARN).
    Panic,
    /// Count it in [`MapCounters::lifo_violations`] and carry on (the default in release builds).
    Count,
}

impl Default for LifoPolicy {
    fn default() -> Self {
        if cfg!(debug_assertions) {
            LifoPolicy::Panic
        } else {
            LifoPolicy::Count
        }
    }
}

/// What a live mapping holds, to be given back on release.
#[derive(Debug)]
enum Held {
    Direct,
    Slot { idx: usize, n: usize, win_len: usize, undo: Undo },
    Vmap { area: Option<Span>, undo: Undo },
    Pool { pfn: usize, undo: Undo },
    Bounce { idx: usize },
}

/// One thread's mapping context: the strategy, the kmap_local slot stack (`current->kmap_ctrl`),
/// the per-thread window of the emulated highmem backend, bounce buffers and counters.
///
/// It is neither `Send` nor `Sync`, and so neither are its guards: a local mapping never
/// crosses threads.
pub struct MapCtx {
    mem: PhysMem,
    strategy: Strategy,
    pool: Option<Arc<KmapPool>>,
    /// Slot stack: `true` = in use. Length = depth.
    stack: RefCell<Vec<bool>>,
    #[cfg(unix)]
    window: Option<VaRegion>,
    slot_size: usize,
    bounce: RefCell<Vec<Option<Vec<u8>>>>,
    bounce_size: usize,
    lazy: RefCell<Vec<Span>>,
    lazy_pages: Cell<usize>,
    lazy_max_pages: usize,
    counters: Cell<MapCounters>,
    model: RefCell<KernelModel>,
    range_reserve: usize,
    init_on_alloc: bool,
    lifo: LifoPolicy,
    fault: FaultPolicy,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for MapCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapCtx")
            .field("strategy", &self.strategy)
            .field("backend", &self.mem.backend())
            .field("counters", &self.counters.get())
            .finish()
    }
}

impl MapCtx {
    /// A context for the calling thread. [`Strategy::GlobalKmap`] gets a private pool; use
    /// [`MapCtx::with_pool`] to share one between threads.
    pub fn new(mem: &PhysMem, strategy: Strategy) -> Result<Self, MapError> {
        let pool = match strategy {
            Strategy::GlobalKmap => Some(Arc::new(KmapPool::new(mem)?)),
            _ => None,
        };
        Self::build(mem, strategy, pool)
    }

    /// A [`Strategy::GlobalKmap`] context using a pool shared with other threads.
    pub fn with_pool(pool: Arc<KmapPool>) -> Result<Self, MapError> {
        let mem = pool.mem().clone();
        Self::build(&mem, Strategy::GlobalKmap, Some(pool))
    }

    fn build(mem: &PhysMem, strategy: Strategy, pool: Option<Arc<KmapPool>>) -> Result<Self, MapError> {
        let ps = mem.page_size();
        let slot_size = MAX_RANGE_BYTES.max(ps);
        #[cfg(unix)]
        let window = if mem.inner.store.is_highmem()
            && matches!(
                strategy,
                Strategy::KmapLocal
                    | Strategy::Range
                    | Strategy::RangeFallback
                    | Strategy::Bounce
                    | Strategy::FolioMapLocal
                    | Strategy::VmMapRamLarge
            ) {
            Some(VaRegion::reserve((KM_MAX_IDX + 1) * slot_size).map_err(MapError::Os)?)
        } else {
            None
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let fls = (usize::BITS - cpus.leading_zeros()) as usize;
        Ok(Self {
            mem: mem.clone(),
            strategy,
            pool,
            stack: RefCell::new(Vec::with_capacity(KM_MAX_IDX)),
            #[cfg(unix)]
            window,
            slot_size,
            bounce: RefCell::new((0..KM_MAX_IDX).map(|_| None).collect()),
            bounce_size: DEFAULT_BOUNCE_BYTES.max(ps),
            lazy: RefCell::new(Vec::new()),
            lazy_pages: Cell::new(0),
            lazy_max_pages: fls * (32 << 20) / ps,
            counters: Cell::new(MapCounters::default()),
            model: RefCell::new(KernelModel::new(KernelConfig::default())),
            range_reserve: DEFAULT_RANGE_RESERVE,
            init_on_alloc: true,
            lifo: LifoPolicy::default(),
            fault: FaultPolicy::default(),
            _not_send: PhantomData,
        })
    }

    /// Choose what an out-of-order release does.
    pub fn set_lifo_policy(&mut self, p: LifoPolicy) {
        self.lifo = p;
    }

    /// Choose what a read past the end of a mapping does (default [`FaultPolicy::Record`]).
    pub fn set_fault_policy(&mut self, p: FaultPolicy) {
        self.fault = p;
    }

    /// The kernel whose events this context counts (default: 64-bit). Resets the events.
    pub fn set_config(&mut self, config: KernelConfig) {
        *self.model.borrow_mut() = KernelModel::new(config);
    }

    /// The kernel configuration the events describe.
    pub fn config(&self) -> KernelConfig {
        self.model.borrow().config
    }

    /// Slots `kmap_local_range()` leaves for interrupt users (default
    /// [`DEFAULT_RANGE_RESERVE`]).
    pub fn set_range_reserve(&mut self, slots: usize) {
        self.range_reserve = slots;
    }

    /// Whether newly allocated pages are zeroed (`init_on_alloc=1`, Debian's default: on).
    pub fn set_init_on_alloc(&mut self, on: bool) {
        self.init_on_alloc = on;
    }

    /// Record that the caller allocated `pages` lowmem pages (btrfs's compressed pages). With
    /// init_on_alloc the page allocator zeroes each through `clear_highpage()`, i.e. one
    /// `kmap_local_page()` of a lowmem page: a call and nothing more.
    pub fn note_page_allocs(&self, pages: u64) {
        if self.init_on_alloc {
            let mut m = self.model.borrow_mut();
            for _ in 0..pages {
                m.kmap_local(1, 0);
            }
        }
    }

    /// What the kernel would have done so far (see [`KernelEvents`]). Lazily freed vmalloc
    /// areas are not purged by reading.
    pub fn events(&self) -> KernelEvents {
        self.model.borrow().ev
    }

    /// Pay the deferred vunmap flush now (`vm_unmap_aliases()`), as the kernel eventually will,
    /// and return the events including it.
    pub fn events_purged(&self) -> KernelEvents {
        let mut m = self.model.borrow_mut();
        m.purge();
        m.ev
    }

    /// The requests that follow belong to a new extent: its page-cache pages are other pages
    /// than the last extent's (the `kmap()` pool finds no stale hits on reused frames).
    pub fn begin_extent(&self) {
        self.model.borrow_mut().begin_extent();
    }

    /// Reset the events (the kernel state, e.g. the pool's entries, stays).
    pub fn reset_events(&self) {
        self.model.borrow_mut().ev = KernelEvents::default();
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The memory whose frames this context maps.
    pub fn mem(&self) -> &PhysMem {
        &self.mem
    }

    /// Counters so far.
    pub fn counters(&self) -> MapCounters {
        self.counters.get()
    }

    /// Reset the counters to zero.
    pub fn reset_counters(&self) {
        self.counters.set(MapCounters::default());
    }

    /// Local slots in use now.
    pub fn depth(&self) -> usize {
        self.stack.borrow().len()
    }

    /// Record one call into the compression library (a codec loop's `zlib_deflate()`,
    /// `zstd_compress_stream()`, `lzo1x_1_compress()` or decompress call): the loops call it once
    /// per mapped buffer, so a strategy that maps more pages at once makes fewer calls.
    /// `bytes` is what the call is handed (input to compress, output room to decompress).
    pub fn note_library_call(&self, bytes: usize) {
        let held = self.model.borrow().slots_held();
        self.count(|c| {
            c.library_calls += 1;
            c.library_bytes += bytes as u64;
            c.library_slot_bytes += held * bytes as u64;
        });
    }

    /// Record that the caller re-mapped a page it had to unmap only to keep LIFO order
    /// (zstd.c's 2022 v1-v4 loop).
    ///
    /// Not counted for [`Strategy::Direct`], where a "mapping" is an address computation.
    pub fn note_forced_remap(&self) {
        if self.strategy != Strategy::Direct {
            self.count(|c| c.forced_remaps += 1);
            self.model.borrow_mut().ev.forced_remaps += 1;
        }
    }

    /// The root frame: the bottom of this thread's slot stack. Taking it borrows the context
    /// mutably, so all mappings made in one scope nest through it.
    pub fn frame(&mut self) -> Frame<'_> {
        Frame { ctx: self }
    }

    fn count(&self, f: impl FnOnce(&mut MapCounters)) {
        let mut c = self.counters.get();
        f(&mut c);
        self.counters.set(c);
    }

    fn push_slot(&self) -> Result<usize, MapError> {
        self.push_slots(1)
    }

    /// Push `n` slots (one mapping of `n` pages); returns the index of the lowest.
    fn push_slots(&self, n: usize) -> Result<usize, MapError> {
        let mut st = self.stack.borrow_mut();
        if st.len() + n > self.config().usable_slots() {
            return Err(MapError::SlotsExhausted);
        }
        let base = st.len();
        st.extend(std::iter::repeat_n(true, n));
        let depth = st.len() as u64;
        drop(st);
        self.count(|c| c.max_depth = c.max_depth.max(depth));
        Ok(base)
    }

    /// Slots a range may take now: the free ones minus the reserve, at least one.
    fn range_slots(&self) -> usize {
        let free = self.config().usable_slots().saturating_sub(self.depth());
        free.saturating_sub(self.range_reserve).max(1)
    }

    /// Bytes from `(fi, foff)` on consecutive frames (across folio boundaries while the next
    /// folio starts where this one ends), at most `max`.
    fn contiguous_run(pages: &FolioVec, fi: usize, foff: usize, max: usize) -> usize {
        let mut run = pages.folio(fi).size() - foff;
        let mut i = fi;
        while run < max && i + 1 < pages.nr_folios() {
            let (a, b) = (pages.folio(i), pages.folio(i + 1));
            if b.phys_off() != a.phys_off() + a.size() {
                break;
            }
            run += b.size();
            i += 1;
        }
        run.min(max)
    }

    /// HighMem pages among the `npages` pages from `(fi, foff)`.
    fn highmem_pages(pages: &FolioVec, fi: usize, foff: usize, npages: usize) -> u64 {
        let ps = pages.folio(fi).mem().page_size();
        let (mut i, mut off, mut left, mut high) = (fi, foff - foff % ps, npages, 0u64);
        while left > 0 && i < pages.nr_folios() {
            let f = pages.folio(i);
            let here = ((f.size() - off) / ps).min(left);
            if f.zone() == Zone::HighMem {
                high += here as u64;
            }
            left -= here;
            i += 1;
            off = 0;
        }
        high
    }

    /// Pages from `(fi, foff)` (at most `npages`) before the first one that is not HighMem.
    fn leading_highmem_pages(pages: &FolioVec, fi: usize, foff: usize, npages: usize) -> usize {
        let ps = pages.folio(fi).mem().page_size();
        let (mut i, mut off, mut n) = (fi, foff - foff % ps, 0usize);
        while n < npages && i < pages.nr_folios() && pages.folio(i).zone() == Zone::HighMem {
            n += (pages.folio(i).size() - off) / ps;
            i += 1;
            off = 0;
        }
        n.min(npages)
    }

    fn pop_slot(&self, idx: usize) {
        self.pop_slots(idx, 1)
    }

    fn pop_slots(&self, idx: usize, n: usize) {
        let mut st = self.stack.borrow_mut();
        let top = st.len().checked_sub(n);
        if top == Some(idx) {
            st.truncate(idx);
            while st.last() == Some(&false) {
                st.pop();
            }
            return;
        }
        // Out of order: release the slots but leave the stack shape; count or panic.
        for s in st.iter_mut().skip(idx).take(n) {
            *s = false;
        }
        drop(st);
        self.count(|c| c.lifo_violations += 1);
        if self.lifo == LifoPolicy::Panic && !std::thread::panicking() {
            panic!(
                "kunmap_local: slot {idx} released out of order while slot {} is still mapped; \
                 kmap_local mappings must be released in reverse (LIFO) order",
                top.map_or(0, |t| t)
            );
        }
    }

    /// Clamp a request to the pages and locate it.
    fn locate(&self, pages: &FolioVec, off: usize, len: usize) -> Result<(usize, usize, usize), MapError> {
        let (fi, foff) = pages.locate(off).ok_or(MapError::OutOfRange { off, len, size: pages.len() })?;
        if len == 0 {
            return Err(MapError::OutOfRange { off, len, size: pages.len() });
        }
        let len = len.min(pages.len() - off);
        Ok((fi, foff, len))
    }

    /// Map (part of) `[off, off+len)` of `pages`; returns the span of the mapped bytes (what the
    /// strategy can present contiguously) and what to give back.
    fn map_raw(&self, pages: &FolioVec, off: usize, len: usize) -> Result<(Span, Held), MapError> {
        let (fi, foff, len) = self.locate(pages, off, len)?;
        let folio = pages.folio(fi);
        let ps = self.mem.page_size();
        let store = &self.mem.inner.store;
        let phys = folio.phys_off() + foff;
        let folio_rem = folio.size() - foff;
        let page_rem = ps - foff % ps;
        self.count(|c| c.map_calls += 1);
        let config = self.config();
        let high = folio.zone() == Zone::HighMem && config.has_highmem();
        let strategy = match self.strategy {
            // folio_map_local(): folio_address() on 64-bit, kmap_local_page() for an order-0
            // folio, vmap_folio() for a large one.
            Strategy::FolioMapLocal if !config.has_highmem() => Strategy::Direct,
            Strategy::FolioMapLocal if folio.order() == 0 => Strategy::KmapLocal,
            Strategy::FolioMapLocal => Strategy::VmapFolio,
            // Way out (b): vm_map_ram() only for more than one page of a large highmem folio.
            Strategy::VmMapRamLarge if !config.has_highmem() => Strategy::Direct,
            Strategy::VmMapRamLarge if !high || folio.order() == 0 || len.min(folio_rem) <= page_rem => {
                Strategy::KmapLocal
            }
            s => s,
        };
        match strategy {
            Strategy::Direct => {
                if high {
                    return Err(MapError::Unsupported("the direct map of a highmem page"));
                }
                self.model.borrow_mut().ev.api_calls += 1;
                Ok((store.span(phys, len.min(folio_rem)), Held::Direct))
            }
            Strategy::KmapLocal => {
                let n = len.min(page_rem);
                let ((span, idx), win_len) = self.map_slot_pages(phys - foff % ps, ps, foff % ps)?;
                self.count(|c| c.maps += 1);
                let undo = self.model.borrow_mut().kmap_local(1, u64::from(high));
                Ok((span.sub(0, n), Held::Slot { idx, n: 1, win_len, undo }))
            }
            Strategy::Range | Strategy::RangeFallback => self.map_range(pages, fi, foff, len, strategy),
            Strategy::VmMapRam | Strategy::VmapFolio | Strategy::VmMapRamLarge => {
                self.map_vmap(pages, fi, foff, len, strategy)
            }
            Strategy::GlobalKmap => {
                let pool = self.pool.as_ref().expect("GlobalKmap context has a pool");
                let pfn = (phys - foff % ps) / ps;
                let (page, op) = pool.kmap(pfn)?;
                self.count(|c| {
                    c.maps += 1;
                    c.syscalls += op.syscalls;
                });
                let undo = self.model.borrow_mut().kmap_pool(pfn, high);
                Ok((page.sub(foff % ps, len.min(page_rem)), Held::Pool { pfn, undo }))
            }
            Strategy::FolioMapLocal => unreachable!("resolved above"),
            Strategy::Bounce => {
                let n = len.min(self.bounce_size);
                let mut buf = self.take_bounce_buffer();
                let filled = self.copy_pages(pages, off, &mut buf[..n], false);
                let pushed = filled.and_then(|()| self.push_slot());
                let idx = match pushed {
                    Ok(idx) => idx,
                    Err(e) => {
                        self.bounce.borrow_mut()[self.depth()] = Some(buf);
                        return Err(e);
                    }
                };
                // The vector's heap block does not move when the vector is stored, and it stays
                // at its depth (not resized) while the guard lives.
                let span = Span::of_buffer(&mut buf[..n]);
                self.bounce.borrow_mut()[idx] = Some(buf);
                Ok((span, Held::Bounce { idx }))
            }
        }
    }

    /// `kmap_local_range()` as a kernel would build it: up to the free slots (less the
    /// reserve) of consecutive highmem pages of `pages` from `foff` of folio `fi`, split
    /// ([`Strategy::Range`]) or page by page when the request is longer
    /// ([`Strategy::RangeFallback`]); the run stops at the first lowmem page. A lowmem page
    /// needs no slot: under HIGHMEM it is `page_address()` of that one page (the pages of a page
    /// array are not contiguous in the direct map in general, btrfs's compressed pages among
    /// them); on 64-bit the direct map covers the physically contiguous run.
    fn map_range(
        &self,
        pages: &FolioVec,
        fi: usize,
        foff: usize,
        len: usize,
        strategy: Strategy,
    ) -> Result<(Span, Held), MapError> {
        let ps = self.mem.page_size();
        let phys = pages.folio(fi).phys_off() + foff;
        let in_page = foff % ps;
        let config = self.config();
        let store = &self.mem.inner.store;
        if !config.has_highmem() {
            // page_address() of the contiguous run: no slot, no PTE.
            let run = Self::contiguous_run(pages, fi, foff, len.min(MAX_RANGE_BYTES - in_page));
            let np = (in_page + run).div_ceil(ps) as u64;
            let mut m = self.model.borrow_mut();
            m.ev.api_calls += 1;
            m.ev.lowmem_maps += np;
            return Ok((store.span(phys, run), Held::Direct));
        }
        if pages.folio(fi).zone() != Zone::HighMem {
            // A lowmem page: page_address() of this page, as kmap_local_page() does.
            let n = len.min(ps - in_page);
            let _ = self.model.borrow_mut().kmap_local(1, 0);
            return Ok((store.span(phys, n), Held::Direct));
        }
        let run = Self::contiguous_run(pages, fi, foff, len.min(MAX_RANGE_BYTES - in_page));
        let high_pages = Self::leading_highmem_pages(pages, fi, foff, (in_page + run).div_ceil(ps));
        let want = run.min(high_pages * ps - in_page);
        let want_pages = (in_page + want).div_ceil(ps);
        let avail = self.range_slots();
        let npages = match strategy {
            Strategy::Range => want_pages.min(avail),
            _ if want_pages <= avail => want_pages,
            _ => 1,
        };
        let n = want.min(npages * ps - in_page);
        let idx = self.push_slots(npages)?;
        let (span, win_len) = match self.map_window(idx, phys - in_page, npages * ps, in_page) {
            Ok(r) => r,
            Err(e) => {
                self.pop_slots(idx, npages);
                return Err(e);
            }
        };
        self.count(|c| {
            c.maps += 1;
            c.range_calls += u64::from(npages > 1);
            c.range_pages += if npages > 1 { npages as u64 } else { 0 };
        });
        let hp = Self::highmem_pages(pages, fi, foff, npages);
        let undo = self.model.borrow_mut().kmap_local(npages as u64, hp);
        Ok((span.sub(0, n), Held::Slot { idx, n: npages, win_len, undo }))
    }

    /// `vm_map_ram()` of the pages from `foff` of folio `fi` ([`Strategy::VmMapRam`]), or
    /// `vmap_folio()` of the whole folio ([`Strategy::VmapFolio`]).
    fn map_vmap(
        &self,
        pages: &FolioVec,
        fi: usize,
        foff: usize,
        len: usize,
        strategy: Strategy,
    ) -> Result<(Span, Held), MapError> {
        let ps = self.mem.page_size();
        let folio = pages.folio(fi);
        let store = &self.mem.inner.store;
        let phys = folio.phys_off() + foff;
        let folio_rem = folio.size() - foff;
        let (base, bytes, n) = if strategy == Strategy::VmapFolio {
            (folio.phys_off(), folio.size(), len.min(folio_rem))
        } else if strategy == Strategy::VmMapRamLarge {
            let in_page = foff % ps;
            let run = len.min(folio_rem);
            (phys - in_page, (in_page + run).div_ceil(ps) * ps, run)
        } else {
            let in_page = foff % ps;
            let run = Self::contiguous_run(pages, fi, foff, len.min(MAX_RANGE_BYTES - in_page));
            let np = (in_page + run).div_ceil(ps);
            (phys - in_page, np * ps, run)
        };
        let start_off = phys - base;
        let npages = bytes / ps;
        let (whole, area) = match store {
            Store::Heap(_) => (store.span(base, bytes), None),
            #[cfg(unix)]
            Store::Memfd(m) => {
                let a = m.map_anywhere(base, bytes).map_err(MapError::Os)?;
                self.count(|c| c.syscalls += 1);
                (a.sub(0, bytes), Some(a))
            }
        };
        self.count(|c| {
            c.maps += 1;
            c.range_calls += 1;
            c.range_pages += npages as u64;
        });
        let (fi0, foff0) = if strategy == Strategy::VmapFolio { (fi, 0) } else { (fi, foff) };
        let hp = Self::highmem_pages(pages, fi0, foff0, npages);
        let block = strategy != Strategy::VmapFolio && npages <= VMAP_BLOCK_MAX_PAGES;
        let undo = self.model.borrow_mut().vmap(npages as u64, hp, block);
        Ok((whole.sub(start_off, n), Held::Vmap { area, undo }))
    }

    /// The bounce buffer of the next slot (allocated once per depth, then reused).
    fn take_bounce_buffer(&self) -> Vec<u8> {
        let depth = self.depth();
        let mut b = self.bounce.borrow_mut();
        match b.get_mut(depth).and_then(Option::take) {
            Some(buf) if buf.len() >= self.bounce_size => buf,
            _ => vec![0u8; self.bounce_size],
        }
    }

    /// Push a slot and map one page of frames at `phys` into it; returns the span from byte
    /// `in_off` of the mapping with the slot index, and the window bytes to clear later.
    fn map_slot_pages(&self, phys: usize, len: usize, in_off: usize) -> Result<((Span, usize), usize), MapError> {
        let idx = self.push_slot()?;
        match self.map_window(idx, phys, len, in_off) {
            Ok((p, w)) => Ok(((p, idx), w)),
            Err(e) => {
                self.pop_slot(idx);
                Err(e)
            }
        }
    }

    /// Map `len` bytes of frames at `phys` at slot `idx` of the window (the emulated highmem
    /// backend; the heap needs no mapping). Returns the span from byte `in_off` to the end and
    /// the window bytes to clear on release.
    fn map_window(&self, idx: usize, phys: usize, len: usize, in_off: usize) -> Result<(Span, usize), MapError> {
        let store = &self.mem.inner.store;
        match store {
            Store::Heap(_) => Ok((store.span(phys + in_off, len - in_off), 0)),
            #[cfg(unix)]
            Store::Memfd(m) => {
                let window = self.window.as_ref().expect("slot strategies reserve a window");
                let base = window.map(m, idx * self.slot_size, phys, len).map_err(MapError::Os)?;
                self.count(|c| c.syscalls += 1);
                Ok((base.sub(in_off, len - in_off), len))
            }
        }
    }

    /// Copy between `pages[off..]` and `buf` one page at a time, each page mapped with
    /// kmap_local and unmapped at once (`memcpy_from_folio()` / `memcpy_to_page()`).
    fn copy_pages(&self, pages: &FolioVec, mut off: usize, buf: &mut [u8], to_pages: bool) -> Result<(), MapError> {
        let ps = self.mem.page_size();
        let mut done = 0;
        while done < buf.len() {
            let (fi, foff, _) = self.locate(pages, off, buf.len() - done)?;
            let folio = pages.folio(fi);
            let in_page = foff % ps;
            let n = (buf.len() - done).min(ps - in_page);
            let page_phys = folio.phys_off() + foff - in_page;
            let ((span, idx), win_len) = self.map_slot_pages(page_phys, ps, in_page)?;
            let mut span = span.sub(0, n);
            let high = folio.zone() == Zone::HighMem && self.config().has_highmem();
            let undo = self.model.borrow_mut().kmap_local(1, u64::from(high));
            self.model.borrow_mut().ev.bytes_copied += n as u64;
            if to_pages {
                // The caller holds `pages` exclusively (write-back happens from a `MapMut` drop).
                span.bytes_mut().copy_from_slice(&buf[done..done + n]);
            } else {
                buf[done..done + n].copy_from_slice(span.bytes());
            }
            self.release(Held::Slot { idx, n: 1, win_len, undo });
            self.count(|c| {
                c.maps += 1;
                c.bytes_copied += n as u64;
            });
            done += n;
            off += n;
        }
        Ok(())
    }

    /// Where a mapping of `pages` at `off` starts and how far it reaches (see [`Reach`]).
    fn reach(&self, pages: &FolioVec, off: usize, span: &Span, held: &Held) -> Reach {
        let Some((fi, foff)) = pages.locate(off) else {
            return Reach { folio: None, covers: 0 };
        };
        let folio = pages.folio(fi);
        let folio_rem = folio.size() - foff;
        let direct = !(folio.zone() == Zone::HighMem && self.config().has_highmem());
        let covers = match held {
            // page_address(): the direct map holds the whole folio (and a contiguous run past it).
            Held::Direct | Held::Pool { .. } if direct => folio_rem.max(span.len()),
            Held::Slot { n: 1, .. } if direct && self.strategy != Strategy::Bounce => folio_rem.max(span.len()),
            _ => span.len(),
        };
        // The folio's frames stay allocated while `pages` is borrowed, which the mapping is.
        let folio_span = self.mem.inner.store.span(folio.phys_off() + foff, folio_rem);
        Reach { folio: Some(folio_span), covers }
    }

    fn release(&self, held: Held) {
        match held {
            Held::Direct => return,
            Held::Slot { idx, n, win_len, undo } => {
                self.model.borrow_mut().undo(undo);
                #[cfg(unix)]
                if win_len > 0 {
                    if let Some(w) = &self.window {
                        // The guard that viewed this slot is being dropped.
                        w.clear(idx * self.slot_size, win_len);
                        self.count(|c| c.syscalls += 1);
                    }
                }
                let _ = win_len;
                self.pop_slots(idx, n);
            }
            Held::Vmap { area, undo } => {
                self.model.borrow_mut().undo(undo);
                if let Some(area) = area {
                    let pages = self.lazy_pages.get() + area.len() / self.mem.page_size();
                    self.lazy.borrow_mut().push(area);
                    self.lazy_pages.set(pages);
                    if pages > self.lazy_max_pages {
                        self.purge_lazy();
                    }
                }
            }
            Held::Pool { pfn, undo } => {
                self.model.borrow_mut().undo(undo);
                if let Some(p) = &self.pool {
                    p.kunmap(pfn);
                }
            }
            // The buffer stays at its depth for the next mapping there. It is not a mapping:
            // the page mappings of its copies were counted as they were made and released.
            Held::Bounce { idx } => {
                self.pop_slot(idx);
                return;
            }
        }
        self.count(|c| c.unmaps += 1);
    }

    /// Models the purge of lazily freed vmap areas (`__purge_vmap_area_lazy()`).
    fn purge_lazy(&self) {
        let areas = std::mem::take(&mut *self.lazy.borrow_mut());
        if areas.is_empty() {
            return;
        }
        let n = areas.len() as u64;
        #[cfg(unix)]
        if let Store::Memfd(m) = &self.mem.inner.store {
            // Each area's guard is gone.
            for area in areas {
                m.unmap_anywhere(area);
            }
        }
        self.lazy_pages.set(0);
        self.count(|c| {
            c.syscalls += n;
            c.vmap_purges += 1;
        });
    }
}

impl Drop for MapCtx {
    fn drop(&mut self) {
        self.purge_lazy();
    }
}

/// A position on the slot stack. Mapping through a frame borrows it mutably, so the borrow
/// checker forbids using or dropping the parent while a child mapping lives: locals then drop
/// in reverse order, which is LIFO.
///
/// ```compile_fail
/// use highmem::{Backend, FolioVec, MapCtx, PhysMem, Strategy};
/// let mem = PhysMem::new(Backend::Heap, 4096, 4).unwrap();
/// let pages = FolioVec::from_slice(&mem, &[1u8; 8192], 0).unwrap();
/// let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
/// let mut frame = ctx.frame();
/// let a = frame.map(&pages, 0, 4096).unwrap();
/// let b = frame.map(&pages, 4096, 4096).unwrap(); // second mapping from the same frame
/// drop(a);
/// drop(b);
/// ```
///
/// ```compile_fail
/// use highmem::{Backend, FolioVec, MapCtx, PhysMem, Strategy};
/// let mem = PhysMem::new(Backend::Heap, 4096, 4).unwrap();
/// let pages = FolioVec::from_slice(&mem, &[1u8; 8192], 0).unwrap();
/// let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
/// let mut frame = ctx.frame();
/// let mut outer = frame.map(&pages, 0, 4096).unwrap();
/// let (_, mut above) = outer.split();
/// let inner = above.map(&pages, 4096, 4096).unwrap();
/// drop(outer); // the outer mapping cannot go while the inner one lives
/// drop(inner);
/// ```
///
/// ```compile_fail
/// use highmem::{Backend, FolioVec, MapCtx, PhysMem, Strategy};
/// let mem = PhysMem::new(Backend::Heap, 4096, 4).unwrap();
/// let pages = FolioVec::from_slice(&mem, &[1u8; 8192], 0).unwrap();
/// let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
/// let escaped: &[u8] = {
///     let mut frame = ctx.frame();
///     let m = frame.map(&pages, 0, 4096).unwrap();
///     &m[..] // the slice cannot outlive its mapping
/// };
/// ```
///
/// Guards never cross threads (the context is `!Send`, and so is every guard):
///
/// ```compile_fail
/// use highmem::{Backend, FolioVec, MapCtx, PhysMem, Strategy};
/// let mem = PhysMem::new(Backend::Heap, 4096, 4).unwrap();
/// let pages = FolioVec::from_slice(&mem, &[1u8; 4096], 0).unwrap();
/// let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
/// let mut frame = ctx.frame();
/// let m = frame.map(&pages, 0, 4096).unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || m.len());
/// });
/// ```
pub struct Frame<'c> {
    ctx: &'c MapCtx,
}

impl<'c> Frame<'c> {
    /// Map bytes `[off, off+len)` of `pages` for reading. The returned mapping may be shorter
    /// than `len`: it is what the strategy presents contiguously (a page for kmap_local, the
    /// rest of the folio for the direct map and vmap, up to 128 KiB of the folio for range).
    pub fn map<'f>(&'f mut self, pages: &'f FolioVec, off: usize, len: usize) -> Result<MapRef<'f>, MapError> {
        let (span, held) = self.ctx.map_raw(pages, off, len)?;
        let reach = self.ctx.reach(pages, off, &span, &held);
        Ok(MapRef { ctx: self.ctx, span, held: Some(held), reach, _p: PhantomData })
    }

    /// Map bytes of `pages` for writing; see [`Frame::map`]. With the bounce strategy the data
    /// is copied back to the pages when the mapping is released.
    pub fn map_mut<'f>(&'f mut self, pages: &'f mut FolioVec, off: usize, len: usize) -> Result<MapMut<'f>, MapError> {
        let (span, held) = self.ctx.map_raw(pages, off, len)?;
        Ok(MapMut { ctx: self.ctx, span, held: Some(held), pages, off, _p: PhantomData })
    }

    /// Copy `src` into `pages` at `off`, one mapping at a time (models `memcpy_to_page()`).
    pub fn memcpy_to_pages(&mut self, pages: &mut FolioVec, mut off: usize, mut src: &[u8]) -> Result<(), MapError> {
        while !src.is_empty() {
            let mut m = self.map_mut(pages, off, src.len())?;
            let n = m.len();
            m.copy_from_slice(&src[..n]);
            drop(m);
            src = &src[n..];
            off += n;
        }
        Ok(())
    }

    /// Copy from `pages` at `off` into `dst`, one mapping at a time (models `memcpy_from_folio()`).
    pub fn memcpy_from_pages(&mut self, pages: &FolioVec, mut off: usize, mut dst: &mut [u8]) -> Result<(), MapError> {
        while !dst.is_empty() {
            let m = self.map(pages, off, dst.len())?;
            let n = m.len();
            dst[..n].copy_from_slice(&m);
            drop(m);
            dst = &mut dst[n..];
            off += n;
        }
        Ok(())
    }

    /// Zero `len` bytes of `pages` at `off` (models `memzero_page()`).
    pub fn memzero_pages(&mut self, pages: &mut FolioVec, mut off: usize, mut len: usize) -> Result<(), MapError> {
        while len > 0 {
            let mut m = self.map_mut(pages, off, len)?;
            let n = m.len();
            m.fill(0);
            drop(m);
            len -= n;
            off += n;
        }
        Ok(())
    }

    /// The context behind this frame.
    pub fn ctx(&self) -> &MapCtx {
        self.ctx
    }
}

/// A read mapping. Dropping it releases the mapping (`kunmap_local()`, `kunmap()`, `vunmap()`).
pub struct MapRef<'f> {
    ctx: &'f MapCtx,
    span: Span,
    held: Option<Held>,
    reach: Reach,
    _p: PhantomData<&'f [u8]>,
}

/// Where a read mapping starts in its folio, and how far from its address bytes are really
/// addressable: the mapped span for a fixmap slot or a vmap area, the whole rest of the folio for
/// the direct map (a lowmem page's `page_address()`).
#[derive(Debug)]
struct Reach {
    /// The rest of the folio from the mapping's first byte, through the direct map.
    folio: Option<Span>,
    covers: usize,
}

/// What read and write mappings share: their context, and their bytes for reading.
macro_rules! mapping_common {
    ($map:ident) => {
        impl $map<'_> {
            /// The context this mapping belongs to (for its counters).
            pub fn ctx(&self) -> &MapCtx {
                self.ctx
            }
        }

        impl Deref for $map<'_> {
            type Target = [u8];
            fn deref(&self) -> &[u8] {
                self.span.bytes()
            }
        }
    };
}

mapping_common!(MapRef);
mapping_common!(MapMut);

impl MapRef<'_> {
    /// The `len` bytes from this mapping's address, as a loop that trusts a length of its own
    /// hands them to the library: 7.x's `btrfs_calc_input_length()` runs to the end of the folio
    /// whatever `kmap_local_folio()` mapped. Returns the bytes (the folio's, read through the
    /// direct map, at most to the folio's end) and how many of them the mapping really covers;
    /// after the library call, [`MapRef::check_read`] says whether it read past them.
    pub fn handed(&self, len: usize) -> (&[u8], usize) {
        let rest = self.reach.folio.as_ref().map_or(&[][..], Span::bytes);
        let n = len.min(rest.len());
        (&rest[..n], self.reach.covers.min(n))
    }

    /// The library read `read` bytes of the `handed` bytes [`MapRef::handed`] gave it. Past what
    /// the mapping covers, that is the kernel's page fault: counted in
    /// [`KernelEvents::faults`], made for real under [`FaultPolicy::Trap`] on the
    /// emulated-highmem backend (the byte after the slot's page is `PROT_NONE`: SIGSEGV), and
    /// returned as [`MapError::Fault`].
    pub fn check_read(&self, handed: usize, read: usize) -> Result<(), MapError> {
        let mapped = self.reach.covers;
        if read <= mapped {
            return Ok(());
        }
        self.ctx.model.borrow_mut().ev.faults += 1;
        #[cfg(unix)]
        if self.ctx.fault == FaultPolicy::Trap {
            if let Some(Held::Slot { win_len, .. }) = &self.held {
                if *win_len > 0 {
                    self.span.read_past_end();
                }
            }
        }
        Err(MapError::Fault { mapped, handed, read })
    }

    /// The mapped bytes together with the frame above this mapping, for nested mappings that
    /// must be released before this one.
    pub fn split(&mut self) -> (&[u8], Frame<'_>) {
        (self.span.bytes(), Frame { ctx: self.ctx })
    }
}

impl Drop for MapRef<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.held.take() {
            self.ctx.release(h);
        }
    }
}

/// A write mapping; see [`MapRef`].
pub struct MapMut<'f> {
    ctx: &'f MapCtx,
    span: Span,
    held: Option<Held>,
    pages: &'f mut FolioVec,
    off: usize,
    _p: PhantomData<&'f mut [u8]>,
}

impl MapMut<'_> {
    /// The mapped bytes together with the frame above this mapping.
    pub fn split(&mut self) -> (&mut [u8], Frame<'_>) {
        (self.span.bytes_mut(), Frame { ctx: self.ctx })
    }
}

impl DerefMut for MapMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.span.bytes_mut()
    }
}

impl Drop for MapMut<'_> {
    fn drop(&mut self) {
        let Some(h) = self.held.take() else { return };
        if let Held::Bounce { idx } = h {
            // Pop the buffer's slot first so the write-back has a free slot, then copy back.
            let buf = self.ctx.bounce.borrow_mut()[idx].take();
            self.ctx.release(Held::Bounce { idx });
            if let Some(mut buf) = buf {
                let r = self.ctx.copy_pages(self.pages, self.off, &mut buf[..self.span.len()], true);
                debug_assert!(r.is_ok(), "bounce write-back failed: {r:?}");
                self.ctx.bounce.borrow_mut()[idx] = Some(buf);
            }
            return;
        }
        self.ctx.release(h);
    }
}
