//! The answer a person reads first (at most ten lines), and the break-even costs behind it: for
//! each cost-table figure, the value at which kmap_local's mapping cost reaches 5 % and 10 % of
//! the codec's time, and the values at which the cheapest strategy changes.
//!
//! Every strategy's modeled cost is linear in each figure (events x ns), so a figure's
//! break-even points are exact: where a line crosses the 5 % or 10 % level, where two lines cross.

use std::fmt::Write;

use serde::Serialize;

use highmem::Strategy;

use super::{events_priced, CostTable, Op, Row};

/// Rows of the 32-bit HIGHMEM configuration, heap backend, loop `kloop`, grouped by codec and
/// operation (in row order).
fn groups<'a>(rows: &'a [Row], kloop: &str) -> Vec<(String, Vec<&'a Row>)> {
    groups_of(rows, "32-bit-highmem", kloop)
}

/// [`groups`] of another configuration.
fn groups_of<'a>(rows: &'a [Row], config: &str, kloop: &str) -> Vec<(String, Vec<&'a Row>)> {
    let mut g: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in rows.iter().filter(|r| r.config == config && r.kloop == kloop && r.backend == "heap") {
        let k = match r.op {
            Op::Heuristic => "heuristic".to_string(),
            _ => format!("{} {}", r.codec_label(), r.op.name()),
        };
        match g.iter_mut().find(|x| x.0 == k) {
            Some(x) => x.1.push(r),
            None => g.push((k, vec![r])),
        }
    }
    g
}

/// A row's modeled ns as a line in one figure: (ns without it, events of it per extent).
fn line(r: &Row, costs: &CostTable, figure: &str) -> (f64, f64) {
    let ev = events_priced(&r.events);
    let n = ev.iter().find(|e| e.0.name() == figure).map_or(0.0, |e| e.1);
    let own = costs.events.get(figure).map_or(0.0, |c| c.ns);
    (costs.ns(&ev, None) - n * own, n)
}

/// One figure's break-even points for one group.
#[derive(Clone, Debug, Serialize)]
pub struct BreakEven {
    /// Codec and operation.
    pub group: String,
    /// Cost-table entry.
    pub figure: String,
    /// Its value in the table (ns).
    pub table_ns: f64,
    /// The value at which kmap_local's cost reaches 5 % of the codec's measured time (none when
    /// kmap_local has no such event, or is above it at 0).
    pub kmap_local_5pct_ns: Option<f64>,
    /// The same for 10 %.
    pub kmap_local_10pct_ns: Option<f64>,
    /// The cheapest strategy at the table's value.
    pub cheapest: String,
    /// The nearest value below the table's at which another strategy becomes cheapest, and it.
    pub below: Option<(f64, String)>,
    /// The nearest value above.
    pub above: Option<(f64, String)>,
}

/// The cheapest strategy of `g` with `figure` at `ns` (rows that fault have no cost).
fn cheapest_at<'a>(g: &[&'a Row], costs: &CostTable, figure: &str, ns: f64) -> Option<&'a Row> {
    g.iter().copied().filter(|r| r.faulted_extents == 0).min_by(|a, b| {
        let (la, lb) = (line(a, costs, figure), line(b, costs, figure));
        (la.0 + la.1 * ns).total_cmp(&(lb.0 + lb.1 * ns))
    })
}

