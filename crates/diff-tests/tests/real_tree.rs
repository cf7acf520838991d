//! `extract` and `usage` against what the running kernel showed of a real tree
//! (fixtures/real-tree-*/, made by tools/real-tree-fixture.py on a loop-mounted btrfs): every
//! path compared for kind, mode, owner (as root), atime and mtime to the nanosecond, size,
//! content, link target, link count and xattrs; usage compared with the `compsize -b` the tool
//! ran on the mounted image. Also: checksum damage refused (and written with `--ignore-csum`),
//! an interrupt leaves nothing, a crafted image and a hostile destination write nothing outside
//! DEST.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use btrfs_restore::{extract, ExtractOptions};
use diff_tests::kernel_view::{compare, is_root, under, xattrs};
use serde_json::Value;

fn fixture() -> Option<(PathBuf, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let dir = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("real-tree-"))?;
    let m = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    Some((dir.join("image.img.zst"), m))
}

#[test]
fn extract_restores_what_the_kernel_showed() {
    let Some((img, m)) = fixture() else {
        eprintln!("SKIPPED: no fixtures/real-tree-*/ (tools/real-tree-fixture.py makes it)");
        return;
    };
    let img = btrfs_image::open_image(&img).unwrap();
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("out");
    let r = extract(&img, &dest, &ExtractOptions::default(), &AtomicBool::new(false), &|_, _| {}).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.snapshots_skipped, 2);
    let (checked, bad) =
        compare(&dest, m["entries"].as_object().unwrap(), |p| !under(p, "snap") && !under(p, "snap-ro"), &r.warnings);
    let devices = ["special/null", "special/loop7", "special/bigdev"];
    // Not root (or root without CAP_MKNOD): the device nodes are skipped, and said so.
    assert!(r.devices_skipped == 0 || r.devices_skipped == 3, "{}", r.devices_skipped);
    assert!(is_root() || r.devices_skipped == 3);
    let skipped = r.devices_skipped == 3;
    let bad: Vec<_> =
        bad.into_iter().filter(|l| !(skipped && devices.iter().any(|d| l.starts_with(&format!("{d}:"))))).collect();
    eprintln!("{checked} paths compared, {} mismatches; warnings: {:?}", bad.len(), r.warnings);
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(checked >= 60, "{checked}");
    assert!(!dest.join("snap").exists());

    // With snapshots, every path.
    let dest2 = d.path().join("all");
    let opts = ExtractOptions { snapshots: true, ..ExtractOptions::default() };
    let r = extract(&img, &dest2, &opts, &AtomicBool::new(false), &|_, _| {}).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let (checked_all, bad) = compare(&dest2, m["entries"].as_object().unwrap(), |_| true, &r.warnings);
    let bad: Vec<_> =
        bad.into_iter().filter(|l| !(skipped && devices.iter().any(|d| l.starts_with(&format!("{d}:"))))).collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(checked_all > checked);
}

#[test]
fn data_only_and_subvolume_selection() {
    let Some((img, _)) = fixture() else { return };
    let img = btrfs_image::open_image(&img).unwrap();
    let d = tempfile::tempdir().unwrap();
    let opts = ExtractOptions { metadata: false, xattrs: false, subvol: Some("subvol".into()), ..Default::default() };
    let r = extract(&img, d.path(), &opts, &AtomicBool::new(false), &|_, _| {}).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(d.path().join("in-subvol").is_file() && d.path().join("deeper/small").is_file());
    assert!(!d.path().join("subvol").exists() && !d.path().join("zstd").exists());
    assert!(xattrs(&d.path().join("in-subvol")).is_empty());
    let by_id = ExtractOptions { subvol: Some("256".into()), ..Default::default() };
    let e = tempfile::tempdir().unwrap();
    extract(&img, e.path(), &by_id, &AtomicBool::new(false), &|_, _| {}).unwrap();
    assert!(e.path().join("in-subvol").is_file());
}

#[test]
fn usage_equals_compsize_of_the_mounted_image() {
    let Some((img, m)) = fixture() else { return };
    let img = btrfs_image::open_image(&img).unwrap();
    for (path, want) in m["compsize"].as_object().unwrap() {
        let paths: Vec<OsString> = if path == "/" { vec![] } else { vec![path.into()] };
        let got = btrfs_restore::usage(&img, &paths).unwrap().compsize_report(true);
        assert_eq!(got, want.as_str().unwrap(), "usage {path}");
    }
}

#[test]
fn a_cancelled_extract_leaves_nothing_and_a_rerun_removes_stale_temporaries() {
    let Some((img, _)) = fixture() else { return };
    let img = btrfs_image::open_image(&img).unwrap();
    let d = tempfile::tempdir().unwrap();
    let r = extract(&img, d.path(), &ExtractOptions::default(), &AtomicBool::new(true), &|_, _| {});
    assert!(matches!(r, Err(btrfs_restore::ImageError::Interrupted)), "{r:?}");
    let mut left = Vec::new();
    for e in walkdir(d.path()) {
        if std::fs::symlink_metadata(&e).unwrap().is_file() {
            left.push(e);
        }
    }
    assert!(left.is_empty(), "{left:?}");
    // A temporary of a process that is gone is removed by the next extract.
    std::fs::create_dir_all(d.path().join("zstd")).unwrap();
    let stale = d.path().join("zstd/.text-300k.btrfs-compress-tmp-999999999");
    std::fs::write(&stale, b"half").unwrap();
    // Not ours to remove: a name of that shape for no entry of the image, and one in a directory
    // the image does not have.
    let mine = d.path().join("zstd/.my-notes.btrfs-compress-tmp-999999999");
    std::fs::write(&mine, b"user's").unwrap();
    std::fs::create_dir_all(d.path().join("elsewhere")).unwrap();
    let other = d.path().join("elsewhere/.text-300k.btrfs-compress-tmp-999999999");
    std::fs::write(&other, b"user's").unwrap();
    let r = extract(&img, d.path(), &ExtractOptions::default(), &AtomicBool::new(false), &|_, _| {}).unwrap();
    assert_eq!(r.stale_removed, 1);
    assert!(!stale.exists());
    assert!(mine.exists() && other.exists(), "a user's files are kept");
}

