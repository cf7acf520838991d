//! Replays the committed fuzz corpora (fuzz/corpus/<target>/) and any crash regressions
//! (fuzz/regressions/<target>/) through the fuzz targets' bodies, then a short deterministic
//! mutation run of each target: the smoke run CI does without a fuzzing engine.

use std::path::PathBuf;

use diff_tests::fuzzing::{decompress_any, image_metadata, kernel_deflate, lzo_framing, roundtrip};
use diff_tests::{repo_root, Rng};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    for dir in ["fuzz/corpus", "fuzz/regressions"] {
        let d = repo_root().join(dir).join(target);
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut files: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            v.push((f, data));
        }
    }
    v
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    match rng.next_u64() % 5 {
        0 if !d.is_empty() => {
            for _ in 0..1 + rng.next_u64() % 8 {
                let i = (rng.next_u64() as usize) % d.len();
                d[i] ^= 1 << (rng.next_u64() % 8);
            }
        }
        1 => d.truncate((rng.next_u64() as usize) % (d.len() + 1)),
        2 => d.extend((0..rng.next_u64() % 5000).map(|_| rng.next_u64() as u8)),
        3 if d.len() > 16 => {
            let i = 8 + (rng.next_u64() as usize) % (d.len() - 8);
            let n = (rng.next_u64() as usize % 64).min(d.len() - i);
            d[i..i + n].fill(0xff);
        }
        _ if d.len() > 8 => {
            let i = 8 + (rng.next_u64() as usize) % (d.len() - 8);
            d[i] = d[i].wrapping_add(1);
        }
        _ => {}
    }
    d
}

fn run(target: &str, f: fn(&[u8]), mutations: usize) {
    let seeds = inputs(target);
    assert!(!seeds.is_empty(), "no corpus for {target} under fuzz/corpus");
    for (path, data) in &seeds {
        let r = std::panic::catch_unwind(|| f(data));
        assert!(r.is_ok(), "{target}: {} panicked", path.display());
    }
    let mut rng = Rng::new(0xf022);
    for i in 0..mutations {
        let seed = &seeds[i % seeds.len()].1;
        let m = mutate(&mut rng, seed);
        let r = std::panic::catch_unwind(|| f(&m));
        assert!(r.is_ok(), "{target}: mutation {i} of {} panicked", seeds[i % seeds.len()].0.display());
    }
}

#[test]
fn decompress_corpus_and_mutations() {
    run("decompress", decompress_any, 3000);
}

#[test]
fn lzo_framing_corpus_and_mutations() {
    run("lzo_framing", lzo_framing, 3000);
}

#[test]
fn roundtrip_corpus_and_mutations() {
    run("roundtrip", roundtrip, 300);
}

#[test]
fn image_metadata_corpus_and_mutations() {
    run("image_metadata", image_metadata, 300);
}

/// The multi-device half of `image_metadata` on every corpus entry and 300 mutations: chunk
/// items with RAID5 stripes damaged, tree blocks rebuilt from parity.
#[test]
fn image_metadata_multi_device_corpus_and_mutations() {
    run("image_metadata", |d: &[u8]| diff_tests::fuzzing::image_metadata_multi(d), 300);
}

/// The deep-tree half of `image_metadata` on every corpus entry and 300 mutations: the fs tree
/// blocks of a 3,000-level directory chain damaged (checksums made valid on request), then
/// walked, inspected, counted and verified.
#[test]
fn image_metadata_deep_tree_corpus_and_mutations() {
    let n = diff_tests::fuzzing::deep_tree_blocks();
    eprintln!("{n} fs tree blocks of the 3,000-level chain");
    assert!(n > 10, "{n} fs tree blocks found");
    run("image_deep", |d: &[u8]| diff_tests::fuzzing::image_metadata_deep(d), 300);
}

/// `.zst` images: frame headers and bytes damaged, frames cut, data appended past the device
/// (with the superblocks intact or both damaged). Fewer mutations: each inflates up to 256 MiB.
#[test]
fn image_zst_corpus_and_mutations() {
    run("image_zst", diff_tests::fuzzing::image_zst, 40);
}

#[test]
fn kernel_deflate_corpus_and_mutations() {
    run("kernel_deflate", kernel_deflate, 300);
}
