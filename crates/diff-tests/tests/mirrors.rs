//! DUP chunks keep two copies: a tree block or a data sector whose first copy fails its checksum
//! is read from the second, as the kernel reads mirror 2, and said (`Image::repairs`); both
//! copies damaged is still an error.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;

use btrfs_image::open_bytes;
use diff_tests::{read_zst, repo_root};

fn image() -> Vec<u8> {
    read_zst(&repo_root().join("fixtures/6.1.0-50-amd64/image.img.zst"))
}

fn paths(img: &btrfs_image::Image) -> BTreeSet<Vec<u8>> {
    img.walk_files().unwrap().paths().map(|(_, p)| p.as_bytes().to_vec()).collect()
}

/// Flip bytes inside the block at physical `at` (past its checksum, so that it fails it).
fn damage(bytes: &mut [u8], at: u64) {
    let at = at as usize;
    for b in &mut bytes[at + 100..at + 116] {
        *b ^= 0xa5;
    }
}

#[test]
fn a_tree_block_is_read_from_its_second_copy() {
    let good = image();
    let img = open_bytes(good.clone()).unwrap();
    let all = paths(&img);
    // The fs tree's root block: metadata is DUP on this image.
    let (bytenr, _) = img.tree_root(5).unwrap();
    assert_eq!(img.chunks.copies(bytenr), 2, "DUP metadata");
    let first = img.chunks.mirror(bytenr, 0).unwrap().offset;
    let second = img.chunks.mirror(bytenr, 1).unwrap().offset;
    assert_ne!(first, second);
    drop(img);

    let mut one = good.clone();
    damage(&mut one, first);
    let img = open_bytes(one.clone()).unwrap();
    assert_eq!(paths(&img), all, "every path, from the second copy");
    let r = img.repairs();
    assert!(r.iter().any(|l| l.contains(&format!("{bytenr:#x}")) && l.contains("copy 2 of 2")), "{r:?}");

    let mut both = one;
    damage(&mut both, second);
    let img = open_bytes(both).unwrap();
    assert!(img.walk_files().is_err(), "both copies damaged");
}

#[test]
fn a_data_sector_is_read_from_its_second_copy() {
    // An image with DUP data, made by mkfs.btrfs --rootdir (no mount, no root).
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(root.join("big"), &data).unwrap();
    let img_path = d.path().join("dup.img");
    std::fs::File::create(&img_path).unwrap().set_len(256 << 20).unwrap();
    let mkfs = std::process::Command::new("mkfs.btrfs")
        .args(["-q", "-f", "-d", "dup", "-m", "dup", "--rootdir"])
        .arg(&root)
        .arg(&img_path)
        .output();
    if !mkfs.as_ref().is_ok_and(|o| o.status.success()) {
        println!("SKIPPED: a_data_sector_is_read_from_its_second_copy (mkfs.btrfs --rootdir -d dup not available)");
        return;
    }
    let mut bytes = std::fs::read(&img_path).unwrap();
    let img = open_bytes(bytes.clone()).unwrap();
    let e = *img.walk_files().unwrap().lookup("big").unwrap();
    let tree = img.fs_tree(e.tree).unwrap();
    let x = img.file_extents(&tree, e.ino).unwrap()[0].clone();
    assert_eq!(img.chunks.copies(x.disk_bytenr), 2, "DUP data");
    let first = img.chunks.mirror(x.disk_bytenr, 0).unwrap().offset;
    drop(img);
    damage(&mut bytes, first + 8192);
    let img = open_bytes(bytes).unwrap();
    let out = d.path().join("out");
    let opts = btrfs_restore::ExtractOptions::default();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let report = btrfs_restore::extract(&img, &out, &opts, &cancel, &|_, _| {}).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(std::fs::read(out.join("big")).unwrap() == data, "the file, from the second copy");
    assert!(img.repairs().iter().any(|l| l.contains("big") && l.contains("copy 2 of 2")), "{:?}", img.repairs());
    let v = btrfs_restore::verify(&img, &btrfs_restore::read_options()).unwrap();
    assert!(v.failures.is_empty(), "{:?}", v.failures);
}

#[test]
fn a_damaged_primary_superblock_gives_way_to_its_copy() {
    let good = image();
    let all = paths(&open_bytes(good.clone()).unwrap());
    let mut bad = good;
    damage(&mut bad, 0x10000);
    let img = open_bytes(bad.clone()).unwrap();
    assert_eq!(paths(&img), all);
    let w = img.warnings();
    assert!(w.iter().any(|l| l.contains("primary superblock") && l.contains("64 MiB")), "{w:?}");
    // With the copy damaged too, the image is refused.
    damage(&mut bad, 64 << 20);
    assert!(open_bytes(bad).is_err());
}
