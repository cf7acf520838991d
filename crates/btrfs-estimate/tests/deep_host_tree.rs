//! `estimate` on a host tree deeper than PATH_MAX (issue 24's depth, on the estimate side): a
//! chain 2,500 directories deep (paths of 27 KB) with a file half-way and one at the bottom.
//! Before, `std::fs` failed on the deep directory with "File name too long", the walk counted it
//! as one skipped entry among the special files, and the estimate came out of the files above it,
//! exit 0; now every file is read, and what cannot be read is named and makes it fail.

use std::os::fd::OwnedFd;
use std::path::Path;

use btrfs_compress::parse_compress_option;
use btrfs_estimate::{collect_files, estimate, MountOption, Rules};
use rustix::fs::{self as rfs, Mode, OFlags};

const LEVELS: usize = 2500;
const NAME: &str = "directory1";

fn text(n: usize, seed: u8) -> Vec<u8> {
    let words = ["kmap", "local", "folio", "extent", "btrfs", "zstd", "page", "sector"];
    let mut v = Vec::with_capacity(n + 16);
    let mut i = usize::from(seed);
    while v.len() < n {
        v.extend_from_slice(words[i % words.len()].as_bytes());
        v.push(if i % 11 == 0 { b'\n' } else { b' ' });
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    v.truncate(n);
    v
}

fn put(dir: &OwnedFd, name: &str, data: &[u8]) {
    let fd =
        rfs::openat(dir, name, OFlags::CREATE | OFlags::WRONLY | OFlags::EXCL, Mode::from_raw_mode(0o644)).unwrap();
    std::io::Write::write_all(&mut std::fs::File::from(fd), data).unwrap();
}

/// The chain under `top`, made one directory at a time with descriptors.
fn chain(top: &Path) {
    let flags = OFlags::DIRECTORY | OFlags::RDONLY;
    let mut fd = rfs::open(top, flags, Mode::empty()).unwrap();
    for level in 1..=LEVELS {
        rfs::mkdirat(&fd, NAME, Mode::from_raw_mode(0o755)).unwrap();
        fd = rfs::openat(&fd, NAME, flags, Mode::empty()).unwrap();
        if level == LEVELS / 2 {
            put(&fd, "middle", &text(200_000, 1));
        }
    }
    put(&fd, "bottom", &text(300_000, 2));
}

fn remove(p: &Path) {
    assert!(std::process::Command::new("rm").arg("-rf").arg(p).status().unwrap().success());
}

#[test]
fn every_file_of_a_tree_deeper_than_path_max_is_estimated() {
    let d = tempfile::tempdir().unwrap();
    let top = d.path().join("tree");
    std::fs::create_dir(&top).unwrap();
    chain(&top);
    let c = collect_files(std::slice::from_ref(&top)).unwrap();
    assert_eq!(c.unreadable_count, 0, "{:?}", c.unreadable);
    let mut sizes: Vec<u64> = c.files.iter().map(|f| f.1).collect();
    sizes.sort();
    assert_eq!(sizes, [200_000, 300_000]);
    let deepest = c.files.iter().map(|f| f.0.as_os_str().len()).max().unwrap();
    assert!(deepest > 6 * 4096, "{deepest}-byte path");
    let opt = MountOption { spec: parse_compress_option("zstd:3").unwrap(), force: true };
    let rules = Rules { kernel: (6, 18), max_inline: 2048, sectorsize: 4096 };
    let (tallies, unreadable) = estimate(&c.files, &[opt], &rules, &|_| {});
    assert_eq!(unreadable, 0);
    assert_eq!(tallies[0].usage.files, 2);
    // Both files whole: each rounded up to its sectors, all of it compressed (text).
    let u = &tallies[0].usage;
    assert_eq!(u.uncompressed_bytes(), 200_000_u64.next_multiple_of(4096) + 300_000_u64.next_multiple_of(4096));
    assert!(u.disk_bytes() < u.uncompressed_bytes() / 2, "{u:?}");
    remove(&top);
}

/// A directory that cannot be listed is named, not passed over as a special file (as a user:
/// root lists anything).
#[test]
fn a_directory_that_cannot_be_listed_is_named() {
    let d = tempfile::tempdir().unwrap();
    let top = d.path().join("tree");
    std::fs::create_dir_all(top.join("closed")).unwrap();
    std::fs::write(top.join("open"), text(10_000, 3)).unwrap();
    std::fs::write(top.join("closed").join("hidden"), text(10_000, 4)).unwrap();
    std::fs::set_permissions(top.join("closed"), std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    if std::fs::read_dir(top.join("closed")).is_ok() {
        println!("SKIPPED: a_directory_that_cannot_be_listed_is_named (root lists any directory)");
        return;
    }
    let c = collect_files(std::slice::from_ref(&top)).unwrap();
    std::fs::set_permissions(top.join("closed"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert_eq!(c.files.len(), 1);
    assert_eq!(c.unreadable_count, 1, "{:?}", c.unreadable);
    assert!(c.unreadable[0].contains("closed") && c.special == 0, "{:?}", c.unreadable);
}
