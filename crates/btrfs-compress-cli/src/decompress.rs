//! `btrfs-compress decompress`: one extent's bytes back to the file range it covers.

use std::path::PathBuf;

use btrfs_compress::{decompress_extent_full, decompress_inline, parse_compress_option, BTRFS_MAX_COMPRESSED};
use clap::Args;

use crate::common::{read_bounded, write_atomic, Fail, MapOpts};

#[derive(Args)]
pub struct DecompressCmd {
    /// Algorithm: zlib, lzo or zstd (a level is accepted and ignored).
    #[arg(short = 'a', long = "alg")]
    pub alg: String,
    /// Decompressed size of the extent (ram_bytes).
    #[arg(long)]
    pub ram_bytes: usize,
    /// First decompressed byte wanted (the file extent item's offset).
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Bytes wanted (num_bytes); default ram_bytes - offset.
    #[arg(long)]
    pub num_bytes: Option<usize>,
    /// Decode as an inline extent (stricter framing rules, at most one sector).
    #[arg(long)]
    pub inline: bool,
    #[command(flatten)]
    pub map: MapOpts,
    /// Replace OUT if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Input file (the extent's on-disk bytes, at most 128 KiB).
    pub input: PathBuf,
    /// Output file.
    pub output: PathBuf,
}

/// Run `decompress`.
pub fn run(d: DecompressCmd) -> Result<(), Fail> {
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
