//! `btrfs-compress`: compress and decompress btrfs extents with the kernel's page loops, and
//! compare the page-mapping strategies (`bench`).
//!
//! Exit status: 0 success; 1 failure (bad input, corrupt data, I/O); 2 the kernel's rules would
//! not compress the input (`-E2BIG` or not saving a sector); 64 bad command line.
#![forbid(unsafe_code)]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use btrfs_compress::{
    compress_extent, compress_inline, decompress_extent_full, decompress_inline, parse_compress_option, Backend, Error,
    LzoBackend, Options, Strategy, ZlibBackend, BTRFS_MAX_COMPRESSED, BTRFS_MAX_UNCOMPRESSED,
};
use btrfs_compress::{image, lab};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "btrfs-compress",
    version,
    about = "btrfs's compression paths in userspace: kernel-exact extents and the page-mapping lab"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compress IN (at most 128 KiB) into OUT as one btrfs extent (exact bytes, unpadded).
    Compress(CompressCmd),
    /// Decompress an extent (sector padding allowed) into OUT, `--ram-bytes` long.
    Decompress(DecompressCmd),
    /// Compare the mapping strategies over the codecs (the README's main job).
    Bench(lab::BenchArgs),
    /// List the files of a btrfs image (raw or .zst) and their extents.
    Inspect(InspectCmd),
    /// Copy files out of a btrfs image, like `btrfs restore`.
    Extract(ExtractCmd),
    /// Decode every compressed extent and check every data checksum of an image.
    Verify(VerifyCmd),
    /// Compress IN with our codecs and store it as FILE on a mounted btrfs as the compressed
    /// extents we made (BTRFS_IOC_ENCODED_WRITE, through `btrfs receive`).
    EncodedWrite(EncodedWriteCmd),
    /// Write the files of the kernel kmap trace (tools/qemu-kmap-trace.py) into DIR.
    Corpus(CorpusCmd),
    /// What each compression mount option would store for files, as the kernel would write
    /// them (compsize's report per option), without a btrfs filesystem.
    Estimate(btrfs_compress::estimate::EstimateArgs),
}

#[derive(Args)]
struct CorpusCmd {
    /// Directory to write into (created if missing; existing files are replaced).
    dir: PathBuf,
}

fn corpus_cmd(c: CorpusCmd) -> Result<(), Fail> {
    fs::create_dir_all(&c.dir).map_err(|e| Fail { code: 1, msg: format!("{}: {e}", c.dir.display()) })?;
    for (name, data) in btrfs_compress::corpus::trace_files() {
        let p = c.dir.join(&name);
        fs::write(&p, &data).map_err(|e| Fail { code: 1, msg: format!("{}: {e}", p.display()) })?;
        println!("{name} {}", data.len());
    }
    Ok(())
}

#[derive(Args)]
struct EncodedWriteCmd {
    /// Algorithm and level: zlib[:1..9], lzo, zstd[:-15..15].
    #[arg(short = 'a', long = "alg")]
    alg: String,
    #[command(flatten)]
    map: MapOpts,
    /// Replace FILE if it exists.
    #[arg(short, long)]
    force: bool,
    /// Do not touch any filesystem: write the send stream to this file instead (apply it later
    /// with `btrfs receive -f STREAM DIR`; FILE is then only the name inside the stream).
    #[arg(long, value_name = "STREAM")]
    send_stream: Option<PathBuf>,
    /// Input file.
    input: PathBuf,
    /// File to create on a mounted btrfs.
    file: PathBuf,
}

#[derive(Args)]
struct InspectCmd {
    /// One JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the raw bytes of every compressed extent into DIR, one file each named
    /// PATH@OFFSET.ALG (slashes in PATH become underscores).
    #[arg(long, value_name = "DIR")]
    dump_extents: Option<PathBuf>,
    /// The image (raw or zstd-compressed).
    image: PathBuf,
}

