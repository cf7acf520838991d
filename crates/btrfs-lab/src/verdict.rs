//! The verdict, computed from the rows: what each strategy would cost a 32-bit HIGHMEM kernel
//! per extent against kmap_local, how that compares with the codec's own time, how the answer
//! moves with the cost table, and the 64-bit large-folio case.

use std::fmt::Write;

use highmem::Strategy;

use super::{events_priced, CostTable, Op, Row};

fn rows_of<'a>(rows: &'a [Row], config: &str, kloop: &str) -> impl Iterator<Item = &'a Row> + 'a {
    let (config, kloop) = (config.to_string(), kloop.to_string());
    rows.iter().filter(move |r| r.config == config && r.kloop == kloop && r.backend == "heap")
}

fn label(r: &Row) -> String {
    match r.op {
        Op::Heuristic => "heuristic (compress=)".into(),
        _ => format!("{} {}", r.codec_label(), r.op.name()),
    }
}

/// Best (cheapest modeled) strategy of a group under a scaled cost table.
fn best<'a>(group: &[&'a Row], costs: &CostTable, scale: Option<(&str, f64)>) -> Option<&'a Row> {
    group.iter().copied().min_by(|a, b| {
        costs.ns(&events_priced(&a.events), scale).total_cmp(&costs.ns(&events_priced(&b.events), scale))
    })
}

/// The verdict as Markdown-friendly text.
pub fn verdict(rows: &[Row], costs: &CostTable) -> String {
    let mut s = String::from("## Verdict (computed from the rows; modeled costs are events x the cost table)\n\n");
    let mut groups: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in rows_of(rows, "32-bit-highmem", "6.1") {
        let k = label(r);
        match groups.iter_mut().find(|g| g.0 == k) {
            Some(g) => g.1.push(r),
            None => groups.push((k, vec![r])),
        }
    }
    if groups.is_empty() {
        s.push_str("No 32-bit HIGHMEM rows with the 6.1 loops on the heap backend: nothing to conclude.\n");
        return s;
    }
    let frac = groups[0].1[0].highmem_fraction;
    let _ = writeln!(
        s,
        "32-bit HIGHMEM (x86-32 PAE, 4 KiB pages, {} of the page cache in HighMem, compressed pages lowmem), \
         the 6.1 loops:\n",
        if frac >= 1.0 { "all".to_string() } else { format!("{:.0} %", 100.0 * frac) }
    );
    strategies(&mut s, &groups);
    preemption(&mut s, &groups);
    v4_loop(&mut s, rows, &groups);
    sensitivity(&mut s, &groups, costs);
    seven_on_highmem(&mut s, rows);
    large_folios(&mut s, rows);
    s
}

