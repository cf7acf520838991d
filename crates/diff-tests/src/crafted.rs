//! Crafted images for the untrusted-image tests, made from the kernel-written snapshots fixture
//! (crc32c) with every changed tree block's checksum fixed, so that nothing is rejected by
//! checksum alone (tools/crafted-images.py makes the same ones as files, for the CLI).

use std::collections::BTreeSet;

use btrfs_image::{open_bytes, FileKind};

/// The raw image of fixtures/subvol-snapshots-*/ (files of 700 bytes: uncompressed inline).
pub fn base() -> Vec<u8> {
    crate::read_zst(&crate::fixture_dir("subvol-snapshots-").join("image.img.zst"))
}

/// Every position of `needle` in `hay`.
pub fn positions(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

/// Fix the crc32c of the tree blocks starting at `blocks`.
pub fn fix(raw: &mut [u8], blocks: &BTreeSet<usize>, nodesize: usize) {
    for &s in blocks {
        let c = crc32c::crc32c(&raw[s + 32..s + nodesize]);
        raw[s..s + 4].copy_from_slice(&c.to_le_bytes());
    }
}

/// The inline extent bomb: the first uncompressed inline extent's item and its inode claim
/// `claim` bytes (ram_bytes and i_size; every copy of the items). Returns the image and the
/// file's path.
pub fn inline_bomb(claim: u64) -> (Vec<u8>, std::ffi::OsString) {
    let mut raw = base();
    let img = open_bytes(raw.clone()).expect("fixture");
    let nodesize = img.sb.nodesize as usize;
    let walk = img.walk_files().expect("walk");
    let (path, extent, inode) = walk
        .paths()
        .filter(|(i, _)| walk.get(*i).kind == FileKind::Regular)
        .find_map(|(i, path)| {
            let e = walk.get(i);
            let t = img.fs_tree(e.tree).ok()?;
            let x = t.items_of(e.ino, 108).next()?.data.clone();
            let inline = x[20] == 0 && x[16] == 0;
            let ino = t.items_of(e.ino, 1).next()?.data.clone();
            inline.then_some((path, x, ino))
        })
        .expect("an uncompressed inline extent in the fixture");
    let mut blocks = BTreeSet::new();
    for (needle, field) in [(&extent, 8usize), (&inode, 16)] {
        for p in positions(&raw, needle) {
            raw[p + field..p + field + 8].copy_from_slice(&claim.to_le_bytes());
            blocks.insert(p / nodesize * nodesize);
        }
    }
    assert!(!blocks.is_empty(), "the items' bytes in the image");
    fix(&mut raw, &blocks, nodesize);
    (raw, path)
}

/// A name with '/': `top-file` becomes `top/file` in its dir item, dir index and inode ref.
pub fn bad_name() -> Vec<u8> {
    let mut raw = base();
    let nodesize = open_bytes(raw.clone()).expect("fixture").sb.nodesize as usize;
    let mut blocks = BTreeSet::new();
    for p in positions(&raw, b"top-file") {
        raw[p + 3] = b'/';
        blocks.insert(p / nodesize * nodesize);
    }
    assert!(!blocks.is_empty());
    fix(&mut raw, &blocks, nodesize);
    raw
}
