//! Multi-device filesystems written by the running kernel on loop devices
//! (tools/multi-device-fixture.py): RAID0 (with RAID1 metadata), RAID1, RAID1C3, RAID1C4, RAID10,
//! RAID5, RAID6 and single data with DUP metadata across two devices. For each: every path
//! `extract` writes from all devices equals what the kernel showed, `usage` equals its
//! `compsize -b`; with devices withheld, what the kernel mounted `-o degraded,ro` showed (files it
//! could not read are errors here too, a mount it refused an error); with the kernel's mirror 1
//! of a tree block or a data extent damaged, what the kernel showed (the other copy, or a rebuild
//! from parity; an error where the profile keeps no other copy). And device sets that are not one
//! filesystem are refused.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use btrfs_image::{open_devices, Image, OpenOptions};
use btrfs_restore::{extract, ExtractOptions, ExtractReport};
use diff_tests::kernel_view::{compare, unhex};
use diff_tests::{fixture_dir, read_zst, write_sparse};
use serde_json::{Map, Value};

fn manifest() -> (PathBuf, Value) {
    let dir = fixture_dir("multi-device-");
    let m = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    (dir, m)
}

/// A profile's devices inflated into sparse files (once per test), devN.img.
struct Devices {
    _dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
}

fn inflate(fixture: &Path, profile: &str, n: usize) -> Devices {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for i in 1..=n {
        let p = dir.path().join(format!("dev{i}.img"));
        write_sparse(&read_zst(&fixture.join(profile).join(format!("dev{i}.img.zst"))), &p);
        paths.push(p);
    }
    Devices { _dir: dir, paths }
}

impl Devices {
    /// The device files, as `open_devices` takes them.
    fn refs(&self) -> Vec<&Path> {
        self.paths.iter().map(|p| p.as_path()).collect()
    }
}

/// A profile of the manifest, inflated.
fn inflate_profile(fixture: &Path, name: &str, p: &Value) -> Devices {
    inflate(fixture, name, p["devices"].as_u64().unwrap() as usize)
}

fn open(paths: &[&Path]) -> btrfs_image::Result<Image> {
    open_devices(paths, OpenOptions::default())
}

fn run_extract(img: &Image) -> (tempfile::TempDir, ExtractReport) {
    let d = tempfile::tempdir().unwrap();
    let r =
        extract(img, &d.path().join("out"), &ExtractOptions::default(), &AtomicBool::new(false), &|_, _| {}).unwrap();
    (d, r)
}

fn profiles(m: &Value) -> Vec<(String, &Value)> {
    m["profiles"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v)).collect()
}

/// Each profile of the fixture: its name, its part of the manifest and its devices, inflated
/// for this call.
fn each_profile(mut f: impl FnMut(&str, &Value, &Devices)) {
    let (dir, m) = manifest();
    for (name, p) in profiles(&m) {
        f(&name, p, &inflate_profile(&dir, &name, p));
    }
}

#[test]
fn every_profile_read_whole_is_what_the_kernel_showed() {
    let mut n = 0;
    each_profile(|name, p, devs| {
        let paths = devs.refs();
        let img = open(&paths).unwrap();
        assert!(img.warnings().is_empty(), "{name}: {:?}", img.warnings());
        let (d, r) = run_extract(&img);
        assert!(r.errors.is_empty(), "{name}: {:?}", r.errors);
        let whole = p["whole"].as_object().unwrap();
        let (checked, bad) = compare(&d.path().join("out"), whole, |_| true, &r.warnings);
        assert!(bad.is_empty(), "{name}: {bad:#?}");
        assert_eq!(checked, whole.len(), "{name}");
        let got = btrfs_restore::usage(&img, &[]).unwrap().compsize_report(true);
        assert_eq!(got, p["whole_compsize"].as_str().unwrap(), "{name}: usage");
        let v = btrfs_restore::verify(&img, &btrfs_restore::read_options()).unwrap();
        assert!(v.failures.is_empty() && v.repairable.is_empty(), "{name}: {:?} {:?}", v.failures, v.repairable);
        assert!(img.repairs().is_empty(), "{name}: {:?}", img.repairs());
        n += checked;
        eprintln!("{name}: {checked} paths equal the kernel's, usage equals compsize");
    });
    assert!(n >= 8 * 15, "{n}");
}

