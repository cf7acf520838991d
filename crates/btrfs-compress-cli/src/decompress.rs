//! `btrfs-compress decompress`: one extent's bytes back to the file range it covers.

use std::path::PathBuf;

use btrfs_compress::{decompress_extent_full, decompress_inline, CompressType, BTRFS_MAX_COMPRESSED};
use clap::Args;

use crate::common::{parse_alg, read_bounded, write_atomic, Fail, MapOpts};

#[derive(Args)]
pub struct DecompressCmd {
    /// Algorithm: zlib, lzo or zstd (a level is accepted and ignored).
    #[arg(short = 'a', long = "alg", value_parser = parse_alg)]
    pub alg: CompressType,
    /// Decompressed size of the extent (ram_bytes).
    #[arg(long)]
    pub ram_bytes: usize,
    /// First decompressed byte wanted (the file extent item's offset).
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Bytes wanted (num_bytes); default ram_bytes - offset.
    #[arg(long)]
    pub num_bytes: Option<usize>,
    /// Accept what the kernel accepts: a stream that ends early is zero-filled, a zstd frame
    /// holding more than --ram-bytes is cut (each with a warning) instead of being an error.
    #[arg(long)]
    pub lenient: bool,
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
    let alg = d.alg;
    let data = read_bounded(&d.input, BTRFS_MAX_COMPRESSED)?;
    let o = d.map.options();
    let out = if d.inline {
        if d.offset != 0 || d.num_bytes.is_some_and(|n| n != d.ram_bytes) {
            return Err(Fail { code: 1, msg: "inline extents are read whole: no --offset/--num-bytes".into() });
        }
        decompress_inline(alg, &data, d.ram_bytes, &o)?.to_vec()
    } else {
        let num = d.num_bytes.unwrap_or(d.ram_bytes.saturating_sub(d.offset));
        // The kernel's ram_bytes is sector-rounded, and what a stream holds ends in its last
        // sector: 6.x compresses the file's bytes, 7.x the whole last sector.
        let ss = o.checked_sectorsize()?;
        let last_sector = d.ram_bytes.saturating_sub(1) / ss * ss;
        if alg == CompressType::Zstd {
            // zstd frames record their content size: a --ram-bytes below it would drop data.
            let whole = d.ram_bytes.next_multiple_of(ss) as u64;
            if let Some(n) = btrfs_zstd::frame_content_size(&data).filter(|&n| n > whole) {
                let msg = format!("the zstd frame holds {n} bytes, more than --ram-bytes {}", d.ram_bytes);
                if !d.lenient {
                    return Err(Fail {
                        code: 1,
                        msg: format!("{msg} (--lenient to decode the first {})", d.ram_bytes),
                    });
                }
                eprintln!("btrfs-compress: warning: {msg}; the rest is dropped (--lenient)");
            }
        }
        let r = decompress_extent_full(alg, &data, d.ram_bytes, d.offset, num, &o)?;
        // What the stream gave, as an offset into the extent (stream_bytes counts from --offset).
        let wanted_end = (d.offset + num).min(d.ram_bytes);
        let stream_end = d.offset + r.stream_bytes;
        if stream_end < wanted_end && stream_end <= last_sector {
            let msg = format!("the stream ended after {stream_end} of {wanted_end} bytes (a truncated extent)");
            if !d.lenient {
                return Err(Fail { code: 1, msg: format!("{msg}; --lenient zero-fills the rest as the kernel does") });
            }
            eprintln!("btrfs-compress: warning: {msg}; the rest is zero-filled as the kernel does (--lenient)");
        }
        r.data.to_vec()
    };
    write_atomic(&d.output, &out, d.force, &d.input)?;
    Ok(())
}