/// Every figure's break-even points for every group of the 6.1 loops.
pub fn break_even(rows: &[Row], costs: &CostTable) -> Vec<BreakEven> {
    let mut out = Vec::new();
    for (k, g) in groups(rows, "6.1") {
        let Some(base) = g.iter().find(|r| r.strategy == Strategy::KmapLocal) else { continue };
        let codec_ns = base.measured_us_per_extent * 1000.0;
        for (figure, c) in &costs.events {
            let (a, b) = line(base, costs, figure);
            let level = |share: f64| (b > 0.0 && a < share * codec_ns).then(|| (share * codec_ns - a) / b);
            let Some(best) = cheapest_at(&g, costs, figure, c.ns) else { continue };
            // Crossings of every pair of lines, then the nearest on each side where the
            // cheapest one changes.
            let mut xs: Vec<f64> = Vec::new();
            for (i, r) in g.iter().enumerate() {
                for s in &g[i + 1..] {
                    let (ra, rb) = line(r, costs, figure);
                    let (sa, sb) = line(s, costs, figure);
                    if (rb - sb).abs() > 1e-12 {
                        let x = (sa - ra) / (rb - sb);
                        if x.is_finite() && x >= 0.0 {
                            xs.push(x);
                        }
                    }
                }
            }
            xs.sort_by(f64::total_cmp);
            let switch =
                |x: f64| cheapest_at(&g, costs, figure, x).filter(|r| r.strategy != best.strategy).map(|r| r.strategy);
            let eps = |x: f64| (x.abs() * 1e-6).max(1e-6);
            let named = |x: f64, s: Strategy| (x, s.name().to_string());
            let below = xs.iter().rev().filter(|&&x| x < c.ns).find_map(|&x| switch(x - eps(x)).map(|s| named(x, s)));
            let above = xs.iter().filter(|&&x| x > c.ns).find_map(|&x| switch(x + eps(x)).map(|s| named(x, s)));
            out.push(BreakEven {
                group: k.clone(),
                figure: figure.clone(),
                table_ns: c.ns,
                kmap_local_5pct_ns: level(0.05),
                kmap_local_10pct_ns: level(0.10),
                cheapest: best.strategy.name().to_string(),
                below,
                above,
            });
        }
    }
    out
}

/// The break-even section of the report (Markdown table).
pub fn break_even_markdown(be: &[BreakEven]) -> String {
    let mut s = String::from(
        "## Break-even costs (32-bit HIGHMEM, 6.1 loops)\n\nPer codec and operation and per cost-table figure, the \
         others as in the table: the value at which kmap_local's modeled cost reaches 5 % and 10 % of the codec's time \
         measured here, and the nearest values below and above the table's at which the cheapest strategy changes.\n\n\
         | group | figure | table ns | kmap_local 5 % at | 10 % at | cheapest | below | above |\n|---|---|---|---|---|---|---|---|\n",
    );
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
    let g = |v: &Option<(f64, String)>| v.as_ref().map_or("-".to_string(), |(x, st)| format!("{x:.1}: {st}"));
    for b in be {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            b.group,
            b.figure,
            b.table_ns,
            f(b.kmap_local_5pct_ns),
            f(b.kmap_local_10pct_ns),
            b.cheapest,
            g(&b.below),
            g(&b.above)
        );
    }
    s
}