/// 7.x on 32-bit HIGHMEM: 7.2.13's fix (order-0 folios) against 7.2-rc3 (large folios, the
/// loop as it was: faults) and the ways out with large folios kept, per compressing codec.
fn seven_on_highmem(s: &mut String, rows: &[Row]) {
    let shipped: Vec<&Row> = rows_of(rows, "32-bit-highmem", "7.2")
        .filter(|r| r.op == Op::Compress && r.strategy == Strategy::KmapLocal)
        .collect();
    if shipped.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "
7.x on 32-bit HIGHMEM, compression (page cache filled by 1 MiB writes; folios of at most 128 KiB, \
         `BITS_PER_LONG` blocks): the shipped fix (7.2.13: large folios off) against 7.2-rc3 (large folios, \
         kmap_local_folio() of one page handed the rest of the folio) and the ways out that keep large folios:"
    );
    for base in shipped {
        let same = |kloop: &str, strategy: Strategy| {
            rows_of(rows, "32-bit-highmem", kloop)
                .find(|r| r.spec == base.spec && r.op == Op::Compress && r.strategy == strategy)
        };
        let cost = |r: &Row| {
            if r.faulted_extents > 0 {
                format!("faults in {} of {} extents (the kernel oopses)", r.faulted_extents, r.extents)
            } else {
                let d = r.modeled_ns_per_extent - base.modeled_ns_per_extent;
                format!(
                    "{:.1} calls, {:.1} invlpg, {:.2} vmap calls, {:.1} library calls, {:.2} µs ({:+.2} µs)",
                    r.api_calls_per_extent,
                    r.tlb_single_flushes_per_extent,
                    r.vmap_calls_per_extent,
                    r.library_calls_per_extent,
                    r.modeled_ns_per_extent / 1000.0,
                    d / 1000.0
                )
            }
        };
        let mut parts = vec![format!(
            "7.2.13 as shipped {:.1} calls, {:.1} invlpg, {:.1} library calls, {:.2} µs modeled per extent",
            base.api_calls_per_extent,
            base.tlb_single_flushes_per_extent,
            base.library_calls_per_extent,
            base.modeled_ns_per_extent / 1000.0
        )];
        for (kloop, strategy, what) in [
            ("7.2-rc3", Strategy::KmapLocal, "7.2-rc3"),
            ("7.2-step", Strategy::KmapLocal, "(a) page stepping"),
            ("7.2-rc3", Strategy::VmMapRamLarge, "(b) vm_map_ram of the folio's pages"),
            ("7.2-step", Strategy::Range, "(c) kmap_local_range()"),
            ("7.2-rc3", Strategy::VmapFolio, "vmap_folio()"),
        ] {
            if let Some(r) = same(kloop, strategy) {
                parts.push(format!("{what} {}", cost(r)));
            }
        }
        let _ = writeln!(s, "- {}: {}.", base.codec_label(), parts.join("; "));
    }
}

type Groups<'a> = [(String, Vec<&'a Row>)];

/// Per codec and op: kmap_local's events and cost, each other strategy against it, and the
/// largest saving.
fn strategies(s: &mut String, groups: &Groups<'_>) {
    let mut max_saving = (0.0f64, String::new());
    for (k, g) in groups {
        let Some(base) = g.iter().find(|r| r.strategy == Strategy::KmapLocal) else { continue };
        let codec_ns = base.measured_us_per_extent * 1000.0;
        let _ = writeln!(
            s,
            "- {k}: kmap-local {:.1} calls, {:.1} highmem + {:.1} lowmem maps, {:.1} invlpg, {:.1} library calls \
             per extent -> {:.2} µs modeled ({:.2} % of the codec's {:.0} µs measured here).",
            base.api_calls_per_extent,
            base.highmem_maps_per_extent,
            base.lowmem_maps_per_extent,
            base.tlb_single_flushes_per_extent,
            base.library_calls_per_extent,
            base.modeled_ns_per_extent / 1000.0,
            100.0 * base.modeled_ns_per_extent / codec_ns,
            base.measured_us_per_extent
        );
        let mut parts = Vec::new();
        for r in g.iter().filter(|r| r.strategy != Strategy::KmapLocal) {
            let d = r.modeled_ns_per_extent - base.modeled_ns_per_extent;
            parts.push(format!(
                "{} {:+.2} µs ({:+.2} %; {:.1} calls, {:.2} full flushes, {:.1} library calls)",
                r.strategy,
                d / 1000.0,
                100.0 * d / codec_ns,
                r.api_calls_per_extent,
                r.tlb_full_flushes_per_extent,
                r.library_calls_per_extent
            ));
            if -d / codec_ns > max_saving.0 {
                max_saving = (-d / codec_ns, format!("{} on {k} ({:.2} µs per extent)", r.strategy, -d / 1000.0));
            }
        }
        let _ = writeln!(s, "  against it: {}.", parts.join("; "));
    }
    let _ = writeln!(
        s,
        "\nLargest saving of any strategy against kmap_local: {}.",
        if max_saving.1.is_empty() {
            "none (every other strategy costs more)".to_string()
        } else {
            format!("{:.2} % of the codec's time, {}", 100.0 * max_saving.0, max_saving.1)
        }
    );
}

