//! `btrfs-compress verify`: decode every compressed extent and check every data checksum, and
//! (as scrub does) every other copy of the data and the parity of RAID5/6 rows: damaged copies
//! that another copy makes good are listed as REPAIRABLE (exit 0, as scrub's corrected errors).

use std::path::PathBuf;

use clap::Args;

use crate::common::{img_fail, open, Fail, ImageOpts};

#[derive(Args)]
pub struct VerifyCmd {
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub image_opts: ImageOpts,
    /// The image (raw or zstd-compressed).
    pub image: PathBuf,
}

/// Run `verify`.
pub fn run(c: VerifyCmd) -> Result<(), Fail> {
    let img = open(&c.image, &c.image_opts)?;
    let r = btrfs_restore::verify(&img, &btrfs_restore::read_options()).map_err(|e| img_fail(&c.image, e))?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&r).map_err(|e| Fail { code: 1, msg: e.to_string() })?);
    } else {
        println!("{} data extents, {} sectors with matching checksums", r.extents, r.csum_sectors);
        for (alg, n) in &r.decoded {
            println!("{alg}: {n} extents decoded");
        }
        for f in &r.repairable {
            println!("REPAIRABLE {f}");
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
