//! What the kernel would do for each mapping request: zones, slots, PTE writes, TLB work, IPIs,
//! locks and allocations, counted as [`KernelEvents`] under a [`KernelConfig`].
//!
//! The emulation (heap or memfd backend) decides how the bytes are reached; this module decides
//! what the same request costs a kernel, from the facts of `mm/highmem.c`, `mm/vmalloc.c` and
//! `arch/x86/mm/tlb.c` (6.1): a kmap_local of a lowmem page is `page_address()` (a call, nothing
//! else); of a highmem page one fixmap slot, one PTE write, and on unmap one PTE clear and one
//! `invlpg`; the `kmap()` pool and `vunmap()` defer their flushes and pay them as an IPI to every
//! CPU and a full TLB flush.

use std::collections::HashMap;

/// Memory zone of a page frame (`PageHighMem()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Zone {
    /// ZONE_NORMAL / DMA: always in the kernel's direct map (`page_address()` works).
    #[default]
    Normal,
    /// ZONE_HIGHMEM: no permanent kernel address; must be mapped to be touched.
    HighMem,
}

/// The machine whose kernel the events describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelConfig {
    /// x86-32 with CONFIG_HIGHMEM (PAE or not), 4 KiB pages.
    Highmem32 {
        /// CONFIG_X86_PAE: `LAST_PKMAP` is 512 instead of 1024.
        pae: bool,
        /// CONFIG_DEBUG_KMAP_LOCAL: 16 nested kmap_local mappings instead of 15.
        debug_kmap_local: bool,
        /// CPUs an IPI round reaches.
        cpus: u32,
    },
    /// ARM32 with CONFIG_HIGHMEM and CONFIG_ARM_LPAE (Debian's armmp-lpae), 4 KiB pages:
    /// `arch_kmap_local_post_map()` and `arch_kmap_local_post_unmap()` both flush the kernel TLB
    /// entry (`local_flush_tlb_kernel_page()`, arch/arm/mm/highmem.c): two TLB operations per
    /// highmem map where x86 has one. `LAST_PKMAP` is `PTRS_PER_PTE` (512 with LPAE); vmalloc
    /// space 240 MiB (the default `VMALLOC` size). PIPT caches (cortex-a15): no cache flush at
    /// unmap.
    Arm32Lpae {
        /// CPUs an IPI round reaches.
        cpus: u32,
    },
    /// 64-bit: every page in the direct map; kmap_local is `page_address()`.
    Bit64 {
        /// CPUs an IPI round reaches.
        cpus: u32,
    },
}

impl Default for KernelConfig {
    /// 64-bit, 2 CPUs: the configuration under which every mapping is free.
    fn default() -> Self {
        KernelConfig::Bit64 { cpus: 2 }
    }
}

impl KernelConfig {
    /// Debian's 686-pae kernel on a 2-CPU machine (the lab's and the trace fixture's config).
    pub const X86_32_PAE: KernelConfig = KernelConfig::Highmem32 { pae: true, debug_kmap_local: false, cpus: 2 };

    /// Debian's armmp-lpae kernel on a 2-CPU machine.
    pub const ARM32_LPAE: KernelConfig = KernelConfig::Arm32Lpae { cpus: 2 };