/// Compare an extract with a kernel view that may list files the kernel could not read (they must
/// be errors here) and, where it could describe everything, every field.
fn check_view(what: &str, dest: &Path, r: &ExtractReport, view: &Map<String, Value>) -> (usize, usize) {
    let theirs: BTreeSet<Vec<u8>> = view.keys().map(|h| unhex(h)).collect();
    let unreadable: Vec<&Value> = view.values().filter(|e| e.get("error").is_some()).collect();
    if unreadable.is_empty() {
        assert!(r.errors.is_empty(), "{what}: {:?}", r.errors);
        // Times first: listing a directory moves its atime.
        let (checked, bad) = compare(dest, view, |_| true, &r.warnings);
        assert!(bad.is_empty(), "{what}: {bad:#?}");
        assert_eq!(walk(dest), theirs, "{what}: paths");
        return (checked, 0);
    }
    // The kernel could not read some files: those fail here too, the others are equal.
    for e in &unreadable {
        let path = e["path"].as_str().unwrap();
        assert!(
            r.errors.iter().any(|x| x.starts_with(&format!("{path}:"))),
            "{what}: {path} read here: {:?}",
            r.errors
        );
    }
    assert_eq!(r.errors.len(), unreadable.len(), "{what}: {:?}", r.errors);
    let mut checked = 0;
    for (hex, e) in view {
        let rel = unhex(hex);
        if e.get("error").is_some() {
            continue;
        }
        let p = dest.join(std::ffi::OsStr::from_bytes(&rel));
        let md = std::fs::symlink_metadata(&p).unwrap_or_else(|_| panic!("{what}: {} missing", e["path"]));
        if e["kind"] == "file" {
            let sha: String = diff_tests::sha256_hex(&std::fs::read(&p).unwrap());
            assert_eq!(sha, e["sha256"].as_str().unwrap(), "{what}: {}", e["path"]);
            assert_eq!(md.len(), e["size"].as_u64().unwrap(), "{what}: {}", e["path"]);
        }
        checked += 1;
    }
    (checked, unreadable.len())
}

