//! The model's kmap counts against real 32-bit HIGHMEM kernels' (fixtures/kmap-trace-*/, written
//! by tools/qemu-kmap-trace.py: Debian's 6.1 686-pae kernel (x86-32 PAE), and its 6.1 and 6.12
//! armmp-lpae kernels (ARM32 LPAE, `--arch armhf [--suite trixie]`), traced with function_graph).
//! On ARM the TLB flushes are inline functions, so real unmaps are compared on x86 only; 6.12's
//! compressed folios come from btrfs's pool, so its writes' lowmem maps are not compared.
//!
//! Per codec, operation and file, for both init_on_alloc settings: the number of codec calls,
//! highmem maps (`__kmap_local_pfn_prot`), lowmem maps (`__kmap_local_page_prot` of a lowmem
//! page) and real unmaps (`flush_tlb_one_kernel` under `kunmap_local_indexed`), replayed by
//! `btrfs_compress::replay` with the 6.1 loops, kmap_local, and the page cache in HighMem.
//!
//! Every count exact: our bytes are the kernel's for all three codecs (zlib through
//! kernel-deflate in the pre-6.3 era; zstd writes libzstd 1.5.7's bytes where 6.1 carries 1.4.10,
//! but on these files every extent needs the same number of pages), so the lowmem counts that
//! follow the compressed size (one init_on_alloc clear per output page, lzo's per-segment maps,
//! one map per compressed input page when reading) and zlib's decompress highmem counts
//! (inflate's output chunks straddle pages where the stream's input pages end) match too.

use std::collections::BTreeMap;
use std::path::PathBuf;

use btrfs_compress::replay::{self, KernelLoop, Mount, Setup};
use btrfs_compress::{parse_compress_option, Strategy};
use highmem::{Backend, KernelConfig, KernelEvents, PhysMem};
use serde_json::Value;

/// Every kmap-trace fixture (x86-32 686-pae, ARM32 armmp-lpae), sorted by name.
fn manifests() -> Vec<(PathBuf, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut v: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("kmap-trace-"))
        .map(|d| {
            let p = d.path().join("manifest.json");
            let m = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p, m)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    calls: u64,
    highmem: u64,
    lowmem: u64,
    real_unmaps: u64,
}

fn of_model(calls: &[replay::Call], entry: &str) -> Counts {
    let mut c = Counts::default();
    for call in calls.iter().filter(|c| c.entry == entry) {
        let e: &KernelEvents = &call.events;
        c.calls += 1;
        c.highmem += e.highmem_maps;
        c.lowmem += e.lowmem_maps;
        c.real_unmaps += e.tlb_single_flushes;
    }
    c
}

fn of_kernel(extents: &Value) -> Counts {
    let mut c = Counts::default();
    for e in extents.as_array().expect("extents") {
        c.calls += 1;
        c.highmem += e["highmem_maps"].as_u64().unwrap();
        c.lowmem += e["lowmem_maps"].as_u64().unwrap();
        c.real_unmaps += e["real_unmaps"].as_u64().unwrap();
    }
    c
}

/// A report line whose model counts equal the kernel's.
fn exact_line(l: &str) -> bool {
    let k = l.split("kernel ").nth(1).and_then(|r| r.split(" model ").next());
    let m = l.split(" model ").nth(1).map(|r| r.trim_end_matches("  <-- MISMATCH"));
    k.is_some() && k == m
}

#[test]
fn model_counts_equal_the_traced_highmem_kernels() {
    let all = manifests();
    assert!(all.len() >= 2, "fixtures/kmap-trace-*/ (tools/qemu-kmap-trace.py, --arch armhf) are missing");
    for (path, m) in all {
        check(&path, &m);
    }
}

