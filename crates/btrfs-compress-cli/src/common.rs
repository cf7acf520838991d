//! What the subcommands share: the failure type with its exit status, bounded reads, atomic
//! writes, and the page-mapping options of `compress` and `decompress`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use btrfs_compress::{
    parse_compress_option, Backend, CompressSpec, CompressType, Error, LzoBackend, Options, Strategy, ZlibBackend,
};
use clap::Args;

#[derive(Args, Clone)]
pub struct MapOpts {
    /// Mapping strategy: direct, kmap-local, range-split (or range), range-fallback, vm-map-ram,
    /// vmap-folio, folio-map-local, kmap-pool, bounce, vm-map-ram-large.
    #[arg(long, default_value = "direct", value_parser = parse_strategy)]
    pub strategy: Strategy,
    /// Memory backend: heap or highmem (emulated, real mmap per mapping).
    #[arg(long, default_value = "heap", value_parser = parse_backend)]
    pub backend: Backend,
    /// Page size: 4096, 16384 or 65536 (the kernel's page; the sector is --sectorsize).
    #[arg(long, default_value_t = 4096, value_parser = parse_page_size)]
    pub page_size: usize,
    /// Sector size of the filesystem: 4096 to 65536, a power of two (lzo's segments, how much
    /// an inline extent holds, the sector padding; `inspect` prints the image's).
    #[arg(long, default_value_t = 4096, value_parser = parse_sectorsize)]
    pub sectorsize: usize,
    /// Page-cache folio order, 0 (single pages) to 9 (2 MiB folios, MAX_PAGECACHE_ORDER on
    /// x86-64).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub folio_order: u32,
}

impl MapOpts {
    pub fn options(&self) -> Options {
        Options {
            strategy: self.strategy,
            backend: self.backend,
            page_size: self.page_size,
            sectorsize: self.sectorsize,
            folio_order: self.folio_order,
            out_order: self.folio_order,
            ..Options::default()
        }
    }
}

/// `-a ALG[:LEVEL]` as the kernel parses the mount option (bad ones are a bad command line).
pub fn parse_spec(s: &str) -> Result<CompressSpec, String> {
    match parse_compress_option(s) {
        Ok(spec) if spec.alg == CompressType::None => Err(format!("{s:?} is not a compression algorithm")),
        Ok(spec) => Ok(spec),
        Err(e) => Err(e.to_string()),
    }
}

/// `-a ALG` where a level does not matter (decompression): a level is accepted and ignored.
pub fn parse_alg(s: &str) -> Result<CompressType, String> {
    parse_spec(s).or_else(|_| parse_spec(s.split(':').next().unwrap_or_default())).map(|spec| spec.alg)
}

/// Say once on standard error that a level was clamped, as the kernel clamps it.
pub fn note_clamp(spec: &CompressSpec) {
    match spec.clamped_from {
        Some(w) if spec.alg == CompressType::Lzo => {
            eprintln!("btrfs-compress: note: lzo has no levels: level {w} ignored, as the kernel ignores it")
        }
        Some(w) => {
            eprintln!(
                "btrfs-compress: note: {} level {w} clamped to {} as the kernel does",
                spec.alg.name(),
                spec.level
            )
        }
        None => {}
    }
}

pub fn parse_strategy(s: &str) -> Result<Strategy, String> {
    Strategy::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Strategy::ALL.iter().map(|s| s.name()).collect();
        format!("unknown strategy '{s}' (one of {})", names.join(", "))
    })
}

pub fn parse_backend(s: &str) -> Result<Backend, String> {
    Backend::from_name(s).ok_or_else(|| format!("unknown backend '{s}' (heap or highmem)"))
}

pub fn parse_sectorsize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n.is_power_of_two() && (4096..=65536).contains(&n) => Ok(n),
        _ => Err(format!("sector size '{s}' (4096 to 65536, a power of two)")),
    }
}

pub fn parse_page_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (4096 | 16384 | 65536)) => Ok(n),
        _ => Err(format!("page size '{s}' (one of 4096, 16384, 65536)")),
    }
}

pub fn parse_zlib(s: &str) -> Result<ZlibBackend, String> {
    ZlibBackend::from_name(s).ok_or_else(|| format!("unknown zlib backend '{s}' (kernel, kernel-pre-6.3 or zlib-rs)"))
}

pub fn parse_lzo(s: &str) -> Result<LzoBackend, String> {
    LzoBackend::from_name(s).ok_or_else(|| format!("unknown lzo backend '{s}' (lzo1x-1 or lzokay)"))
}

/// A failure with its exit status.
pub struct Fail {
    pub code: u8,
    pub msg: String,
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        let code = if matches!(e, Error::Incompressible(_)) { 2 } else { 1 };
        Fail { code, msg: e.to_string() }
    }
}

pub fn io_fail(what: &str, p: &Path, e: io::Error) -> Fail {
    Fail { code: 1, msg: format!("{what} {}: {e}", p.display()) }
}