    /// Short name used in reports ("32-bit-highmem" for x86-32, "arm32-lpae", "64-bit").
    pub fn name(self) -> &'static str {
        match self {
            KernelConfig::Highmem32 { .. } => "32-bit-highmem",
            KernelConfig::Arm32Lpae { .. } => "arm32-lpae",
            KernelConfig::Bit64 { .. } => "64-bit",
        }
    }

    /// Whether the kernel has highmem at all.
    pub fn has_highmem(self) -> bool {
        !matches!(self, KernelConfig::Bit64 { .. })
    }

    /// Whether mapping a highmem page flushes its TLB entry too (ARM), not only unmapping it.
    pub fn flushes_at_map(self) -> bool {
        matches!(self, KernelConfig::Arm32Lpae { .. })
    }

    /// Nested kmap_local mappings that work: `KM_MAX_IDX` is 16 and `kmap_local_idx_push()`
    /// BUGs when the index reaches it, so 15; 16 with CONFIG_DEBUG_KMAP_LOCAL (33 slots, step 2).
    /// On 64-bit nothing is pushed; the emulation still bounds nesting at 15.
    pub fn usable_slots(self) -> usize {
        match self {
            KernelConfig::Highmem32 { debug_kmap_local: true, .. } => 16,
            _ => 15,
        }
    }

    /// `LAST_PKMAP`: 512 with PAE, 1024 without (arch/x86/include/asm/pgtable_32_areas.h).
    pub fn last_pkmap(self) -> usize {
        match self {
            KernelConfig::Highmem32 { pae: false, .. } => 1024,
            _ => 512,
        }
    }

    /// CPUs an IPI round reaches.
    pub fn cpus(self) -> u32 {
        match self {
            KernelConfig::Highmem32 { cpus, .. } | KernelConfig::Arm32Lpae { cpus } | KernelConfig::Bit64 { cpus } => {
                cpus
            }
        }
    }

    /// `lazy_max_pages()`: fls(ncpus) x 32 MiB of 4 KiB pages.
    pub fn lazy_max_pages(self) -> u64 {
        let fls = u64::from(u32::BITS - self.cpus().leading_zeros());
        fls * (32 << 20) / 4096
    }

    /// Pages of vmalloc space: 128 MiB on x86-32 (`__VMALLOC_RESERVE`), unbounded here on 64-bit.
    pub fn vmalloc_pages(self) -> Option<u64> {
        match self {
            KernelConfig::Highmem32 { .. } => Some((128 << 20) / 4096),
            KernelConfig::Arm32Lpae { .. } => Some((240 << 20) / 4096),
            KernelConfig::Bit64 { .. } => None,
        }
    }
}

/// `tlb_single_page_flush_ceiling`: a kernel-range flush of more pages is a full flush.
pub const TLB_SINGLE_PAGE_FLUSH_CEILING: u64 = 33;

/// `vm_map_ram()` maps up to this many pages from per-CPU vmap blocks (BITS_PER_LONG on i386);
/// more goes through a full `vmap()`-style area.
pub const VMAP_BLOCK_MAX_PAGES: usize = 32;

/// Events the kernel would have had for the requests made, per [`crate::MapCtx`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelEvents {
    /// Calls of the mapping API (map calls; unmaps are implied).
    pub api_calls: u64,
    /// Pages mapped that were in HighMem (each one a PTE write with kmap_local).
    pub highmem_maps: u64,
    /// Pages "mapped" that were lowmem: `page_address()`, a call and nothing more.
    pub lowmem_maps: u64,
    /// Page-table entries written.
    pub pte_writes: u64,
    /// Page-table entries cleared.
    pub pte_clears: u64,
    /// Single-page TLB invalidations (`invlpg`, `flush_tlb_one_kernel()`).
    pub tlb_single_flushes: u64,
    /// Full TLB flushes (on every CPU an IPI reaches, plus the local one).
    pub tlb_full_flushes: u64,
    /// IPI rounds (`on_each_cpu()`).
    pub ipi_rounds: u64,
    /// CPUs interrupted by those rounds (the caller's own flush is not an IPI).
    pub ipi_cpus: u64,
    /// Lock acquisitions (`kmap_lock`, the vmap area locks, vmap block locks).
    pub lock_acquisitions: u64,
    /// Slab allocations (vm_struct, vmap_area).
    pub slab_allocs: u64,
    /// Highest number of vmalloc-space pages in use or lazily freed but not yet purged.
    pub vmalloc_high_water_pages: u64,
    /// Highest number of kmap_local slots held at once (in pages).
    pub slots_high_water: u64,
    /// LIFO-forced re-maps, as the loop reported them.
    pub forced_remaps: u64,
    /// Bytes copied (bounce buffers).
    pub bytes_copied: u64,
    /// `kmap()` calls that found the page still in the pool (no PTE write).
    pub pool_hits: u64,
    /// Pages whose vmalloc mapping was freed lazily (their flush waits for a purge, which comes
    /// once per [`KernelConfig::lazy_max_pages`] of them).
    pub vunmap_lazy_pages: u64,
    /// `vm_map_ram()` / `vmap()` calls.
    pub vmap_calls: u64,
    /// Page faults: a library read past what its mapping covers (7.2-rc's `kmap_local_folio()`
    /// of one page handed a folio-sized length). The kernel oopses; the call has no cost.
    pub faults: u64,
}

