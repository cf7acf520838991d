//! An image with a log tree, as a crash after fsync and before the commit leaves it, written by
//! the running kernel (tools/log-replay-fixture.py): replayed, every path `extract` writes equals
//! what the kernel showed after mounting it (kind, mode, times, size, content, link target, link
//! count, xattrs; no path more, none less), `usage` equals its `compsize -b`, and `verify`
//! checks the new data against the log's checksums; with the replay off (`--no-log`), the same
//! against the kernel mounted `ro,rescue=nologreplay` (the last commit).

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use btrfs_image::{open_image_with, Image, OpenOptions};
use btrfs_restore::{extract, ExtractOptions};
use diff_tests::fixture_dir;
use diff_tests::kernel_view::{compare, unhex};
use serde_json::Value;

fn fixture() -> (PathBuf, Value) {
    let dir = fixture_dir("log-replay-");
    let m = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    (dir.join("image.img.zst"), m)
}

fn open(replay_log: bool) -> (Image, Value) {
    let (p, m) = fixture();
    (open_image_with(&p, OpenOptions { replay_log }).unwrap(), m)
}

/// The paths of a kernel view, as bytes.
fn kernel_paths(view: &Value) -> BTreeSet<Vec<u8>> {
    view.as_object().unwrap().keys().map(|h| unhex(h)).collect()
}

fn check_view(replay_log: bool, view: &str) -> usize {
    let (img, m) = open(replay_log);
    let entries = m[view].as_object().unwrap();
    let ours: BTreeSet<Vec<u8>> = img.walk_files().unwrap().paths().map(|(_, p)| p.as_bytes().to_vec()).collect();
    assert_eq!(ours, kernel_paths(&m[view]), "the paths of {view}");
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("out");
    let r = extract(&img, &dest, &ExtractOptions::default(), &AtomicBool::new(false), &|_, _| {}).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let (checked, bad) = compare(&dest, entries, |_| true, &r.warnings);
    assert!(bad.is_empty(), "{view}: {bad:#?}");
    assert_eq!(checked, entries.len());
    // Directory sizes (twice the names' lengths), which extract cannot show.
    let w = img.walk_files().unwrap();
    for (i, path) in w.paths().filter(|(i, _)| w.get(*i).kind == btrfs_image::FileKind::Directory) {
        let e = w.get(i);
        let hex: String = path.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let size = img.inode(&img.fs_tree(e.tree).unwrap(), e.ino).unwrap().size;
        assert_eq!(size, entries[&hex]["size"].as_u64().unwrap(), "size of directory {}", w.display(i));
    }
    checked
}

#[test]
fn replayed_the_image_is_what_the_kernel_showed_after_mounting_it() {
    let n = check_view(true, "replayed");
    let (_, m) = open(true);
    // The fixture holds what only the log has: new paths, and paths gone since the commit.
    let (now, then) = (kernel_paths(&m["replayed"]), kernel_paths(&m["committed"]));
    assert!(now.difference(&then).count() >= 5 && then.difference(&now).count() >= 3, "{now:?} {then:?}");
    eprintln!("{n} paths equal the kernel's after log replay");
}

#[test]
fn without_replay_the_image_is_its_last_commit() {
    let n = check_view(false, "committed");
    eprintln!("{n} paths equal the kernel's mounted with rescue=nologreplay");
}

#[test]
fn usage_equals_compsize_with_and_without_replay() {
    for (replay, key) in [(true, "replayed_compsize"), (false, "committed_compsize")] {
        let (img, m) = open(replay);
        let got = btrfs_restore::usage(&img, &[]).unwrap().compsize_report(true);
        assert_eq!(got, m[key].as_str().unwrap(), "{key}");
    }
}

#[test]
fn verify_checks_the_logged_data_against_the_logs_checksums() {
    let (replayed, _) = open(true);
    let (committed, _) = open(false);
    let opts = btrfs_restore::read_options();
    let a = btrfs_restore::verify(&replayed, &opts).unwrap();
    let b = btrfs_restore::verify(&committed, &opts).unwrap();
    assert!(a.failures.is_empty() && b.failures.is_empty(), "{:?} {:?}", a.failures, b.failures);
    // The new extents' sectors have their checksums only in the log.
    assert!(a.csum_sectors > b.csum_sectors, "{} {}", a.csum_sectors, b.csum_sectors);
    assert!(replayed.warnings().iter().any(|w| w.starts_with("replayed the log tree")), "{:?}", replayed.warnings());
    assert!(committed.warnings().iter().any(|w| w.contains("not replayed")), "{:?}", committed.warnings());
}