#[derive(Args)]
struct ExtractCmd {
    /// Replace files that exist under DEST.
    #[arg(short, long)]
    force: bool,
    /// The image (raw or zstd-compressed).
    image: PathBuf,
    /// Directory to write into (created if missing).
    dest: PathBuf,
    /// Only these paths (files, or directories and what is under them).
    paths: Vec<String>,
}

#[derive(Args)]
struct VerifyCmd {
    /// One JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// The image (raw or zstd-compressed).
    image: PathBuf,
}

#[derive(Args, Clone)]
struct MapOpts {
    /// Mapping strategy: direct, kmap-local, range, vmap-folio, kmap-pool, bounce.
    #[arg(long, default_value = "direct", value_parser = parse_strategy)]
    strategy: Strategy,
    /// Memory backend: heap or highmem (emulated, real mmap per mapping).
    #[arg(long, default_value = "heap", value_parser = parse_backend)]
    backend: Backend,
    /// Page size: 4096, 16384 or 65536 (sectors stay 4096).
    #[arg(long, default_value_t = 4096, value_parser = parse_page_size)]
    page_size: usize,
    /// Page-cache folio order (0 = single pages).
    #[arg(long, default_value_t = 0)]
    folio_order: u32,
}

impl MapOpts {
    fn options(&self) -> Options {
        Options {
            strategy: self.strategy,
            backend: self.backend,
            page_size: self.page_size,
            folio_order: self.folio_order,
            out_order: self.folio_order,
            ..Options::default()
        }
    }
}

#[derive(Args)]
struct CompressCmd {
    /// Algorithm and level: zlib[:1..9], lzo, zstd[:-15..15].
    #[arg(short = 'a', long = "alg")]
    alg: String,
    #[command(flatten)]
    map: MapOpts,
    /// zstd: use the 2022 v1-v4 loop that kmaps the output page too.
    #[arg(long)]
    zstd_lifo_remap: bool,
    /// lzo encoder: lzo1x-1 (kernel-exact) or lzokay.
    #[arg(long, default_value = "lzo1x-1", value_parser = parse_lzo)]
    lzo_backend: LzoBackend,
    /// zlib deflate: kernel (lib/zlib_deflate, Linux 6.3 and later), kernel-pre-6.3, or zlib-rs
    /// (faster, valid zlib, not the kernel's bytes).
    #[arg(long, default_value = "kernel", value_parser = parse_zlib)]
    zlib_backend: ZlibBackend,
    /// Apply the inline-extent rules (whole file of at most one sector, at most --max-inline
    /// compressed bytes) instead of the regular "save a sector" rule.
    #[arg(long)]
    inline: bool,
    /// The max_inline mount option, for --inline.
    #[arg(long, default_value_t = 2048)]
    max_inline: usize,
    /// Replace OUT if it exists.
    #[arg(short, long)]
    force: bool,
    /// Input file (at most 128 KiB).
    input: PathBuf,
    /// Output file.
    output: PathBuf,
}

#[derive(Args)]
struct DecompressCmd {
    /// Algorithm: zlib, lzo or zstd (a level is accepted and ignored).
    #[arg(short = 'a', long = "alg")]
    alg: String,
    /// Decompressed size of the extent (ram_bytes).
    #[arg(long)]
    ram_bytes: usize,
    /// First decompressed byte wanted (the file extent item's offset).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Bytes wanted (num_bytes); default ram_bytes - offset.
    #[arg(long)]
    num_bytes: Option<usize>,
    /// Decode as an inline extent (stricter framing rules, at most one sector).
    #[arg(long)]
    inline: bool,
    #[command(flatten)]
    map: MapOpts,
    /// Replace OUT if it exists.
    #[arg(short, long)]
    force: bool,
    /// Input file (the extent's on-disk bytes, at most 128 KiB).
    input: PathBuf,
    /// Output file.
    output: PathBuf,
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    Strategy::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Strategy::ALL.iter().map(|s| s.name()).collect();
        format!("unknown strategy '{s}' (one of {})", names.join(", "))
    })
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    Backend::from_name(s).ok_or_else(|| format!("unknown backend '{s}' (heap or highmem)"))
}