/// One kind of kernel event: a field of [`KernelEvents`], named as cost tables and reports name
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// [`KernelEvents::api_calls`].
    ApiCalls,
    /// [`KernelEvents::highmem_maps`].
    HighmemMaps,
    /// [`KernelEvents::lowmem_maps`].
    LowmemMaps,
    /// [`KernelEvents::pte_writes`].
    PteWrites,
    /// [`KernelEvents::pte_clears`].
    PteClears,
    /// [`KernelEvents::tlb_single_flushes`].
    TlbSingleFlushes,
    /// [`KernelEvents::tlb_full_flushes`].
    TlbFullFlushes,
    /// [`KernelEvents::ipi_rounds`].
    IpiRounds,
    /// [`KernelEvents::ipi_cpus`].
    IpiCpus,
    /// [`KernelEvents::lock_acquisitions`].
    LockAcquisitions,
    /// [`KernelEvents::slab_allocs`].
    SlabAllocs,
    /// [`KernelEvents::vmalloc_high_water_pages`].
    VmallocHighWaterPages,
    /// [`KernelEvents::slots_high_water`].
    SlotsHighWater,
    /// [`KernelEvents::forced_remaps`].
    ForcedRemaps,
    /// [`KernelEvents::bytes_copied`].
    BytesCopied,
    /// [`KernelEvents::pool_hits`].
    PoolHits,
    /// [`KernelEvents::vunmap_lazy_pages`].
    VunmapLazyPages,
    /// [`KernelEvents::vmap_calls`].
    VmapCalls,
    /// [`KernelEvents::faults`].
    Faults,
}

impl Event {
    /// Every event, in [`KernelEvents`]'s field order.
    pub const ALL: [Event; 19] = [
        Event::ApiCalls,
        Event::HighmemMaps,
        Event::LowmemMaps,
        Event::PteWrites,
        Event::PteClears,
        Event::TlbSingleFlushes,
        Event::TlbFullFlushes,
        Event::IpiRounds,
        Event::IpiCpus,
        Event::LockAcquisitions,
        Event::SlabAllocs,
        Event::VmallocHighWaterPages,
        Event::SlotsHighWater,
        Event::ForcedRemaps,
        Event::BytesCopied,
        Event::PoolHits,
        Event::VunmapLazyPages,
        Event::VmapCalls,
        Event::Faults,
    ];

    /// The field's name (the cost table's key).
    pub fn name(self) -> &'static str {
        match self {
            Event::ApiCalls => "api_calls",
            Event::HighmemMaps => "highmem_maps",
            Event::LowmemMaps => "lowmem_maps",
            Event::PteWrites => "pte_writes",
            Event::PteClears => "pte_clears",
            Event::TlbSingleFlushes => "tlb_single_flushes",
            Event::TlbFullFlushes => "tlb_full_flushes",
            Event::IpiRounds => "ipi_rounds",
            Event::IpiCpus => "ipi_cpus",
            Event::LockAcquisitions => "lock_acquisitions",
            Event::SlabAllocs => "slab_allocs",
            Event::VmallocHighWaterPages => "vmalloc_high_water_pages",
            Event::SlotsHighWater => "slots_high_water",
            Event::ForcedRemaps => "forced_remaps",
            Event::BytesCopied => "bytes_copied",
            Event::PoolHits => "pool_hits",
            Event::VunmapLazyPages => "vunmap_lazy_pages",
            Event::VmapCalls => "vmap_calls",
            Event::Faults => "faults",
        }
    }

    /// Parse a [`Event::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == s)
    }

    /// A resource held at most (a high-water mark), not a count per extent: never priced.
    pub fn is_resource(self) -> bool {
        matches!(self, Event::VmallocHighWaterPages | Event::SlotsHighWater)
    }
}