/// At most ten lines: the answer, from the rows.
pub fn short_answer(rows: &[Row], be: &[BreakEven]) -> String {
    let mut s = String::new();
    let g61 = groups(rows, "6.1");
    let km = |op: Op| -> Vec<&Row> {
        g61.iter()
            .filter_map(|(_, g)| g.iter().copied().find(|r| r.strategy == Strategy::KmapLocal && r.op == op))
            .collect()
    };
    let span = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if (hi - lo).abs() < 0.05 {
            format!("{lo:.1}")
        } else {
            format!("{lo:.1}-{hi:.1}")
        }
    };
    let _ = writeln!(
        s,
        "Answer (32-bit HIGHMEM, x86-32 PAE; per 128 KiB extent; modeled from the cost table, codec time measured here \
         in {} code):",
        std::env::consts::ARCH
    );
    for op in [Op::Compress, Op::Decompress] {
        let k = km(op);
        if k.is_empty() {
            continue;
        }
        let us: Vec<f64> = k.iter().map(|r| r.modeled_ns_per_extent / 1000.0).collect();
        let pct: Vec<f64> =
            k.iter().map(|r| 100.0 * r.modeled_ns_per_extent / (r.measured_us_per_extent * 1e3)).collect();
        let inv: Vec<f64> = k.iter().map(|r| r.tlb_single_flushes_per_extent).collect();
        // The cheapest other strategy and its saving, over the groups of this op.
        let mut best: Option<(f64, String)> = None;
        for (_, g) in g61.iter().filter(|(_, g)| g.iter().any(|r| r.op == op)) {
            let Some(base) = g.iter().find(|r| r.strategy == Strategy::KmapLocal) else { continue };
            for r in g.iter().filter(|r| r.strategy != Strategy::KmapLocal && r.faulted_extents == 0) {
                let d = base.modeled_ns_per_extent - r.modeled_ns_per_extent;
                if best.as_ref().is_none_or(|b| d > b.0) {
                    best = Some((d, format!("{} on {}", r.strategy, r.codec_label())));
                }
            }
        }
        let _ = writeln!(
            s,
            "- {}: kmap_local {} µs ({} invlpg), {} % of the codec; cheapest alternative {}",
            op.name(),
            span(&us),
            span(&inv),
            span(&pct),
            best.map_or("none".into(), |(d, w)| format!("{w}, {:.1} µs less", d / 1000.0))
        );
    }
    // Where kmap_local reaches 5 % of the work it serves, as invlpg's cost grows: first for the
    // heuristic (little work of its own), and for a codec.
    let first = |heuristic: bool| {
        be.iter()
            .filter(|b| b.figure == "tlb_single_flushes" && (b.group == "heuristic") == heuristic)
            .filter_map(|b| b.kmap_local_5pct_ns.map(|x| (x, b)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    if let Some((x, b)) = first(false) {
        let _ = writeln!(
            s,
            "- Break-even: kmap_local reaches 5 % of a codec's time at invlpg = {x:.0} ns ({}; 10 % at {}), of the \
             heuristic's at {} (the table says {} ns)",
            b.group,
            b.kmap_local_10pct_ns.map_or("-".into(), |y| format!("{y:.0} ns")),
            first(true).map_or("-".into(), |(y, _)| format!("{y:.0} ns")),
            b.table_ns
        );
    }
    // ARM32 LPAE: the same loops, a TLB flush at map and at unmap.
    let arm = groups_of(rows, "arm32-lpae", "6.1");
    let arm_km: Vec<&Row> =
        arm.iter().filter_map(|(_, g)| g.iter().copied().find(|r| r.strategy == Strategy::KmapLocal)).collect();
    if !arm_km.is_empty() {
        let part = |op: Op| {
            let us: Vec<f64> = arm_km.iter().filter(|r| r.op == op).map(|r| r.modeled_ns_per_extent / 1000.0).collect();
            if us.is_empty() {
                "-".to_string()
            } else {
                format!("{} µs", span(&us))
            }
        };
        let mut best: Option<(f64, String)> = None;
        for (_, g) in &arm {
            let Some(base) = g.iter().find(|r| r.strategy == Strategy::KmapLocal) else { continue };
            for r in g.iter().filter(|r| r.strategy != Strategy::KmapLocal) {
                let d = base.modeled_ns_per_extent - r.modeled_ns_per_extent;
                if best.as_ref().is_none_or(|b| d > b.0) {
                    best = Some((d, format!("{} on {} {}", r.strategy, r.codec_label(), r.op.name())));
                }
            }
        }
        let _ = writeln!(
            s,
            "- ARM32 LPAE (a TLB flush at map and at unmap): kmap_local {} to compress, {} to decompress; cheapest \
             alternative {}",
            part(Op::Compress),
            part(Op::Decompress),
            best.map_or("none".into(), |(d, w)| format!("{w}, {:.1} µs less", d / 1000.0))
        );
    }
    let seven: Vec<String> = rows
        .iter()
        .filter(|r| r.config == "32-bit-highmem" && r.kloop == "7.2-rc3" && r.strategy == Strategy::KmapLocal)
        .filter(|r| r.faulted_extents > 0)
        .map(|r| format!("{} {}/{}", r.codec_label(), r.faulted_extents, r.extents))
        .collect();
    let way = |kloop: &str, st: Strategy| {
        let v: Vec<f64> = rows
            .iter()
            .filter(|r| r.config == "32-bit-highmem" && r.kloop == kloop && r.strategy == st && r.op == Op::Compress)
            .filter(|r| r.spec.is_some_and(|c| c.alg != btrfs_compress::CompressType::Lzo))
            .map(|r| r.modeled_ns_per_extent / 1000.0)
            .collect();
        if v.is_empty() {
            "-".to_string()
        } else {
            format!("{} µs", span(&v))
        }
    };
    if !seven.is_empty() {
        let _ = writeln!(
            s,
            "- 7.x: 7.2-rc3's large folios fault in zstd and zlib compression (extents: {}), as the traced kernel oopsed; \
             7.2.13's fix {}; with large folios kept: page stepping {}, vm_map_ram {}, kmap_local_range {}",
            seven.join(", "),
            way("7.2", Strategy::KmapLocal),
            way("7.2-step", Strategy::KmapLocal),
            way("7.2-rc3", Strategy::VmMapRamLarge),
            way("7.2-step", Strategy::Range)
        );
    }
    let _ = writeln!(
        s,
        "- In short: mapping costs a few percent of a codec's time at most; no proposal removes the per-page PTE write \
         and invlpg except the lazily flushed vm_map_ram(), which may sleep."
    );
    s
}

/// The two figures that decide the ranking (invlpg and lock acquisitions, the only ones that
/// change the cheapest strategy when doubled or halved alone), varied together.
pub const GRID_FIGURES: [&str; 2] = ["tlb_single_flushes", "lock_acquisitions"];
/// The values each is given (ns).
pub const GRID_NS: [[f64; 6]; 2] = [[25.0, 50.0, 100.0, 200.0, 400.0, 800.0], [5.0, 10.0, 20.0, 40.0, 80.0, 160.0]];

/// One cell of the joint grid for one group.
#[derive(Clone, Debug, Serialize)]
pub struct GridCell {
    /// Codec and operation.
    pub group: String,
    /// The two figures' values (ns), in [`GRID_FIGURES`]'s order.
    pub ns: [f64; 2],
    /// The cheapest strategy there.
    pub cheapest: String,
    /// kmap_local's modeled cost there as a share of the codec's measured time (%).
    pub kmap_local_pct: f64,
}

/// The joint grid over [`GRID_FIGURES`] for every group of the 6.1 loops.
pub fn joint_grid(rows: &[Row], costs: &CostTable) -> Vec<GridCell> {
    let cost = |r: &Row, a: f64, b: f64| {
        let (base_a, na) = line(r, costs, GRID_FIGURES[0]);
        let nb = events_priced(&r.events).iter().find(|e| e.0.name() == GRID_FIGURES[1]).map_or(0.0, |e| e.1);
        let own_b = costs.events.get(GRID_FIGURES[1]).map_or(0.0, |c| c.ns);
        base_a - nb * own_b + na * a + nb * b
    };
    let mut out = Vec::new();
    for (k, g) in groups(rows, "6.1") {
        let Some(base) = g.iter().find(|r| r.strategy == Strategy::KmapLocal) else { continue };
        for &a in &GRID_NS[0] {
            for &b in &GRID_NS[1] {
                let best = g
                    .iter()
                    .filter(|r| r.faulted_extents == 0)
                    .min_by(|x, y| cost(x, a, b).total_cmp(&cost(y, a, b)))
                    .map_or("-".to_string(), |r| r.strategy.name().to_string());
                out.push(GridCell {
                    group: k.clone(),
                    ns: [a, b],
                    cheapest: best,
                    kmap_local_pct: 100.0 * cost(base, a, b) / (base.measured_us_per_extent * 1000.0),
                });
            }
        }
    }
    out
}

/// The joint grid as Markdown: per group, the cheapest strategy and kmap_local's share in each cell.
pub fn joint_grid_markdown(grid: &[GridCell]) -> String {
    let mut s = format!(
        "## Joint grid: {} x {} (32-bit HIGHMEM, 6.1 loops)\n\nEach cell: the cheapest strategy, and kmap_local's \
         cost as a share of the codec's time measured here, with the two figures at those values (ns) and the rest \
         as in the table.\n",
        GRID_FIGURES[0], GRID_FIGURES[1]
    );
    let mut groups: Vec<&str> = Vec::new();
    for c in grid {
        if !groups.contains(&c.group.as_str()) {
            groups.push(&c.group);
        }
    }
    for g in groups {
        let _ = write!(s, "\n**{g}**\n\n| {} \\ {} |", GRID_FIGURES[0], GRID_FIGURES[1]);
        for b in GRID_NS[1] {
            let _ = write!(s, " {b} |");
        }
        s.push_str("\n|---|");
        s.push_str(&"---|".repeat(GRID_NS[1].len()));
        s.push('\n');
        for a in GRID_NS[0] {
            let _ = write!(s, "| {a} |");
            for c in grid.iter().filter(|c| c.group == g && c.ns[0] == a) {
                let _ = write!(s, " {} {:.1} % |", c.cheapest, c.kmap_local_pct);
            }
            s.push('\n');
        }
    }
    s
}
