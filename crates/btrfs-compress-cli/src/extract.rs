//! `btrfs-compress extract`: restore an image's tree under DEST, like `btrfs restore -S -m -x`
//! (and more: hard links, special files, checksums). SIGINT and SIGTERM stop it cleanly: the
//! temporary files are removed before it exits (130 or 143).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use btrfs_restore::{ExtractOptions, ImageError};
use clap::Args;

use crate::common::{img_fail, open, Fail, ImageOpts};

#[derive(Args)]
pub struct ExtractCmd {
    /// Replace what exists under DEST (atomically).
    #[arg(short, long, conflicts_with = "skip_existing")]
    pub force: bool,
    /// Safe mode for an untrusted image: no device nodes, no setuid or setgid bits, only user.*
    /// and POSIX ACL xattrs (no file capabilities, security or trusted labels); what is dropped
    /// is said in one summary. Nothing is ever written outside DEST, with or without it.
    #[arg(long)]
    pub safe: bool,
    /// Keep what exists under DEST where it is what extract writes there (a regular file of the
    /// image's size and mtime, a symlink to its target, a hard link to the same file, the same
    /// kind of special file) and extract the rest: a rerun after an interrupted extract, whose
    /// files were all renamed into place whole. Anything else there is an error, left as it is.
    #[arg(long)]
    pub skip_existing: bool,
    /// Data only: no owners, modes or times (modes from the umask).
    #[arg(long)]
    pub no_metadata: bool,
    /// No extended attributes.
    #[arg(long)]
    pub no_xattrs: bool,
    /// Write extents whose data checksums do not match, with a warning each (default: such
    /// a file is not written, and extract exits 1).
    #[arg(long)]
    pub ignore_csum: bool,
    /// Also restore snapshots (default: skipped, as `btrfs restore` without -s).
    #[arg(short = 's', long)]
    pub snapshots: bool,
    /// Only this subvolume (its path in the image, or its id), its contents at DEST's top.
    #[arg(long, value_name = "PATH|ID")]
    pub subvol: Option<String>,
    #[command(flatten)]
    pub image_opts: ImageOpts,
    /// The image (raw or zstd-compressed).
    pub image: PathBuf,
    /// Directory to write into (created if missing).
    pub dest: PathBuf,
    /// Only these paths (files, or directories and what is under them).
    pub paths: Vec<OsString>,
}

/// Run `extract`.
pub fn run(c: ExtractCmd) -> Result<(), Fail> {
    let img = open(&c.image, &c.image_opts)?;
    // The handlers only set flags: the work sees them, stops and removes its temporaries.
    let cancel = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    let sigerr = |e: std::io::Error| Fail { code: 1, msg: format!("cannot handle signals: {e}") };
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&cancel)).map_err(sigerr)?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&term)).map_err(sigerr)?;
    let bar = indicatif::ProgressBar::new(0);
    let opts = ExtractOptions {
        force: c.force,
        paths: c.paths.clone(),
        metadata: !c.no_metadata,
        xattrs: !c.no_xattrs,
        ignore_csum: c.ignore_csum,
        snapshots: c.snapshots,
        subvol: c.subvol.clone(),
        skip_existing: c.skip_existing,
        safe: c.safe,
    };
    let r = btrfs_restore::extract(&img, &c.dest, &opts, &cancel, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let report = match r {
        Ok(r) => r,
        Err(ImageError::Interrupted) => {
            let code = if term.load(Ordering::SeqCst) { 143 } else { 130 };
            return Err(Fail { code, msg: "interrupted; temporary files removed".into() });
        }
        Err(e @ ImageError::Create { .. }) => return Err(Fail { code: 1, msg: e.to_string() }),
        Err(e) => return Err(img_fail(&c.image, e)),
    };
    eprintln!(
        "extracted {} files, {} directories, {} symlinks, {} hard links, {} special files to {}",
        report.files,
        report.dirs,
        report.symlinks,
        report.hardlinks,
        report.special,
        c.dest.display()
    );
    if !report.safe_dropped.is_empty() {
        eprintln!("btrfs-compress: note: safe mode: {}", report.safe_dropped.join(", "));
    }
    if report.existing_kept > 0 {
        eprintln!(
            "btrfs-compress: note: {} entries kept as they were under {}",
            report.existing_kept,
            c.dest.display()
        );
    }
    if report.owners_skipped {
        eprintln!("btrfs-compress: note: not root: owners not restored (files are yours)");
    }
    if report.devices_skipped > 0 {
        eprintln!("btrfs-compress: note: not root: {} device nodes skipped", report.devices_skipped);
    }
    if report.snapshots_skipped > 0 {
        eprintln!("btrfs-compress: note: {} snapshots skipped (use -s to restore them)", report.snapshots_skipped);
    }
    if report.stale_removed > 0 {
        eprintln!("btrfs-compress: note: removed {} temporary files of an unfinished extract", report.stale_removed);
    }
    for w in &report.warnings {
        eprintln!("btrfs-compress: warning: {w}");
    }
    if let Some(first) = report.errors.first() {
        for e in &report.errors {
            eprintln!("btrfs-compress: {e}");
        }
        return Err(Fail { code: 1, msg: format!("{} entries not extracted (first: {first})", report.errors.len()) });
    }
    Ok(())
}
