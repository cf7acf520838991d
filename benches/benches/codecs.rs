//! Per codec: the kernel page loop on the direct map against one call of the same library on the
//! contiguous 128 KiB buffer, same data, same level, compress and decompress.
//! Targets (not tests): compress at least 0.97x the same-format call (one call for zstd, which
//! has no per-page format cost) for zstd:3, zlib:3 and lzo; decompress through the kernel's
//! page-sized buffer at least 0.92x one library call.
//!
//! Compress baselines: `library-one-call` (one call, no flushes) and, where the btrfs format
//! itself costs something, `library-same-format` (zlib with a sync flush every 4 KiB, lzo as
//! per-sector segments, both on contiguous buffers). Decompress baseline: one library call
//! decoding the same extent bytes from a contiguous buffer into a contiguous buffer (lzo: one
//! call per segment). `page-loop-inplace-*` is the non-kernel variant that decompresses straight
//! into the mapped destination.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use benches::{bios_for, page_loop_compress, page_loop_decompress, pages_for, sample, OneCall};
use btrfs_compress::{compress_extent, parse_compress_option, Options, Strategy};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

fn codecs(c: &mut Criterion) {
    let data = sample();
    let total: usize = data.iter().map(Vec::len).sum();
    let lens: Vec<usize> = data.iter().map(Vec::len).collect();
    let opts = Options::default();
    for name in ["zstd:3", "zlib:3", "lzo"] {
        let spec = parse_compress_option(name).unwrap();
        let mut g = c.benchmark_group(format!("{name}/compress"));
        g.throughput(Throughput::Bytes(total as u64));
        let pages = pages_for(&opts, &data);
        g.bench_function(BenchmarkId::new("page-loop-direct", name), |b| {
            b.iter(|| black_box(page_loop_compress(spec, &opts, &pages, &lens)))
        });
        let mut one = OneCall::default();
        g.bench_function(BenchmarkId::new("library-one-call", name), |b| {
            b.iter(|| data.iter().map(|d| one.compress(spec, black_box(d))).sum::<usize>())
        });
        if spec.alg != btrfs_compress::CompressType::Zstd {
            g.bench_function(BenchmarkId::new("library-same-format", name), |b| {
                b.iter(|| data.iter().map(|d| one.compress_same_format(spec, black_box(d))).sum::<usize>())
            });
        }
        g.finish();

        let ours: Vec<(Vec<u8>, usize)> =
            data.iter().map(|d| (compress_extent(d, spec, &opts).unwrap().data.to_vec(), d.len())).collect();
        let mut g = c.benchmark_group(format!("{name}/decompress"));
        g.throughput(Throughput::Bytes(total as u64));
        let mut bios = bios_for(&opts, &ours);
        g.bench_function(BenchmarkId::new("page-loop-direct", name), |b| {
            b.iter(|| page_loop_decompress(spec.alg, &opts, &mut bios))
        });
        g.bench_function(BenchmarkId::new("library-one-call", name), |b| {
            b.iter(|| ours.iter().map(|(s, _)| one.decompress_extent(spec.alg, black_box(s))).sum::<usize>())
        });
        if spec.alg != btrfs_compress::CompressType::Lzo {
            for (label, strategy, order) in [
                ("page-loop-inplace-direct", Strategy::Direct, 0),
                ("page-loop-inplace-range-order5", Strategy::Range, 5),
            ] {
                let o = Options {
                    strategy,
                    folio_order: order,
                    out_order: order,
                    decompress_loop: btrfs_compress::LoopVariant::InPlace,
                    ..Options::default()
                };
                let mut bios = bios_for(&o, &ours);
                g.bench_function(BenchmarkId::new(label, name), |b| {
                    b.iter(|| page_loop_decompress(spec.alg, &o, &mut bios))
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, codecs);
criterion_main!(benches);
