//! Mapping semantics of every strategy on both backends: contents, lengths, counts, LIFO
//! enforcement, slot exhaustion, forgotten guards, and the global pool.

use highmem::{Backend, FolioVec, KmapPool, LifoPolicy, MapCtx, MapError, PhysMem, Strategy, KM_MAX_IDX, LAST_PKMAP};
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
    assert_eq!(len_of(Strategy::Range, 100), 32768 - 100, "range within the folio");
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
fn seventeenth_nested_mapping_is_an_error() {
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
        assert_eq!(reached, KM_MAX_IDX, "{backend}");
        assert_eq!(ctx.depth(), 0, "all released");
        assert_eq!(ctx.counters().max_depth, KM_MAX_IDX as u64);
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
