//! What a reader must be told of an image instead of a silent answer: a log tree not replayed (an
//! image taken after fsync and before the commit, read with `--no-log`) and a file shorter than its device (a
//! truncated copy). Both on a kernel-written fixture image, changed here.

use btrfs_image::{open_bytes, open_bytes_with, OpenOptions};
use diff_tests::{read_zst, repo_root};

const SB: usize = 0x10000;

const LOG_ROOT: usize = 96;

fn image() -> Vec<u8> {
    read_zst(&repo_root().join("fixtures/6.1.0-50-amd64/image.img.zst"))
}

/// Set the superblock's log_root and fix its crc32c (the fixture uses crc32c).
fn with_log_root(mut img: Vec<u8>, log_root: u64) -> Vec<u8> {
    img[SB + LOG_ROOT..SB + LOG_ROOT + 8].copy_from_slice(&log_root.to_le_bytes());
    let csum = crc32c::crc32c(&img[SB + 32..SB + 4096]);
    img[SB..SB + 4].copy_from_slice(&csum.to_le_bytes());
    img
}

/// A log root that is no tree block: replaying it is an error (the kernel would not mount);
/// read without the log, the last commit is read and the unreplayed log said.
#[test]
fn a_log_tree_not_replayed_is_said_and_one_that_cannot_be_read_is_an_error() {
    let img = open_bytes(image()).unwrap();
    assert!(img.warnings().is_empty(), "{:?}", img.warnings());
    let e = open_bytes(with_log_root(image(), 0x1234000)).expect_err("an unreadable log tree is an error");
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    let img = open_bytes_with(with_log_root(image(), 0x1234000), OpenOptions { replay_log: false }).unwrap();
    let w = img.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("log tree") && w[0].contains("not replayed") && w[0].contains("not shown"), "{w:?}");
    assert!(img.walk_files().unwrap().len() > 20, "{}", img.walk_files().unwrap().len());
}

#[test]
fn a_truncated_image_is_said_and_its_extents_are_located() {
    let full = image();
    let dir = tempfile::tempdir().unwrap();
    // A quarter of the device: every tree block and extent of this image lies below the cut.
    let quarter = dir.path().join("quarter.img");
    std::fs::write(&quarter, &full[..full.len() / 4]).unwrap();
    let img = btrfs_image::open_image(&quarter).unwrap();
    let w = img.warnings();
    assert!(w.iter().any(|l| l.contains("truncated")), "{w:?}");
    assert_eq!(btrfs_restore::extents_past_end(&img).unwrap(), 0);
    // Every extent of the full image is present, an address no chunk maps is not.
    let img = open_bytes(full).unwrap();
    let mut n = 0;
    let w = img.walk_files().unwrap();
    for (i, e) in w.iter().enumerate().filter(|(_, e)| e.kind == btrfs_image::FileKind::Regular) {
        let tree = img.fs_tree(e.tree).unwrap();
        for x in img.file_extents(&tree, e.ino).unwrap() {
            if matches!(x.kind, btrfs_image::ExtentKind::Regular) && !x.is_hole() {
                assert!(img.present(x.disk_bytenr, x.disk_num_bytes), "{} @{}", w.display(i), x.file_offset);
                n += 1;
            }
        }
    }
    assert!(n > 50, "{n} extents");
    assert!(!img.present(u64::MAX - 4096, 4096));
}
