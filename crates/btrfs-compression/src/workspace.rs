//! The generic workspace manager (models `btrfs_get_workspace()`/`btrfs_put_workspace()` in
//! compression.c) and the counters every manager keeps; zstd.c's own per-level manager is in
//! btrfs-zstd.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Lock `m`, ignoring poisoning (a panicking holder leaves the lists consistent).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Number of online CPUs (`num_online_cpus()`).
pub fn num_online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Counters of a workspace manager.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceStats {
    /// Workspaces allocated.
    pub allocated: u64,
    /// Workspaces freed (not kept idle, or reclaimed).
    pub freed: u64,
    /// Times a caller slept because all workspaces were busy.
    pub waits: u64,
    /// Workspaces handed out.
    pub gets: u64,
}

/// The live counters behind [`WorkspaceStats`].
#[derive(Default)]
pub struct Counters {
    /// Workspaces allocated.
    pub allocated: AtomicU64,
    /// Workspaces freed.
    pub freed: AtomicU64,
    /// Sleeps for a workspace.
    pub waits: AtomicU64,
    /// Workspaces handed out.
    pub gets: AtomicU64,
}

impl Counters {
    /// The counters now.
    pub fn snapshot(&self) -> WorkspaceStats {
        WorkspaceStats {
            allocated: self.allocated.load(Ordering::Relaxed),
            freed: self.freed.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
        }
    }
}

struct GenericState<W> {
    idle: Vec<W>,
    total: usize,
}

/// The generic manager used by zlib, lzo and the heuristic (`struct workspace_manager`).
///
/// `get` takes an idle workspace, else allocates one while no more than `limit` (the CPU count)
/// exist, else sleeps until one is returned. `put` keeps a workspace idle while no more than
/// `limit` are idle, else frees it. One workspace is allocated up front for forward progress.
pub struct WorkspaceManager<W> {
    state: Mutex<GenericState<W>>,
    wake: Condvar,
    limit: usize,
    alloc: Box<dyn Fn() -> W + Send + Sync>,
    counters: Counters,
}

impl<W: Send> WorkspaceManager<W> {
    /// A manager whose workspaces come from `alloc`, sized for the online CPUs.
    pub fn new(alloc: impl Fn() -> W + Send + Sync + 'static) -> Self {
        Self::with_limit(num_online_cpus(), alloc)
    }

    /// As [`WorkspaceManager::new`] with an explicit CPU count.
    pub fn with_limit(limit: usize, alloc: impl Fn() -> W + Send + Sync + 'static) -> Self {
        let first = alloc();
        let m = Self {
            state: Mutex::new(GenericState { idle: vec![first], total: 1 }),
            wake: Condvar::new(),
            limit: limit.max(1),
            alloc: Box::new(alloc),
            counters: Counters::default(),
        };
        m.counters.allocated.fetch_add(1, Ordering::Relaxed);
        m
    }

    /// Models `btrfs_get_workspace()`.
    pub fn get(&self) -> WorkspaceGuard<'_, W> {
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        let mut st = lock(&self.state);
        loop {
            if let Some(w) = st.idle.pop() {
                return WorkspaceGuard { mgr: self, ws: Some(w) };
            }
            if st.total > self.limit {
                self.counters.waits.fetch_add(1, Ordering::Relaxed);
                st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.total += 1;
            drop(st);
            let w = (self.alloc)();
            self.counters.allocated.fetch_add(1, Ordering::Relaxed);
            return WorkspaceGuard { mgr: self, ws: Some(w) };
        }
    }

    fn put(&self, w: W) {
        let mut st = lock(&self.state);
        if st.idle.len() <= self.limit {
            st.idle.push(w);
        } else {
            st.total -= 1;
            drop(st);
            drop(w);
            self.counters.freed.fetch_add(1, Ordering::Relaxed);
        }
        self.wake.notify_one();
    }

    /// Idle workspaces now.
    pub fn idle(&self) -> usize {
        lock(&self.state).idle.len()
    }

    /// Workspaces in existence now (idle and in use).
    pub fn total(&self) -> usize {
        lock(&self.state).total
    }

    /// The CPU count the manager is sized for.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Counters so far.
    pub fn stats(&self) -> WorkspaceStats {
        self.counters.snapshot()
    }
}

/// A workspace on loan; returned to its manager on drop (`btrfs_put_workspace()`).
pub struct WorkspaceGuard<'m, W: Send> {
    mgr: &'m WorkspaceManager<W>,
    ws: Option<W>,
}

impl<W: Send> Deref for WorkspaceGuard<'_, W> {
    type Target = W;
    fn deref(&self) -> &W {
        self.ws.as_ref().expect("workspace present until drop")
    }
}

impl<W: Send> DerefMut for WorkspaceGuard<'_, W> {
    fn deref_mut(&mut self) -> &mut W {
        self.ws.as_mut().expect("workspace present until drop")
    }
}

impl<W: Send> Drop for WorkspaceGuard<'_, W> {
    fn drop(&mut self) {
        if let Some(w) = self.ws.take() {
            self.mgr.put(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn generic_bounds_idle_and_waits() {
        let m = Arc::new(WorkspaceManager::with_limit(2, || vec![0u8; 16]));
        std::thread::scope(|s| {
            for _ in 0..16 {
                let m = Arc::clone(&m);
                s.spawn(move || {
                    for _ in 0..200 {
                        let mut w = m.get();
                        w[0] = w[0].wrapping_add(1);
                        assert!(m.total() <= m.limit() + 1, "more workspaces than limit + 1");
                    }
                });
            }
        });
        assert!(m.idle() <= m.limit() + 1);
        assert!(m.total() <= m.limit() + 1);
        let s = m.stats();
        assert_eq!(s.gets, 16 * 200);
        assert!(s.allocated <= 3 + s.freed, "{s:?}");
    }
}
