//! `estimate` against the running kernel (root and loop mounts; a SKIPPED line otherwise): a
//! generated tree (text, binaries, random data, runs, tiny and large files, files whose data
//! turns incompressible part-way and the reverse) is copied onto a fresh btrfs under each mount
//! option, synced and measured with `compsize -b`; estimate's TOTAL disk bytes must be within
//! 0.1 % of compsize's for every option (the deviations are printed; exact where every extent
//! boundary is the kernel's).

#[path = "../../btrfs-compress-cli/tests/common/mod.rs"]
mod common;
use common::sh;

use std::path::{Path, PathBuf};

use btrfs_compress::parse_compress_option;
use btrfs_estimate::{collect_files, estimate, MountOption, Rules};

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = sh("umount", &[self.0.to_str().unwrap()]);
    }
}

/// compsize -b's TOTAL disk, uncompressed and referenced bytes.
fn compsize(path: &Path) -> Result<(u64, u64, u64), String> {
    let out = sh("compsize", &["-b", path.to_str().unwrap()])?;
    let line = out.lines().find(|l| l.starts_with("TOTAL")).ok_or_else(|| format!("no TOTAL in {out}"))?;
    let f: Vec<u64> = line.split_whitespace().skip(2).map(|x| x.parse().unwrap()).collect();
    Ok((f[0], f[1], f[2]))
}

#[test]
fn estimate_equals_compsize_on_the_running_kernel() {
    let skip = |why: &str| println!("SKIPPED: estimate oracle: {why}");
    if let Some(why) = common::cannot_loop_mount(&["mkfs.btrfs", "compsize", "cp", "mount"]) {
        return skip(&why);
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    btrfs_lab::corpus::estimate_tree(&src).unwrap();
    let osrelease = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = osrelease.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse::<u32>().ok());
    let rules = Rules { kernel: (v.next().unwrap(), v.next().unwrap()), max_inline: 2048, sectorsize: 4096 };
    let files = collect_files(std::slice::from_ref(&src)).unwrap().files;
    let options = [
        "compress-force=zstd:3",
        "compress-force=lzo",
        "compress-force=zlib:3",
        "compress=zstd:1",
        "compress=zlib:6",
        "compress=lzo",
    ];
    let opts: Vec<MountOption> = options
        .iter()
        .map(|o| {
            let (kind, alg) = o.split_once('=').unwrap();
            MountOption { spec: parse_compress_option(alg).unwrap(), force: kind == "compress-force" }
        })
        .collect();
    let (ours, unreadable) = estimate(&files, &opts, &rules, &|_| {});
    assert_eq!(unreadable, 0);
    let mut report = Vec::new();
    let mut bad = Vec::new();
    for (i, (opt, t)) in options.iter().zip(&ours).enumerate() {
        let img = dir.path().join("img");
        std::fs::File::create(&img).unwrap().set_len(1 << 30).unwrap();
        if let Err(e) = sh("mkfs.btrfs", &["-q", "-f", img.to_str().unwrap()]) {
            return skip(&format!("mkfs.btrfs failed: {e}"));
        }
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        if let Err(e) = sh("mount", &["-o", &format!("loop,{opt}"), img.to_str().unwrap(), mnt.to_str().unwrap()]) {
            return skip(&format!("mount refused: {e}"));
        }
        let m = Mounted(mnt.clone());
        sh("cp", &["-r", src.to_str().unwrap(), mnt.join("t").to_str().unwrap()]).unwrap();
        sh("sync", &[]).unwrap();
        let (disk, uncomp, refd) = compsize(&mnt.join("t")).unwrap();
        let est = t.usage.disk_bytes();
        if est != disk {
            // Name the files that differ.
            for f in &files {
                let rel = f.0.strip_prefix(&src).unwrap();
                let (k, _, _) = compsize(&mnt.join("t").join(rel)).unwrap();
                let (e, _) = estimate(std::slice::from_ref(f), &opts[i..=i], &rules, &|_| {});
                if e[0].usage.disk_bytes() != k {
                    report.push(format!("  {opt} {}: kernel {k}, estimate {}", rel.display(), e[0].usage.disk_bytes()));
                }
            }
        }
        drop(m);
        let dev = (est as f64 - disk as f64) / disk as f64;
        report.push(format!(
            "{opt}: kernel {disk} disk / {uncomp} / {refd}, estimate {est} / {} / {} ({:+.4} %)",
            t.usage.uncompressed_bytes(),
            t.usage.referenced_bytes(),
            100.0 * dev
        ));
        if dev.abs() > 0.001 || t.usage.referenced_bytes() != refd {
            bad.push(opt.to_string());
        }
        std::fs::remove_file(&img).unwrap();
    }
    for l in &report {
        eprintln!("{l}");
    }
    assert!(bad.is_empty(), "estimate off by more than 0.1 % for {bad:?}:\n{}", report.join("\n"));
}