impl KernelEvents {
    /// The count of one event.
    pub fn get(&self, e: Event) -> u64 {
        match e {
            Event::ApiCalls => self.api_calls,
            Event::HighmemMaps => self.highmem_maps,
            Event::LowmemMaps => self.lowmem_maps,
            Event::PteWrites => self.pte_writes,
            Event::PteClears => self.pte_clears,
            Event::TlbSingleFlushes => self.tlb_single_flushes,
            Event::TlbFullFlushes => self.tlb_full_flushes,
            Event::IpiRounds => self.ipi_rounds,
            Event::IpiCpus => self.ipi_cpus,
            Event::LockAcquisitions => self.lock_acquisitions,
            Event::SlabAllocs => self.slab_allocs,
            Event::VmallocHighWaterPages => self.vmalloc_high_water_pages,
            Event::SlotsHighWater => self.slots_high_water,
            Event::ForcedRemaps => self.forced_remaps,
            Event::BytesCopied => self.bytes_copied,
            Event::PoolHits => self.pool_hits,
            Event::VunmapLazyPages => self.vunmap_lazy_pages,
            Event::VmapCalls => self.vmap_calls,
            Event::Faults => self.faults,
        }
    }

    /// Every field with its name, for cost tables and reports.
    pub fn fields(&self) -> [(&'static str, u64); 19] {
        Event::ALL.map(|e| (e.name(), self.get(e)))
    }

    /// Field-wise sum (high-water marks take the maximum).
    pub fn add(&mut self, o: &KernelEvents) {
        let hw_v = self.vmalloc_high_water_pages.max(o.vmalloc_high_water_pages);
        let hw_s = self.slots_high_water.max(o.slots_high_water);
        self.api_calls += o.api_calls;
        self.highmem_maps += o.highmem_maps;
        self.lowmem_maps += o.lowmem_maps;
        self.pte_writes += o.pte_writes;
        self.pte_clears += o.pte_clears;
        self.tlb_single_flushes += o.tlb_single_flushes;
        self.tlb_full_flushes += o.tlb_full_flushes;
        self.ipi_rounds += o.ipi_rounds;
        self.ipi_cpus += o.ipi_cpus;
        self.lock_acquisitions += o.lock_acquisitions;
        self.slab_allocs += o.slab_allocs;
        self.forced_remaps += o.forced_remaps;
        self.bytes_copied += o.bytes_copied;
        self.pool_hits += o.pool_hits;
        self.vunmap_lazy_pages += o.vunmap_lazy_pages;
        self.vmap_calls += o.vmap_calls;
        self.faults += o.faults;
        self.vmalloc_high_water_pages = hw_v;
        self.slots_high_water = hw_s;
    }
}

/// How a mapping was made, to be undone with the matching events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Undo {
    /// Nothing to undo (direct map, lowmem page).
    Nothing,
    /// kmap_local slots with real PTEs: clear and invlpg each.
    Fixmap { pages: u64 },
    /// A vmap/vm_map_ram area: clear PTEs now, flush lazily.
    Vmalloc { pages: u64, block: bool },
    /// `kunmap()` of a pool entry: drop a reference under the lock.
    Pool { key: (usize, u64) },
}

/// The per-context kernel state the events depend on: slots held, the `kmap()` pool's entries,
/// lazily freed vmalloc pages.
#[derive(Debug, Default)]
pub(crate) struct KernelModel {
    pub(crate) config: KernelConfig,
    pub(crate) ev: KernelEvents,
    slots_held: u64,
    pool: Option<PoolModel>,
    vmalloc_live: u64,
    vmalloc_lazy: u64,
    generation: u64,
}

