//! zstd's workspace manager under many threads: its reclaim running while workspaces are in use.

#[path = "../../btrfs-compression/tests/common/mod.rs"]
mod common;
use common::within;

use std::sync::Arc;
use std::time::{Duration, Instant};

use btrfs_zstd::{ZstdWorkspaceManager, ZSTD_BTRFS_RECLAIM};

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
        assert_eq!(idle.len(), btrfs_zstd::ZSTD_BTRFS_MAX_LEVEL as usize);
        assert_eq!(idle.iter().sum::<usize>(), 1, "{idle:?}");
        assert_eq!(idle[btrfs_zstd::ZSTD_BTRFS_MAX_LEVEL as usize - 1], 1);
        let st = m.stats();
        assert_eq!(st.gets, 64 * 50);
        assert_eq!(st.allocated - st.freed, 1, "{st:?}");
    });
}
