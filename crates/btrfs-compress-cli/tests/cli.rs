//! The command line as a user meets it: exit codes, messages, atomic output, bad input.

use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_btrfs-compress"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("runs")
}

fn text(n: usize) -> Vec<u8> {
    let words = ["alpha ", "beta ", "gamma ", "delta ", "extent ", "folio "];
    let mut v = Vec::new();
    let mut i = 0usize;
    while v.len() < n {
        v.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
        i += 1;
    }
    v.truncate(n);
    v
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An image of `size` bytes holding `root`, made by `mkfs.btrfs --rootdir` (no mount, no root);
/// false, with a SKIPPED line naming `test`, where mkfs.btrfs cannot make it.
fn mkfs_rootdir(root: &std::path::Path, img: &std::path::Path, size: u64, test: &str) -> bool {
    std::fs::File::create(img).unwrap().set_len(size).unwrap();
    let mkfs = Command::new("mkfs.btrfs").args(["-q", "-f", "--rootdir"]).arg(root).arg(img).output();
    let made = mkfs.as_ref().is_ok_and(|o| o.status.success());
    if !made {
        println!("SKIPPED: {test} (mkfs.btrfs --rootdir not available)");
    }
    made
}

#[test]
fn compress_then_decompress_round_trips_for_every_algorithm() {
    let d = tempfile::tempdir().unwrap();
    let data = text(100_000);
    std::fs::write(d.path().join("in"), &data).unwrap();
    for alg in ["zlib:3", "lzo", "zstd:3", "zstd:-5"] {
        for strategy in ["direct", "kmap-local", "range"] {
            let c = p(d.path(), &format!("{alg}-{strategy}.ext"));
            let o = run(&["compress", "-a", alg, "--strategy", strategy, &p(d.path(), "in"), &c]);
            assert!(o.status.success(), "{alg}: {}", stderr(&o));
            // The disk holds the extent zero-padded to a sector: decompress that.
            let mut padded = std::fs::read(&c).unwrap();
            padded.resize(padded.len().next_multiple_of(4096), 0);
            std::fs::write(&c, &padded).unwrap();
            let out = p(d.path(), &format!("{alg}-{strategy}.out"));
            let name = alg.split(':').next().unwrap();
            let o = run(&["decompress", "-a", name, "--ram-bytes", "100000", &c, &out]);
            assert!(o.status.success(), "{alg}: {}", stderr(&o));
            assert!(std::fs::read(&out).unwrap() == data, "{alg} {strategy}");
        }
    }
}

#[test]
fn incompressible_input_exits_2_with_one_line() {
    let d = tempfile::tempdir().unwrap();
    let mut x = 0x1234_5678_9abc_def0u64;
    let data: Vec<u8> = (0..65536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(d.path().join("rnd"), &data).unwrap();
    let out = p(d.path(), "out");
    let o = run(&["compress", "-a", "zstd", &p(d.path(), "rnd"), &out]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("incompressible"));
    assert!(!Path::new(&out).exists(), "no output on failure");
}

#[test]
fn bad_input_gives_clear_errors_and_never_panics() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("small"), text(5000)).unwrap();
    std::fs::write(d.path().join("big"), text(131073)).unwrap();
    std::fs::write(d.path().join("junk"), text(3000)).unwrap();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["compress".into(), "-a".into(), "brotli".into(), p(d.path(), "small"), p(d.path(), "o1")],
            64,
            "unknown compression algorithm",
        ),
        (
            vec!["compress".into(), "-a".into(), "zstd:x".into(), p(d.path(), "small"), p(d.path(), "o2")],
            64,
            "not a number",
        ),
        (
            vec!["compress".into(), "-a".into(), "zstd".into(), p(d.path(), "missing"), p(d.path(), "o3")],
            1,
            "cannot open",
        ),
        (
            vec!["compress".into(), "-a".into(), "zstd".into(), p(d.path(), "big"), p(d.path(), "o4")],
            1,
            "more than 131072",
        ),
        (
            vec![
                "compress".into(),
                "-a".into(),
                "zstd".into(),
                "--page-size".into(),
                "8192".into(),
                p(d.path(), "small"),
                p(d.path(), "o5"),
            ],
            64,
            "page size",
        ),
        (
            vec![
                "decompress".into(),
                "-a".into(),
                "zstd".into(),
                "--ram-bytes".into(),
                "5000".into(),
                p(d.path(), "junk"),
                p(d.path(), "o6"),
            ],
            1,
            "corrupt",
        ),
        (
            vec![
                "decompress".into(),
                "-a".into(),
                "lzo".into(),
                "--ram-bytes".into(),
                "5000".into(),
                p(d.path(), "junk"),
                p(d.path(), "o7"),
            ],
            1,
            "lzo",
        ),
        (
            vec![
                "decompress".into(),
                "-a".into(),
                "zlib".into(),
                "--ram-bytes".into(),
                "999999".into(),
                p(d.path(), "junk"),
                p(d.path(), "o8"),
            ],
            1,
            "ram_bytes",
        ),
        (
            vec![
                "decompress".into(),
                "-a".into(),
                "zlib".into(),
                "--ram-bytes".into(),
                "5000".into(),
                p(d.path(), "junk"),
                "/proc/no/such/dir/out".into(),
            ],
            1,
            "zlib",
        ),
    ];
    for (args, code, needle) in cases {
        let o = bin().args(&args).output().unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {e}");
        assert!(e.to_lowercase().contains(&needle.to_lowercase()), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{args:?}: {e}");
    }
}

