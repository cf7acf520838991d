//! `estimate` against kernels of other eras, without qemu: tools/qemu-estimate.py booted them,
//! wrote the estimate oracles' tree under each mount option and kept what `usage` (equal to
//! compsize) counted in fixtures/estimate-qemu-<kernel>/kernel.json. The same tree is generated
//! here and estimated with that kernel's rules: TOTAL disk bytes within 0.1 % for every option
//! (the deviations are printed), referenced bytes exact.

use std::path::Path;

use btrfs_compress::parse_compress_option;
use btrfs_estimate::{collect_files, estimate, MountOption, Rules};
use serde_json::Value;

#[test]
fn estimate_matches_the_kernels_qemu_ran() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut fixtures: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("estimate-qemu-"))
        .collect();
    fixtures.sort();
    if fixtures.is_empty() {
        println!("SKIPPED: no fixtures/estimate-qemu-*/ (tools/qemu-estimate.py makes them)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    btrfs_lab::corpus::estimate_tree(&src).unwrap();
    let files = collect_files(std::slice::from_ref(&src)).unwrap().files;
    let mut bad = Vec::new();
    for f in fixtures {
        let k: Value = serde_json::from_slice(&std::fs::read(f.join("kernel.json")).unwrap()).unwrap();
        let kver = k["kernel"].as_str().unwrap();
        let mut v = kver.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse::<u32>().ok());
        let rules = Rules { kernel: (v.next().unwrap(), v.next().unwrap()), max_inline: 2048, sectorsize: 4096 };
        for o in k["options"].as_array().unwrap() {
            let opt = o["option"].as_str().unwrap();
            let (kind, alg) = opt.split_once('=').unwrap();
            let m = MountOption { spec: parse_compress_option(alg).unwrap(), force: kind == "compress-force" };
            let (t, unreadable) = estimate(&files, &[m], &rules, &|_| {});
            assert_eq!(unreadable, 0);
            let u = &t[0].usage;
            let disk = o["disk_bytes"].as_u64().unwrap();
            let dev = (u.disk_bytes() as f64 - disk as f64) / disk as f64;
            eprintln!(
                "{kver} {opt}: kernel {disk} disk / {} / {}, estimate {} / {} / {} ({:+.4} %)",
                o["uncompressed_bytes"],
                o["referenced_bytes"],
                u.disk_bytes(),
                u.uncompressed_bytes(),
                u.referenced_bytes(),
                100.0 * dev
            );
            if dev.abs() > 0.001 || u.referenced_bytes() != o["referenced_bytes"].as_u64().unwrap() {
                bad.push(format!("{kver} {opt}"));
            }
        }
    }
    assert!(bad.is_empty(), "estimate off by more than 0.1 % for {bad:?}");
}
