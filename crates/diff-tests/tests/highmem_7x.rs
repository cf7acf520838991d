//! The lab's 7.x rows against real 32-bit HIGHMEM 7.2 kernels (fixtures/highmem-7x-*/, written
//! by tools/qemu-highmem-7x.py: Debian's 7.2.13 source built for i386 with PAE and booted in
//! qemu, as shipped and patched).
//!
//! - `shipped` (large folios off under HIGHMEM), `step` (large folios on, way out (a): page
//!   stepping), `vmap` (large folios on, way out (b): vm_map_ram() of a large highmem
//!   folio's pages) and `range` (large folios on, way out (c): a kmap_local_range() prototype
//!   over consecutive slots, chunks cut to it) were traced with function_graph: per codec, operation and file, the number of
//!   codec calls, highmem kmaps (`__kmap_local_pfn_prot`), real unmaps (`flush_tlb_one_kernel`
//!   under `kunmap_local_indexed`) and `vm_map_ram()` calls must equal the replay's with the loop
//!   and strategy that stand for that kernel; and the page cache's folios (the
//!   `mm_filemap_add_to_page_cache` event) must be those `PageCacheLayout` predicts for 1 MiB
//!   writes.
//! - `rc3` (large folios on, the loops as 7.2.13 has them) oopsed in zstd and zlib compression:
//!   the replay must fault for exactly the writes that oopsed, and for no other (4 KiB writes
//!   make order-0 folios and never fault).
//!
//! Lowmem maps are not compared on the write side: 7.2 takes compressed folios from a pool
//! (`btrfs_alloc_compr_folio()`), so how many fresh pages init_on_alloc zeroes depends on the
//! pool's history, which the replay does not model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use btrfs_compress::replay::{self, KernelLoop, Mount, PageCacheLayout, Setup};
use btrfs_compress::{parse_compress_option, CompressSpec, Strategy};
use highmem::{Backend, KernelConfig, PhysMem};
use serde_json::Value;

fn manifest() -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let d = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("highmem-7x-"))
        .expect("fixtures/highmem-7x-*/ is missing (tools/qemu-highmem-7x.py writes it)");
    serde_json::from_str(&std::fs::read_to_string(d.path().join("manifest.json")).unwrap()).unwrap()
}

fn files(m: &Value) -> BTreeMap<String, Vec<u8>> {
    let files: BTreeMap<String, Vec<u8>> = btrfs_lab::corpus::trace_files().into_iter().collect();
    for (name, meta) in m["files"].as_object().unwrap() {
        let data = files.get(name).unwrap_or_else(|| panic!("{name} is not a trace file"));
        let sha: String = diff_tests::sha256_hex(data);
        assert_eq!(sha, meta["sha256"].as_str().unwrap(), "{name}: corpus differs from the traced one");
    }
    files
}

fn setup(spec: CompressSpec, kloop: KernelLoop, strategy: Strategy, write_size: usize) -> Setup {
    Setup {
        spec,
        kloop,
        config: KernelConfig::Highmem32 { pae: true, debug_kmap_local: false, cpus: 1 },
        strategy,
        init_on_alloc: true,
        range_reserve: 2,
        highmem_fraction: 1.0,
        zlib_backend: None,
        write_size,
    }
}

fn options(m: &Value) -> Vec<(String, Mount, CompressSpec)> {
    m["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let o = o.as_str().unwrap();
            let (kind, alg) = o.split_once('=').unwrap();
            let mount = if kind == "compress-force" { Mount::Force } else { Mount::Heuristic };
            (o.to_string(), mount, parse_compress_option(alg).unwrap())
        })
        .collect()
}

/// Calls, highmem kmaps, real unmaps, vm_map_ram calls.
type Counts = [u64; 4];

/// Equal. A context switch while slots are held (the 4 ms tick, under TCG) flushes each held
/// slot in `__kmap_local_sched_out()`; the tool traces that function, so those flushes are not
/// counted as real unmaps but as `sched_out_flushes` (the replay models them only with the lab's
/// `--preempt-per-ms`).
fn same(kernel: Counts, model: Counts) -> bool {
    kernel == model
}

fn of_kernel(extents: Option<&Value>) -> Counts {
    let mut c = [0; 4];
    for e in extents.and_then(Value::as_array).into_iter().flatten() {
        c[0] += 1;
        c[1] += e["highmem_maps"].as_u64().unwrap();
        c[2] += e["real_unmaps"].as_u64().unwrap();
        c[3] += e["vm_map_ram"].as_u64().unwrap();
    }
    c
}