fn parse_page_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (4096 | 16384 | 65536)) => Ok(n),
        _ => Err(format!("page size '{s}' (one of 4096, 16384, 65536)")),
    }
}

fn parse_zlib(s: &str) -> Result<ZlibBackend, String> {
    ZlibBackend::from_name(s).ok_or_else(|| format!("unknown zlib backend '{s}' (kernel, kernel-pre-6.3 or zlib-rs)"))
}

fn parse_lzo(s: &str) -> Result<LzoBackend, String> {
    LzoBackend::from_name(s).ok_or_else(|| format!("unknown lzo backend '{s}' (lzo1x-1 or lzokay)"))
}

/// A failure with its exit status.
struct Fail {
    code: u8,
    msg: String,
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        let code = if matches!(e, Error::Incompressible(_)) { 2 } else { 1 };
        Fail { code, msg: e.to_string() }
    }
}

fn io_fail(what: &str, p: &Path, e: io::Error) -> Fail {
    Fail { code: 1, msg: format!("{what} {}: {e}", p.display()) }
}

/// Read at most `limit` bytes; a longer input is an error (never an unbounded allocation).
fn read_bounded(p: &Path, limit: usize) -> Result<Vec<u8>, Fail> {
    let f = File::open(p).map_err(|e| io_fail("cannot open", p, e))?;
    if let Ok(m) = f.metadata() {
        if m.is_dir() {
            return Err(Fail { code: 1, msg: format!("{} is a directory", p.display()) });
        }
        if m.is_file() && m.len() > limit as u64 {
            return Err(Fail { code: 1, msg: format!("{} is {} bytes, more than {limit}", p.display(), m.len()) });
        }
    }
    let mut v = Vec::new();
    f.take(limit as u64 + 1).read_to_end(&mut v).map_err(|e| io_fail("cannot read", p, e))?;
    if v.len() > limit {
        return Err(Fail { code: 1, msg: format!("{} is more than {limit} bytes", p.display()) });
    }
    Ok(v)
}

/// Write `data` to `out` through a temporary file in the same directory and a rename, so OUT
/// is never left half written; refuse to replace an existing OUT without `force`.
fn write_atomic(out: &Path, data: &[u8], force: bool, input: &Path) -> Result<(), Fail> {
    if !force && fs::symlink_metadata(out).is_ok() {
        return Err(Fail { code: 1, msg: format!("{} exists (use --force to replace it)", out.display()) });
    }
    if let (Ok(a), Ok(b)) = (fs::canonicalize(out), fs::canonicalize(input)) {
        if a == b {
            return Err(Fail { code: 1, msg: "input and output are the same file".into() });
        }
    }
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = out.file_name().ok_or_else(|| Fail { code: 1, msg: format!("{} is not a file name", out.display()) })?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let res = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, out)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(io_fail("cannot write", out, e));
    }
    Ok(())
}

fn compress(c: CompressCmd) -> Result<(), Fail> {
    let spec = parse_compress_option(&c.alg)?;
    if let Some(w) = spec.clamped_from {
        eprintln!("btrfs-compress: note: level {w} clamped to {} as the kernel does", spec.level);
    }
    let data = read_bounded(&c.input, BTRFS_MAX_UNCOMPRESSED)?;
    if data.is_empty() {
        return Err(Fail { code: 1, msg: format!("{} is empty", c.input.display()) });
    }
    let mut o = c.map.options();
    o.zstd_lifo_remap = c.zstd_lifo_remap;
    o.lzo_backend = c.lzo_backend;
    o.zlib_backend = c.zlib_backend;
    let ext =
        if c.inline { compress_inline(&data, spec, c.max_inline, &o)? } else { compress_extent(&data, spec, &o)? };
    write_atomic(&c.output, &ext.data, c.force, &c.input)?;
    eprintln!(
        "{}: {} -> {} bytes ({} on disk) with {spec}",
        c.output.display(),
        data.len(),
        ext.data.len(),
        if c.inline { ext.data.len() } else { ext.data.len().next_multiple_of(4096) }
    );
    Ok(())
}

