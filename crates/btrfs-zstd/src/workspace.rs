//! zstd.c's workspace manager: one idle list per level, a workspace of a level serving that
//! level and lower ones, and the reclaim timer that frees workspaces idle for 307 s.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use btrfs_compression::workspace::{lock, Counters, WorkspaceStats};

/// `ZSTD_BTRFS_RECLAIM_JIFFIES`: idle zstd workspaces unused this long are freed.
pub const ZSTD_BTRFS_RECLAIM: Duration = Duration::from_secs(307);
/// `ZSTD_BTRFS_MAX_LEVEL` as a count: the per-level idle lists.
const LEVELS: usize = super::ZSTD_BTRFS_MAX_LEVEL as usize;

/// Models zstd.c's `clip_level()`: the idle-list index (0-based) for a level; all negative
/// levels and level 0 share the level-1 list.
pub fn zstd_clip_level(level: i32) -> usize {
    (level.max(1) as usize - 1).min(LEVELS - 1)
}

struct ZstdIdle<W> {
    ws: W,
    /// Index of the list it belongs to (the level it was allocated for).
    slot: usize,
    last_used: Instant,
    /// The preallocated level-15 workspace, hidden from reclaim.
    pinned: bool,
}

struct ZstdState<W> {
    idle: Vec<Vec<ZstdIdle<W>>>,
    next_reclaim: Instant,
}

/// zstd.c's workspace manager: one idle list per level; `get(level)` takes the first idle
/// workspace of that level or above (a bigger one can serve a lower level), else allocates one
/// for the level. Idle workspaces unused for [`ZSTD_BTRFS_RECLAIM`] are freed, except one
/// preallocated level-15 workspace.
pub struct ZstdWorkspaceManager<W> {
    state: Mutex<ZstdState<W>>,
    alloc: Box<dyn Fn(i32) -> W + Send + Sync>,
    counters: Counters,
}

impl<W: Send> ZstdWorkspaceManager<W> {
    /// A manager whose workspaces for a level come from `alloc(level)`.
    pub fn new(alloc: impl Fn(i32) -> W + Send + Sync + 'static) -> Self {
        let now = Instant::now();
        let mut idle: Vec<Vec<ZstdIdle<W>>> = (0..LEVELS).map(|_| Vec::new()).collect();
        let top = LEVELS - 1;
        idle[top].push(ZstdIdle { ws: alloc(LEVELS as i32), slot: top, last_used: now, pinned: true });
        let m = Self {
            state: Mutex::new(ZstdState { idle, next_reclaim: now + ZSTD_BTRFS_RECLAIM }),
            alloc: Box::new(alloc),
            counters: Counters::default(),
        };
        m.counters.allocated.fetch_add(1, Ordering::Relaxed);
        m
    }

    /// Models `zstd_get_workspace()`.
    pub fn get(&self, level: i32) -> ZstdWorkspaceGuard<'_, W> {
        self.get_at(level, Instant::now())
    }

    /// [`ZstdWorkspaceManager::get`] at a given time (for tests of the reclaim).
    pub fn get_at(&self, level: i32, now: Instant) -> ZstdWorkspaceGuard<'_, W> {
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        let want = zstd_clip_level(level);
        let mut st = lock(&self.state);
        self.reclaim_locked(&mut st, now);
        for slot in want..LEVELS {
            if let Some(e) = st.idle[slot].pop() {
                return ZstdWorkspaceGuard { mgr: self, entry: Some(e), req: want };
            }
        }
        drop(st);
        let ws = (self.alloc)(want as i32 + 1);
        self.counters.allocated.fetch_add(1, Ordering::Relaxed);
        ZstdWorkspaceGuard {
            mgr: self,
            entry: Some(ZstdIdle { ws, slot: want, last_used: now, pinned: false }),
            req: want,
        }
    }

    fn put(&self, mut e: ZstdIdle<W>, req: usize, now: Instant) {
        // A workspace that served a lower level than its own keeps its old timestamp.
        if req == e.slot {
            e.last_used = now;
        }
        let mut st = lock(&self.state);
        let slot = e.slot;
        st.idle[slot].push(e);
        self.reclaim_locked(&mut st, now);
    }

    /// Models `zstd_reclaim_timer_fn()`: free idle workspaces unused for 307 s. Runs lazily
    /// from `get`/`put` once the timer would have fired, or when called.
    pub fn reclaim_at(&self, now: Instant) -> usize {
        let mut st = lock(&self.state);
        st.next_reclaim = now;
        self.reclaim_locked(&mut st, now)
    }

    fn reclaim_locked(&self, st: &mut ZstdState<W>, now: Instant) -> usize {
        if now < st.next_reclaim {
            return 0;
        }
        let mut freed = 0;
        for list in &mut st.idle {
            list.retain(|e| {
                let keep = e.pinned || now.saturating_duration_since(e.last_used) < ZSTD_BTRFS_RECLAIM;
                if !keep {
                    freed += 1;
                }
                keep
            });
        }
        st.next_reclaim = now + ZSTD_BTRFS_RECLAIM;
        self.counters.freed.fetch_add(freed as u64, Ordering::Relaxed);
        freed
    }

    /// Idle workspaces per level list (index 0 = level 1).
    pub fn idle_per_level(&self) -> Vec<usize> {
        lock(&self.state).idle.iter().map(Vec::len).collect()
    }

    /// Counters so far.
    pub fn stats(&self) -> WorkspaceStats {
        self.counters.snapshot()
    }
}