/// Read at most `limit` bytes; a longer input is an error (never an unbounded allocation).
/// `-` is standard input.
pub fn read_bounded(p: &Path, limit: usize) -> Result<Vec<u8>, Fail> {
    if p.as_os_str() == "-" {
        let mut v = Vec::new();
        io::stdin().lock().take(limit as u64 + 1).read_to_end(&mut v).map_err(|e| io_fail("cannot read", p, e))?;
        if v.len() > limit {
            return Err(Fail { code: 1, msg: format!("standard input is more than {limit} bytes") });
        }
        return Ok(v);
    }
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
/// is never left half written; refuse to replace an existing OUT without `force`. As a Unix tool
/// does: `-` is standard output; an OUT that is (or links to) a device, fifo or socket is written
/// to, not replaced (`/dev/stdout`, `/dev/null`); a symlink to a regular file keeps pointing at
/// the file, which `force` replaces.
pub fn write_atomic(out: &Path, data: &[u8], force: bool, input: &Path) -> Result<(), Fail> {
    if out.as_os_str() == "-" {
        let mut o = io::stdout().lock();
        return o.write_all(data).and_then(|()| o.flush()).map_err(|e| io_fail("cannot write", out, e));
    }
    if let Ok(m) = fs::metadata(out) {
        if !m.is_file() && !m.is_dir() {
            let mut f = fs::OpenOptions::new().write(true).open(out).map_err(|e| io_fail("cannot open", out, e))?;
            return f.write_all(data).map_err(|e| io_fail("cannot write", out, e));
        }
    }
    if !force && fs::symlink_metadata(out).is_ok() {
        return Err(Fail { code: 1, msg: format!("{} exists (use --force to replace it)", out.display()) });
    }
    if let (Ok(a), Ok(b)) = (fs::canonicalize(out), fs::canonicalize(input)) {
        if a == b {
            return Err(Fail { code: 1, msg: "input and output are the same file".into() });
        }
    }
    // A symlink to a regular file: the file is what is replaced.
    let resolved = match fs::symlink_metadata(out) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(out).map_err(|e| io_fail("cannot resolve", out, e))?,
        _ => out.to_path_buf(),
    };
    let out = resolved.as_path();
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

pub fn img_fail(p: &Path, e: impl std::fmt::Display) -> Fail {
    Fail { code: 1, msg: format!("{}: {e}", p.display()) }
}

/// An opened image that, when the command is done with it, says on standard error what was read
/// from a second copy because the first failed its checks.
pub struct OpenImage {
    img: btrfs_image::Image,
    path: std::path::PathBuf,
}

impl std::ops::Deref for OpenImage {
    type Target = btrfs_image::Image;
    fn deref(&self) -> &btrfs_image::Image {
        &self.img
    }
}

impl Drop for OpenImage {
    fn drop(&mut self) {
        for r in self.img.repairs() {
            eprintln!("btrfs-compress: warning: {}: {r}", self.path.display());
        }
        let skipped = self.img.skipped();
        for s in &skipped {
            eprintln!("btrfs-compress: {}: skipped (damaged metadata): {s}", self.path.display());
        }
        if !skipped.is_empty() {
            SKIPPED.fetch_add(skipped.len(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Entries the walk skipped (damaged metadata) in this run: the command reported the rest, and
/// exits 1 (`main`).
pub static SKIPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How the image commands open a filesystem: its other devices, and the log tree.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ImageOpts {
    /// Another device of a multi-device filesystem (an image, `.zst` image or block device;
    /// repeat for each; IMAGE is one of them). Devices are matched by fsid and devid; those not
    /// given are named, and their data read from other copies or parity where the profile allows.
    #[arg(long = "device", value_name = "DEV")]
    pub devices: Vec<std::path::PathBuf>,
    /// Read the last commit: do not replay the log tree (what fsync wrote after that commit;
    /// by default it is replayed as the kernel does at mount).
    #[arg(long)]
    pub no_log: bool,
}

/// Open an image (its trees are read when first needed), saying on standard error what the
/// reader must know of it (a log tree replayed or not, a truncated file).
pub fn open(p: &Path, o: &ImageOpts) -> Result<OpenImage, Fail> {
    let opts = btrfs_image::OpenOptions { replay_log: !o.no_log };
    let paths: Vec<&Path> = std::iter::once(p).chain(o.devices.iter().map(|d| d.as_path())).collect();
    let img = btrfs_image::open_devices(&paths, opts).map_err(|e| {
        // The same image opens without its log: the log is what failed.
        let without = btrfs_image::OpenOptions { replay_log: false };
        if !o.no_log && btrfs_image::open_devices(&paths, without).is_ok() {
            img_fail(p, format!("the log tree cannot be read: {e} (--no-log reads the last commit)"))
        } else {
            img_fail(p, e)
        }
    })?;
    for w in img.warnings() {
        eprintln!("btrfs-compress: warning: {}: {w}", p.display());
    }
    Ok(OpenImage { img, path: p.to_path_buf() })
}

/// A truncated image whose files have extents past its end: the report above it is incomplete,
/// so the command fails (exit 1) after printing it.
pub fn fail_if_extents_missing(img: &btrfs_image::Image, p: &Path) -> Result<(), Fail> {
    if !img.truncated() {
        return Ok(());
    }
    match btrfs_restore::extents_past_end(img).map_err(|e| img_fail(p, e))? {
        0 => Ok(()),
        n => {
            Err(Fail { code: 1, msg: format!("{}: {n} extents lie past the end of the truncated image", p.display()) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strategy_help_names_every_strategy() {
        let cmd = MapOpts::augment_args(clap::Command::new("t"));
        let arg = cmd.get_arguments().find(|a| a.get_id() == "strategy").expect("--strategy");
        let help = arg.get_help().expect("help").to_string();
        for s in Strategy::ALL {
            assert!(help.contains(s.name()), "--strategy help lacks {}: {help}", s.name());
            assert!(parse_strategy(s.name()).is_ok());
        }
    }
}