#[derive(Debug)]
struct PoolModel {
    /// `pkmap_count` per entry: 0 free, 1 mapped and unused, > 1 in use.
    count: Vec<u32>,
    pfn: Vec<Option<(usize, u64)>>,
    /// Entry of each (frame, extent generation): a new extent's pages are other page-cache
    /// pages in the kernel, even where the emulation reuses the frames.
    by_pfn: HashMap<(usize, u64), usize>,
    last: usize,
}

impl KernelModel {
    pub(crate) fn new(config: KernelConfig) -> Self {
        Self { config, ..Self::default() }
    }

    /// kmap_local slots holding a PTE now (what `__kmap_local_sched_out()` would clear).
    pub(crate) fn slots_held(&self) -> u64 {
        self.slots_held
    }

    /// kmap_local of `pages` pages (one call), `high` of them in HighMem. A single lowmem page
    /// is `page_address()`; a multi-page range needs a slot per page whatever the zone (the pages
    /// of a page array are not contiguous in the direct map).
    pub(crate) fn kmap_local(&mut self, pages: u64, high: u64) -> Undo {
        self.ev.api_calls += 1;
        self.ev.highmem_maps += high;
        self.ev.lowmem_maps += pages - high;
        if !self.config.has_highmem() || (pages == 1 && high == 0) {
            return Undo::Nothing;
        }
        self.ev.pte_writes += pages;
        if self.config.flushes_at_map() {
            self.ev.tlb_single_flushes += pages;
        }
        self.slots_held += pages;
        self.ev.slots_high_water = self.ev.slots_high_water.max(self.slots_held);
        Undo::Fixmap { pages }
    }

    /// `vm_map_ram()` (`block` = from a per-CPU vmap block) or `vmap()` of `pages` pages.
    pub(crate) fn vmap(&mut self, pages: u64, high: u64, block: bool) -> Undo {
        self.ev.api_calls += 1;
        self.ev.highmem_maps += high;
        self.ev.lowmem_maps += pages - high;
        if !self.config.has_highmem() && pages == 1 {
            // folio_map_local() on 64-bit: folio_address().
            return Undo::Nothing;
        }
        self.ev.vmap_calls += 1;
        self.ev.pte_writes += pages;
        if block {
            // vb_alloc(): the per-CPU block's spinlock.
            self.ev.lock_acquisitions += 1;
        } else {
            // vmap(): a vm_struct and a vmap_area from slab, the global area lock, rb-tree insert.
            self.ev.slab_allocs += 2;
            self.ev.lock_acquisitions += 1;
        }
        // A guard page follows every vmap area.
        self.vmalloc_live += pages + u64::from(!block);
        self.vmalloc_mark();
        Undo::Vmalloc { pages, block }
    }

    /// `kmap()` of one page through the global pool (`kmap_high()`).
    /// The next requests belong to a new extent (other pages of the page cache).
    pub(crate) fn begin_extent(&mut self) {
        self.generation += 1;
    }

