//! A directory chain 100,000 levels deep, written by the 6.18 kernel (`sudo
//! tools/deep-tree-fixture.py`; paths reach 200 KB, fifty times PATH_MAX): walked, counted,
//! verified and extracted whole, each within the 256 MiB bound of issue 24 (peak heap, measured
//! with a counting allocator), and the extracted tree equal to what the kernel showed, walked here
//! by directory descriptors as the fixture tool walked the mount. One test, so that no other
//! test's allocations are counted.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use btrfs_image::{FileKind, Walk};
use btrfs_restore::{ExtractOptions, ExtractReport};
use diff_tests::kernel_view::unhex;
use peak_alloc::PeakAlloc;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use serde_json::Value;

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

const BOUND: usize = 256 << 20;

/// Peak heap above what was live before, while `f` runs, and what `f` returned.
fn peak<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = PEAK.current_usage();
    PEAK.reset_peak_usage();
    let r = f();
    (PEAK.peak_usage().saturating_sub(before), r)
}

/// What one entry is, as the manifest records it: (kind, mode, size, nlink, sha256, target).
type Seen = (String, u64, u64, u64, Option<String>, Option<String>);

fn seen_of(v: &Value) -> Seen {
    let s = |k: &str| v[k].as_str().map(str::to_string);
    let n = |k: &str| v[k].as_u64().unwrap();
    (s("kind").unwrap(), n("mode"), n("size"), n("nlink"), s("sha256"), s("target"))
}

/// The non-directory entries of `dir` (descriptor), as the manifest records them, and the one
/// directory in it, if any.
fn level(dir: &OwnedFd) -> (BTreeMap<Vec<u8>, Seen>, Option<Vec<u8>>) {
    let mut out = BTreeMap::new();
    let mut sub = None;
    for ent in rfs::Dir::read_from(dir).unwrap() {
        let ent = ent.unwrap();
        let name = ent.file_name().to_bytes().to_vec();
        if name == b"." || name == b".." {
            continue;
        }
        let st = rfs::statat(dir, OsStr::from_bytes(&name), AtFlags::SYMLINK_NOFOLLOW).unwrap();
        let ty = rfs::FileType::from_raw_mode(st.st_mode);
        let kind = match ty {
            rfs::FileType::Directory => {
                assert!(sub.replace(name).is_none(), "one directory per level");
                continue;
            }
            rfs::FileType::RegularFile => "file",
            rfs::FileType::Symlink => "symlink",
            rfs::FileType::Fifo => "fifo",
            t => panic!("{t:?}"),
        };
        let os = OsStr::from_bytes(&name);
        let sha = (ty == rfs::FileType::RegularFile).then(|| {
            let fd = rfs::openat(dir, os, OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty()).unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut data).unwrap();
            diff_tests::sha256_hex(&data)
        });
        let target = (ty == rfs::FileType::Symlink).then(|| {
            rfs::readlinkat(dir, os, Vec::new()).unwrap().as_bytes().iter().map(|b| format!("{b:02x}")).collect()
        });
        let seen = (kind.into(), u64::from(st.st_mode & 0o7777), st.st_size as u64, st.st_nlink, sha, target);
        out.insert(name, seen);
    }
    (out, sub)
}

/// Walk down the extracted chain under `dest/deep` and compare every level with the manifest;
/// the number of levels.
fn compare_chain(dest: &Path, m: &Value) -> usize {
    let mut want: BTreeMap<u64, BTreeMap<Vec<u8>, Seen>> = BTreeMap::new();
    for e in m["entries"].as_array().unwrap() {
        if e["dir"].is_null() && e["level"].as_u64().unwrap() > 0 {
            want.entry(e["level"].as_u64().unwrap())
                .or_default()
                .insert(unhex(e["name"].as_str().unwrap()), seen_of(e));
        }
    }
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW;
    let mut fd = rfs::open(dest.join("deep"), flags, Mode::empty()).unwrap();
    let mut depth = 0u64;
    loop {
        let (files, sub) = level(&fd);
        assert_eq!(files, want.remove(&depth).unwrap_or_default(), "level {depth}");
        let Some(sub) = sub else { break };
        depth += 1;
        let name = m["levels"][depth.to_string()].as_str().map_or(b"d".to_vec(), unhex);
        assert_eq!(sub, name, "the directory at level {depth}");
        fd = rfs::openat(&fd, OsStr::from_bytes(&sub), flags, Mode::empty()).unwrap();
    }
    assert!(want.is_empty(), "levels not found: {:?}", want.keys().collect::<Vec<_>>());
    depth as usize
}

/// `rm -rf`, which walks by descriptors too (the tree is deeper than std's removal reaches).
fn remove(p: &Path) {
    let st = std::process::Command::new("rm").arg("-rf").arg(p).status().unwrap();
    assert!(st.success());
}

fn extract(img: &btrfs_image::Image, dest: &Path, opts: &ExtractOptions) -> (usize, ExtractReport) {
    peak(|| btrfs_restore::extract(img, dest, opts, &AtomicBool::new(false), &|_, _| {}).unwrap())
}

