//! `btrfs-compress extract`: copy files out of an image, like `btrfs restore`.

use std::path::PathBuf;

use btrfs_restore::ExtractOptions;
use clap::Args;

use crate::common::{img_fail, open, Fail};

#[derive(Args)]
pub struct ExtractCmd {
    /// Replace files that exist under DEST.
    #[arg(short, long)]
    pub force: bool,
    /// The image (raw or zstd-compressed).
    pub image: PathBuf,
    /// Directory to write into (created if missing).
    pub dest: PathBuf,
    /// Only these paths (files, or directories and what is under them).
    pub paths: Vec<std::ffi::OsString>,
}

/// Run `extract`.
pub fn run(c: ExtractCmd) -> Result<(), Fail> {
    let img = open(&c.image)?;
    let bar = indicatif::ProgressBar::new(0);
    let opts = ExtractOptions { force: c.force, paths: c.paths.clone() };
    let report = btrfs_restore::extract(&img, &c.dest, &opts, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .map_err(|e| match e {
        btrfs_restore::ImageError::Create { .. } => Fail { code: 1, msg: e.to_string() },
        e => img_fail(&c.image, e),
    })?;
    bar.finish_and_clear();
    eprintln!("extracted {} files to {}", report.files, c.dest.display());
    if let Some(first) = report.errors.first() {
        for e in &report.errors {
            eprintln!("btrfs-compress: {e}");
        }
        return Err(Fail { code: 1, msg: format!("{} files not extracted (first: {first})", report.errors.len()) });
    }
    Ok(())
}
