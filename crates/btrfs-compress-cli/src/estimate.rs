//! `btrfs-compress estimate`: what each compression mount option would store for files, as the
//! kernel would write them (the model is `btrfs-estimate`'s), with compsize's report per option.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use btrfs_compress::{parse_compress_option, CompressType};
use btrfs_estimate::{
    collect_files, estimate, estimate_sampled, kernel_version, result_of, MountOption, OptionResult, Rules, Tally,
};

use crate::common::Fail;

/// Options of `btrfs-compress estimate`.
#[derive(clap::Args, Clone, Debug)]
pub struct EstimateArgs {
    /// Mount options to compare, comma-separated [default: zstd:1,zstd:3,zstd:9,lzo,zlib:3].
    #[arg(short = 'a', long = "alg", value_name = "LIST")]
    pub algs: Option<String>,
    /// compress-force= (every piece goes to the codec) instead of compress= (the heuristic
    /// decides, and a failed attempt marks the file NOCOMPRESS).
    #[arg(long)]
    pub force: bool,
    /// Kernel whose rules to follow, MAJOR.MINOR [default: the running kernel's].
    #[arg(long, value_name = "VERSION")]
    pub kernel: Option<String>,
    /// The max_inline mount option (bytes).
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub max_inline: usize,
    /// Sector size of the filesystem (4096 on x86).
    #[arg(long, default_value_t = 4096, value_name = "N", value_parser = parse_sectorsize)]
    pub sectorsize: usize,
    /// Print one JSON object per option on standard output instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Also write an SVG plot of disk bytes against compression speed, one point per option.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// The closing line names the option that saves most among those at least this fast
    /// (compression MB/s per core).
    #[arg(long, default_value_t = 0.0, value_name = "N")]
    pub min_mb_s: f64,
    /// Compress a stratified random sample of this share (0 to 1) of the 512 KiB chunks and
    /// small files instead of all, and give each option's disk bytes with a 95 % interval
    /// (0.09 on 1.65 GB of /usr: ten times faster than exact mode under --force, eight times
    /// without; within 1 % for 37 and 36 of 40 seeds).
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction, conflicts_with = "sample_bytes")]
    pub sample: Option<f64>,
    /// As --sample, with the share chosen so that about N bytes are compressed.
    #[arg(long, value_name = "N")]
    pub sample_bytes: Option<u64>,
    /// Seed of the sample.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
    /// Worker threads [default: all cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Files and directories to estimate (directories recursively; regular files only, a file
    /// reached by several hard links once).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!("{s:?} is not a fraction in (0, 1]")),
    }
}

fn parse_sectorsize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n.is_power_of_two() && (4096..=65536).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a sector size (4096 to 65536, a power of two)")),
    }
}

/// `btrfs-compress estimate`. Errors: (exit code, message).
pub fn run(args: EstimateArgs) -> Result<(), Fail> {
    run_inner(args).map_err(|(code, msg)| Fail { code, msg })
}