#[test]
fn a_chain_100000_levels_deep_is_walked_counted_verified_and_extracted_within_the_bound() {
    let dir = diff_tests::fixture_dir("deep-tree-");
    let m: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let depth = m["depth"].as_u64().unwrap() as usize;
    let img = btrfs_image::open_image(&dir.join("image.img.zst")).unwrap();

    let (bytes, walk): (usize, Walk) = peak(|| img.walk_files().unwrap());
    eprintln!("walk: {} entries, {} KiB peak heap", walk.len(), bytes >> 10);
    assert!(bytes < BOUND, "walk: {bytes}");
    assert!(img.skipped().is_empty(), "{:?}", img.skipped());
    let deepest = (0..walk.len()).max_by_key(|&i| walk.depth(i)).unwrap();
    // "deep" is level 0 of the walk, its chain below.
    assert_eq!(walk.depth(deepest), depth + 1);
    let dirs = walk.iter().filter(|e| e.kind == FileKind::Directory).count();
    assert_eq!(dirs, depth + 2, "the chain, deep/ and side/");
    // A message about the deepest entry stays a line.
    let shown = walk.display(deepest);
    assert!(shown.len() < 2048 && shown.starts_with("deep/d/d/") && shown.contains(" bytes]"), "{shown}");
    // "deep", a slash and a name per level ("d", or 200 bytes at each 1,000th), the 255-byte name.
    let long = m["levels"].as_object().unwrap().len();
    let bottom = (0..walk.len()).find(|&i| walk.name(i).len() == 255).unwrap();
    assert_eq!(walk.depth(bottom), depth + 1);
    assert_eq!(walk.path(bottom).len(), 4 + (depth + 1) + (depth - long) + 200 * long + 255);

    let files = m["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "file").count();
    let (bytes, u) = peak(|| btrfs_restore::usage(&img, &[]).unwrap());
    eprintln!("usage: {} KiB peak heap", bytes >> 10);
    assert!(bytes < BOUND, "usage: {bytes}");
    assert_eq!(u.files as usize, files, "every name of a regular file");

    let (bytes, v) = peak(|| btrfs_restore::verify(&img, &btrfs_restore::read_options()).unwrap());
    eprintln!("verify: {} KiB peak heap, {} extents", bytes >> 10, v.extents);
    assert!(bytes < BOUND, "verify: {bytes}");
    assert!(v.failures.is_empty() && v.extents > 0, "{:?}", v.failures);

    // inspect streams: 10,000 entries' records (paths to 20 KB: 100 MB if they were kept) cost
    // what 100 cost, within a MiB. (All 100,000 would print 12 GB of paths: inspect's output is
    // a path per entry, as find's is.)
    let inspect = |n| peak(|| btrfs_restore::inspect(&img).unwrap().files().take(n).count());
    let ((few, _), (bytes, n)) = (inspect(100), inspect(10_000));
    eprintln!("inspect: {} KiB peak heap for 100 entries, {} KiB for 10,000", few >> 10, bytes >> 10);
    assert_eq!(n, 10_000);
    assert!(bytes < few + (1 << 20), "inspect holds its records: {bytes}");

    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("out");
    let (bytes, r) = extract(&img, &dest, &ExtractOptions::default());
    eprintln!("extract: {} KiB peak heap, {r:?}", bytes >> 10);
    assert!(bytes < BOUND, "extract: {bytes}");
    assert!(r.errors.is_empty(), "{:?}", &r.errors[..r.errors.len().min(3)]);
    assert_eq!((r.dirs, r.symlinks, r.hardlinks, r.special), (depth + 2, 10, 10, 10));
    assert_eq!(compare_chain(&dest, &m), depth);
    let side = std::fs::read(dest.join("side/file")).unwrap();
    let want = m["entries"].as_array().unwrap().iter().find(|e| e["dir"] == "side").unwrap();
    let sha: String = diff_tests::sha256_hex(&side);
    assert_eq!(Some(sha.as_str()), want["sha256"].as_str());

    // A rerun without --force: every entry refused, each message a line, the memory bounded.
    let (bytes, r) = extract(&img, &dest, &ExtractOptions::default());
    eprintln!("extract again: {} KiB peak heap, {} errors", bytes >> 10, r.errors.len());
    assert!(bytes < BOUND, "extract again: {bytes}");
    assert_eq!(r.errors.len(), files + 20, "each file and hard link, symlink and fifo");
    assert!(r.errors.iter().all(|e| e.len() < 2048), "each message a line");
    assert_eq!(r.errors.iter().filter(|e| e.ends_with("exists (use --force to replace it)")).count(), files + 10);
    // With --skip-existing: all kept, nothing refused.
    let opts = ExtractOptions { skip_existing: true, ..ExtractOptions::default() };
    let (_, r) = extract(&img, &dest, &opts);
    assert!(r.errors.is_empty(), "{:?}", &r.errors[..r.errors.len().min(3)]);
    assert_eq!(r.existing_kept, files + 20);
    remove(&dest);
}