fn of_model(calls: &[replay::Call], entry: &str) -> Counts {
    let mut c = [0; 4];
    for call in calls.iter().filter(|c| c.entry == entry) {
        let e = &call.events;
        c[0] += 1;
        // A kmap_local of a highmem page is the one thing that writes a fixmap PTE and
        // invalidates it at unmap: the kernel's __kmap_local_pfn_prot and real unmaps.
        c[1] += e.tlb_single_flushes;
        c[2] += e.tlb_single_flushes;
        c[3] += e.vmap_calls;
    }
    c
}

/// The model's and the kernel's counts for every traced variant, option, file and entry.
#[test]
fn the_lab_counts_what_traced_7x_kernels_do() {
    let m = manifest();
    let files = files(&m);
    let mem = PhysMem::new(Backend::Heap, 4096, 4096).unwrap();
    let mut report = Vec::new();
    let mut checked = 0;
    let mut preempted = 0;
    // Per variant, option and entry: the sums over the files, for the table printed below.
    let mut table: BTreeMap<String, (Counts, Counts)> = BTreeMap::new();
    // The patches change compression's input mapping only: reads stay kmap_local page by page.
    for (variant, kloop, strategy) in [
        ("shipped", KernelLoop::V7_2, Strategy::KmapLocal),
        ("step", KernelLoop::V7_2Step, Strategy::KmapLocal),
        ("vmap", KernelLoop::V7_2Rc3, Strategy::VmMapRamLarge),
        ("range", KernelLoop::V7_2Step, Strategy::Range),
    ] {
        let run = &m["variants"][variant];
        assert!(run["high_total_kb"].as_u64().unwrap() > 1 << 20, "{variant}: the page cache was in HighMem");
        assert_eq!(run["read_back_differs"].as_array().map_or(0, Vec::len), 0, "{variant}: a file read back wrong");
        let ex = run["extents"].as_object().unwrap();
        for (opt, mount, spec) in options(&m) {
            let setup = setup(spec, kloop, strategy, replay::DEFAULT_WRITE_SIZE);
            let read_setup = Setup { strategy: Strategy::KmapLocal, ..setup };
            let mut ctx = replay::context(&mem, &setup).unwrap();
            let mut read_ctx = replay::context(&mem, &read_setup).unwrap();
            for (name, data) in &files {
                let w = replay::write_file(&mut ctx, &setup, data, mount).unwrap();
                let r = replay::read_file(&mut read_ctx, &read_setup, &w).unwrap();
                let alg = spec.alg.name();
                let mut cases = vec![
                    ("write", &w, format!("{alg}_compress_pages"), format!("{alg}_compress_bio")),
                    ("read", &r, format!("{alg}_decompress_bio"), format!("{alg}_decompress_bio")),
                ];
                if mount == Mount::Heuristic {
                    let h = "btrfs_compress_heuristic".to_string();
                    cases.push(("write", &w, h.clone(), h));
                }
                for (op, calls, model_entry, kernel_entry) in cases {
                    let key = format!("{op}/{opt}/{name}/{kernel_entry}");
                    let kernel = of_kernel(ex.get(&key));
                    let model = of_model(calls, &model_entry);
                    let ok = same(kernel, model);
                    let t = table.entry(format!("{variant:<8} {opt:<22} {kernel_entry}")).or_default();
                    for i in 0..4 {
                        t.0[i] += kernel[i];
                        t.1[i] += model[i];
                    }
                    preempted += ex
                        .get(&key)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|e| e["sched_out_flushes"].as_u64().unwrap_or(0))
                        .sum::<u64>();
                    report.push(format!(
                        "{variant} {key}: kernel {kernel:?} model {model:?}{}",
                        if ok { "" } else { "  <-- MISMATCH" }
                    ));
                    checked += 1;
                }
                // The page cache the writes made.
                let layout = setup.page_cache_layout(data.len());
                let runs = &run["page_cache_orders"][format!("{opt}/{name}")];
                let kernel_folios: Vec<(usize, u32)> = runs
                    .as_array()
                    .unwrap_or_else(|| panic!("{variant} {opt}/{name}: no page-cache orders"))
                    .iter()
                    .flat_map(|r| {
                        let (off, order, n) =
                            (r[0].as_u64().unwrap() as usize, r[1].as_u64().unwrap() as u32, r[2].as_u64().unwrap());
                        (0..n as usize).map(move |i| (off + i * (4096 << order), order))
                    })
                    .collect();
                assert_eq!(layout.folios, kernel_folios, "{variant} {opt}/{name}: page-cache folios");
            }
        }
    }
    eprintln!("per extent, kernel / lab: highmem kmaps, real unmaps, vm_map_ram calls (all files)");
    for (k, (kc, mc)) in &table {
        let per = |c: &Counts| {
            let n = c[0].max(1) as f64;
            format!("{:5.1} {:5.1} {:4.2}", c[1] as f64 / n, c[2] as f64 / n, c[3] as f64 / n)
        };
        eprintln!("  {k:<58} {:>3} calls  kernel {}  lab {}", kc[0], per(kc), per(mc));
    }
    let bad: Vec<&String> = report.iter().filter(|l| l.contains("MISMATCH")).collect();
    eprintln!(
        "{} of {checked} cases equal to the kernel's counts (besides: {preempted} slot flushes of context switches \
         while slots were held)",
        checked - bad.len()
    );
    assert!(checked >= 100, "only {checked} cases");
    assert!(bad.is_empty(), "{} of {checked} cases differ from the kernel:\n{}", bad.len(), report.join("\n"));
}

