//! The sampled estimate against the exact one on generated trees (no root): a sample of every
//! unit is the exact answer, counter for counter (under compress= too, where a failed chunk's
//! NOCOMPRESS flag carries over to the file's later ones); a partial sample of a larger tree
//! lands near it with intervals that cover it.

use std::path::{Path, PathBuf};

use btrfs_compress::parse_compress_option;
use btrfs_estimate::{collect_files, estimate, estimate_sampled, MountOption, Rules};
use btrfs_lab::corpus::{estimate_tree, generate, Kind};

const RULES: Rules = Rules { kernel: (6, 18), max_inline: 2048, sectorsize: 4096 };

fn options(list: &[&str]) -> Vec<MountOption> {
    list.iter()
        .map(|o| {
            let (kind, alg) = o.split_once('=').unwrap();
            MountOption { spec: parse_compress_option(alg).unwrap(), force: kind == "compress-force" }
        })
        .collect()
}

fn files_of(dir: &Path) -> Vec<(PathBuf, u64)> {
    collect_files(&[dir.to_path_buf()]).unwrap().files
}

#[test]
fn a_sample_of_every_unit_is_the_exact_answer() {
    let dir = tempfile::tempdir().unwrap();
    estimate_tree(dir.path()).unwrap();
    // A file whose first chunk lzo cannot compress although the heuristic lets it through (64
    // symbols in random order: a small byte set, and no repeats for lzo to find), then text: under
    // compress=lzo its failure sets NOCOMPRESS and the text is written plain.
    let mut seed = 99u64;
    let mut hard: Vec<u8> = (0..512 * 1024)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            b'0' + (seed >> 58) as u8
        })
        .collect();
    hard.extend(generate(Kind::Text, 1 << 20, 5));
    std::fs::write(dir.path().join("lzo-fails-then-text"), hard).unwrap();
    let files = files_of(dir.path());
    let opts = options(&[
        "compress-force=zstd:3",
        "compress-force=lzo",
        "compress-force=zlib:3",
        "compress=zstd:1",
        "compress=lzo",
        "compress=zlib:6",
    ]);
    let (exact, unreadable) = estimate(&files, &opts, &RULES, &|_| {});
    assert_eq!(unreadable, 0);
    let (sampled, unreadable) = estimate_sampled(&files, &opts, &RULES, 1.0, 7, &|_| {}).unwrap();
    assert_eq!(unreadable, 0);
    for ((o, e), s) in opts.iter().zip(&exact).zip(&sampled) {
        let (e, s) = (&e.usage, &s.usage);
        assert_eq!(s.disk_bytes(), e.disk_bytes(), "{o}");
        assert_eq!(s.uncompressed_bytes(), e.uncompressed_bytes(), "{o}");
        assert_eq!(s.referenced_bytes(), e.referenced_bytes(), "{o}");
        assert_eq!((s.regular_extents, s.inline, s.files), (e.regular_extents, e.inline, e.files), "{o}");
        assert!(e.disk_bytes() < e.uncompressed_bytes(), "{o}: the tree compresses");
    }
}

/// A tree of many units of several kinds: small files, files of a few chunks and their tails,
/// each of text, binary records, random bytes or a mix.
fn varied_tree(dir: &Path) {
    let kinds = [Kind::Text, Kind::Binary, Kind::Incompressible, Kind::Mixed];
    for i in 0..400u64 {
        let len = match i % 5 {
            0 | 1 => 200 + (i as usize * 37) % 3900,
            2 => 20_000 + (i as usize * 7919) % 200_000,
            _ => (1 << 20) + (i as usize * 104_729) % (1 << 20),
        };
        let kind = kinds[(i / 5 % 4) as usize];
        std::fs::write(dir.join(format!("f{i}")), generate(kind, len, i)).unwrap();
    }
}

/// Ten samples of 30 % (seeds 1 to 10): each within 3 % of the exact disk bytes, their mean
/// |error| under 1 %, and at least 26 of the 30 intervals (95 % each) cover the exact answer.
#[test]
fn partial_samples_are_near_the_exact_answer_and_their_intervals_cover_it() {
    let dir = tempfile::tempdir().unwrap();
    varied_tree(dir.path());
    let files = files_of(dir.path());
    let opts = options(&["compress-force=zstd:1", "compress-force=lzo", "compress-force=zlib:3"]);
    let (exact, _) = estimate(&files, &opts, &RULES, &|_| {});
    let total: u64 = files.iter().map(|f| f.1).sum();
    let (mut covered, mut errors) = (0, Vec::new());
    for seed in 1..=10 {
        let evaluated = std::sync::atomic::AtomicU64::new(0);
        let count = |n: u64| {
            evaluated.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        };
        let (sampled, unreadable) = estimate_sampled(&files, &opts, &RULES, 0.3, seed, &count).unwrap();
        assert_eq!(unreadable, 0);
        let share = evaluated.into_inner() as f64 / total as f64;
        assert!(share < 0.5, "evaluated {share:.2} of the bytes for a sample of 0.3");
        for ((o, e), s) in opts.iter().zip(&exact).zip(&sampled) {
            let x = e.usage.disk_bytes() as f64;
            let (lo, hi) = s.disk_ci95;
            let err = (s.usage.disk_bytes() as f64 - x) / x;
            println!(
                "seed {seed} {o}: exact {x}, sampled {} ({:+.2} %), interval {lo:.0}..{hi:.0}",
                s.usage.disk_bytes(),
                100.0 * err
            );
            assert!(err.abs() < 0.03, "seed {seed} {o}: {:+.2} % off", 100.0 * err);
            assert!(hi - lo < 0.1 * x, "seed {seed} {o}: interval too wide to say anything");
            assert_eq!(s.usage.files, e.usage.files);
            covered += usize::from(lo <= x && x <= hi);
            errors.push(err.abs());
        }
    }
    let mean = errors.iter().sum::<f64>() / errors.len() as f64;
    println!("{covered}/30 intervals cover; mean |error| {:.2} %", 100.0 * mean);
    assert!(covered >= 26, "only {covered} of 30 intervals cover the exact answer");
    assert!(mean < 0.01, "mean |error| {:.2} %", 100.0 * mean);
}