/// One traced kernel against the replay. On ARM the TLB flushes are inline
/// (`local_flush_tlb_kernel_page()`), so the trace has no real-unmap count to compare.
fn check(path: &std::path::Path, m: &Value) {
    let arm = m["arch"] == "armhf";
    // 6.10 moved the compression entry points to folios: 6.12's loop, its function names.
    let six_twelve = m["kernel"].as_str().is_some_and(|k| k.starts_with("6.12"));
    let (kloop, compress_entry) =
        if six_twelve { (KernelLoop::V6_12, "compress_folios") } else { (KernelLoop::V6_1, "compress_pages") };
    let config = if arm { KernelConfig::ARM32_LPAE } else { KernelConfig::X86_32_PAE };
    // The files are regenerated here and must be the bytes the kernel wrote.
    let files: BTreeMap<String, Vec<u8>> = btrfs_lab::corpus::trace_files().into_iter().collect();
    for (name, meta) in m["files"].as_object().unwrap() {
        let data = files.get(name).unwrap_or_else(|| panic!("{name} is not a trace file"));
        let sha: String = diff_tests::sha256_hex(data);
        assert_eq!(sha, meta["sha256"].as_str().unwrap(), "{name}: corpus differs from the traced one");
    }
    assert!(m["runs"]["init_on_alloc=1"]["high_total_kb"].as_u64().unwrap() > 1 << 20, "the page cache was in HighMem");
    let mem = PhysMem::new(Backend::Heap, 4096, 4096).unwrap();
    let mut checked = 0;
    let mut report = Vec::new();
    for (run_name, run) in m["runs"].as_object().unwrap() {
        let init_on_alloc = run["init_on_alloc"].as_u64().unwrap() == 1;
        let ex = run["extents"].as_object().unwrap();
        for opt in m["options"].as_array().unwrap() {
            let opt = opt.as_str().unwrap();
            let (kind, alg) = opt.split_once('=').unwrap();
            let mount = if kind == "compress-force" { Mount::Force } else { Mount::Heuristic };
            let spec = parse_compress_option(alg).unwrap();
            let setup = Setup {
                spec,
                kloop,
                config,
                strategy: Strategy::KmapLocal,
                init_on_alloc,
                range_reserve: 2,
                highmem_fraction: 1.0,
                zlib_backend: None,
                write_size: replay::DEFAULT_WRITE_SIZE,
            };
            let mut ctx = replay::context(&mem, &setup).unwrap();
            for (name, data) in &files {
                let w = replay::write_file(&mut ctx, &setup, data, mount).unwrap();
                let r = replay::read_file(&mut ctx, &setup, &w).unwrap();
                let cases: Vec<(&str, &Vec<replay::Call>, String)> = {
                    let mut v = vec![];
                    let ce = format!("{}_{compress_entry}", spec.alg.name());
                    let de = format!("{}_decompress_bio", spec.alg.name());
                    v.push(("write", &w, ce));
                    if mount == Mount::Heuristic {
                        v.push(("write", &w, "btrfs_compress_heuristic".to_string()));
                    }
                    v.push(("read", &r, de));
                    v
                };
                for (op, calls, entry) in cases {
                    let key = format!("{op}/{opt}/{name}/{entry}");
                    let kernel = ex.get(&key).map(of_kernel).unwrap_or_default();
                    // The replay names compress calls as 6.1 does.
                    let mut model = of_model(calls, &entry.replace("_compress_folios", "_compress_pages"));
                    let ok_calls = model.calls == kernel.calls;
                    let ok_high = model.highmem == kernel.highmem;
                    // From 6.12 (not 6.1) compressed folios come from btrfs's pool
                    // (btrfs_alloc_compr_folio()): how many init_on_alloc zeroes (a lowmem map
                    // each) depends on the pool's history, which the replay does not model.
                    let pooled = six_twelve && op == "write" && entry != "btrfs_compress_heuristic";
                    let ok_low = pooled || model.lowmem == kernel.lowmem;
                    if pooled {
                        model.lowmem = kernel.lowmem;
                    }
                    // A highmem map is unmapped with an invlpg on x86 (ARM flushes at map too).
                    let per_map = if arm { 2 } else { 1 };
                    let ok_unmaps =
                        model.real_unmaps == per_map * model.highmem && (arm || kernel.real_unmaps == kernel.highmem);
                    if arm {
                        model.real_unmaps = 0; // not in the ARM trace (inline flushes)
                    }
                    report.push(format!(
                        "{run_name} {key}: kernel {kernel:?} model {model:?}{}",
                        if ok_calls && ok_high && ok_low && ok_unmaps { "" } else { "  <-- MISMATCH" }
                    ));
                    checked += 1;
                }
            }
        }
    }
    let bad: Vec<&String> = report.iter().filter(|l| l.contains("MISMATCH")).collect();
    let exact = report.iter().filter(|l| exact_line(l)).count();
    eprintln!("{exact} of {checked} cases exactly the kernel's counts; the others:");
    for l in report.iter().filter(|l| !exact_line(l)) {
        eprintln!("  {l}");
    }
    eprintln!("{}: {exact} of {checked} exact", path.display());
    assert!(checked >= 60, "only {checked} cases in {}", path.display());
    assert!(bad.is_empty(), "{} of {checked} cases differ from the kernel:\n{}", bad.len(), report.join("\n"));
}
