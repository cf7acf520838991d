//! zlib compression through the btrfs page loop (direct map) with each deflate: the kernel's
//! (kernel-deflate, the bytes real kernels write) against zlib-rs (flate2), levels 1, 3, 6, 9,
//! same data, one run. `cargo bench -p benches --bench zlib_backends`. The data are the 128 KiB
//! pieces of the compressible kmap-trace corpus files (`btrfs-compress corpus DIR` writes them),
//! which `tools/bench-zlib-system.py DIR` times with the system's C zlib in the same call pattern.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use benches::{page_loop_compress, pages_for};
use btrfs_compress::{parse_compress_option, Options, ZlibBackend};
use btrfs_lab::corpus::trace_files;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

fn zlib_backends(c: &mut Criterion) {
    // The compressible files (incompressible data ends in the early bail after 8 KiB).
    let data: Vec<Vec<u8>> = trace_files()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("incompressible"))
        .flat_map(|(_, d)| d.chunks(131072).map(<[u8]>::to_vec).collect::<Vec<_>>())
        .collect();
    let total: usize = data.iter().map(Vec::len).sum();
    let lens: Vec<usize> = data.iter().map(Vec::len).collect();
    for level in [1, 3, 6, 9] {
        let spec = parse_compress_option(&format!("zlib:{level}")).unwrap();
        let mut g = c.benchmark_group(format!("zlib:{level}/compress"));
        g.throughput(Throughput::Bytes(total as u64));
        for backend in [ZlibBackend::default(), ZlibBackend::ZlibRs] {
            let opts = Options { zlib_backend: backend, ..Options::default() };
            let pages = pages_for(&opts, &data);
            g.bench_function(BenchmarkId::new(backend.name(), level), |b| {
                b.iter(|| black_box(page_loop_compress(spec, &opts, &pages, &lens)))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, zlib_backends);
criterion_main!(benches);