fn decompress(d: DecompressCmd) -> Result<(), Fail> {
    let spec = parse_compress_option(&d.alg)
        .or_else(|_| parse_compress_option(d.alg.split(':').next().unwrap_or_default()))?;
    let data = read_bounded(&d.input, BTRFS_MAX_COMPRESSED)?;
    let o = d.map.options();
    let out = if d.inline {
        if d.offset != 0 || d.num_bytes.is_some_and(|n| n != d.ram_bytes) {
            return Err(Fail { code: 1, msg: "inline extents are read whole: no --offset/--num-bytes".into() });
        }
        decompress_inline(spec.alg, &data, d.ram_bytes, &o)?.to_vec()
    } else {
        let num = d.num_bytes.unwrap_or(d.ram_bytes.saturating_sub(d.offset));
        let r = decompress_extent_full(spec.alg, &data, d.ram_bytes, d.offset, num, &o)?;
        if r.stream_bytes < num {
            eprintln!(
                "btrfs-compress: warning: the stream ended after {} of {num} bytes; the rest is zero-filled as the kernel does",
                r.stream_bytes
            );
        }
        r.data.to_vec()
    };
    write_atomic(&d.output, &out, d.force, &d.input)?;
    Ok(())
}

fn img_fail(p: &Path, e: impl std::fmt::Display) -> Fail {
    Fail { code: 1, msg: format!("{}: {e}", p.display()) }
}

fn open(p: &Path) -> Result<(btrfs_image::Image, image::Trees), Fail> {
    let img = btrfs_image::open_image(p).map_err(|e| img_fail(p, e))?;
    let trees = image::Trees::load(&img).map_err(|e| img_fail(p, e))?;
    Ok((img, trees))
}

fn inspect(c: InspectCmd) -> Result<(), Fail> {
    let (img, trees) = open(&c.image)?;
    let files = image::inspect(&img, &trees).map_err(|e| img_fail(&c.image, e))?;
    if let Some(dir) = &c.dump_extents {
        fs::create_dir_all(dir).map_err(|e| io_fail("cannot create", dir, e))?;
        for entry in img.walk_files().map_err(|e| img_fail(&c.image, e))? {
            if entry.kind != btrfs_image::FileKind::Regular {
                continue;
            }
            let tree = trees.get(entry.tree).map_err(|e| img_fail(&c.image, e))?;
            for e in img.file_extents(tree, entry.ino).map_err(|e| img_fail(&c.image, e))? {
                let Some(alg) = btrfs_compress::CompressType::from_code(e.compression)
                    .filter(|&a| a != btrfs_compress::CompressType::None)
                else {
                    continue;
                };
                let raw = match &e.kind {
                    btrfs_image::ExtentKind::Inline { data } => data.clone(),
                    _ => img
                        .read_logical(e.disk_bytenr, e.disk_num_bytes as usize)
                        .map_err(|err| img_fail(&c.image, err))?,
                };
                let name = format!("{}@{}.{}", entry.path.replace('/', "_"), e.file_offset, alg.name());
                fs::write(dir.join(&name), raw).map_err(|err| io_fail("cannot write", &dir.join(&name), err))?;
            }
        }
    }
    let mut out = io::stdout().lock();
    let w = |e: io::Error| Fail { code: 1, msg: format!("cannot write output: {e}") };
    if c.json {
        serde_json::to_writer_pretty(&mut out, &files).map_err(|e| Fail { code: 1, msg: e.to_string() })?;
        writeln!(out).map_err(w)?;
        return Ok(());
    }
    writeln!(
        out,
        "label {:?}, {} B sectors, {} B nodes, csum {}, {} chunks",
        img.sb.label,
        img.sb.sectorsize,
        img.sb.nodesize,
        img.sb.csum_type.name(),
        img.chunks.len()
    )
    .map_err(w)?;
    for f in &files {
        writeln!(out, "{} {} size {} (tree {} inode {})", f.kind, f.path, f.size, f.tree, f.ino).map_err(w)?;
        for e in &f.extents {
            writeln!(
                out,
                "    @{:<8} {:<8} {:<4} disk {:#x}+{} ram {} offset {} num {}",
                e.file_offset,
                e.kind,
                e.compression,
                e.disk_bytenr,
                e.disk_num_bytes,
                e.ram_bytes,
                e.offset,
                e.num_bytes
            )
            .map_err(w)?;
        }
    }
    Ok(())
}

