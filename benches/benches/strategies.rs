//! The mapping-strategy matrix for regression tracking: per codec, strategy, backend and folio
#![allow(missing_docs)] // criterion_group! generates undocumented items
//! order, the kernel page loops (compress and decompress) over the same sample.

use benches::{bios_for, page_loop_compress, page_loop_decompress, pages_for, sample};
use btrfs_compress::{compress_extent, parse_compress_option, Backend, Options, Strategy};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

fn strategies(c: &mut Criterion) {
    let data: Vec<Vec<u8>> = sample().into_iter().take(4).collect();
    let total: usize = data.iter().map(Vec::len).sum();
    let lens: Vec<usize> = data.iter().map(Vec::len).collect();
    for name in ["zstd:3", "zlib:3", "lzo"] {
        let spec = parse_compress_option(name).unwrap();
        let ours: Vec<(Vec<u8>, usize)> = data
            .iter()
            .map(|d| (compress_extent(d, spec, &Options::default()).unwrap().data.to_vec(), d.len()))
            .collect();
        for backend in Backend::ALL {
            let mut g = c.benchmark_group(format!("{name}/{backend}"));
            g.throughput(Throughput::Bytes(total as u64));
            g.sample_size(20);
            for strategy in Strategy::ALL {
                for order in [0u32, 5] {
                    if order == 5 && !matches!(strategy, Strategy::Range | Strategy::VmapFolio | Strategy::Direct) {
                        continue;
                    }
                    let opts =
                        Options { strategy, backend, folio_order: order, out_order: order, ..Options::default() };
                    let id = format!("{strategy}/order{order}");
                    let pages = pages_for(&opts, &data);
                    g.bench_function(BenchmarkId::new("compress", &id), |b| {
                        b.iter(|| black_box(page_loop_compress(spec, &opts, &pages, &lens)))
                    });
                    let mut bios = bios_for(&opts, &ours);
                    g.bench_function(BenchmarkId::new("decompress", &id), |b| {
                        b.iter(|| page_loop_decompress(spec.alg, &opts, &mut bios))
                    });
                }
            }
            g.finish();
        }
    }
}

criterion_group!(benches, strategies);
criterion_main!(benches);