fn walk(dest: &Path) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dest.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(dest).unwrap().as_os_str().as_bytes().to_vec());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn degraded_arrays_read_what_the_kernel_read_mounted_degraded() {
    let mut cases = 0;
    each_profile(|name, p, devs| {
        for case in p["degraded"].as_array().unwrap() {
            let withheld: Vec<u64> = case["withheld"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            let what = format!("{name} without {withheld:?}");
            let kept: Vec<&Path> = devs
                .paths
                .iter()
                .enumerate()
                .filter(|(i, _)| !withheld.contains(&(*i as u64 + 1)))
                .map(|(_, p)| p.as_path())
                .collect();
            let refused = case["error"].as_str().is_some_and(|e| e.starts_with("mount refused"));
            let img = match open(&kept) {
                Ok(img) => img,
                Err(e) => {
                    assert!(refused, "{what}: {e}");
                    eprintln!("{what}: refused as the kernel refused: {e}");
                    cases += 1;
                    continue;
                }
            };
            let w = img.warnings();
            for d in &withheld {
                assert!(w.iter().any(|l| l.starts_with(&format!("device {d} "))), "{what}: {w:?}");
            }
            if refused {
                // The kernel would not mount: the metadata it needs is on the missing device.
                assert!(img.walk_files().is_err(), "{what}: walked what the kernel refused to mount");
                eprintln!("{what}: refused as the kernel refused");
                cases += 1;
                continue;
            }
            let (d, r) = run_extract(&img);
            let (checked, failed) = check_view(&what, &d.path().join("out"), &r, case["view"].as_object().unwrap());
            let got = btrfs_restore::usage(&img, &[]).map(|u| u.compsize_report(true));
            if failed == 0 {
                assert_eq!(got.unwrap(), case["compsize"].as_str().unwrap(), "{what}: usage");
            }
            eprintln!("{what}: {checked} paths equal the kernel's, {failed} unreadable there and here");
            cases += 1;
        }
    });
    assert!(cases >= 30, "{cases}");
}

#[test]
fn a_damaged_copy_is_read_from_another_or_rebuilt() {
    let mut cases = 0;
    each_profile(|name, p, devs| {
        let paths = devs.refs();
        for case in p["damaged"].as_array().unwrap() {
            let (devid, phys, len) =
                (case["devid"].as_u64().unwrap(), case["physical"].as_u64().unwrap(), case["length"].as_u64().unwrap());
            let what = format!("{name}: {} damaged on device {devid}", case["what"].as_str().unwrap());
            let f = std::fs::OpenOptions::new().read(true).write(true).open(paths[devid as usize - 1]).unwrap();
            let mut saved = vec![0u8; len as usize];
            f.read_exact_at(&mut saved, phys).unwrap();
            f.write_all_at(&b"\xde\xad".repeat(len as usize / 2), phys).unwrap();
            let img = open(&paths).unwrap();
            let (d, r) = run_extract(&img);
            if case["same_as_whole"].as_bool().unwrap() {
                let (checked, _) = check_view(&what, &d.path().join("out"), &r, p["whole"].as_object().unwrap());
                let repairs = img.repairs();
                assert!(!repairs.is_empty(), "{what}: nothing said of the repair");
                eprintln!("{what}: {checked} paths equal the kernel's; {}", repairs[0]);
                if case["what"] == "data" {
                    // verify, as scrub: the data is good, the damaged copy (or row) is named.
                    let v = btrfs_restore::verify(&img, &btrfs_restore::read_options()).unwrap();
                    assert!(v.failures.is_empty(), "{what}: {:?}", v.failures);
                    assert_eq!(v.repairable.len(), 1, "{what}: {:?}", v.repairable);
                    assert!(v.repairable[0].contains(&format!("device {devid} ")), "{what}: {:?}", v.repairable);
                    eprintln!("{what}: verify: {}", v.repairable[0]);
                }
            } else {
                // No other copy (RAID0, single data): the kernel did not show the file's bytes
                // either (an error, or other bytes: see the fixture tool); here it is an error.
                let differ = case["kernel_differs"].as_object().unwrap();
                assert_eq!(differ.keys().collect::<Vec<_>>(), ["plain/random-512k"], "{what}");
                assert_eq!(r.errors.len(), 1, "{what}: {:?}", r.errors);
                assert!(
                    r.errors[0].starts_with("plain/random-512k:") && r.errors[0].contains("checksum"),
                    "{what}: {:?}",
                    r.errors
                );
                eprintln!("{what}: the kernel showed {}; here: {}", differ["plain/random-512k"], r.errors[0]);
            }
            f.write_all_at(&saved, phys).unwrap();
            cases += 1;
        }
    });
    assert_eq!(cases, 16);
}

#[test]
fn device_sets_that_are_not_one_filesystem_are_refused() {
    let (dir, _) = manifest();
    let raid1 = inflate(&dir, "raid1", 2);
    let raid0 = inflate(&dir, "raid0", 2);
    let e = open(&[&raid1.paths[0], &raid0.paths[1]]).expect_err("two filesystems");
    assert!(e.to_string().contains("another filesystem"), "{e}");
    let e = open(&[&raid1.paths[0], &raid1.paths[0]]).expect_err("one device twice");
    assert!(e.to_string().contains("both device 1"), "{e}");
    // A truncated device: said, and what lies past its end read from the other copy.
    let f = std::fs::OpenOptions::new().write(true).open(&raid1.paths[1]).unwrap();
    f.set_len(100 << 20).unwrap();
    let img = open(&[&raid1.paths[0], &raid1.paths[1]]).unwrap();
    assert!(img.warnings().iter().any(|w| w.contains("truncated")), "{:?}", img.warnings());
    let (_, r) = run_extract(&img);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}