/// Under an assumed preemption rate: the slots each context switch finds held.
fn preemption(s: &mut String, groups: &Groups<'_>) {
    let preempt: Vec<String> = groups
        .iter()
        .flat_map(|g| g.1.iter())
        .filter(|r| r.preemptions_per_extent > 0.0 && matches!(r.strategy, Strategy::KmapLocal | Strategy::Range))
        .map(|r| format!("{} {} {:.2} slots held", label(r), r.strategy, r.slots_held_in_library))
        .collect();
    if !preempt.is_empty() {
        let _ = writeln!(
            s,
            "With the assumed preemption rate, each context switch clears and rewrites the slots held during the \
             library's work: {}.",
            preempt.join("; ")
        );
    }
}

/// What the June 2022 v4 zstd loop cost against the merged loop.
fn v4_loop(s: &mut String, rows: &[Row], groups: &Groups<'_>) {
    // The v4 loop.
    for v4 in rows_of(rows, "32-bit-highmem", "v4-2022") {
        if let Some(b) = groups
            .iter()
            .flat_map(|g| g.1.iter())
            .find(|r| r.spec == v4.spec && r.op == v4.op && r.strategy == Strategy::KmapLocal)
        {
            let d = v4.modeled_ns_per_extent - b.modeled_ns_per_extent;
            let _ = writeln!(
                s,
                "- The June 2022 v4 zstd loop ({}): {:.1} forced re-maps per extent, {:+.1} maps, {:+.2} µs modeled \
                 ({:+.2} % of the codec's time).",
                v4.codec_label(),
                v4.forced_remaps_per_extent,
                v4.api_calls_per_extent - b.api_calls_per_extent,
                d / 1000.0,
                100.0 * d / (b.measured_us_per_extent * 1000.0)
            );
        }
    }
}

/// Which cost figures, doubled or halved, change the cheapest strategy anywhere.
fn sensitivity(s: &mut String, groups: &Groups<'_>, costs: &CostTable) {
    // Sensitivity: which figures, doubled or halved, change the cheapest strategy anywhere.
    let mut flips = Vec::new();
    for name in costs.events.keys() {
        for f in [2.0, 0.5] {
            for (k, g) in groups {
                let a = best(g, costs, None).map(|r| r.strategy);
                let b = best(g, costs, Some((name, f))).map(|r| r.strategy);
                if a != b {
                    flips.push(format!(
                        "{name} x{f}: {k} {} -> {}",
                        a.map_or("-", |s| s.name()),
                        b.map_or("-", |s| s.name())
                    ));
                }
            }
        }
    }
    let share = |f: f64| {
        groups
            .iter()
            .filter_map(|g| g.1.iter().find(|r| r.strategy == Strategy::KmapLocal))
            .map(|r| costs.ns(&events_priced(&r.events), Some(("*", f))) / (r.measured_us_per_extent * 1000.0))
            .fold(0.0f64, f64::max)
    };
    let _ = writeln!(
        s,
        "\nSensitivity: with every figure doubled kmap_local's cost is at most {:.2} % of the codec's time \
         (halved: {:.2} %). Figures that change the cheapest strategy when doubled or halved alone: {}.",
        100.0 * share(2.0),
        100.0 * share(0.5),
        if flips.is_empty() { "none".to_string() } else { flips.join("; ") }
    );
}

/// 64-bit: kmap_local is page_address(); what 7.2's large folios change.
fn large_folios(s: &mut String, rows: &[Row]) {
    // 64-bit with large folios.
    let b64: Vec<&Row> = rows_of(rows, "64-bit", "7.2").collect();
    let k61: Vec<&Row> = rows_of(rows, "64-bit", "6.1").filter(|r| r.strategy == Strategy::KmapLocal).collect();
    for r in b64.iter().filter(|r| r.strategy == Strategy::FolioMapLocal && r.op != Op::Heuristic) {
        if let Some(o) = k61.iter().find(|o| o.spec == r.spec && o.op == r.op) {
            let _ = writeln!(
                s,
                "- 64-bit, {}: kmap_local is page_address(): {:.1} calls per extent with 6.1's order-0 folios, \
                 {:.1} with 7.2's large folios and folio_map_local (no PTE, no flush either way); measured {:.0} vs {:.0} MB/s.",
                label(r),
                o.api_calls_per_extent,
                r.api_calls_per_extent,
                o.mb_s,
                r.mb_s
            );
        }
    }
}