fn wanted(path: &str, filters: &[String]) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            let f = f.trim_matches('/');
            path == f || path.starts_with(&format!("{f}/"))
        })
}

fn extract(c: ExtractCmd) -> Result<(), Fail> {
    use rayon::prelude::*;
    let (img, trees) = open(&c.image)?;
    let entries = img.walk_files().map_err(|e| img_fail(&c.image, e))?;
    let entries: Vec<_> = entries.into_iter().filter(|e| wanted(&e.path, &c.paths)).collect();
    if entries.is_empty() && !c.paths.is_empty() {
        return Err(Fail { code: 1, msg: format!("no such path in {}: {}", c.image.display(), c.paths.join(", ")) });
    }
    fs::create_dir_all(&c.dest).map_err(|e| io_fail("cannot create", &c.dest, e))?;
    for e in
        entries.iter().filter(|e| matches!(e.kind, btrfs_image::FileKind::Directory | btrfs_image::FileKind::Subvolume))
    {
        let d = c.dest.join(&e.path);
        fs::create_dir_all(&d).map_err(|err| io_fail("cannot create", &d, err))?;
    }
    let files: Vec<_> = entries.iter().filter(|e| e.kind == btrfs_image::FileKind::Regular).collect();
    let opts = image::read_options();
    // Plan every file and create its temporary file at full size, then write the extents in
    // pieces of at most 8 (about 1 MiB) in parallel, so one large file does not hold a thread
    // while the others idle. A file is renamed to its final name when its last piece is done.
    struct Job {
        plan: image::FilePlan,
        target: PathBuf,
        tmp: PathBuf,
        left: std::sync::atomic::AtomicUsize,
        error: std::sync::Mutex<Option<String>>,
    }
    let mut errors: Vec<String> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    for e in &files {
        let target = c.dest.join(&e.path);
        if !c.force && fs::symlink_metadata(&target).is_ok() {
            errors.push(format!("{} exists (use --force to replace it)", target.display()));
            continue;
        }
        let plan = match trees
            .get(e.tree)
            .map_err(|err| err.to_string())
            .and_then(|t| image::plan_file(&img, t, e).map_err(|err| err.to_string()))
        {
            Ok(p) => p,
            Err(err) => {
                errors.push(err);
                continue;
            }
        };
        if let Some(parent) = target.parent() {
            if let Err(err) = fs::create_dir_all(parent) {
                errors.push(format!("{}: {err}", parent.display()));
                continue;
            }
        }
        let tmp = target.with_file_name(format!(
            ".{}.tmp-{}",
            target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            std::process::id()
        ));
        let created = fs::OpenOptions::new().write(true).create_new(true).open(&tmp).and_then(|f| f.set_len(plan.size));
        if let Err(err) = created {
            let _ = fs::remove_file(&tmp);
            errors.push(format!("{}: {err}", tmp.display()));
            continue;
        }
        let pieces = plan.extents.len().div_ceil(8).max(1);
        jobs.push(Job {
            plan,
            target,
            tmp,
            left: std::sync::atomic::AtomicUsize::new(pieces),
            error: std::sync::Mutex::new(None),
        });
    }
    let tasks: Vec<(usize, std::ops::Range<usize>)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(i, j)| {
            let n = j.plan.extents.len();
            (0..n.div_ceil(8).max(1)).map(move |k| (i, k * 8..((k + 1) * 8).min(n)))
        })
        .collect();
    let bar = indicatif::ProgressBar::new(tasks.len() as u64);
    tasks.par_iter().for_each(|(i, range)| {
        let j = &jobs[*i];
        let failed = j.error.lock().map(|g| g.is_some()).unwrap_or(true);
        if !failed {
            let r = fs::OpenOptions::new()
                .write(true)
                .open(&j.tmp)
                .map_err(|err| format!("{}: {err}", j.tmp.display()))
                .and_then(|f| {
                    image::write_extents(&img, &j.plan, range.clone(), &f, &opts).map_err(|err| err.to_string())
                });
            if let Err(err) = r {
                if let Ok(mut g) = j.error.lock() {
                    g.get_or_insert(err);
                }
            }
        }
        if j.left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            // Last piece of this file: publish it, or drop the temporary file.
            let failed = j.error.lock().map(|g| g.is_some()).unwrap_or(true);
            if failed {
                let _ = fs::remove_file(&j.tmp);
            } else if let Err(err) = fs::rename(&j.tmp, &j.target) {
                let _ = fs::remove_file(&j.tmp);
                if let Ok(mut g) = j.error.lock() {
                    g.get_or_insert(format!("{}: {err}", j.target.display()));
                }
            }
        }
        bar.inc(1);
    });
    for j in &jobs {
        if let Ok(Some(e)) = j.error.lock().map(|g| g.clone()) {
            errors.push(e);
        }
    }
    bar.finish_and_clear();
    let n = files.len() - errors.len();
    eprintln!("extracted {n} files to {}", c.dest.display());
    if let Some(first) = errors.first() {
        for e in &errors {
            eprintln!("btrfs-compress: {e}");
        }
        return Err(Fail { code: 1, msg: format!("{} files not extracted (first: {first})", errors.len()) });
    }
    Ok(())
}

