//! The running kernel as the oracle: our compressed extents, stored with `encoded-write`
//! (BTRFS_IOC_ENCODED_WRITE through `btrfs receive`) on a loop-mounted btrfs, read back through
//! the kernel after a remount, and found on disk exactly as we made them.
//! Where this cannot run (not root, no loop device, no btrfs, no btrfs-progs) it prints one
//! SKIPPED line with the reason.

mod common;
use common::sh;

use std::path::PathBuf;
use std::process::Command;

use btrfs_compress::{compress_extent, compress_inline, parse_compress_option, Options, BTRFS_MAX_UNCOMPRESSED};
use btrfs_image::ExtentKind;
use btrfs_lab::corpus::{generate, Kind};

struct Mount {
    img: PathBuf,
    mnt: PathBuf,
    mounted: bool,
}

impl Mount {
    fn mount(&mut self) -> Result<(), String> {
        sh("mount", &["-o", "loop", self.img.to_str().unwrap(), self.mnt.to_str().unwrap()])?;
        self.mounted = true;
        Ok(())
    }
    fn umount(&mut self) {
        if self.mounted {
            let _ = sh("umount", &[self.mnt.to_str().unwrap()]);
            self.mounted = false;
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.umount();
    }
}

/// A fresh 1 GiB btrfs image in `dir`, loop-mounted at `dir/mnt`; why not, if it cannot be.
fn fresh_btrfs(dir: &std::path::Path) -> Result<Mount, String> {
    let img = dir.join("img");
    std::fs::File::create(&img).unwrap().set_len(1 << 30).unwrap();
    sh("mkfs.btrfs", &["-q", "-f", img.to_str().unwrap()]).map_err(|e| format!("mkfs.btrfs failed: {e}"))?;
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut m = Mount { img, mnt, mounted: false };
    m.mount().map_err(|e| format!("mount refused: {e}"))?;
    Ok(m)
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut t = generate(Kind::Text, 200_000, 1);
    t.extend(generate(Kind::Incompressible, 30_000, 2));
    vec![
        ("inline-300".into(), generate(Kind::Text, 300, 3)),
        ("inline-1500".into(), generate(Kind::Binary, 1500, 4)),
        ("inline-3900".into(), generate(Kind::Text, 3900, 5)),
        ("unaligned-100000".into(), generate(Kind::Text, 100_000, 6)),
        ("mixed-300k".into(), generate(Kind::Mixed, 300_000, 7)),
        ("text-then-random".into(), t),
        ("binary-128k".into(), generate(Kind::Binary, 131072, 8)),
        ("zeros-64k".into(), vec![0; 65536]),
        ("random-64k".into(), generate(Kind::Incompressible, 65536, 9)),
    ]
}

#[test]
fn encoded_write_round_trips_through_the_running_kernel() {
    let skip = |why: &str| println!("SKIPPED: live-kernel round trip: {why}");
    if let Some(why) = common::cannot_loop_mount(&["mkfs.btrfs", "btrfs", "cp", "mount"]) {
        return skip(&why);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut m = match fresh_btrfs(dir.path()) {
        Ok(m) => m,
        Err(why) => return skip(&why),
    };
    let (img, mnt) = (m.img.clone(), m.mnt.clone());
    let bin = env!("CARGO_BIN_EXE_btrfs-compress");
    let files = corpus();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for (n, d) in &files {
        std::fs::write(inputs.join(n), d).unwrap();
    }
    // Every algorithm and level on the direct map; the mapping strategies on two of them.
    let mut runs: Vec<(&str, &str, u32)> = Vec::new();
    for spec in ["zlib:1", "zlib:3", "zlib:9", "lzo", "zstd:-5", "zstd:1", "zstd:3", "zstd:15"] {
        runs.push((spec, "direct", 0));
    }
    for spec in ["zstd:3", "lzo"] {
        runs.push((spec, "kmap-local", 0));
        runs.push((spec, "range", 5));
    }
    let mut written = Vec::new();
    for (i, (spec, strategy, order)) in runs.iter().enumerate() {
        for (n, _) in &files {
            let target = mnt.join(format!("{i}-{n}"));
            let o = Command::new(bin)
                .args(["encoded-write", "-a", spec, "--strategy", strategy, "--folio-order", &order.to_string()])
                .arg(inputs.join(n))
                .arg(&target)
                .output()
                .unwrap();
            assert!(o.status.success(), "{spec} {strategy} {n}: {}", String::from_utf8_lossy(&o.stderr));
            written.push((format!("{i}-{n}"), n.clone(), *spec, *strategy, *order));
        }
    }
    // Remount to drop the page cache, then read everything back through the kernel.
    m.umount();
    m.mount().unwrap();
    for (path, n, spec, strategy, _) in &written {
        let want = &files.iter().find(|f| &f.0 == n).unwrap().1;
        let got = std::fs::read(mnt.join(path)).unwrap();
        assert!(&got == want, "{spec} {strategy} {n}: the kernel read back other bytes");
    }
    m.umount();
    // On disk, the extents are exactly the bytes we made.
    let image = btrfs_image::open_image(&img).unwrap();
    let tree = image.fs_tree(btrfs_image::BTRFS_FS_TREE_OBJECTID).unwrap();
    let entries = image.walk_files().unwrap();
    let (mut encoded, mut inline) = (0, 0);
    for (path, n, spec, strategy, order) in &written {
        let spec = parse_compress_option(spec).unwrap();
        let o = Options {
            strategy: btrfs_compress::Strategy::from_name(strategy).unwrap(),
            folio_order: *order,
            out_order: *order,
            ..Options::default()
        };
        let want = &files.iter().find(|f| &f.0 == n).unwrap().1;
        let e = entries.lookup(path.as_bytes()).unwrap();
        for fe in image.file_extents(&tree, e.ino).unwrap() {
            if fe.compression == 0 {
                continue;
            }
            assert_eq!(fe.compression, spec.alg.code(), "{path}");
            let off = fe.file_offset as usize;
            let chunk = &want[off..(off + BTRFS_MAX_UNCOMPRESSED).min(want.len())];
            match &fe.kind {
                ExtentKind::Inline { data } => {
                    let ours = compress_inline(chunk, spec, 2048, &o).unwrap();
                    assert_eq!(&ours.data[..], &data[..], "{path}: inline extent differs from ours");
                    inline += 1;
                }
                _ => {
                    let ours = compress_extent(chunk, spec, &o).unwrap();
                    let disk = image.read_logical(fe.disk_bytenr, fe.disk_num_bytes as usize).unwrap();
                    assert_eq!(
                        &disk[..ours.data.len()],
                        &ours.data[..],
                        "{path} @{off}: stored bytes differ from ours"
                    );
                    assert!(disk[ours.data.len()..].iter().all(|&b| b == 0), "{path}: padding");
                    encoded += 1;
                }
            }
        }
    }
    println!(
        "live kernel: {} files, {encoded} encoded extents and {inline} inline extents stored as we made them",
        written.len()
    );
    assert!(encoded > 50, "{encoded}");
    assert!(inline > 5, "{inline}");
}

#[test]
fn an_interrupted_extract_removes_its_temporaries_and_exits_130() {
    let skip = |why: &str| println!("SKIPPED: interrupted extract: {why}");
    if let Some(why) = common::cannot_loop_mount(&["mkfs.btrfs", "mount", "kill"]) {
        return skip(&why);
    }
    // An image with enough data that extract is still writing when the signal comes: 48 files
    // of 8 MiB of random data (stored plain).
    let dir = tempfile::tempdir().unwrap();
    let mut m = match fresh_btrfs(dir.path()) {
        Ok(m) => m,
        Err(why) => return skip(&why),
    };
    let (img, mnt) = (m.img.clone(), m.mnt.clone());
    let data = generate(Kind::Incompressible, 8 << 20, 41);
    for i in 0..48 {
        std::fs::write(mnt.join(format!("f{i}")), &data).unwrap();
    }
    m.umount();
    let bin = env!("CARGO_BIN_EXE_btrfs-compress");
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let dest = dir.path().join(format!("dest-{sig}"));
        let mut child = Command::new(bin).arg("extract").arg(&img).arg(&dest).spawn().unwrap();
        // Wait until it has temporaries in DEST, then signal it.
        let t0 = std::time::Instant::now();
        let busy = loop {
            let n = std::fs::read_dir(&dest).map(|d| d.count()).unwrap_or(0);
            if n > 0 || t0.elapsed().as_secs() > 20 {
                break n > 0;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        sh("kill", &[&format!("-{sig}"), &child.id().to_string()]).unwrap();
        let status = child.wait().unwrap();
        if !busy || status.success() {
            // It finished before the signal landed: nothing to check on this machine.
            println!("SKIPPED: interrupted extract ({sig}): extract finished first");
            continue;
        }
        assert_eq!(status.code(), Some(code), "{sig}");
        let left: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("btrfs-compress-tmp"))
            .collect();
        assert!(left.is_empty(), "{sig}: temporaries left: {left:?}");
        // Every file that is there is whole.
        for e in std::fs::read_dir(&dest).unwrap() {
            let p = e.unwrap().path();
            assert_eq!(std::fs::read(&p).unwrap(), data, "{}", p.display());
        }
    }
}