#[test]
fn existing_output_is_kept_unless_forced() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("in"), text(50000)).unwrap();
    std::fs::write(d.path().join("out"), b"precious").unwrap();
    let o = run(&["compress", "-a", "lzo", &p(d.path(), "in"), &p(d.path(), "out")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"));
    assert_eq!(std::fs::read(d.path().join("out")).unwrap(), b"precious");
    let o = run(&["compress", "-a", "lzo", "--force", &p(d.path(), "in"), &p(d.path(), "out")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(d.path().join("out")).unwrap(), b"precious");
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn decompress_truncates_full_sector_inline_output_to_ram_bytes() {
    // Newer kernels store a whole sector in compressed inline extents: 300 bytes of file data
    // followed by zeros up to 4096, with ram_bytes = 300.
    let d = tempfile::tempdir().unwrap();
    let mut sector = text(300);
    sector.resize(4096, 0);
    std::fs::write(d.path().join("sector"), &sector).unwrap();
    let o = run(&["compress", "-a", "zstd", "--inline", &p(d.path(), "sector"), &p(d.path(), "inl")]);
    assert!(o.status.success(), "{}", stderr(&o));
    for inline in [false, true] {
        let out = p(d.path(), &format!("out-{inline}"));
        // As an extent too: a frame holding up to the sector-rounded ram_bytes is the kernel's.
        let mut args = vec!["decompress", "-a", "zstd", "--ram-bytes", "300"];
        if inline {
            args.push("--inline");
        }
        let inl = p(d.path(), "inl");
        args.extend([inl.as_str(), out.as_str()]);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
        assert_eq!(std::fs::read(&out).unwrap(), text(300));
    }
    // More than the sector-rounded ram_bytes still needs --lenient.
    std::fs::write(d.path().join("two"), text(12_000)).unwrap();
    let two = p(d.path(), "two.ext");
    assert!(run(&["compress", "-a", "zstd", &p(d.path(), "two"), &two]).status.success());
    let o = run(&["decompress", "-a", "zstd", "--ram-bytes", "300", &two, &p(d.path(), "out-short")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn decompress_reads_a_stream_that_ends_in_the_last_sector_of_ram_bytes() {
    // 6.x compresses a 9,764-byte file's bytes; the extent's ram_bytes is 12,288 (inspect's ram).
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("in"), text(9764)).unwrap();
    for alg in ["zstd", "zlib", "lzo"] {
        let ext = p(d.path(), &format!("{alg}.ext"));
        assert!(run(&["compress", "-a", alg, "--force", &p(d.path(), "in"), &ext]).status.success());
        let out = p(d.path(), &format!("{alg}.out"));
        let o = run(&["decompress", "-a", alg, "--ram-bytes", "12288", "--num-bytes", "9764", &ext, &out]);
        assert!(o.status.success(), "{alg}: {}", stderr(&o));
        assert_eq!(std::fs::read(&out).unwrap(), text(9764), "{alg}");
        // A whole sector missing is a truncated extent.
        let o = run(&["decompress", "-a", alg, "--ram-bytes", "16384", "--force", &ext, &out]);
        assert_eq!(o.status.code(), Some(1), "{alg}: {}", stderr(&o));
    }
}

#[test]
fn bad_command_lines_exit_64_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("in"), text(50_000)).unwrap();
    let (i, o) = (p(d.path(), "in"), p(d.path(), "out"));
    let cases: Vec<Vec<&str>> = vec![
        vec!["compress", "-a", "lzo:x", &i, &o],
        vec!["compress", "-a", "none", &i, &o],
        vec!["compress", "-a", "zstd", "--folio-order", "40", &i, &o],
        vec!["decompress", "-a", "brotli", "--ram-bytes", "10", &i, &o],
        vec!["encoded-write", "-a", "zstd:abc", &i, &o],
        vec!["estimate", "--threads", "0", &i],
        vec!["bench", "--quick", "--no-report", "--report", &o],
        vec!["extract", "--bogus", &i, &o],
    ];
    for args in cases {
        let r = run(&args);
        assert_eq!(r.status.code(), Some(64), "{args:?}: {}", stderr(&r));
        assert!(!Path::new(&o).exists(), "{args:?} wrote {o}");
    }
    // A clamped level is said once, by every subcommand that takes one.
    let r = run(&["compress", "-a", "zstd:99", "--force", &i, &o]);
    assert!(stderr(&r).contains("note: zstd level 99 clamped to 15"), "{}", stderr(&r));
    let r = run(&["bench", "--quick", "--no-report", "--codecs", "zstd:99", "--strategies", "direct", "--loop", "6.1"]);
    assert!(stderr(&r).contains("note: zstd level 99 clamped to 15"), "{}", stderr(&r));
}

#[test]
fn decompress_refuses_a_truncated_extent_unless_lenient() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("in"), text(131072)).unwrap();
    for alg in ["zstd", "zlib", "lzo"] {
        let ext = p(d.path(), &format!("{alg}.ext"));
        assert!(run(&["compress", "-a", alg, "--force", &p(d.path(), "in"), &ext]).status.success());
        let full = std::fs::read(&ext).unwrap();
        let cut = p(d.path(), &format!("{alg}.cut"));
        std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
        let out = p(d.path(), &format!("{alg}.out"));
        let r = run(&["decompress", "-a", alg, "--ram-bytes", "131072", &cut, &out]);
        assert_eq!(r.status.code(), Some(1), "{alg}: {}", stderr(&r));
        assert!(!Path::new(&out).exists(), "{alg}: no OUT on error");
        if alg == "zstd" {
            // The kernel zero-fills a short zstd stream; --lenient does too, with a warning.
            let r = run(&["decompress", "-a", alg, "--lenient", "--ram-bytes", "131072", &cut, &out]);
            assert!(r.status.success(), "{}", stderr(&r));
            assert!(stderr(&r).contains("warning: the stream ended after"), "{}", stderr(&r));
            assert_eq!(std::fs::read(&out).unwrap().len(), 131072);
        }
    }
}

#[test]
fn man_pages_and_completions_are_generated() {
    let d = tempfile::tempdir().unwrap();
    let r = run(&["man", d.path().to_str().unwrap()]);
    assert!(r.status.success(), "{}", stderr(&r));
    for page in ["btrfs-compress.1", "btrfs-compress-extract.1", "btrfs-compress-usage.1", "btrfs-compress-bench.1"] {
        let t = std::fs::read_to_string(d.path().join(page)).unwrap();
        assert!(t.starts_with(".ie") || t.contains(".TH"), "{page}");
    }
    let t = std::fs::read_to_string(d.path().join("btrfs-compress-extract.1")).unwrap();
    assert!(t.contains("ignore\\-csum") || t.contains("ignore-csum"), "every flag is in the page");
    // SYNOPSIS as the command is typed, and the exit statuses.
    assert!(t.contains("btrfs\\-compress extract") || t.contains("btrfs-compress extract"), "{t}");
    assert!(t.contains(".SH \"EXIT STATUS\"") && t.contains("141"), "{t}");
    for shell in ["bash", "zsh", "fish"] {
        let r = run(&["completions", shell]);
        assert!(r.status.success() && String::from_utf8_lossy(&r.stdout).contains("estimate"), "{shell}");
    }
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(64));
}