fn run_inner(args: EstimateArgs) -> Result<(), (u8, String)> {
    let list = args.algs.clone().unwrap_or_else(|| "zstd:1,zstd:3,zstd:9,lzo,zlib:3".into());
    let kernel = kernel_version(args.kernel.as_deref()).map_err(|m| (64, m))?;
    let mut opts = Vec::new();
    for a in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let spec = parse_compress_option(a).map_err(|e| (64, format!("-a {a}: {e}")))?;
        if spec.alg == CompressType::None {
            return Err((64, format!("-a {a}: not a compression algorithm")));
        }
        crate::common::note_clamp(&spec);
        let (spec, note) = btrfs_estimate::spec_for_kernel(spec, kernel).map_err(|m| (64, format!("-a {a}: {m}")))?;
        if let Some(n) = note {
            eprintln!("btrfs-compress: note: {n}");
        }
        if opts.iter().any(|o: &MountOption| o.spec == spec) {
            continue;
        }
        opts.push(MountOption { spec, force: args.force });
    }
    if opts.is_empty() {
        return Err((64, "empty -a list".into()));
    }
    let rules = Rules { kernel, max_inline: args.max_inline, sectorsize: args.sectorsize };
    let collected = collect_files(&args.paths).map_err(|e| (1, e.to_string()))?;
    // What could not be read is named first: the estimate below lacks it (exit 1 at the end).
    for u in &collected.unreadable {
        eprintln!("btrfs-compress: cannot read {u}");
    }
    let not_listed = collected.unreadable_count - collected.unreadable.len() as u64;
    if not_listed > 0 {
        eprintln!("btrfs-compress: and {not_listed} more entries that cannot be read");
    }
    let (files, special, lost) = (collected.files, collected.special, collected.unreadable_count);
    let total: u64 = files.iter().map(|f| f.1).sum();
    if total == 0 {
        return Err((
            1,
            format!(
                "nothing to estimate: {} regular files with no data ({special} special files, {lost} entries that cannot be read)",
                files.len()
            ),
        ));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.map_or(0, usize::from))
        .build()
        .map_err(|e| (1, e.to_string()))?;
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec}")
            .expect("template"),
    );
    let t0 = Instant::now();
    let fraction = match (args.sample, args.sample_bytes) {
        (Some(f), _) => Some(f),
        (None, Some(n)) => Some((n as f64 / total.max(1) as f64).clamp(1e-9, 1.0)),
        (None, None) => None,
    };
    let (results, unreadable) = match fraction {
        None => {
            let (tallies, unreadable) = pool.install(|| estimate(&files, &opts, &rules, &|n| pb.inc(n)));
            (opts.iter().zip(&tallies).map(|(o, t)| result_of(*o, t)).collect::<Vec<_>>(), unreadable)
        }
        Some(f) => {
            pb.set_length((total as f64 * f) as u64);
            let (sampled, unreadable) = pool
                .install(|| estimate_sampled(&files, &opts, &rules, f, args.seed, &|n| pb.inc(n)))
                .map_err(|e| (1, e.to_string()))?;
            let results = opts
                .iter()
                .zip(&sampled)
                .map(|(o, s)| {
                    let mut r = result_of(*o, &Tally { usage: s.usage.clone(), ..s.tally.clone() });
                    r.disk_bytes_ci95 = Some([s.disk_ci95.0, s.disk_ci95.1]);
                    r
                })
                .collect();
            (results, unreadable)
        }
    };
    pb.finish_and_clear();
    if args.json {
        for r in &results {
            println!("{}", serde_json::to_string(r).expect("serializes"));
        }
    } else {
        print!("{}", report(&results, &rules, args.min_mb_s));
    }
    if special + lost + unreadable > 0 {
        eprintln!(
            "btrfs-compress: skipped {special} special files, {lost} entries that cannot be read and {unreadable} files that could not be read"
        );
    }
    eprintln!(
        "{} files read of {}, kernel {}.{} rules, {:.2} s",
        files.len() as u64 - unreadable,
        files.len(),
        kernel.0,
        kernel.1,
        t0.elapsed().as_secs_f64()
    );
    if let Some(p) = &args.plot {
        std::fs::write(p, plot(&results)).map_err(|e| (1, format!("{}: {e}", p.display())))?;
    }
    if unreadable + lost > 0 {
        return Err((
            1,
            format!("{} files or directories could not be read: the estimate above lacks them", unreadable + lost),
        ));
    }
    Ok(())
}

/// A speed, or `-` where nothing was timed.
fn speed(mb_s: f64) -> String {
    if mb_s.is_finite() {
        format!("{mb_s:.0}")
    } else {
        "-".into()
    }
}

/// The tables and the closing line.
fn report(results: &[OptionResult], rules: &Rules, min_mb_s: f64) -> String {
    let mut s = String::new();
    for r in results {
        let ratio = r.uncompressed_bytes as f64 / r.disk_bytes.max(1) as f64;
        let _ = writeln!(
            s,
            "{} (kernel {}.{}): {} regular extents, {} inline; ratio {:.2}; compress {} MB/s, decompress {} MB/s per core",
            r.option,
            rules.kernel.0,
            rules.kernel.1,
            r.extents,
            r.inline_extents,
            ratio,
            speed(r.compress_mb_s),
            speed(r.decompress_mb_s)
        );
        if let Some([lo, hi]) = r.disk_bytes_ci95 {
            let _ = writeln!(
                s,
                "sampled: disk bytes {} (95 % interval {:.0} to {:.0}, +-{:.2} %)",
                r.disk_bytes,
                lo,
                hi,
                100.0 * (hi - lo) / 2.0 / r.disk_bytes.max(1) as f64
            );
        }
        let _ = writeln!(s, "{}", r.report);
    }
    // An option whose speed was not measured (nothing compressed) is not ruled out.
    let best =
        results.iter().filter(|r| r.compress_mb_s.is_nan() || r.compress_mb_s >= min_mb_s).min_by_key(|r| r.disk_bytes);
    match best {
        Some(b) => {
            let _ = writeln!(
                s,
                "Saves most{}: {} ({} of {} bytes on disk).",
                if min_mb_s > 0.0 { format!(" at {min_mb_s} MB/s or more") } else { String::new() },
                b.option,
                b.disk_bytes,
                b.uncompressed_bytes
            );
        }
        None => {
            let _ = writeln!(s, "No option compresses at {min_mb_s} MB/s or more here.");
        }
    }
    s
}

/// Disk bytes against compression speed, one point per option.
fn plot(results: &[OptionResult]) -> String {
    let points: Vec<(String, f64, f64)> =
        results.iter().map(|r| (r.option.clone(), r.compress_mb_s, r.disk_bytes as f64)).collect();
    btrfs_lab::svg::scatter(
        "Disk bytes against compression speed (per core), one point per option",
        "compression MB/s per core",
        "disk bytes",
        &points,
    )
}
