//! `btrfs-compress corpus`: the files of the kernel kmap trace (tools/qemu-kmap-trace.py), or
//! with `--estimate-tree` the tree of the estimate oracles (tools/qemu-estimate.py).

use std::fs;
use std::path::PathBuf;

use clap::Args;

use crate::common::Fail;

#[derive(Args)]
pub struct CorpusCmd {
    /// Write the estimate oracles' tree instead of the kmap trace's files.
    #[arg(long)]
    pub estimate_tree: bool,
    /// Directory to write into (created if missing; existing files are replaced).
    pub dir: PathBuf,
}

/// Run `corpus`.
pub fn run(c: CorpusCmd) -> Result<(), Fail> {
    fs::create_dir_all(&c.dir).map_err(|e| Fail { code: 1, msg: format!("{}: {e}", c.dir.display()) })?;
    if c.estimate_tree {
        return btrfs_lab::corpus::estimate_tree(&c.dir)
            .map_err(|e| Fail { code: 1, msg: format!("{}: {e}", c.dir.display()) });
    }
    for (name, data) in btrfs_lab::corpus::trace_files() {
        let p = c.dir.join(&name);
        fs::write(&p, &data).map_err(|e| Fail { code: 1, msg: format!("{}: {e}", p.display()) })?;
        println!("{name} {}", data.len());
    }
    Ok(())
}