fn verify(c: VerifyCmd) -> Result<(), Fail> {
    let (img, trees) = open(&c.image)?;
    let r = image::verify(&img, &trees, &image::read_options()).map_err(|e| img_fail(&c.image, e))?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&r).map_err(|e| Fail { code: 1, msg: e.to_string() })?);
    } else {
        println!("{} data extents, {} sectors with matching checksums", r.extents, r.csum_sectors);
        for (alg, n) in &r.decoded {
            println!("{alg}: {n} extents decoded");
        }
        for f in &r.failures {
            println!("FAILED {f}");
        }
    }
    if r.failures.is_empty() {
        Ok(())
    } else {
        Err(Fail { code: 1, msg: format!("{} extents failed verification", r.failures.len()) })
    }
}

/// The filesystem type of the mount holding `p` (from /proc/self/mountinfo).
fn fs_type(p: &Path) -> Option<String> {
    let p = fs::canonicalize(p).ok()?;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let mnt = f.get(4)?.replace("\\040", " ");
        let dash = f.iter().position(|x| *x == "-")?;
        let ty = f.get(dash + 1)?.to_string();
        if p.starts_with(&mnt) && best.as_ref().is_none_or(|(l, _)| mnt.len() >= *l) {
            best = Some((mnt.len(), ty));
        }
    }
    best.map(|b| b.1)
}

fn run_tool(cmd: &mut std::process::Command, input: Option<&[u8]>) -> Result<(), Fail> {
    use std::process::Stdio;
    let name = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Fail { code: 1, msg: format!("cannot run {name}: {e}") })?;
    let write_err = match (input, child.stdin.take()) {
        (Some(data), Some(mut stdin)) => stdin.write_all(data).err(),
        _ => None,
    };
    let out = child.wait_with_output().map_err(|e| Fail { code: 1, msg: format!("{name}: {e}") })?;
    if let (Some(e), true) = (write_err, out.status.success()) {
        return Err(Fail { code: 1, msg: format!("{name}: {e}") });
    }
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Fail { code: 1, msg: format!("{name} failed: {}", err.trim()) });
    }
    Ok(())
}