fn walkdir(p: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if std::fs::symlink_metadata(&e).unwrap().is_dir() {
            v.extend(walkdir(&e));
        }
        v.push(e);
    }
    v
}

#[test]
fn a_hostile_destination_is_not_written_through() {
    let Some((img, _)) = fixture() else { return };
    let img = btrfs_image::open_image(&img).unwrap();
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let dest = d.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    // Symlinks planted where the image has directories.
    std::os::unix::fs::symlink(&outside, dest.join("zstd")).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("links")).unwrap();
    let opts = ExtractOptions { force: true, ..Default::default() };
    let r = extract(&img, &dest, &opts, &AtomicBool::new(false), &|_, _| {}).unwrap();
    assert!(!r.errors.is_empty());
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "written outside DEST");
}

/// The real-tree image with the symlink `evix` (to /tmp/btrfs-compress-crafted-outside) renamed
/// `evil`, the name of a directory beside it holding `payload`, every changed tree block's
/// checksum made valid again: a crafted image a reader must not trust.
fn crafted(img: &Path) -> Vec<u8> {
    let z = std::fs::read(img).unwrap();
    let mut b = Vec::new();
    let mut dctx = zstd_safe::DCtx::create();
    let mut out = vec![0u8; 1 << 20];
    let mut input = zstd_safe::InBuffer::around(&z);
    loop {
        let mut ob = zstd_safe::OutBuffer::around(&mut out[..]);
        let r = dctx.decompress_stream(&mut ob, &mut input).unwrap();
        let n = ob.pos();
        b.extend_from_slice(&out[..n]);
        if r == 0 && input.pos == z.len() {
            break;
        }
    }
    let nodesize = btrfs_image::open_bytes(b.clone()).unwrap().sb.nodesize as usize;
    let mut blocks = std::collections::BTreeSet::new();
    let mut at = 0;
    while let Some(i) = b[at..].windows(4).position(|w| w == b"evix") {
        let p = at + i;
        b[p + 3] = b'l';
        blocks.insert(p / nodesize * nodesize);
        at = p + 4;
    }
    assert!(!blocks.is_empty());
    for s in blocks {
        let c = crc32c::crc32c(&b[s + 32..s + nodesize]);
        b[s..s + 4].copy_from_slice(&c.to_le_bytes());
    }
    b
}

#[test]
fn a_crafted_image_writes_nothing_outside_dest() {
    let Some((img, _)) = fixture() else { return };
    let outside = Path::new("/tmp/btrfs-compress-crafted-outside");
    let _ = std::fs::create_dir(outside);
    let before: Vec<_> = std::fs::read_dir(outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    let image = btrfs_image::open_bytes(crafted(&img)).unwrap();
    let w = image.walk_files().unwrap();
    let names: Vec<_> = w.children(None).filter(|&i| w.name(i) == "evil").collect();
    assert_eq!(names.len(), 2, "the directory and the symlink now share a name");
    for force in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let opts = ExtractOptions { force, ..Default::default() };
        let r = extract(&image, d.path(), &opts, &AtomicBool::new(false), &|_, _| {}).unwrap();
        assert!(r.errors.iter().any(|e| e.starts_with("evil:")), "{:?}", r.errors);
        assert!(d.path().join("evil/payload").is_file());
        let after: Vec<_> = std::fs::read_dir(outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(before, after, "written outside DEST (force {force})");
    }
}

#[test]
fn safe_mode_makes_no_devices_no_setuid_and_only_user_and_acl_xattrs() {
    let Some((img, m)) = fixture() else { return };
    let img = btrfs_image::open_image(&img).unwrap();
    let d = tempfile::tempdir().unwrap();
    let opts = ExtractOptions { safe: true, ..ExtractOptions::default() };
    let r = extract(&img, d.path(), &opts, &AtomicBool::new(false), &|_, _| {}).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let said = r.safe_dropped.join("; ");
    assert!(said.contains("device nodes not made") && said.contains("setuid bits dropped"), "{said}");
    assert!(said.contains("security.capability"), "{said}");
    let mut checked = 0;
    for (hex, e) in m["entries"].as_object().unwrap() {
        let rel = diff_tests::kernel_view::unhex(hex);
        if under(&rel, "snap") || under(&rel, "snap-ro") {
            continue;
        }
        let p = d.path().join(OsStr::from_bytes(&rel));
        match e["kind"].as_str().unwrap() {
            "chardev" | "blockdev" => assert!(std::fs::symlink_metadata(&p).is_err(), "{}", e["path"]),
            "symlink" => {}
            _ => {
                use std::os::unix::fs::MetadataExt;
                let md = std::fs::symlink_metadata(&p).unwrap();
                assert_eq!(md.mode() & 0o6000, 0, "{}", e["path"]);
                for name in xattrs(&p).keys() {
                    assert!(
                        name.starts_with("user.") || name.starts_with("system.posix_acl_"),
                        "{}: {name}",
                        e["path"]
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "{checked}");
    eprintln!("safe mode: {said}");
}
