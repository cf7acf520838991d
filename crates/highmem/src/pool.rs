//! The old global `kmap()` pool (models `kmap_high()`/`kunmap_high()` in mm/highmem.c).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(unix)]
use crate::backend::VaRegion;
use crate::backend::{Span, Store};
use crate::{MapError, PhysMem};

/// Number of pool entries (`LAST_PKMAP` on x86-32 without PAE).
pub const LAST_PKMAP: usize = 1024;

struct PoolState {
    /// `pkmap_count`: 0 free and unmapped, 1 mapped but unused (flushed before reuse),
    /// n > 1 in use by n - 1 users.
    count: Vec<u32>,
    /// Which frame each entry maps.
    pfn: Vec<Option<usize>>,
    /// `page_address()` lookup: frame to entry.
    by_pfn: HashMap<usize, usize>,
    /// `last_pkmap_nr`.
    last: usize,
}

/// Totals of one pool, over all threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Entries installed (a new mapping made).
    pub installs: u64,
    /// `kmap()` calls that found the frame still mapped (no page-table work).
    pub hits: u64,
    /// `flush_all_zero_pkmaps()` runs (each one a global TLB flush in the kernel).
    pub flushes: u64,
    /// Entries torn down by flushes.
    pub flushed_entries: u64,
    /// Times a caller slept because every entry was in use.
    pub waits: u64,
    /// Lock acquisitions that found `kmap_lock` held by another thread.
    pub contended: u64,
}

/// A global pool of [`LAST_PKMAP`] single-page mappings shared by all threads, behind one lock.
///
/// `kunmap()` only drops a reference; the mapping lingers until the pool wraps around and
/// flushes every unused entry at once.
pub struct KmapPool {
    mem: PhysMem,
    state: Mutex<PoolState>,
    wait: Condvar,
    #[cfg(unix)]
    region: Option<VaRegion>,
    installs: AtomicU64,
    hits: AtomicU64,
    flushes: AtomicU64,
    flushed_entries: AtomicU64,
    waits: AtomicU64,
    contended: AtomicU64,
}

impl std::fmt::Debug for KmapPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmapPool").field("stats", &self.stats()).finish()
    }
}

/// What one pool operation did, for the calling thread's counters.
#[derive(Default)]
pub(crate) struct PoolOp {
    pub(crate) syscalls: u64,
    pub(crate) installed: bool,
}

impl KmapPool {
    /// A pool over the frames of `mem`.
    pub fn new(mem: &PhysMem) -> Result<Self, MapError> {
        #[cfg(unix)]
        let region = if mem.inner.store.is_highmem() {
            Some(VaRegion::reserve(LAST_PKMAP * mem.page_size()).map_err(MapError::Os)?)
        } else {
            None
        };
        Ok(Self {
            mem: mem.clone(),
            state: Mutex::new(PoolState {
                count: vec![0; LAST_PKMAP],
                pfn: vec![None; LAST_PKMAP],
                by_pfn: HashMap::new(),
                last: 0,
            }),
            wait: Condvar::new(),
            #[cfg(unix)]
            region,
            installs: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flushed_entries: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            contended: AtomicU64::new(0),
        })
    }

    /// Totals so far.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            installs: self.installs.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            flushed_entries: self.flushed_entries.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            contended: self.contended.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn mem(&self) -> &PhysMem {
        &self.mem
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        match self.state.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                self.contended.fetch_add(1, Ordering::Relaxed);
                self.state.lock().unwrap_or_else(|e| e.into_inner())
            }
        }
    }

    /// Models `flush_all_zero_pkmaps()`: tear down every mapped-but-unused entry.
    fn flush_all_zero(&self, st: &mut PoolState, op: &mut PoolOp) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        for i in 0..LAST_PKMAP {
            if st.count[i] != 1 {
                continue;
            }
            st.count[i] = 0;
            if let Some(pfn) = st.pfn[i].take() {
                st.by_pfn.remove(&pfn);
            }
            self.flushed_entries.fetch_add(1, Ordering::Relaxed);
            #[cfg(unix)]
            if let Some(region) = &self.region {
                let ps = self.mem.page_size();
                // The entry's count was 1: no kmap() user holds its span.
                region.clear(i * ps, ps);
                op.syscalls += 1;
            }
        }
    }

    /// Models `kmap_high()`: map the frame `pfn` (or find its lingering mapping) and take a
    /// reference. May sleep when all entries are in use.
    pub(crate) fn kmap(&self, pfn: usize) -> Result<(Span, PoolOp), MapError> {
        let mut op = PoolOp::default();
        let ps = self.mem.page_size();
        let mut st = self.lock();
        loop {
            if let Some(&e) = st.by_pfn.get(&pfn) {
                st.count[e] += 1;
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((self.entry_span(e, pfn), op));
            }
            // map_new_virtual(): scan for a free entry, flushing when the scan wraps.
            let mut found = None;
            for _ in 0..LAST_PKMAP {
                st.last = (st.last + 1) % LAST_PKMAP;
                if st.last == 0 {
                    self.flush_all_zero(&mut st, &mut op);
                }
                if st.count[st.last] == 0 {
                    found = Some(st.last);
                    break;
                }
            }
            let Some(e) = found else {
                self.waits.fetch_add(1, Ordering::Relaxed);
                st = self.wait.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            #[cfg(unix)]
            if let (Some(region), Store::Memfd(store)) = (&self.region, &self.mem.inner.store) {
                region.map(store, e * ps, pfn * ps, ps).map_err(MapError::Os)?;
                op.syscalls += 1;
            }
            st.count[e] = 2;
            st.pfn[e] = Some(pfn);
            st.by_pfn.insert(pfn, e);
            op.installed = true;
            self.installs.fetch_add(1, Ordering::Relaxed);
            return Ok((self.entry_span(e, pfn), op));
        }
    }

    /// The page of entry `e` (mapping frame `pfn`).
    fn entry_span(&self, e: usize, pfn: usize) -> Span {
        let ps = self.mem.page_size();
        #[cfg(unix)]
        if let Some(region) = &self.region {
            return region.span(e * ps, ps);
        }
        let _ = e;
        self.mem.inner.store.span(pfn * ps, ps)
    }

    /// Models `kunmap_high()`: drop a reference; the mapping lingers.
    pub(crate) fn kunmap(&self, pfn: usize) {
        let mut st = self.lock();
        let e = *st.by_pfn.get(&pfn).expect("kunmap of a frame the pool does not map");
        st.count[e] -= 1;
        if st.count[e] == 1 {
            self.wait.notify_all();
        }
    }
}
