//! Extents written by real kernels (fixtures/*/, images from Debian's 6.1, 6.12 and 7.x booted in
//! qemu): our reader returns exactly the bytes the kernel's ENCODED_READ returned (sha256 in the
//! manifest); every extent decodes to the kernel's plaintext with our decoders under every
//! mapping strategy and backend; our compressors reproduce the kernel's extents byte for byte
//! where the manifest says its library allows it.

use btrfs_compress::{
    compress_extent_in_folios, decompress_extent, decompress_inline, parse_compress_option, Backend, InputChunk,
    Options, Strategy, ZlibBackend,
};
use diff_tests::{assert_same, fixtures, FixtureExtent};
use serde_json::Value;

#[test]
fn every_kernel_extent_decodes_under_every_strategy() {
    let mut n = 0;
    for f in fixtures() {
        for e in &f.extents {
            let want = &f.plain[&e.file][e.file_offset..e.file_offset + e.len];
            for backend in Backend::ALL {
                for strategy in Strategy::ALL {
                    for (folio_order, decompress_in_place) in [(0, false), (5, false), (0, true), (5, true)] {
                        let decompress_loop = btrfs_compress::LoopVariant::in_place(decompress_in_place);
                        let o = Options { strategy, backend, folio_order, decompress_loop, ..Options::default() };
                        let what =
                            format!("{} {} {}/{} @{} {o:?}", f.dir.display(), e.option, e.dir, e.file, e.file_offset);
                        let got = if e.inline {
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
    assert!(n > 5000, "decoded {n}");
}

/// Which codecs reproduce this kernel's bytes: what the manifest says (`identical_expected`,
/// written by the fixture generators: lzo in every era, zstd where the kernel carries libzstd
/// 1.5.7), and zlib in every era since the kernel's deflate is ported ([`kernel_deflate`]).
/// Only whole extents written under a plain `compress-force=ALG[:LEVEL]` option count.
fn expect_identical(manifest: &Value, option: &str) -> bool {
    let Ok(spec) = parse_compress_option(option) else { return false };
    spec.alg == btrfs_compress::CompressType::Zlib
        || manifest["identical_expected"][spec.alg.name()].as_bool().unwrap_or(false)
}

/// Our bytes for the kernel extent's plaintext, padded as the disk holds them. Kernels differ in
/// what they hand the compressor for the last, partial sector of a file: up to 6.18 exactly the
/// file's bytes; 7.x the whole sector-rounded range with zeros after the end of file (inline
/// extents then hold a whole zero-padded sector). Both inputs are tried; the first that
/// reproduces the kernel's bytes is returned, else the exact one.
fn ours(f: &diff_tests::Fixture, e: &FixtureExtent, o: &Options) -> Option<Vec<u8>> {
    let spec = parse_compress_option(&e.option).ok()?;
    let seven = f.manifest["kernel"].as_str().is_some_and(|k| k.starts_with('7'));
    // 7.x's chunks run to the folio's end; only zlib's bytes depend on where they end (zstd and
    // lzo are checked with the strategies' own chunks, a range mapping among them).
    let zlib = spec.alg == btrfs_compress::CompressType::Zlib;
    let input_chunk = if seven && zlib { InputChunk::Folio } else { InputChunk::Page };
    let o = &Options { zlib_backend: kernel_zlib(f), input_chunk, ..*o };
    let orders = (seven && spec.alg == btrfs_compress::CompressType::Zlib)
        .then(|| btrfs_compress::page_cache_folios_7x(e.file_offset, e.len, f.plain[&e.file].len()));
    let exact = &f.plain[&e.file][e.file_offset..e.file_offset + e.len];
    let rounded = if e.inline { 4096 } else { e.unencoded_len.max(e.len) };
    let mut inputs = vec![exact.to_vec()];
    if rounded > e.len {
        let mut p = exact.to_vec();
        p.resize(rounded, 0);
        inputs.push(p);
    }
    let mut first = None;
    for input in inputs {
        let Ok(ext) = compress_extent_in_folios(&input, spec, o, orders.as_deref()) else { continue };
        let mut padded = ext.data.to_vec();
        if !e.inline {
            padded.resize(padded.len().next_multiple_of(4096), 0);
        }
        if padded == e.raw {
            return Some(padded);
        }
        first.get_or_insert(padded);
    }
    first
}

/// The kernel deflate of the fixture's kernel era (`flush_pending()` changed in 6.3).
fn kernel_zlib(f: &diff_tests::Fixture) -> ZlibBackend {
    let k = f.manifest["kernel"].as_str().unwrap_or("");
    let mut it = k.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse::<u32>().ok());
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    ZlibBackend::kernel_of(major, minor)
}

#[test]
fn our_compressors_reproduce_kernel_extents() {
    let mut identical = 0;
    let mut expected = 0;
    for f in fixtures() {
        for e in &f.extents {
            if e.unencoded_offset != 0 || !expect_identical(&f.manifest, &e.option) {
                continue;
            }
            expected += 1;
            // 7.x feeds deflate a whole folio at a time through `kmap_local_folio()`, which on
            // 64-bit is the direct map: a strategy that maps less than a folio cannot run that
            // loop, so 7.x's zlib extents are checked on the direct map only.
            let seven_zlib =
                e.option.starts_with("zlib") && f.manifest["kernel"].as_str().is_some_and(|k| k.starts_with('7'));
            for strategy in [Strategy::Direct, Strategy::KmapLocal, Strategy::Range] {
                if seven_zlib && strategy != Strategy::Direct {
                    continue;
                }
                let folio_order = if strategy == Strategy::Range { 5 } else { 0 };
                let o = Options { strategy, folio_order, ..Options::default() };
                let got = ours(&f, e, &o).expect("compresses");
                let what = format!("{} {} {} @{} {strategy}", f.dir.display(), e.option, e.file, e.file_offset);
                assert_same(&got, &e.raw, &what);
            }
            identical += 1;
        }
    }
    assert!(expected >= 120, "only {expected} extents expected identical");
    assert_eq!(identical, expected);
}

/// Prints, per kernel and option, how many whole lzo/zstd/zlib extents our compressors
/// reproduce (`cargo test -p diff-tests --test kernel_extents -- --nocapture identity_table`).
#[test]
fn identity_table() {
    for f in fixtures() {
        let kernel = f.manifest["kernel"].as_str().unwrap().to_string();
        let mut rows: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
        for e in &f.extents {
            if e.unencoded_offset != 0 {
                continue;
            }
            let Some(got) = ours(&f, e, &Options::default()) else { continue };
            let r = rows.entry(e.option.clone()).or_default();
            r.1 += 1;
            if got == e.raw {
                r.0 += 1;
            }
        }
        for (opt, (same, all)) in rows {
            eprintln!("identity {kernel} {opt}: {same}/{all}");
        }
    }
}

#[test]
fn manifests_describe_their_files() {
    for f in fixtures() {
        for (name, meta) in f.manifest["files"].as_object().expect("files") {
            let size = meta["size"].as_u64().expect("size") as usize;
            assert_eq!(f.plain[name].len(), size, "{name}");
        }
        assert!(f.manifest["kernel"].is_string());
        assert!(f.manifest["identical_expected"].is_object());
    }
}
