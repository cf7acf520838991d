//! `usage` against compsize on the mounted image (root and loop mounts; a SKIPPED line
//! otherwise): every fixture image is mounted read-only by the running kernel and `compsize -b`
//! of its top must print exactly what `usage` prints from the image alone.

#[path = "../../btrfs-compress-cli/tests/common/mod.rs"]
mod common;
use common::{cannot_loop_mount, sh};

use std::path::{Path, PathBuf};

fn images() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut v = Vec::new();
    for d in std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()) {
        // compsize opens every file by its path and fails past PATH_MAX ("File name too long"):
        // the deep chains are counted against the kernel's own view in `--test deep_tree`.
        if d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("deep-tree-")) {
            continue;
        }
        for f in std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()) {
            if f.to_string_lossy().ends_with(".img.zst") {
                v.push(f);
            }
        }
    }
    v.sort();
    v
}

#[test]
fn usage_equals_compsize_on_every_fixture_image() {
    if let Some(why) = cannot_loop_mount(&["compsize", "zstd", "mount"]) {
        eprintln!("SKIPPED: usage against compsize: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (raw, mnt) = (tmp.path().join("raw.img"), tmp.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    let mut compared = 0;
    for img in images() {
        sh("zstd", &["-q", "-d", "-f", img.to_str().unwrap(), "-o", raw.to_str().unwrap()]).unwrap();
        if let Err(e) = sh("mount", &["-o", "loop,ro", raw.to_str().unwrap(), mnt.to_str().unwrap()]) {
            eprintln!("SKIPPED: {}: the running kernel does not mount it: {e}", img.display());
            continue;
        }
        let want = sh("compsize", &["-b", mnt.to_str().unwrap()]);
        sh("umount", &[mnt.to_str().unwrap()]).unwrap();
        let image = btrfs_image::open_image(&img).unwrap();
        let got = btrfs_restore::usage(&image, &[]).unwrap();
        match want {
            Ok(w) => assert_eq!(got.compsize_report(true), w, "{}", img.display()),
            Err(e) => assert!(got.empty_message().is_some_and(|m| e.contains(m)), "{}: {e}", img.display()),
        }
        eprintln!("{}: usage equals compsize -b", img.display());
        compared += 1;
    }
    assert!(compared >= 4, "{compared} images compared");
}
