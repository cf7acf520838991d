//! Snapshots that hold subvolumes (the three-command case, a snapshot of the top level, snapper's
//! `.snapshots` layout), written by the running kernel (tools/subvol-fixture.py): the walk shows
//! what the kernel showed, every path with its kind and inode number, the entries a snapshot
//! copied of its subvolumes as empty directories (inode 2) rather than following them, and
//! extract restores that view.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use btrfs_image::{open_image, FileKind};
use diff_tests::fixture_dir;
use serde_json::Value;

fn fixture() -> (PathBuf, Value) {
    let dir = fixture_dir("subvol-snapshots-");
    let m = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    (dir.join("image.img.zst"), m)
}

/// The kernel's view: path -> (kind, inode number).
fn kernel_view(m: &Value) -> BTreeMap<String, (String, u64)> {
    m["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                (p["kind"].as_str().unwrap().to_string(), p["ino"].as_u64().unwrap()),
            )
        })
        .collect()
}

#[test]
fn the_walk_shows_what_the_kernel_showed() {
    let (img, m) = fixture();
    let img = open_image(&img).unwrap();
    let w = img.walk_files().unwrap();
    let ours: BTreeMap<String, (String, u64)> = w
        .paths()
        .map(|(i, path)| {
            let e = w.get(i);
            let kind = match e.kind {
                FileKind::Directory | FileKind::Subvolume => "dir",
                FileKind::Symlink => "symlink",
                _ => "file",
            };
            (String::from_utf8_lossy(path.as_bytes()).into_owned(), (kind.to_string(), e.ino))
        })
        .collect();
    let kernel = kernel_view(&m);
    assert!(kernel.values().filter(|v| v.1 == 2).count() >= 5, "the fixture has stale subvolume entries");
    assert_eq!(ours, kernel);
}

#[test]
fn extract_restores_the_kernels_view() {
    let (img, m) = fixture();
    let dest = tempfile::tempdir().unwrap();
    let out = dest.path().join("out");
    let img = open_image(&img).unwrap();
    let opts = btrfs_restore::ExtractOptions { snapshots: true, ..Default::default() };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let report = btrfs_restore::extract(&img, &out, &opts, &cancel, &|_, _| {}).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for (path, (kind, ino)) in kernel_view(&m) {
        let p = out.join(&path);
        let md = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(md.is_dir(), kind == "dir", "{path}");
        if ino == 2 {
            assert_eq!(std::fs::read_dir(&p).unwrap().count(), 0, "{path}: an empty directory");
        }
    }
}