/// A zstd workspace on loan.
pub struct ZstdWorkspaceGuard<'m, W: Send> {
    mgr: &'m ZstdWorkspaceManager<W>,
    entry: Option<ZstdIdle<W>>,
    req: usize,
}

impl<W: Send> ZstdWorkspaceGuard<'_, W> {
    /// The level the workspace was allocated for.
    pub fn ws_level(&self) -> i32 {
        self.entry.as_ref().map_or(0, |e| e.slot as i32 + 1)
    }

    /// Return it as if at time `now` (for reclaim tests).
    pub fn put_at(mut self, now: Instant) {
        if let Some(e) = self.entry.take() {
            self.mgr.put(e, self.req, now);
        }
    }
}

impl<W: Send> Deref for ZstdWorkspaceGuard<'_, W> {
    type Target = W;
    fn deref(&self) -> &W {
        &self.entry.as_ref().expect("workspace present until drop").ws
    }
}

impl<W: Send> DerefMut for ZstdWorkspaceGuard<'_, W> {
    fn deref_mut(&mut self) -> &mut W {
        &mut self.entry.as_mut().expect("workspace present until drop").ws
    }
}

impl<W: Send> Drop for ZstdWorkspaceGuard<'_, W> {
    fn drop(&mut self) {
        if let Some(e) = self.entry.take() {
            self.mgr.put(e, self.req, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_prefers_own_level_then_higher_and_reclaims() {
        let m = ZstdWorkspaceManager::new(|l| l);
        let t0 = Instant::now();
        // Level 3 request: nothing idle at 3..14, so it takes the preallocated level-15 one.
        let g = m.get_at(3, t0);
        assert_eq!(*g, 15);
        // Another level-3 request while it is busy allocates a level-3 workspace.
        let g2 = m.get_at(3, t0);
        assert_eq!(*g2, 3);
        g2.put_at(t0);
        g.put_at(t0);
        assert_eq!(m.idle_per_level()[2], 1);
        assert_eq!(m.idle_per_level()[14], 1);
        // Negative levels share the level-1 list and can be served by a level-3 workspace.
        let g3 = m.get_at(-5, t0);
        assert_eq!(*g3, 3);
        g3.put_at(t0);
        // After 307 s idle the level-3 workspace goes, the pinned level-15 one stays.
        assert_eq!(m.reclaim_at(t0 + Duration::from_secs(306)), 0);
        assert_eq!(m.reclaim_at(t0 + ZSTD_BTRFS_RECLAIM), 1);
        assert_eq!(m.idle_per_level()[2], 0);
        assert_eq!(m.idle_per_level()[14], 1);
    }

    #[test]
    fn clip_level_matches_kernel() {
        assert_eq!(zstd_clip_level(-15), 0);
        assert_eq!(zstd_clip_level(0), 0);
        assert_eq!(zstd_clip_level(1), 0);
        assert_eq!(zstd_clip_level(3), 2);
        assert_eq!(zstd_clip_level(15), 14);
    }
}
