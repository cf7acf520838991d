//! `btrfs-compress compress`: one file of at most 128 KiB as one btrfs extent.

use std::path::PathBuf;

use btrfs_compress::{compress_extent, compress_inline, CompressSpec, LzoBackend, ZlibBackend, BTRFS_MAX_UNCOMPRESSED};
use clap::Args;

use crate::common::{note_clamp, parse_lzo, parse_spec, parse_zlib, read_bounded, write_atomic, Fail, MapOpts};

#[derive(Args)]
pub struct CompressCmd {
    /// Algorithm and level: zlib[:1..9], lzo, zstd[:-15..15].
    #[arg(short = 'a', long = "alg", value_parser = parse_spec)]
    pub alg: CompressSpec,
    #[command(flatten)]
    pub map: MapOpts,
    /// zstd: use the 2022 v1-v4 loop that kmaps the output page too.
    #[arg(long)]
    pub zstd_lifo_remap: bool,
    /// lzo encoder: lzo1x-1 (kernel-exact) or lzokay.
    #[arg(long, default_value = "lzo1x-1", value_parser = parse_lzo)]
    pub lzo_backend: LzoBackend,
    /// zlib deflate: kernel (lib/zlib_deflate, Linux 6.3 and later), kernel-pre-6.3, or zlib-rs
    /// (faster, valid zlib, not the kernel's bytes).
    #[arg(long, default_value = "kernel", value_parser = parse_zlib)]
    pub zlib_backend: ZlibBackend,
    /// Apply the inline-extent rules (whole file of at most one sector, at most --max-inline
    /// compressed bytes) instead of the regular "save a sector" rule.
    #[arg(long)]
    pub inline: bool,
    /// The max_inline mount option, for --inline.
    #[arg(long, default_value_t = 2048)]
    pub max_inline: usize,
    /// Replace OUT if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Input file (at most 128 KiB).
    pub input: PathBuf,
    /// Output file.
    pub output: PathBuf,
}

/// Run `compress`.
pub fn run(c: CompressCmd) -> Result<(), Fail> {
    let spec = c.alg;
    note_clamp(&spec);
    let data = read_bounded(&c.input, BTRFS_MAX_UNCOMPRESSED)?;
    if data.is_empty() {
        return Err(Fail { code: 1, msg: format!("{} is empty", c.input.display()) });
    }
    let mut o = c.map.options();
    o.compress_loop = btrfs_compress::LoopVariant::lifo_remap(c.zstd_lifo_remap);
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
        if c.inline { ext.data.len() } else { ext.data.len().next_multiple_of(o.sectorsize) }
    );
    Ok(())
}