fn encoded_write(c: EncodedWriteCmd) -> Result<(), Fail> {
    let spec = parse_compress_option(&c.alg)?;
    let dir = c.file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let name = c
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Fail { code: 1, msg: format!("{} is not a file name", c.file.display()) })?;
    if let Some(out) = &c.send_stream {
        let data = read_bounded(&c.input, 4 << 30)?;
        let sub = format!("btrfs-compress-{}", std::process::id());
        let (stream, plan) = btrfs_compress::encoded_write_stream(
            &bytes::Bytes::from(data),
            spec,
            &c.map.options(),
            &sub,
            &name,
            [7; 16],
        )?;
        write_atomic(out, stream.bytes(), c.force, &c.input)?;
        let enc = plan.iter().filter(|p| matches!(p, btrfs_compress::Planned::Encoded { .. })).count();
        eprintln!("{}: send stream for {sub}/{name}: {enc} encoded extents, {} plain", out.display(), plan.len() - enc);
        return Ok(());
    }
    match fs_type(&dir) {
        Some(t) if t == "btrfs" => {}
        Some(t) => return Err(Fail { code: 1, msg: format!("{} is on {t}, not btrfs", dir.display()) }),
        None => return Err(Fail { code: 1, msg: format!("cannot find the filesystem of {}", dir.display()) }),
    }
    if !c.force && fs::symlink_metadata(&c.file).is_ok() {
        return Err(Fail { code: 1, msg: format!("{} exists (use --force to replace it)", c.file.display()) });
    }
    let data = read_bounded(&c.input, 4 << 30)?;
    let opts = c.map.options();
    let sub = format!(".btrfs-compress-recv-{}", std::process::id());
    let subdir = dir.join(&sub);
    if fs::symlink_metadata(&subdir).is_ok() {
        return Err(Fail { code: 1, msg: format!("{} exists", subdir.display()) });
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&(t as u64).to_le_bytes());
    uuid[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    let (stream, plan) =
        btrfs_compress::encoded_write_stream(&bytes::Bytes::from(data), spec, &opts, &sub, &name, uuid)?;
    if let Some(p) = std::env::var_os("BTRFS_COMPRESS_SAVE_STREAM") {
        // For debugging: keep the send stream (`btrfs receive --dump -f FILE` shows it).
        fs::write(&p, stream.bytes()).map_err(|e| io_fail("cannot write", Path::new(&p), e))?;
    }
    // `btrfs receive` stores each ENCODED_WRITE with BTRFS_IOC_ENCODED_WRITE; the file is then
    // reflinked into place (the extents are shared, not rewritten) and the subvolume removed.
    let result = (|| {
        run_tool(std::process::Command::new("btrfs").args(["receive", "-e"]).arg(&dir), Some(stream.bytes()))?;
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let r =
            run_tool(std::process::Command::new("cp").arg("--reflink=always").arg(subdir.join(&name)).arg(&tmp), None)
                .and_then(|()| {
                    if let Ok(m) = fs::metadata(&c.input) {
                        let _ = fs::set_permissions(&tmp, m.permissions());
                    }
                    fs::rename(&tmp, &c.file).map_err(|e| io_fail("cannot write", &c.file, e))
                });
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    })();
    if fs::symlink_metadata(&subdir).is_ok() {
        let _ = run_tool(
            std::process::Command::new("btrfs").args(["property", "set", "-ts"]).arg(&subdir).args(["ro", "false"]),
            None,
        );
        let _ = run_tool(std::process::Command::new("btrfs").args(["subvolume", "delete"]).arg(&subdir), None);
    }
    result?;
    let enc = plan.iter().filter(|p| matches!(p, btrfs_compress::Planned::Encoded { .. })).count();
    eprintln!("{}: {} extents written encoded ({spec}), {} plain", c.file.display(), enc, plan.len() - enc);
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(64),
            };
        }
    };
    let r = match cli.cmd {
        Cmd::Compress(c) => compress(c),
        Cmd::Decompress(d) => decompress(d),
        Cmd::Bench(b) => lab::run(b).map_err(|(code, msg)| Fail { code, msg }),
        Cmd::Inspect(c) => inspect(c),
        Cmd::Extract(c) => extract(c),
        Cmd::Verify(c) => verify(c),
        Cmd::EncodedWrite(c) => encoded_write(c),
        Cmd::Corpus(c) => corpus_cmd(c),
        Cmd::Estimate(e) => btrfs_compress::estimate::run(e).map_err(|(code, msg)| Fail { code, msg }),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("btrfs-compress: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