#[test]
fn help_and_version_exit_0() {
    assert!(run(&["--help"]).status.success());
    assert!(run(&["--version"]).status.success());
    assert_eq!(run(&["frobnicate"]).status.code(), Some(64));
}

#[test]
fn bench_quick_prints_json_rows_and_writes_a_report() {
    let d = tempfile::tempdir().unwrap();
    let rep = p(d.path(), "report");
    let o = run(&["bench", "--quick", "--json", "--codecs", "zstd:1,lzo", "--report", &rep]);
    assert!(o.status.success(), "{}", stderr(&o));
    let keys = [
        "codec",
        "level",
        "strategy",
        "backend",
        "page_size",
        "op",
        "mb_s",
        "ratio_vs_raw",
        "compression_ratio",
        "maps_per_extent",
        "unmaps_per_extent",
        "forced_remaps_per_extent",
        "bytes_copied_per_extent",
        "loop",
        "config",
        "highmem_maps_per_extent",
        "lowmem_maps_per_extent",
        "pte_writes_per_extent",
        "pte_clears_per_extent",
        "tlb_single_flushes_per_extent",
        "tlb_full_flushes_per_extent",
        "ipis_per_extent",
        "slots_high_water",
        "library_calls_per_extent",
        "zlib_backend",
        "modeled_ns_per_extent",
        "mb_s_min",
        "mb_s_max",
    ];
    let mut rows = 0;
    let mut strategies = std::collections::HashSet::new();
    for line in String::from_utf8(o.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        for k in keys {
            assert!(v.get(k).is_some(), "missing {k} in {line}");
        }
        strategies.insert(v["strategy"].as_str().unwrap().to_string());
        // Every loop calls its library at least once per extent it handles.
        if v["op"] != "heuristic" && v["extents"].as_u64().unwrap() > 0 {
            assert!(v["library_calls_per_extent"].as_f64().unwrap() >= 1.0, "{line}");
        }
        // A kmap_local of a highmem page is one PTE write and one invlpg, whatever else.
        if v["config"] == "32-bit-highmem" && v["strategy"] == "kmap-local" && v["loop"] == "6.1" {
            assert_eq!(v["pte_writes_per_extent"], v["highmem_maps_per_extent"], "{line}");
            assert_eq!(v["tlb_single_flushes_per_extent"], v["highmem_maps_per_extent"], "{line}");
        }
        if v["config"] == "32-bit-highmem" {
            assert_ne!(v["strategy"], "direct", "no direct map of highmem: {line}");
            assert!(v["slots_high_water"].as_u64().unwrap() <= 15, "{line}");
        }
        rows += 1;
    }
    assert!(rows > 40, "{rows} rows");
    for s in btrfs_compress::Strategy::ALL {
        assert!(strategies.contains(s.name()), "no {s} rows: {strategies:?}");
    }
    let summary = std::fs::read_to_string(d.path().join("report/summary.md")).unwrap();
    assert!(summary.starts_with("# btrfs-compress bench\n\n## Verdict"), "{summary}");
    assert!(summary.contains("Largest saving of any strategy against kmap_local"));
    for svg in ["modeled-ns-compress.svg", "api-calls-decompress.svg", "invlpg-compress.svg"] {
        let s = std::fs::read_to_string(d.path().join("report").join(svg)).unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"), "{svg}");
    }
}