    pub(crate) fn kmap_pool(&mut self, pfn: usize, high: bool) -> Undo {
        let key = (pfn, self.generation);
        self.ev.api_calls += 1;
        if !high || !self.config.has_highmem() {
            self.ev.lowmem_maps += 1;
            return Undo::Nothing;
        }
        self.ev.highmem_maps += 1;
        // kmap_lock, and page_address()'s hash-bucket lock (HASHED_PAGE_VIRTUAL on x86-32:
        // mm/highmem.c looks the page's address up under the bucket's spinlock).
        self.ev.lock_acquisitions += 2;
        let n = self.config.last_pkmap();
        let pool = self.pool.get_or_insert_with(|| PoolModel {
            count: vec![0; n],
            pfn: vec![None; n],
            by_pfn: HashMap::new(),
            last: 0,
        });
        if let Some(&e) = pool.by_pfn.get(&key) {
            pool.count[e] += 1;
            self.ev.pool_hits += 1;
            return Undo::Pool { key };
        }
        // map_new_virtual(): scan for a free entry, flushing every unused one on wrap.
        let mut scanned = 0;
        loop {
            pool.last = (pool.last + 1) % n;
            if pool.last == 0 {
                // flush_all_zero_pkmaps(): clear every count-1 entry, then one kernel-range flush
                // of the whole pool: more than the ceiling, so an IPI to all CPUs + full flush.
                let mut cleared = 0;
                for e in 0..n {
                    if pool.count[e] == 1 {
                        pool.count[e] = 0;
                        if let Some(p) = pool.pfn[e].take() {
                            pool.by_pfn.remove(&p);
                        }
                        cleared += 1;
                    }
                }
                self.ev.pte_clears += cleared;
                // set_page_address(page, NULL) of each cleared entry: its bucket's lock.
                self.ev.lock_acquisitions += cleared;
                if cleared > 0 {
                    self.ev.ipi_rounds += 1;
                    self.ev.ipi_cpus += u64::from(self.config.cpus().saturating_sub(1));
                    self.ev.tlb_full_flushes += 1;
                }
            }
            if pool.count[pool.last] == 0 {
                break;
            }
            scanned += 1;
            if scanned > 2 * n {
                // Every entry in use: the kernel sleeps; the lab never holds that many.
                break;
            }
        }
        let e = pool.last;
        pool.count[e] = 2;
        pool.pfn[e] = Some(key);
        pool.by_pfn.insert(key, e);
        self.ev.pte_writes += 1;
        // set_page_address(page, vaddr): the bucket's lock again.
        self.ev.lock_acquisitions += 1;
        Undo::Pool { key }
    }

    pub(crate) fn undo(&mut self, u: Undo) {
        match u {
            Undo::Nothing => {}
            Undo::Fixmap { pages } => {
                self.ev.pte_clears += pages;
                self.ev.tlb_single_flushes += pages;
                self.slots_held -= pages;
            }
            Undo::Vmalloc { pages, block } => {
                self.ev.pte_clears += pages;
                self.ev.lock_acquisitions += 1;
                let span = pages + u64::from(!block);
                self.ev.vunmap_lazy_pages += pages;
                self.vmalloc_live -= span;
                self.vmalloc_lazy += span;
                self.vmalloc_mark();
                let space_left = self.config.vmalloc_pages().map(|v| v.saturating_sub(self.vmalloc_live));
                if self.vmalloc_lazy > self.config.lazy_max_pages() || space_left.is_some_and(|l| l < span) {
                    self.purge();
                }
            }
            Undo::Pool { key } => {
                // kunmap_high(): kmap_lock, and page_address()'s bucket lock.
                self.ev.lock_acquisitions += 2;
                if let Some(pool) = &mut self.pool {
                    if let Some(&e) = pool.by_pfn.get(&key) {
                        pool.count[e] = pool.count[e].saturating_sub(1).max(1);
                    }
                }
            }
        }
    }

    /// `__purge_vmap_area_lazy()`: one kernel-range flush over the lazily freed span.
    pub(crate) fn purge(&mut self) {
        if self.vmalloc_lazy == 0 {
            return;
        }
        if self.vmalloc_lazy > TLB_SINGLE_PAGE_FLUSH_CEILING {
            self.ev.ipi_rounds += 1;
            self.ev.ipi_cpus += u64::from(self.config.cpus().saturating_sub(1));
            self.ev.tlb_full_flushes += 1;
        } else {
            self.ev.tlb_single_flushes += self.vmalloc_lazy;
        }
        self.ev.lock_acquisitions += 1;
        self.vmalloc_lazy = 0;
    }

    fn vmalloc_mark(&mut self) {
        let used = self.vmalloc_live + self.vmalloc_lazy;
        self.ev.vmalloc_high_water_pages = self.ev.vmalloc_high_water_pages.max(used);
    }
}
