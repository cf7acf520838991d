//! The lab's table (one line per row, 100 columns; `--wide` for more) and its report directory:
//! summary.md (the verdict first), rows.json, and SVG plots with one colour per strategy.

use std::path::Path;

use highmem::Strategy;

use super::{CostTable, Op, Row};
use crate::svg;

/// The legend, printed once before the table.
pub fn legend(wide: bool) -> String {
    let mut s = String::from(
        "cfg: 32b = x86-32 HIGHMEM (PAE), 64b = 64-bit; loop: kernel whose loop runs; be: heap, or emu = the mmap\n\
         emulation of highmem (measures this machine's mmap calls, not a kernel; never in the verdict).\n\
         MB/s: measured here, median (min-max) over repetitions. Per 128 KiB extent, what the kernel would do:\n\
         api = mapping calls, hmap/lmap = highmem/lowmem pages mapped, tlb1 = invlpg, full = full TLB flushes,\n\
         ns = modeled kernel mapping cost (events x cost table; not measured). A row whose library calls read\n\
         past their mapping (7.2-rc3: the kernel oopses) has no cost: it says in how many extents it faulted.",
    );
    if wide {
        s.push_str("\npte/clr = PTE writes/clears, ipi = CPUs interrupted, lock, slab, slot = slots held at most, vmal =\nvmalloc pages at most, remap = LIFO-forced re-maps, lib = calls into the compression library.");
    }
    s
}

