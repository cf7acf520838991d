//! The generic workspace manager under many more threads than CPUs: no deadlock, bounded idle
//! lists.

mod common;
use common::within;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use btrfs_compression::workspace::WorkspaceManager;

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