#[test]
fn bench_refuses_bad_command_lines_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let file = p(d.path(), "file");
    std::fs::write(&file, b"x").unwrap();
    let bad_costs = p(d.path(), "costs.json");
    std::fs::write(&bad_costs, br#"{"events": {"api_calls": {"ns": 1, "source": "x"}}}"#).unwrap();
    for args in [
        vec!["bench", "--codecs", "lzo:x"],
        vec!["bench", "--codecs", "zstd:abc"],
        vec!["bench", "--loop", "5.4"],
        vec!["bench", "--strategies", "range,nope"],
        vec!["bench", "--backends", "disk"],
        vec!["bench", "--init-on-alloc", "maybe"],
        vec!["bench", "--no-report", "--report", "x"],
        vec!["bench", "--costs", &bad_costs],
        vec!["bench", "--range-reserve", "15"],
        vec!["bench", "--highmem-fraction", "1.5"],
        vec!["bench", "--highmem-fraction", "half"],
        vec!["bench", "--preempt-per-ms", "-1"],
        vec!["bench", "--zlib-backend", "zlib-ng"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
    }
    // I/O failures before any work exit 1, as README says.
    for args in [vec!["bench", "--report", &format!("{file}/sub")], vec!["bench", "--costs", "/no/such/costs.json"]] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn bench_on_an_empty_corpus_dir_fails_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let o = run(&["bench", "--quick", "--no-report", "--corpus", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("corpus is empty"), "{}", stderr(&o));
}

fn fixture_image() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    dirs.into_iter().map(|d| d.join("image.img.zst")).find(|p| p.exists()).expect("a fixture image")
}

#[test]
fn extract_verify_and_inspect_a_kernel_image() {
    let img = fixture_image();
    let img = img.to_str().unwrap();
    let d = tempfile::tempdir().unwrap();
    let dest = p(d.path(), "out");
    let o = run(&["extract", img, &dest]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plain = Path::new(img).parent().unwrap().join("plain");
    let want = Command::new("zstd").args(["-d", "-q", "-c"]).arg(plain.join("text-128k.zst")).output();
    if let Ok(w) = want {
        if w.status.success() {
            assert_eq!(std::fs::read(d.path().join("out/zstd_3/text-128k")).unwrap(), w.stdout);
        }
    }
    // Again without --force: nothing is overwritten, exit 1, one message per file.
    std::fs::write(d.path().join("out/zstd_3/text-128k"), b"mine").unwrap();
    let o = run(&["extract", img, &dest, "zstd_3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read(d.path().join("out/zstd_3/text-128k")).unwrap(), b"mine");
    // With --force and a path filter.
    let o = run(&["extract", "--force", img, &dest, "zstd_3/text-128k"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(d.path().join("out/zstd_3/text-128k")).unwrap(), b"mine");
    // No temporary files remain.
    let leftovers = walk(&d.path().join("out")).into_iter().filter(|n| n.contains("btrfs-compress-tmp")).count();
    assert_eq!(leftovers, 0);

    let o = run(&["verify", img]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for alg in ["zlib", "lzo", "zstd"] {
        assert!(out.contains(&format!("{alg}: ")), "{out}");
    }
    let o = run(&["inspect", "--json", img]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.as_array().unwrap().len() >= 60, "{}", v.as_array().unwrap().len());
}

fn walk(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            v.extend(walk(&e.path()));
        } else {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v
}

#[test]
fn image_commands_reject_bad_images_cleanly() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("notbtrfs"), vec![0u8; 1 << 20]).unwrap();
    let z = std::fs::read(fixture_image()).unwrap();
    std::fs::write(d.path().join("cut.zst"), &z[..z.len() / 3]).unwrap();
    for (img, needle) in [("notbtrfs", "not a btrfs image"), ("cut.zst", "truncated"), ("missing", "No such file")] {
        for cmd in ["inspect", "verify"] {
            let o = run(&[cmd, &p(d.path(), img)]);
            assert_eq!(o.status.code(), Some(1), "{cmd} {img}");
            assert!(stderr(&o).contains(needle), "{cmd} {img}: {}", stderr(&o));
            assert!(!stderr(&o).contains("panicked"));
        }
        let o = run(&["extract", &p(d.path(), img), &p(d.path(), "dest")]);
        assert_eq!(o.status.code(), Some(1));
    }
}

#[test]
fn unwritable_destinations_fail_cleanly_and_leave_nothing() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("in"), text(50_000)).unwrap();
    let ext = p(d.path(), "ext");
    assert!(run(&["compress", "-a", "zstd", &p(d.path(), "in"), &ext]).status.success());
    // A directory that cannot hold files.
    for out in ["/proc/btrfs-compress-test/out", "/proc/version"] {
        let o = run(&["decompress", "-a", "zstd", "--ram-bytes", "50000", "--force", &ext, out]);
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert!(stderr(&o).contains("cannot write"), "{out}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    }
    let o = run(&["extract", fixture_image().to_str().unwrap(), "/proc/btrfs-compress-test"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot create"), "{}", stderr(&o));
}

#[test]
fn a_file_that_fails_to_extract_is_never_left_under_its_name() {
    // Damage one compressed extent and one plain extent of a raw copy of the fixture image:
    // their data checksums no longer match, so extract must refuse those files only (exit 1,
    // naming file and extent), leave nothing under their names, and write the others; with
    // --ignore-csum the plain one is written with a warning.
    let d = tempfile::tempdir().unwrap();
    let raw = Command::new("zstd").args(["-d", "-q", "-c"]).arg(fixture_image()).output().unwrap();
    if !raw.status.success() {
        println!("SKIPPED: the zstd command is not installed");
        return;
    }
    let mut b = raw.stdout;
    let img = btrfs_image::open_bytes(b.clone()).unwrap();
    let at = |path: &str| {
        let w = img.walk_files().unwrap();
        let e = *w.lookup(path).unwrap();
        let fe = img.file_extents(&img.fs_tree(e.tree).unwrap(), e.ino).unwrap().remove(0);
        img.chunks.mirror(fe.disk_bytenr, 0).unwrap().offset as usize
    };
    let (zstd, plain) = (at("zstd_3/text-128k"), at("heuristic/heuristic-random"));
    drop(img);
    for x in &mut b[zstd + 16..zstd + 64] {
        *x ^= 0xff;
    }
    b[plain + 5000] ^= 0x01;
    let path = d.path().join("damaged.img");
    std::fs::write(&path, &b).unwrap();
    let dest = d.path().join("out");
    let o = run(&["extract", path.to_str().unwrap(), dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for f in ["zstd_3/text-128k", "heuristic/heuristic-random"] {
        assert!(
            stderr(&o).contains(&format!("{f}: extent at file offset 0: data checksum mismatch")),
            "{}",
            stderr(&o)
        );
        assert!(!dest.join(f).exists());
    }
    assert!(dest.join("zstd_3/unaligned-100000").exists());
    let leftovers = walk(&dest).into_iter().filter(|n| n.contains("btrfs-compress-tmp")).count();
    assert_eq!(leftovers, 0);
    let dest2 = d.path().join("out2");
    let o = run(&["extract", "--ignore-csum", path.to_str().unwrap(), dest2.to_str().unwrap()]);
    assert!(stderr(&o).contains("warning: heuristic/heuristic-random: extent at file offset 0"), "{}", stderr(&o));
    let got = std::fs::read(dest2.join("heuristic/heuristic-random")).unwrap();
    let good = std::fs::read(dest.parent().unwrap().join("out/heuristic/heuristic-half-random"));
    assert!(good.is_ok(), "the intact neighbour was written");
    assert_eq!(got.len(), 131072);
    // The damaged compressed extent still does not decode: that file stays unwritten.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!dest2.join("zstd_3/text-128k").exists());
}

#[test]
fn out_of_range_levels_are_clamped_with_one_note() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("in"), text(50_000)).unwrap();
    let o = run(&["compress", "-a", "zstd:22", &p(d.path(), "in"), &p(d.path(), "out")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("level 22 clamped to 15"), "{}", stderr(&o));
}

#[test]
fn estimate_reports_every_option_and_refuses_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    let text: Vec<u8> = b"the btrfs extent folio kmap\n".iter().copied().cycle().take(700_000).collect();
    std::fs::write(tree.join("text"), &text).unwrap();
    std::fs::write(tree.join("sub/small"), &text[..300]).unwrap();
    std::fs::hard_link(tree.join("text"), tree.join("sub/link")).unwrap();
    std::fs::write(tree.join("empty"), b"").unwrap();
    let t = tree.to_str().unwrap();
    let o = run(&["estimate", "-a", "zstd:3,lzo,zlib:1", "--force", "--json", t]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for v in &lines {
        for k in [
            "option",
            "files",
            "disk_bytes",
            "uncompressed_bytes",
            "referenced_bytes",
            "types",
            "extents",
            "inline_extents",
            "compress_mb_s",
            "decompress_mb_s",
            "seconds",
        ] {
            assert!(v.get(k).is_some(), "missing {k} in {v}");
        }
        assert!(v["option"].as_str().unwrap().starts_with("compress-force="));
        assert_eq!(v["files"], 3, "the hard link counts once: {v}");
        assert_eq!(v["inline_extents"], 1, "{v}");
        // 700,000 bytes of text: six 128 KiB pieces, all compressed, plus the inline file.
        assert!(v["disk_bytes"].as_u64().unwrap() < 100_000, "{v}");
        assert_eq!(v["types"][0]["type"], "TOTAL");
    }
    // The table and the closing line.
    let o = run(&["estimate", "-a", "zstd:1", t]);
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("Type       Perc     Disk Usage   Uncompressed Referenced"), "{out}");
    assert!(out.contains("Saves most: compress=zstd:1"), "{out}");
    // Bad command lines exit 64 before any work; a missing path exits 1.
    for args in
        [vec!["estimate", "-a", "lzo:x", t], vec!["estimate", "-a", "none", t], vec!["estimate", "--sample", "0", t]]
    {
        assert_eq!(run(&args).status.code(), Some(64), "{args:?}");
    }
    let o = run(&["estimate", d.path().join("missing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
}

#[test]
fn usage_prints_compsizes_report_and_json() {
    let img = fixture_image();
    let o = run(&["usage", "-b", img.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.starts_with("Processed "), "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("Type       Perc     Disk Usage   Uncompressed Referenced"));
    let total: Vec<&str> = out.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(total[0], "TOTAL");
    let o = run(&["usage", "--json", img.to_str().unwrap(), "zstd_3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in ["files", "regular_extents", "refs", "inline"] {
        assert!(j[k].is_u64(), "{k}: {j}");
    }
    let types = j["types"].as_array().unwrap();
    assert_eq!(types[0]["type"], "TOTAL");
    assert!(types.iter().any(|t| t["type"] == "zstd"));
    assert!(types.iter().all(|t| t["disk_bytes"].is_u64() && t["referenced_bytes"].is_u64()));
    let o = run(&["usage", img.to_str().unwrap(), "no/such/path"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such path"), "{}", stderr(&o));
    let o = run(&["usage", "--bogus", img.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64));
}

#[test]
fn a_truncated_image_is_said() {
    // A quarter of the 6.1 fixture's device: the trees and every extent lie below the cut, so
    // usage and inspect report in full, with a warning, and exit 0.
    let d = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/6.1.0-50-amd64/image.img.zst");
    let full = d.path().join("full.img");
    let unzstd = Command::new("zstd").args(["-q", "-d", "-o"]).arg(&full).arg(&fixture).status();
    if !unzstd.is_ok_and(|s| s.success()) {
        println!("SKIPPED: a_truncated_image_is_said (no zstd)");
        return;
    }
    let bytes = std::fs::read(&full).unwrap();
    let cut = p(d.path(), "quarter.img");
    std::fs::write(&cut, &bytes[..bytes.len() / 4]).unwrap();
    for cmd in ["usage", "inspect", "verify"] {
        let o = run(&[cmd, &cut]);
        assert!(o.status.success(), "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("warning") && stderr(&o).contains("truncated"), "{cmd}: {}", stderr(&o));
    }
}

/// The `*.img.zst` images of the first fixture directory whose name starts with `prefix`.
fn fixture_images(prefix: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    dirs.sort();
    let dir = dirs.into_iter().next().unwrap_or_else(|| panic!("fixtures/{prefix}*"));
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".img.zst"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_dumped_extent_decodes_with_the_command_its_index_gives() {
    // inspect --dump-extents writes index.tsv: per extent the numbers decompress needs and the
    // command. Every compressed extent of the 6.1 fixture image, and of the 16 KiB and 64 KiB
    // sector images of the arm64-16k and powerpc64le-64k kernels, decodes with that command (run
    // as printed) to the file's bytes of it.
    let mut images = fixture_images("6.1.0-");
    images.extend(
        fixture_images("big-sectors-6.12.117+deb13-arm64-16k")
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("16384")),
    );
    images.extend(
        fixture_images("big-sectors-6.12.107+deb13-powerpc64le-64k")
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("65536")),
    );
    let mut sectors = std::collections::BTreeSet::new();
    for img in images {
        let d = tempfile::tempdir().unwrap();
        let dump = d.path().join("dump");
        let x = d.path().join("x");
        let o = run(&["inspect", img.to_str().unwrap(), "--dump-extents", dump.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = run(&["extract", img.to_str().unwrap(), x.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        // Dumped extents are named PATH@OFFSET.ALG with the path's slashes as underscores.
        let mut files = std::collections::HashMap::new();
        let mut stack = vec![x.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(&x).unwrap().to_string_lossy().replace('/', "_");
                    files.insert(rel, p);
                }
            }
        }
        let index = std::fs::read_to_string(dump.join("index.tsv")).unwrap();
        let mut n = 0;
        for line in index.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            let (name, num, inline, cmd) = (f[0], f[4], f[5] == "true", f[6]);
            if let Some(s) = cmd.split("--sectorsize ").nth(1) {
                sectors.insert(s.split(' ').next().unwrap().to_string());
            }
            let sh = cmd.replacen("btrfs-compress", env!("CARGO_BIN_EXE_btrfs-compress"), 1);
            let o = Command::new("sh").arg("-c").arg(&sh).current_dir(&dump).output().unwrap();
            assert!(o.status.success(), "{line}: {}", stderr(&o));
            let got = std::fs::read(dump.join(format!("{name}.out"))).unwrap();
            let (key, at) = name.rsplit_once('.').unwrap().0.rsplit_once('@').unwrap();
            let file = std::fs::read(&files[key]).unwrap();
            let at: usize = at.parse().unwrap();
            let len = if inline { got.len().min(file.len()) } else { num.parse().unwrap() };
            assert_eq!(&got[..len], &file[at..at + len], "{}: {line}", img.display());
            n += 1;
        }
        assert!(n > 40, "{}: {n} extents", img.display());
    }
    assert_eq!(sectors.into_iter().collect::<Vec<_>>(), ["16384", "65536"]);
}

#[test]
fn a_truncated_image_missing_data_fails() {
    // mkfs.btrfs --rootdir (no mount, no root) with a 60 MiB file, whose data runs past the
    // metadata chunks, cut at 100 MiB of its 256: usage and inspect report, then exit 1.
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..60 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(root.join("big"), &data).unwrap();
    let img = d.path().join("full.img");
    if !mkfs_rootdir(&root, &img, 256 << 20, "a_truncated_image_missing_data_fails") {
        return;
    }
    let bytes = std::fs::read(&img).unwrap();
    let cut = p(d.path(), "cut.img");
    std::fs::write(&cut, &bytes[..100 << 20]).unwrap();
    for cmd in ["usage", "inspect"] {
        let o = run(&[cmd, &cut]);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("extents lie past the end of the truncated image"), "{cmd}: {}", stderr(&o));
        assert!(!o.stdout.is_empty(), "{cmd}: the report is printed first");
    }
}

/// The kernel-written image with a log tree (tools/log-replay-fixture.py).
fn log_fixture() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("log-replay-"))
        .expect("fixtures/log-replay-*/")
        .join("image.img.zst")
}

#[test]
fn image_commands_replay_the_log_by_default_and_read_the_commit_with_no_log() {
    let img = log_fixture();
    let img = img.to_str().unwrap();
    let o = run(&["inspect", img]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(err.contains("replayed the log tree") && out.contains("new/compressed"), "{err}\n{out}");
    let o = run(&["inspect", "--no-log", img]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(err.contains("not replayed") && !out.contains("new/compressed") && out.contains("base/unlinked"), "{err}");
    for cmd in [&["verify"][..], &["usage"][..]] {
        for no_log in [false, true] {
            let mut args = cmd.to_vec();
            if no_log {
                args.push("--no-log");
            }
            args.push(img);
            let o = run(&args);
            assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        }
    }
    let d = tempfile::tempdir().unwrap();
    let o = run(&["extract", "--no-log", img, &p(d.path(), "committed")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.path().join("committed/base/unlinked").is_file() && !d.path().join("committed/new").exists());
    let o = run(&["extract", img, &p(d.path(), "replayed")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.path().join("replayed/new/compressed").is_file() && !d.path().join("replayed/base/unlinked").exists());
}

/// The devices of a profile of the kernel-written multi-device fixture.
fn multi_device(profile: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let fx = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("multi-device-"))
        .expect("fixtures/multi-device-*/");
    let mut v: Vec<String> = std::fs::read_dir(fx.join(profile))
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn image_commands_take_every_device_of_a_multi_device_filesystem() {
    let devs = multi_device("raid6");
    let mut args = vec!["usage", devs[0].as_str()];
    for d in &devs[1..] {
        args.extend(["--device", d.as_str()]);
    }
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let whole = String::from_utf8_lossy(&o.stdout).into_owned();
    // Two devices withheld: RAID6 rebuilds from P and Q; both are named.
    let o = run(&["usage", &devs[0], "--device", &devs[3]]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), whole);
    assert!(stderr(&o).contains("device 2 ") && stderr(&o).contains("device 3 "), "{}", stderr(&o));
    let d = tempfile::tempdir().unwrap();
    let o = run(&["extract", &devs[1], "--device", &devs[2], &p(d.path(), "out")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.path().join("out/plain/random-512k").is_file());
    let o = run(&["verify", &devs[0], "--device", &devs[1], "--device", &devs[2], "--device", &devs[3]]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A device of another filesystem, and one device given twice: exit 1, said.
    let other = multi_device("raid1");
    let o = run(&["inspect", &devs[0], "--device", &other[0]]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("another filesystem"), "{}", stderr(&o));
    let o = run(&["inspect", &devs[0], "--device", &devs[0]]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("both device 1"), "{}", stderr(&o));
    // RAID0 without a device: the files it held cannot be extracted (exit 1, named).
    let r0 = multi_device("raid0");
    let o = run(&["extract", &r0[0], &p(d.path(), "r0")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("device 2 is missing"), "{}", stderr(&o));
}

#[test]
fn a_closed_output_pipe_ends_a_command_without_a_panic() {
    // `verify img | head -1`: the reader is gone before the first line; no panic (exit 101).
    let img = fixture_image();
    for args in [&["verify"][..], &["inspect"][..], &["usage"][..], &["inspect", "--json"][..]] {
        let mut child = bin()
            .args(args)
            .arg(&img)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_ne!(o.status.code(), Some(101), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn output_paths_are_handled_as_a_unix_tool_handles_them() {
    let d = tempfile::tempdir().unwrap();
    let data = text(50_000);
    std::fs::write(d.path().join("in"), &data).unwrap();
    // `-` is standard input and output: compress | decompress round-trips.
    let c = bin()
        .args(["compress", "-a", "zstd", "-", "-"])
        .stdin(std::fs::File::open(d.path().join("in")).unwrap())
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", stderr(&c));
    let mut child = bin()
        .args(["decompress", "-a", "zstd", "--ram-bytes", "50000", "-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&c.stdout).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout, data);
    // A device given as OUT is written to, not replaced by a regular file.
    let o = run(&["compress", "-a", "zstd", &p(d.path(), "in"), "/dev/null"]);
    assert!(o.status.success(), "{}", stderr(&o));
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    // A symlink to a regular file keeps pointing at it; --force replaces the file.
    std::fs::write(d.path().join("target"), b"old").unwrap();
    std::os::unix::fs::symlink("target", d.path().join("link")).unwrap();
    let o = run(&["compress", "-a", "zstd", "--force", &p(d.path(), "in"), &p(d.path(), "link")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(d.path().join("link")).unwrap().file_type().is_symlink());
    assert_ne!(std::fs::read(d.path().join("target")).unwrap(), b"old");
}

#[test]
fn extract_names_every_path_it_cannot_find_and_reruns_with_skip_existing() {
    let img = fixture_image();
    let img = img.to_str().unwrap();
    let d = tempfile::tempdir().unwrap();
    // A typo beside a good path is an error, not ignored.
    let o = run(&["extract", img, &p(d.path(), "a"), "zstd_3", "zzz/yyy"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such path in the image: zzz/yyy"), "{}", stderr(&o));
    // A rerun keeps what is there and writes the rest.
    let o = run(&["extract", img, &p(d.path(), "b")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = d.path().join("b/zlib_3");
    let gone: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    for f in &gone {
        std::fs::remove_file(f).unwrap();
    }
    let o = run(&["extract", img, &p(d.path(), "b")]);
    assert_eq!(o.status.code(), Some(1), "without --skip-existing, existing files are errors");
    let o = run(&["extract", "--skip-existing", img, &p(d.path(), "b")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("kept as they were"), "{}", stderr(&o));
    assert!(gone.iter().all(|f| f.is_file()));
    // What is there but is not the image's file (another size; the same size and another
    // mtime; a file where the image has a symlink) is not kept silently: named, untouched, exit 1.
    let grown = &gone[0];
    std::io::Write::write_all(&mut std::fs::OpenOptions::new().append(true).open(grown).unwrap(), b"user's line\n")
        .unwrap();
    let bytes = std::fs::read(grown).unwrap();
    let touched = &gone[1];
    let f = std::fs::File::options().write(true).open(touched).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1)).unwrap();
    let o = run(&["extract", "--skip-existing", img, &p(d.path(), "b")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let name = |f: &std::path::Path| f.file_name().unwrap().to_string_lossy().into_owned();
    for f in [grown, touched] {
        assert!(err.lines().any(|l| l.contains(&name(f)) && l.contains("differs from the image")), "{err}");
    }
    let refused = err.lines().filter(|l| l.contains("differs") && !l.contains("entries not extracted")).count();
    assert_eq!(refused, 2, "{err}");
    assert_eq!(std::fs::read(grown).unwrap(), bytes, "left as it was");
}

#[test]
fn estimate_and_bench_say_what_they_could_not_do() {
    let d = tempfile::tempdir().unwrap();
    let t = p(d.path(), "t");
    std::fs::write(&t, text(80_000)).unwrap();
    // Nothing to estimate: exit 1, no recommendation, no NaN.
    let o = run(&["estimate", "/dev/null"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to estimate"), "{}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("NaN"));
    // A kernel without zstd levels compresses zstd:9 at level 3, and says so; one without zstd
    // refuses it.
    let o = run(&["estimate", "-a", "zstd:9", "--kernel", "4.19", &t]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("kernel 4.19 takes no zstd level"), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("compress=zstd:3 (kernel 4.19)"));
    assert_eq!(run(&["estimate", "-a", "zstd", "--kernel", "4.9", &t]).status.code(), Some(64));
    // lzo:3 is what the kernel mounts as lzo.
    let o = run(&["estimate", "-a", "lzo:3", &t]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("lzo has no levels"), "{}", stderr(&o));
    // An unwritable report directory is an I/O failure (1), not a bad command line.
    let o = run(&["bench", "--quick", "--report", "/proc/no-such-dir/x"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn an_image_file_named_like_our_temporaries_survives_two_extracts() {
    // mkfs.btrfs --rootdir (no mount, no root): `a` and `.a.btrfs-compress-tmp-999999999` (the
    // shape of a stale temporary of `a`, but a file of the image); and a user's file of that
    // shape already under DEST. A second extract (a rerun) must delete neither.
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let tmp_like = ".a.btrfs-compress-tmp-999999999";
    std::fs::write(root.join("a"), b"a file\n").unwrap();
    std::fs::write(root.join(tmp_like), b"a file of the image\n").unwrap();
    let img = d.path().join("img");
    if !mkfs_rootdir(&root, &img, 128 << 20, "an_image_file_named_like_our_temporaries_survives_two_extracts") {
        return;
    }
    let dest = d.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join(".b.btrfs-compress-tmp-999999999"), b"the user's\n").unwrap();
    let img = img.to_str().unwrap();
    let o = run(&["extract", img, dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["extract", "--skip-existing", img, dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(dest.join(tmp_like)).unwrap(), b"a file of the image\n");
    assert_eq!(std::fs::read(dest.join(".b.btrfs-compress-tmp-999999999")).unwrap(), b"the user's\n");
    assert!(!stderr(&o).contains("removed"), "{}", stderr(&o));
}
