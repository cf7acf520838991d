//! `btrfs-compress usage`: compsize's report from an image alone (no mount, no root).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use crate::common::{fail_if_extents_missing, img_fail, open, Fail, ImageOpts};

#[derive(Args)]
pub struct UsageCmd {
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Bytes, not human units (compsize's -b).
    #[arg(short = 'b', long)]
    pub bytes: bool,
    #[command(flatten)]
    pub image_opts: ImageOpts,
    /// The image (raw or zstd-compressed).
    pub image: PathBuf,
    /// Only the regular files at or under these paths in the image [default: all].
    pub paths: Vec<OsString>,
}

/// The JSON document (its keys are part of the interface).
#[derive(Serialize)]
struct Json {
    files: u64,
    regular_extents: u64,
    refs: u64,
    inline: u64,
    types: Vec<btrfs_compress::usage::TypeUsage>,
}

/// Run `usage`.
pub fn run(c: UsageCmd) -> Result<(), Fail> {
    let img = open(&c.image, &c.image_opts)?;
    let u = btrfs_restore::usage(&img, &c.paths).map_err(|e| img_fail(&c.image, e))?;
    if c.json {
        let j = Json {
            files: u.files,
            regular_extents: u.regular_extents,
            refs: u.refs,
            inline: u.inline,
            types: u.types(),
        };
        println!("{}", serde_json::to_string_pretty(&j).map_err(|e| Fail { code: 1, msg: e.to_string() })?);
        return fail_if_extents_missing(&img, &c.image);
    }
    if let Some(m) = u.empty_message() {
        return Err(Fail { code: 1, msg: m.into() });
    }
    print!("{}", u.compsize_report(c.bytes));
    fail_if_extents_missing(&img, &c.image)
}
