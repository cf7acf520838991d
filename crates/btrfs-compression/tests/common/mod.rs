//! What the workspace-manager tests share.

use std::sync::mpsc;
use std::time::Duration;

/// Run `f` on a helper thread; fail (instead of hanging the suite) if it does not finish.
pub fn within(secs: u64, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(secs)).expect("deadlock: the workers did not finish in time");
}
