//! Workspace managers under many more threads than CPUs: no deadlock, bounded idle lists, and
//! zstd's reclaim running while workspaces are in use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use btrfs_compression::workspace::{WorkspaceManager, ZstdWorkspaceManager, ZSTD_BTRFS_MAX_LEVEL, ZSTD_BTRFS_RECLAIM};

/// Run `f` on a helper thread; fail (instead of hanging the suite) if it does not finish.
fn within(secs: u64, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(secs)).expect("deadlock: the workers did not finish in time");
}

#[test]
fn generic_manager_64_threads_on_few_cpus() {
    within(120, || {
        let m = Arc::new(WorkspaceManager::with_limit(2, || vec![0u8; 4096]));
        let in_use = Arc::new(AtomicUsize::new(0));
        let max_in_use = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for t in 0..64 {
                let (m, in_use, max_in_use) = (Arc::clone(&m), Arc::clone(&in_use), Arc::clone(&max_in_use));
                s.spawn(move || {
                    for i in 0..100 {
                        let mut w = m.get();
                        let n = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                        max_in_use.fetch_max(n, Ordering::SeqCst);
                        w[(t + i) % 4096] ^= 1;
                        if i % 7 == 0 {
                            std::thread::yield_now();
                        }
                        in_use.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        let st = m.stats();
        assert_eq!(st.gets, 6400);
        // Never more than limit + 1 workspaces exist (the kernel's total_ws > cpus test).
        assert!(max_in_use.load(Ordering::SeqCst) <= m.limit() + 1);
        assert!(m.total() <= m.limit() + 1, "total {}", m.total());
        assert!(m.idle() <= m.limit() + 1, "idle {}", m.idle());
        assert!(st.waits > 0, "64 threads on a limit of 2 must have waited");
    });
}

#[test]
fn zstd_reclaim_runs_while_workspaces_are_in_use() {
    within(120, || {
        let m = Arc::new(ZstdWorkspaceManager::new(|level| (level, vec![0u8; 1024])));
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for t in 0..64 {
                let m = Arc::clone(&m);
                s.spawn(move || {
                    for i in 0..50 {
                        let level = ((t + i) % 31) as i32 - 15; // -15..=15
                        let mut g = m.get_at(level, t0);
                        assert!(g.0 >= level.max(1), "a workspace of level {} served level {level}", g.0);
                        g.1[i % 1024] = 1;
                        g.put_at(t0 + Duration::from_secs(i as u64));
                    }
                });
            }
            // The reclaim timer firing again and again, far in the future, while the workers run.
            let m = Arc::clone(&m);
            s.spawn(move || {
                for k in 1..200u64 {
                    m.reclaim_at(t0 + ZSTD_BTRFS_RECLAIM * 2 + Duration::from_secs(k));
                    std::thread::yield_now();
                }
            });
        });
        // Everything idle and old is freed except the preallocated level-15 workspace.
        m.reclaim_at(t0 + ZSTD_BTRFS_RECLAIM * 10);
        let idle = m.idle_per_level();
        assert_eq!(idle.len(), ZSTD_BTRFS_MAX_LEVEL);
        assert_eq!(idle.iter().sum::<usize>(), 1, "{idle:?}");
        assert_eq!(idle[ZSTD_BTRFS_MAX_LEVEL - 1], 1);
        let st = m.stats();
        assert_eq!(st.gets, 64 * 50);
        assert_eq!(st.allocated - st.freed, 1, "{st:?}");
    });
}