/// Column heads.
pub fn header(wide: bool) -> String {
    let mut s = format!(
        "{:<3} {:<8} {:<7} {:<4} {:<16} {:<4} {:>5} {:<9} {:>5} {:>5} {:>5} {:>5} {:>5} {:>6}",
        "cfg",
        "loop",
        "codec",
        "op",
        "strategy",
        "be",
        "MB/s",
        "(min-max)",
        "api",
        "hmap",
        "lmap",
        "tlb1",
        "full",
        "ns"
    );
    if wide {
        s += &format!(
            " {:>5} {:>5} {:>5} {:>5} {:>5} {:>4} {:>5} {:>5} {:>5}",
            "pte", "clr", "ipi", "lock", "slab", "slot", "vmal", "remap", "lib"
        );
    }
    s
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 9999.5 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 99.95 || v == v.round() {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One table line.
pub fn line(r: &Row, wide: bool) -> String {
    let codec = match r.op {
        Op::Heuristic => "heur".to_string(),
        _ => r.codec_label(),
    };
    let op = match r.op {
        Op::Compress => "comp",
        Op::Decompress => "dec",
        Op::Heuristic => "heur",
    };
    let cfg = match r.config {
        "64-bit" => "64b",
        _ => "32b",
    };
    let be = if r.backend == "heap" { "heap" } else { "emu" };
    // A row that faulted stopped at its first fault: its speed means nothing.
    let (mb_s, spread) = if r.faulted_extents > 0 {
        ("-".to_string(), "-".to_string())
    } else {
        (num(r.mb_s), format!("({}-{})", num(r.mb_s_min), num(r.mb_s_max)))
    };
    let mut s = format!(
        "{:<3} {:<8} {:<7} {:<4} {:<16} {:<4} {:>5} {:<9} {:>5} {:>5} {:>5} {:>5} {:>5} {:>6}",
        cfg,
        r.kloop,
        codec,
        op,
        r.strategy,
        be,
        mb_s,
        spread,
        num(r.api_calls_per_extent),
        num(r.highmem_maps_per_extent),
        num(r.lowmem_maps_per_extent),
        num(r.tlb_single_flushes_per_extent),
        num(r.tlb_full_flushes_per_extent),
        num(r.modeled_ns_per_extent)
    );
    if wide {
        s += &format!(
            " {:>5} {:>5} {:>5} {:>5} {:>5} {:>4} {:>5} {:>5} {:>5}",
            num(r.pte_writes_per_extent),
            num(r.pte_clears_per_extent),
            num(r.ipis_per_extent),
            num(r.locks_per_extent),
            num(r.slab_allocs_per_extent),
            r.slots_high_water,
            r.vmalloc_high_water_pages,
            num(r.forced_remaps_per_extent),
            num(r.library_calls_per_extent)
        );
    }
    if r.faulted_extents > 0 {
        s += &format!("  faults in {} of {} extents", r.faulted_extents, r.extents);
    }
    s
}

fn plot(rows: &[Row], op: Op, title: &str, y: &str, value: impl Fn(&Row) -> f64) -> String {
    let sel: Vec<&Row> = rows
        .iter()
        .filter(|r| r.config == "32-bit-highmem" && r.kloop == "6.1" && r.backend == "heap" && r.op == op)
        .collect();
    let mut cats: Vec<String> = Vec::new();
    for r in &sel {
        let c = r.codec_label();
        if !cats.contains(&c) {
            cats.push(c);
        }
    }
    // Every strategy in every plot, in one order: one colour per strategy throughout.
    let series: Vec<(String, Vec<f64>)> = Strategy::ALL
        .iter()
        .map(|st| {
            let v = cats
                .iter()
                .map(|c| sel.iter().find(|r| r.strategy == *st && r.codec_label() == *c).map_or(0.0, |r| value(r)))
                .collect();
            (st.name().to_string(), v)
        })
        .collect();
    svg::bars(title, y, &cats, &series)
}

/// Write summary.md, rows.json and the plots.
pub fn write(
    dir: &Path,
    rows: &[Row],
    costs: &CostTable,
    verdict: &str,
    break_even: &[crate::answer::BreakEven],
    grid: &[crate::answer::GridCell],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut md = String::from("# btrfs-compress bench\n\n");
    md += verdict;
    md += "\n## Rows\n\n```\n";
    md += &legend(true);
    md += "\n\n";
    md += &header(true);
    md += "\n";
    for r in rows {
        md += &line(r, true);
        md += "\n";
    }
    md += "```\n\n## Cost table\n\n| event | ns | source |\n|---|---|---|\n";
    for (k, c) in &costs.events {
        md += &format!("| {k} | {} | {} |\n", c.ns, c.source);
    }
    std::fs::write(dir.join("summary.md"), md)?;
    let json: Vec<serde_json::Value> = rows.iter().map(|r| serde_json::to_value(r).expect("row")).collect();
    std::fs::write(dir.join("rows.json"), serde_json::to_string_pretty(&json).expect("rows") + "\n")?;
    std::fs::write(dir.join("break-even.json"), serde_json::to_string_pretty(break_even).expect("break-even") + "\n")?;
    std::fs::write(dir.join("joint-grid.json"), serde_json::to_string_pretty(grid).expect("grid") + "\n")?;
    for op in [Op::Compress, Op::Decompress] {
        let n = op.name();
        let files = [
            (
                format!("modeled-ns-{n}.svg"),
                format!("Modeled kernel mapping cost per 128 KiB extent, {n} (32-bit HIGHMEM, 6.1 loops)"),
                "ns (events x cost table)",
            ),
            (
                format!("api-calls-{n}.svg"),
                format!("Mapping API calls per 128 KiB extent, {n} (32-bit HIGHMEM, 6.1 loops)"),
                "calls",
            ),
            (
                format!("invlpg-{n}.svg"),
                format!("Single-page TLB invalidations per 128 KiB extent, {n} (32-bit HIGHMEM, 6.1 loops)"),
                "invlpg",
            ),
        ];
        for (i, (file, title, y)) in files.iter().enumerate() {
            let svg = plot(rows, op, title, y, |r| match i {
                0 => r.modeled_ns_per_extent,
                1 => r.api_calls_per_extent,
                _ => r.tlb_single_flushes_per_extent,
            });
            std::fs::write(dir.join(file), svg)?;
        }
    }
    Ok(())
}