/// 7.2-rc3's oops, write by write: the replay faults exactly where the kernel did.
#[test]
fn the_lab_faults_where_7_2_rc3_oopsed() {
    let m = manifest();
    let files = files(&m);
    let run = &m["variants"]["rc3"];
    let kernel_faulted: BTreeSet<String> =
        run["faulted"].as_array().unwrap().iter().map(|f| f["write"].as_str().unwrap().to_string()).collect();
    let completed: BTreeSet<String> =
        run["completed"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
    for f in run["faulted"].as_array().unwrap() {
        assert!(f["fault_line"].as_str().unwrap().contains("unable to handle page fault"), "{f}");
    }
    let mem = PhysMem::new(Backend::Heap, 4096, 4096).unwrap();
    let mut model_faulted = BTreeSet::new();
    let mut model_completed = BTreeSet::new();
    for (opt, mount, spec) in options(&m) {
        for (write_size, suffix) in [(1 << 20, ""), (4096, ".bs4096")] {
            let setup = setup(spec, KernelLoop::V7_2Rc3, Strategy::KmapLocal, write_size);
            let mut ctx = replay::context(&mem, &setup).unwrap();
            for (name, data) in &files {
                let w = replay::write_file(&mut ctx, &setup, data, mount).unwrap();
                let key = format!("{opt}/{name}{suffix}");
                if w.iter().any(|c| c.events.faults > 0) {
                    model_faulted.insert(key);
                } else {
                    model_completed.insert(key);
                }
            }
        }
    }
    assert!(!kernel_faulted.is_empty(), "the rc3 kernel never oopsed");
    assert_eq!(model_faulted, kernel_faulted, "writes that fault");
    assert_eq!(model_completed, completed, "writes that complete");
}

/// The page-cache model on its own: 7.2.13's folio orders for writes of a given size.
#[test]
fn page_cache_layout_follows_the_writes() {
    // 100,000 bytes in one write, folios of at most 128 KiB: 64 KiB, 32 KiB, then a page.
    let l = PageCacheLayout::of_writes(100_000, 1 << 20, 5);
    assert_eq!(l.folios, vec![(0, 4), (65_536, 3), (98_304, 0)]);
    // 4 KiB writes: pages.
    assert!(PageCacheLayout::of_writes(100_000, 4096, 5).folios.iter().all(|f| f.1 == 0));
    // 300 KiB in 1 MiB writes with 2 MiB folios allowed: 256 KiB, 32 KiB, 8 KiB, 4 KiB.
    let l = PageCacheLayout::of_writes(300 << 10, 1 << 20, 9);
    assert_eq!(l.folios, vec![(0, 6), (256 << 10, 3), (288 << 10, 1), (296 << 10, 0)]);
    // A 128 KiB range of a 256 KiB folio sees one 128 KiB folio.
    assert_eq!(l.range_orders(0, 128 << 10), vec![5]);
    // Order-0 loops.
    assert_eq!(KernelLoop::V7_2.block_max_order(KernelConfig::X86_32_PAE), 0);
    assert_eq!(KernelLoop::V7_2Rc3.block_max_order(KernelConfig::X86_32_PAE), 5);
    assert_eq!(KernelLoop::V7_2.block_max_order(KernelConfig::Bit64 { cpus: 2 }), 6);
}
