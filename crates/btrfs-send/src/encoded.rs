//! The `encoded-write` plan: a file cut into 128 KiB pieces, each compressed with our codecs
//! under the kernel's rules, as the send stream `btrfs receive` turns into
//! `BTRFS_IOC_ENCODED_WRITE` calls.

use btrfs_compress::{
    compress_buffer, compress_inline, CompressSpec, Error, Extent, Options, Result, BTRFS_MAX_UNCOMPRESSED, SECTORSIZE,
};
use bytes::Bytes;

use crate::SendStream;

/// How one 128 KiB piece of a file is handed to the kernel by `encoded-write`.
#[derive(Clone, Debug)]
pub enum Planned {
    /// `ENCODED_WRITE` of our compressed extent.
    Encoded {
        /// File offset.
        offset: u64,
        /// Plain bytes it holds.
        len: u64,
        /// The extent bytes.
        data: Bytes,
    },
    /// A plain `WRITE` (the kernel rules would not compress it).
    Plain {
        /// File offset.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
}

/// Build the send stream that creates subvolume `subvol` holding file `name` with `data`,
/// compressed with `spec` extent by extent (rayon, in order). A file of at most one sector is
/// compressed under the inline rules (the kernel then stores it inline).
pub fn encoded_write_stream(
    data: &Bytes,
    spec: CompressSpec,
    opts: &Options,
    subvol: &str,
    name: &str,
    uuid: [u8; 16],
) -> Result<(SendStream, Vec<Planned>)> {
    let plan: Vec<Planned> = if !data.is_empty() && data.len() <= SECTORSIZE {
        match compress_inline(data, spec, 2048, opts) {
            Ok(e) => vec![Planned::Encoded { offset: 0, len: data.len() as u64, data: e.data }],
            Err(Error::Incompressible(_)) => vec![Planned::Plain { offset: 0, data: data.clone() }],
            Err(e) => return Err(e),
        }
    } else {
        compress_buffer(data, spec, opts)?
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                let offset = (i * BTRFS_MAX_UNCOMPRESSED) as u64;
                match x {
                    Extent::Compressed(c) => Planned::Encoded { offset, len: c.total_in as u64, data: c.data },
                    Extent::Plain(b) => Planned::Plain { offset, data: b },
                }
            })
            .collect()
    };
    let mut s = SendStream::new();
    s.subvol(subvol, uuid, 1);
    let path = name.to_string();
    s.mkfile(&path, 257);
    for p in &plan {
        match p {
            Planned::Encoded { offset, len, data: d } => s.encoded_write(&path, *offset, *len, *len, 0, spec.alg, d),
            Planned::Plain { offset, data: d } => s.write(&path, *offset, d),
        }
    }
    s.truncate(&path, data.len() as u64);
    s.end();
    Ok((s, plan))
}
