//! A btrfs send stream (version 2) writer: enough to hand our compressed extents to
//! `btrfs receive`, which stores them with `BTRFS_IOC_ENCODED_WRITE` as they are.
//!
//! Format (fs/btrfs/send.h): the magic `btrfs-stream\0` and a LE32 version, then commands:
//! `[LE32 payload length][LE16 command][LE32 crc32c]` followed by TLV attributes
//! `[LE16 type][LE16 length][data]`. In version 2 the DATA attribute is the last of its command,
//! carries only its type, and runs to the end of the command. The crc is crc32c (seed 0, no final
//! inversion) over the whole command with the crc field zeroed.

#![forbid(unsafe_code)]

mod encoded;

use btrfs_compress::CompressType;
pub use encoded::{encoded_write_stream, Planned};

const MAGIC: &[u8] = b"btrfs-stream\0";
const VERSION: u32 = 2;

const C_SUBVOL: u16 = 1;
const C_MKFILE: u16 = 3;
const C_WRITE: u16 = 15;
const C_TRUNCATE: u16 = 17;
const C_END: u16 = 21;
const C_ENCODED_WRITE: u16 = 25;

const A_UUID: u16 = 1;
const A_CTRANSID: u16 = 2;
const A_INO: u16 = 3;
const A_SIZE: u16 = 4;
const A_PATH: u16 = 15;
const A_FILE_OFFSET: u16 = 18;
const A_DATA: u16 = 19;
const A_UNENCODED_FILE_LEN: u16 = 27;
const A_UNENCODED_LEN: u16 = 28;
const A_UNENCODED_OFFSET: u16 = 29;
const A_COMPRESSION: u16 = 30;
const A_ENCRYPTION: u16 = 31;

/// The encoded-I/O compression code of an algorithm (`BTRFS_ENCODED_IO_COMPRESSION_*`: 1 zlib,
/// 2 zstd, 3 lzo with 4 KiB sectors). Note these differ from the on-disk codes.
pub fn encoded_io_compression(alg: CompressType) -> u32 {
    match alg {
        CompressType::None => 0,
        CompressType::Zlib => 1,
        CompressType::Zstd => 2,
        CompressType::Lzo => 3,
    }
}

/// The raw crc32c update the kernel and btrfs-progs use for send streams (seed 0, no final
/// inversion), from the standard crc32c.
fn crc32c_raw(data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!0, data)
}

/// A send stream being built in memory.
#[derive(Debug)]
pub struct SendStream {
    buf: Vec<u8>,
}

impl Default for SendStream {
    fn default() -> Self {
        Self::new()
    }
}

impl SendStream {
    /// A stream with its header.
    pub fn new() -> Self {
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&VERSION.to_le_bytes());
        Self { buf }
    }

    /// The stream bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn cmd(&mut self, cmd: u16, attrs: &[(u16, &[u8])], data: Option<&[u8]>) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 10]);
        for (ty, v) in attrs {
            self.buf.extend_from_slice(&ty.to_le_bytes());
            self.buf.extend_from_slice(&(v.len() as u16).to_le_bytes());
            self.buf.extend_from_slice(v);
        }
        if let Some(d) = data {
            self.buf.extend_from_slice(&A_DATA.to_le_bytes());
            self.buf.extend_from_slice(d);
        }
        let len = (self.buf.len() - start - 10) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + 6].copy_from_slice(&cmd.to_le_bytes());
        let crc = crc32c_raw(&self.buf[start..]);
        self.buf[start + 6..start + 10].copy_from_slice(&crc.to_le_bytes());
    }

    /// `BTRFS_SEND_C_SUBVOL`: the receiver creates subvolume `path`.
    pub fn subvol(&mut self, path: &str, uuid: [u8; 16], ctransid: u64) {
        self.cmd(C_SUBVOL, &[(A_PATH, path.as_bytes()), (A_UUID, &uuid), (A_CTRANSID, &ctransid.to_le_bytes())], None);
    }

    /// `BTRFS_SEND_C_MKFILE` (the receiver wants the sender's inode number too).
    pub fn mkfile(&mut self, path: &str, ino: u64) {
        self.cmd(C_MKFILE, &[(A_PATH, path.as_bytes()), (A_INO, &ino.to_le_bytes())], None);
    }

    /// `BTRFS_SEND_C_WRITE`: plain data at `offset`.
    pub fn write(&mut self, path: &str, offset: u64, data: &[u8]) {
        self.cmd(C_WRITE, &[(A_PATH, path.as_bytes()), (A_FILE_OFFSET, &offset.to_le_bytes())], Some(data));
    }

    /// `BTRFS_SEND_C_ENCODED_WRITE`: `data` is one compressed extent that decompresses to
    /// `unencoded_len` bytes, of which `[unencoded_offset, unencoded_offset + len)` belong to the
    /// file at `offset`.
    #[allow(clippy::too_many_arguments)]
    pub fn encoded_write(
        &mut self,
        path: &str,
        offset: u64,
        len: u64,
        unencoded_len: u64,
        unencoded_offset: u64,
        alg: CompressType,
        data: &[u8],
    ) {
        self.cmd(
            C_ENCODED_WRITE,
            &[
                (A_PATH, path.as_bytes()),
                (A_FILE_OFFSET, &offset.to_le_bytes()),
                (A_UNENCODED_FILE_LEN, &len.to_le_bytes()),
                (A_UNENCODED_LEN, &unencoded_len.to_le_bytes()),
                (A_UNENCODED_OFFSET, &unencoded_offset.to_le_bytes()),
                (A_COMPRESSION, &encoded_io_compression(alg).to_le_bytes()),
                (A_ENCRYPTION, &0u32.to_le_bytes()),
            ],
            Some(data),
        );
    }

    /// `BTRFS_SEND_C_TRUNCATE`: set the file size.
    pub fn truncate(&mut self, path: &str, size: u64) {
        self.cmd(C_TRUNCATE, &[(A_PATH, path.as_bytes()), (A_SIZE, &size.to_le_bytes())], None);
    }

    /// `BTRFS_SEND_C_END`.
    pub fn end(&mut self) {
        self.cmd(C_END, &[], None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_the_raw_seed_zero_update() {
        // crc32c("123456789") is 0xe3069283 with the standard init/final inversions; the raw
        // update from seed 0 without inversion is a different, fixed value.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let raw = crc32c_raw(b"123456789");
        assert_ne!(raw, 0xe306_9283);
        // Raw update property: appending is associative in the raw domain.
        assert_eq!(!crc32c::crc32c_append(!raw, b"abc"), crc32c_raw(b"123456789abc"));
    }

    #[test]
    fn commands_are_framed() {
        let mut s = SendStream::new();
        s.mkfile("f", 257);
        let b = s.bytes();
        assert_eq!(&b[..13], MAGIC);
        assert_eq!(u32::from_le_bytes(b[13..17].try_into().unwrap()), 2);
        let len = u32::from_le_bytes(b[17..21].try_into().unwrap());
        assert_eq!(len as usize, 4 + 1 + 4 + 8);
        assert_eq!(u16::from_le_bytes(b[21..23].try_into().unwrap()), C_MKFILE);
    }
}
