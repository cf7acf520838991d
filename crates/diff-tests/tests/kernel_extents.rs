//! Extents written by real kernels (fixtures/*/manifest.json): every one decodes to the
//! kernel's plaintext with our decoders under every mapping strategy and backend, and our
//! compressors reproduce the kernel's lzo and zstd extents byte for byte.

use std::collections::HashMap;
use std::path::Path;

use btrfs_compress::{
    compress_extent_raw, decompress_extent, decompress_inline, parse_compress_option, Backend, CompressType, Options,
    Strategy,
};
use diff_tests::{assert_same, read_zst, repo_root};
use serde_json::Value;

struct Fixture {
    dir: std::path::PathBuf,
    manifest: Value,
    plain: HashMap<String, Vec<u8>>,
}

fn fixtures() -> Vec<Fixture> {
    let root = repo_root().join("fixtures");
    let mut v = Vec::new();
    for e in std::fs::read_dir(&root).expect("fixtures/ exists") {
        let dir = e.expect("dir entry").path();
        let mf = dir.join("manifest.json");
        if !mf.exists() || !dir.join("plain").exists() {
            continue;
        }
        let manifest: Value = serde_json::from_slice(&std::fs::read(&mf).expect("manifest")).expect("json");
        let mut plain = HashMap::new();
        for (name, _) in manifest["files"].as_object().expect("files") {
            plain.insert(name.clone(), read_zst(&dir.join("plain").join(format!("{name}.zst"))));
        }
        v.push(Fixture { dir, manifest, plain });
    }
    assert!(!v.is_empty(), "no kernel fixtures under {}", root.display());
    v
}

fn alg(enc: &str) -> Option<CompressType> {
    match enc {
        "zlib" => Some(CompressType::Zlib),
        "zstd" => Some(CompressType::Zstd),
        "lzo-4k" => Some(CompressType::Lzo),
        _ => None,
    }
}

struct Ext<'a> {
    option: &'a str,
    file: &'a str,
    alg: CompressType,
    raw: Vec<u8>,
    file_offset: usize,
    len: usize,
    unencoded_len: usize,
    unencoded_offset: usize,
}

fn extents<'a>(f: &'a Fixture) -> Vec<Ext<'a>> {
    let mut v = Vec::new();
    for e in f.manifest["extents"].as_array().expect("extents") {
        let Some(path) = e["path"].as_str() else { continue };
        let Some(alg) = alg(e["compression"].as_str().expect("compression")) else { continue };
        let raw = std::fs::read(f.dir.join(path)).expect("extent file");
        let n = |k: &str| e[k].as_u64().expect(k) as usize;
        v.push(Ext {
            option: e["option"].as_str().expect("option"),
            file: e["file"].as_str().expect("file"),
            alg,
            raw,
            file_offset: n("file_offset"),
            len: n("len"),
            unencoded_len: n("unencoded_len"),
            unencoded_offset: n("unencoded_offset"),
        });
    }
    v
}

fn is_inline(e: &Ext<'_>) -> bool {
    e.unencoded_len % 4096 != 0 || e.raw.len() % 4096 != 0
}

#[test]
fn every_kernel_extent_decodes_under_every_strategy() {
    let mut n = 0;
    for f in fixtures() {
        for e in extents(&f) {
            let want = &f.plain[e.file][e.file_offset..e.file_offset + e.len];
            for backend in Backend::ALL {
                for strategy in Strategy::ALL {
                    for (folio_order, decompress_in_place) in [(0, false), (5, false), (0, true), (5, true)] {
                        let o = Options { strategy, backend, folio_order, decompress_in_place, ..Options::default() };
                        let what = format!("{} {} {} @{} {o:?}", f.dir.display(), e.option, e.file, e.file_offset);
                        let got = if is_inline(&e) {
                            decompress_inline(e.alg, &e.raw, e.len, &o)
                        } else {
                            decompress_extent(e.alg, &e.raw, e.unencoded_len, e.unencoded_offset, e.len, &o)
                        }
                        .unwrap_or_else(|err| panic!("{what}: {err}"));
                        assert_same(&got, want, &what);
                        n += 1;
                    }
                }
            }
        }
    }
    assert!(n > 1000, "decoded {n}");
}

/// Which (era, option) pairs reproduce the kernel's bytes: lzo everywhere (the kernel's own
/// lzo1x_1 through rust-lzo); zstd where the kernel carries libzstd 1.5.7 (6.15 and later).
/// zlib never (no userspace deflate matches lib/zlib_deflate).
fn expect_identical(kernel: &str, option: &str) -> bool {
    let major_minor: Vec<u32> = kernel.split(['.', '-']).take(2).filter_map(|x| x.parse().ok()).collect();
    let recent = major_minor.len() == 2 && (major_minor[0], major_minor[1]) >= (6, 15);
    option == "lzo" || (option.starts_with("zstd") && recent)
}

#[test]
fn our_compressors_reproduce_kernel_lzo_and_zstd_extents() {
    let mut identical = 0;
    let mut expected = 0;
    for f in fixtures() {
        let kernel = f.manifest["kernel"].as_str().expect("kernel").to_string();
        for e in extents(&f) {
            if e.unencoded_offset != 0 || !expect_identical(&kernel, e.option) {
                continue;
            }
            expected += 1;
            let spec = parse_compress_option(e.option).expect("option");
            let input = &f.plain[e.file][e.file_offset..e.file_offset + e.len];
            for strategy in [Strategy::Direct, Strategy::KmapLocal, Strategy::Range] {
                let o = Options {
                    strategy,
                    folio_order: if strategy == Strategy::Range { 5 } else { 0 },
                    ..Options::default()
                };
                let ours = compress_extent_raw(input, spec, &o).expect("compresses");
                let mut padded = ours.data.to_vec();
                if !is_inline(&e) {
                    padded.resize(padded.len().next_multiple_of(4096), 0);
                }
                assert_same(
                    &padded,
                    &e.raw,
                    &format!("{kernel} {} {} @{} {strategy}", e.option, e.file, e.file_offset),
                );
            }
            identical += 1;
        }
    }
    assert!(expected >= 69, "only {expected} extents expected identical");
    assert_eq!(identical, expected);
}

#[test]
fn manifests_describe_their_files() {
    for f in fixtures() {
        for (name, meta) in f.manifest["files"].as_object().expect("files") {
            let size = meta["size"].as_u64().expect("size") as usize;
            assert_eq!(f.plain[name].len(), size, "{name}");
        }
        assert!(Path::new(&f.dir).join("manifest.json").exists());
    }
}
