//! Mapping semantics of every strategy on both backends: contents, lengths, counts, LIFO
//! enforcement, slot exhaustion, forgotten guards, and the global pool.

use highmem::{
    Backend, FolioVec, KernelConfig, KmapPool, LifoPolicy, MapCtx, MapError, PhysMem, Strategy, Zone, KM_MAX_IDX,
    LAST_PKMAP,
};
use std::sync::Arc;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 4096) as u8).collect()
}

/// Under Miri only the heap backend runs (the emulated highmem backend makes system calls).
fn backends() -> Vec<Backend> {
    if cfg!(miri) {
        vec![Backend::Heap]
    } else {
        Backend::ALL.to_vec()
    }
}

#[test]
fn every_strategy_reads_and_writes_the_same_bytes() {
    for backend in backends() {
        for ps in [4096, 16384, 65536] {
            let mem = PhysMem::new(backend, ps, 256).unwrap();
            for order in [0, 1] {
                let data = pattern(3 * ps + 123);
                let pages = FolioVec::from_slice(&mem, &data, order).unwrap();
                for s in Strategy::ALL {
                    let mut ctx = MapCtx::new(&mem, s).unwrap();
                    let mut frame = ctx.frame();
                    let mut got = vec![0u8; data.len()];
                    frame.memcpy_from_pages(&pages, 0, &mut got).unwrap();
                    assert!(got == data, "{backend} {ps} {order} {s}: read");
                    // Write a new pattern through the strategy and read it back directly.
                    let mut dst = FolioVec::alloc(&mem, data.len(), order).unwrap();
                    let new: Vec<u8> = data.iter().map(|b| b ^ 0x5a).collect();
                    frame.memcpy_to_pages(&mut dst, 0, &new).unwrap();
                    assert!(dst.to_vec(0, new.len()) == new, "{backend} {ps} {order} {s}: write");
                    let c = ctx.counters();
                    assert_eq!(c.lifo_violations, 0);
                    if s != Strategy::Direct {
                        assert_eq!(c.maps, c.unmaps, "{s}: {c:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn mapped_lengths_follow_the_strategy() {
    let mem = PhysMem::new(Backend::Heap, 4096, 256).unwrap();
    let pages = FolioVec::from_slice(&mem, &pattern(65536), 3).unwrap(); // 32 KiB folios
    let len_of = |s: Strategy, off: usize| {
        let mut ctx = MapCtx::new(&mem, s).unwrap();
        let mut f = ctx.frame();
        let n = f.map(&pages, off, 65536 - off).unwrap().len();
        n
    };
    assert_eq!(len_of(Strategy::Direct, 100), 32768 - 100, "rest of the folio");
    assert_eq!(len_of(Strategy::KmapLocal, 100), 4096 - 100, "rest of the page");
    assert_eq!(len_of(Strategy::GlobalKmap, 100), 4096 - 100);
    // kmap_local_range() on 64-bit: page_address() of the physically contiguous run (the two
    // folios are consecutive frames).
    assert_eq!(len_of(Strategy::Range, 100), 65536 - 100, "the contiguous run");
    assert_eq!(len_of(Strategy::VmMapRam, 100), 65536 - 100, "the whole page array");
    assert_eq!(len_of(Strategy::VmapFolio, 100), 32768 - 100);
    assert_eq!(len_of(Strategy::Bounce, 100), highmem::DEFAULT_BOUNCE_BYTES, "bounce buffer");
}

#[test]
fn highmem_backend_pays_system_calls_heap_does_not() {
    for backend in backends() {
        let mem = PhysMem::new(backend, 4096, 64).unwrap();
        let pages = FolioVec::from_slice(&mem, &pattern(8 * 4096), 0).unwrap();
        let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
        let mut buf = vec![0u8; 8 * 4096];
        ctx.frame().memcpy_from_pages(&pages, 0, &mut buf).unwrap();
        let c = ctx.counters();
        assert_eq!(c.maps, 8);
        match backend {
            Backend::Heap => assert_eq!(c.syscalls, 0),
            Backend::EmulatedHighmem => assert_eq!(c.syscalls, 16, "one mmap and one unmap per page"),
        }
    }
}

#[test]
fn sixteenth_nested_mapping_is_an_error() {
    fn nest(frame: &mut highmem::Frame<'_>, pages: &FolioVec, depth: usize) -> Result<usize, MapError> {
        let mut m = frame.map(pages, (depth % 4) * 4096, 4096)?;
        let (_, mut above) = m.split();
        match nest(&mut above, pages, depth + 1) {
            Ok(d) => Ok(d),
            Err(MapError::SlotsExhausted) => Ok(depth + 1),
            Err(e) => Err(e),
        }
    }
    for backend in backends() {
        let mem = PhysMem::new(backend, 4096, 16).unwrap();
        let pages = FolioVec::from_slice(&mem, &pattern(4 * 4096), 0).unwrap();
        let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
        let reached = nest(&mut ctx.frame(), &pages, 0).unwrap();
        // kmap_local_idx_push() BUGs when the index reaches KM_MAX_IDX: 15 mappings nest.
        assert_eq!(reached, KM_MAX_IDX - 1, "{backend}");
        assert_eq!(ctx.depth(), 0, "all released");
        assert_eq!(ctx.counters().max_depth, KM_MAX_IDX as u64 - 1);
    }
}

#[test]
fn forgotten_guard_is_reported_by_the_next_release() {
    let mem = PhysMem::new(Backend::Heap, 4096, 16).unwrap();
    let pages = FolioVec::from_slice(&mem, &pattern(2 * 4096), 0).unwrap();
    let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
    ctx.set_lifo_policy(LifoPolicy::Count);
    {
        let mut f = ctx.frame();
        let mut outer = f.map(&pages, 0, 4096).unwrap();
        {
            let (_, mut above) = outer.split();
            let inner = above.map(&pages, 4096, 4096).unwrap();
            std::mem::forget(inner); // leaks slot 1
        }
        drop(outer); // slot 0 released while slot 1 is still taken
    }
    assert_eq!(ctx.counters().lifo_violations, 1);
    assert_eq!(ctx.depth(), 2, "the leaked slot keeps the stack shape");
}

#[test]
#[should_panic(expected = "released out of order")]
fn out_of_order_release_panics_under_the_panic_policy() {
    let mem = PhysMem::new(Backend::Heap, 4096, 16).unwrap();
    let pages = FolioVec::from_slice(&mem, &pattern(2 * 4096), 0).unwrap();
    let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
    ctx.set_lifo_policy(LifoPolicy::Panic);
    let mut f = ctx.frame();
    let mut outer = f.map(&pages, 0, 4096).unwrap();
    let (_, mut above) = outer.split();
    std::mem::forget(above.map(&pages, 4096, 4096).unwrap());
    drop(outer);
}

#[test]
#[cfg_attr(miri, ignore = "system calls")]
fn vmap_and_pool_mappings_have_no_order_rule() {
    for s in [Strategy::VmapFolio, Strategy::GlobalKmap] {
        let mem = PhysMem::new(Backend::EmulatedHighmem, 4096, 16).unwrap();
        let pages = FolioVec::from_slice(&mem, &pattern(2 * 4096), 0).unwrap();
        let mut ctx = MapCtx::new(&mem, s).unwrap();
        ctx.set_lifo_policy(LifoPolicy::Panic);
        {
            let mut f = ctx.frame();
            let mut outer = f.map(&pages, 0, 4096).unwrap();
            let (_, mut above) = outer.split();
            std::mem::forget(above.map(&pages, 4096, 4096).unwrap());
            drop(outer);
        }
        assert_eq!(ctx.counters().lifo_violations, 0, "{s}");
    }
}

#[test]
#[cfg_attr(miri, ignore = "system calls")]
fn global_pool_reuses_lingering_mappings_and_flushes_on_wrap() {
    let mem = PhysMem::new(Backend::EmulatedHighmem, 4096, 2 * LAST_PKMAP).unwrap();
    let pool = Arc::new(KmapPool::new(&mem).unwrap());
    let data = pattern(2 * LAST_PKMAP * 4096);
    let pages = FolioVec::from_slice(&mem, &data, 0).unwrap();
    let mut ctx = MapCtx::with_pool(Arc::clone(&pool)).unwrap();
    let mut buf = vec![0u8; 4096];
    // The same page twice: the second kmap finds the lingering mapping.
    ctx.frame().memcpy_from_pages(&pages, 0, &mut buf).unwrap();
    ctx.frame().memcpy_from_pages(&pages, 0, &mut buf).unwrap();
    assert_eq!(pool.stats().installs, 1);
    assert_eq!(pool.stats().hits, 1);
    // Walking more pages than the pool holds forces a flush of the unused entries.
    let mut all = vec![0u8; data.len()];
    ctx.frame().memcpy_from_pages(&pages, 0, &mut all).unwrap();
    assert!(all == data);
    assert!(pool.stats().flushes >= 1, "{:?}", pool.stats());
    assert!(pool.stats().flushed_entries >= (LAST_PKMAP - 2) as u64);
}

#[test]
fn pool_is_shared_between_threads() {
    let mem = PhysMem::new(Backend::Heap, 4096, 64).unwrap();
    let pool = Arc::new(KmapPool::new(&mem).unwrap());
    let data = pattern(16 * 4096);
    let pages = Arc::new(FolioVec::from_slice(&mem, &data, 0).unwrap());
    std::thread::scope(|s| {
        for _ in 0..4 {
            let pool = Arc::clone(&pool);
            let pages = Arc::clone(&pages);
            let data = &data;
            s.spawn(move || {
                let mut ctx = MapCtx::with_pool(pool).unwrap();
                for _ in 0..50 {
                    let mut buf = vec![0u8; data.len()];
                    ctx.frame().memcpy_from_pages(&pages, 0, &mut buf).unwrap();
                    assert!(&buf == data);
                }
            });
        }
    });
    let st = pool.stats();
    assert_eq!(st.installs + st.hits, 4 * 50 * 16);
}

#[test]
fn frames_are_freed_with_their_folios() {
    let mem = PhysMem::new(Backend::Heap, 4096, 64).unwrap();
    {
        let _a = FolioVec::alloc(&mem, 10 * 4096, 0).unwrap();
        let _b = FolioVec::alloc(&mem, 32 * 4096, 5).unwrap();
        assert_eq!(mem.frames_in_use(), 42);
        assert!(matches!(FolioVec::alloc(&mem, 32 * 4096, 5), Err(MapError::OutOfFrames)));
    }
    assert_eq!(mem.frames_in_use(), 0);
}

#[test]
fn bad_page_size_and_order_are_errors() {
    assert!(matches!(PhysMem::new(Backend::Heap, 8192, 4), Err(MapError::BadPageSize(8192))));
    let mem = PhysMem::new(Backend::Heap, 4096, 4).unwrap();
    assert!(matches!(mem.alloc_folio(11), Err(MapError::BadOrder(11))));
    let pages = FolioVec::from_slice(&mem, &[1, 2, 3], 0).unwrap();
    let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
    assert!(matches!(ctx.frame().map(&pages, 4096, 1), Err(MapError::OutOfRange { .. })));
}

fn highmem_ctx(mem: &PhysMem, s: Strategy) -> MapCtx {
    let mut ctx = MapCtx::new(mem, s).unwrap();
    ctx.set_config(KernelConfig::X86_32_PAE);
    ctx
}

#[test]
fn kmap_local_of_a_lowmem_page_is_a_call_only() {
    let mem = PhysMem::new(Backend::Heap, 4096, 64).unwrap();
    let mut high = FolioVec::from_slice(&mem, &pattern(4 * 4096), 0).unwrap();
    high.set_zone(Zone::HighMem);
    let low = FolioVec::from_slice(&mem, &pattern(4 * 4096), 0).unwrap();
    let mut ctx = highmem_ctx(&mem, Strategy::KmapLocal);
    let mut buf = vec![0u8; 4 * 4096];
    ctx.frame().memcpy_from_pages(&high, 0, &mut buf).unwrap();
    ctx.frame().memcpy_from_pages(&low, 0, &mut buf).unwrap();
    let e = ctx.events();
    assert_eq!((e.api_calls, e.highmem_maps, e.lowmem_maps), (8, 4, 4));
    assert_eq!((e.pte_writes, e.pte_clears, e.tlb_single_flushes), (4, 4, 4), "highmem pages only");
    assert_eq!((e.ipi_rounds, e.tlb_full_flushes), (0, 0));
    // On 64-bit every page is in the direct map.
    let mut ctx = MapCtx::new(&mem, Strategy::KmapLocal).unwrap();
    ctx.frame().memcpy_from_pages(&high, 0, &mut buf).unwrap();
    assert_eq!(ctx.events().pte_writes, 0);
}

#[test]
fn a_highmem_fraction_spreads_the_page_cache_over_both_zones() {
    let mem = PhysMem::new(Backend::Heap, 4096, 64).unwrap();
    let mut pages = FolioVec::from_slice(&mem, &pattern(32 * 4096), 0).unwrap();
    let mut buf = vec![0u8; 32 * 4096];
    for (fraction, high) in [(1.0, 32), (0.5, 16), (0.25, 8), (0.0, 0)] {
        pages.set_highmem_fraction(fraction);
        let mut ctx = highmem_ctx(&mem, Strategy::KmapLocal);
        ctx.frame().memcpy_from_pages(&pages, 0, &mut buf).unwrap();
        let e = ctx.events();
        assert_eq!((e.highmem_maps, e.lowmem_maps, e.pte_writes), (high, 32 - high, high), "{fraction}");
    }
    // Spread, not a prefix: with one half in HighMem, pages alternate.
    pages.set_highmem_fraction(0.5);
    let zones: Vec<Zone> = pages.folios().iter().take(4).map(|f| f.zone()).collect();
    assert_eq!(zones, [Zone::Normal, Zone::HighMem, Zone::Normal, Zone::HighMem]);
}

#[test]
fn library_calls_and_the_slots_they_find_held_are_counted() {
    let mem = PhysMem::new(Backend::Heap, 4096, 64).unwrap();
    let mut pages = FolioVec::from_slice(&mem, &pattern(4 * 4096), 0).unwrap();
    pages.set_zone(Zone::HighMem);
    let mut ctx = highmem_ctx(&mem, Strategy::KmapLocal);
    {
        let mut f = ctx.frame();
        let m = f.map(&pages, 0, 4096).unwrap();
        m.ctx().note_library_call(4096);
        drop(m);
        f.ctx().note_library_call(1000);
    }
    let c = ctx.counters();
    assert_eq!((c.library_calls, c.library_bytes, c.library_slot_bytes), (2, 5096, 4096));
}

#[test]
fn a_range_maps_highmem_pages_into_slots_and_lowmem_pages_through_the_direct_map() {
    let mem = PhysMem::new(Backend::Heap, 4096, 64).unwrap();
    let mut pages = FolioVec::from_slice(&mem, &pattern(32 * 4096), 0).unwrap();
    // One folio in four in Normal: the range stops before it.
    pages.set_highmem_fraction(0.75);
    for s in [Strategy::Range, Strategy::RangeFallback] {
        let mut ctx = highmem_ctx(&mem, s);
        let (mut lens, mut off) = (Vec::new(), 0);
        while off < 32 * 4096 {
            let n = ctx.frame().map(&pages, off, 32 * 4096 - off).unwrap().len();
            off += n;
            lens.push(n / 4096);
        }
        // set_highmem_fraction(0.75): folios 0, 4, 8, ... are Normal.
        assert_eq!(lens[..3], [1, 3, 1], "{s}: a lowmem page alone, then the highmem run");
        let e = ctx.events();
        assert_eq!(e.highmem_maps, 24, "{s}");
        assert_eq!(e.lowmem_maps, 8, "{s}");
        assert_eq!(e.pte_writes, 24, "{s}: no slot for a lowmem page");
    }
}

#[test]
fn a_range_pays_per_page_and_the_direct_map_has_no_highmem() {
    let mem = PhysMem::new(Backend::Heap, 4096, 64).unwrap();
    let mut pages = FolioVec::from_slice(&mem, &pattern(32 * 4096), 0).unwrap();
    pages.set_zone(Zone::HighMem);
    let mut ctx = highmem_ctx(&mem, Strategy::Range);
    {
        let mut f = ctx.frame();
        let m = f.map(&pages, 0, 32 * 4096).unwrap();
        assert_eq!(m.len(), 13 * 4096);
    }
    let e = ctx.events();
    assert_eq!((e.api_calls, e.pte_writes, e.pte_clears, e.tlb_single_flushes), (1, 13, 13, 13));
    assert_eq!(e.slots_high_water, 13);
    let mut ctx = highmem_ctx(&mem, Strategy::Direct);
    assert!(matches!(ctx.frame().map(&pages, 0, 4096), Err(MapError::Unsupported(_))));
}

#[test]
fn kmap_pool_hits_write_no_pte_and_a_wrap_flushes_every_cpu() {
    let mem = PhysMem::new(Backend::Heap, 4096, 1200).unwrap();
    let mut pages = FolioVec::from_slice(&mem, &pattern(600 * 4096), 0).unwrap();
    pages.set_zone(Zone::HighMem);
    let mut ctx = highmem_ctx(&mem, Strategy::GlobalKmap);
    let mut buf = vec![0u8; 4096];
    ctx.frame().memcpy_from_pages(&pages, 0, &mut buf).unwrap();
    ctx.frame().memcpy_from_pages(&pages, 0, &mut buf).unwrap();
    let e = ctx.events();
    assert_eq!((e.pte_writes, e.pool_hits), (1, 1), "the second kmap() found the page mapped");
    let mut all = vec![0u8; 600 * 4096];
    ctx.frame().memcpy_from_pages(&pages, 0, &mut all).unwrap();
    let e = ctx.events();
    assert_eq!(e.tlb_full_flushes, 1, "LAST_PKMAP is 512 with PAE: one wrap for 600 pages");
    assert_eq!((e.ipi_rounds, e.ipi_cpus), (1, 1));
}

#[test]
fn vm_map_ram_defers_its_flush() {
    let mem = PhysMem::new(Backend::Heap, 4096, 64).unwrap();
    let mut pages = FolioVec::from_slice(&mem, &pattern(32 * 4096), 0).unwrap();
    pages.set_zone(Zone::HighMem);
    let mut ctx = highmem_ctx(&mem, Strategy::VmMapRam);
    let mut buf = vec![0u8; 32 * 4096];
    ctx.frame().memcpy_from_pages(&pages, 0, &mut buf).unwrap();
    let e = ctx.events();
    assert_eq!((e.api_calls, e.pte_writes, e.pte_clears, e.tlb_single_flushes), (1, 32, 32, 0));
    assert_eq!(e.slab_allocs, 0, "32 pages come from a per-CPU vmap block");
    let e = ctx.events_purged();
    assert_eq!((e.ipi_rounds, e.tlb_full_flushes), (0, 0), "32 lazy pages: below the flush ceiling");
    assert_eq!(e.tlb_single_flushes, 32);
}
