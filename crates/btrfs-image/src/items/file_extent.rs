//! `struct btrfs_file_extent_item`.

use crate::error::{CorruptKind, Result};
use crate::le::Le;

/// Field offsets of `struct btrfs_file_extent_item`.
pub(crate) mod off {
    pub const GENERATION: usize = 0;
    pub const RAM_BYTES: usize = 8;
    pub const COMPRESSION: usize = 16;
    pub const ENCRYPTION: usize = 17;
    pub const OTHER_ENCODING: usize = 18;
    pub const TYPE: usize = 20;
    /// Inline data starts where `disk_bytenr` would.
    pub const INLINE_DATA: usize = 21;
    pub const DISK_BYTENR: usize = 21;
    pub const DISK_NUM_BYTES: usize = 29;
    pub const OFFSET: usize = 37;
    pub const NUM_BYTES: usize = 45;
}

/// `BTRFS_FILE_EXTENT_INLINE`, `_REG`, `_PREALLOC`.
const FILE_EXTENT_INLINE: u8 = 0;
const FILE_EXTENT_REG: u8 = 1;
const FILE_EXTENT_PREALLOC: u8 = 2;
/// `BTRFS_NR_COMPRESS_TYPES`.
const NR_COMPRESS_TYPES: u8 = 4;

/// The kind of a file extent item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtentKind {
    /// Data stored in the item (possibly compressed).
    Inline {
        /// The item's data bytes.
        data: Vec<u8>,
    },
    /// A regular extent; `disk_bytenr == 0` is a hole.
    Regular,
    /// Preallocated (reads as zeros).
    Prealloc,
}

/// `BTRFS_MAX_EXTENT_SIZE`: the largest data extent the kernel writes.
pub const MAX_EXTENT_SIZE: u64 = 128 << 20;
/// `BTRFS_MAX_COMPRESSED`: the largest compressed extent.
pub const MAX_COMPRESSED: u64 = 128 << 10;

/// One `EXTENT_DATA` item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileExtent {
    /// File offset (the key offset).
    pub file_offset: u64,
    /// Generation.
    pub generation: u64,
    /// Decompressed size of the whole extent.
    pub ram_bytes: u64,
    /// On-disk compression code (0 none, 1 zlib, 2 lzo, 3 zstd).
    pub compression: u8,
    /// Encryption (0).
    pub encryption: u8,
    /// Other encoding (0).
    pub other_encoding: u16,
    /// Kind.
    pub kind: ExtentKind,
    /// Logical start of the extent on disk (0 for holes and inline).
    pub disk_bytenr: u64,
    /// On-disk size.
    pub disk_num_bytes: u64,
    /// Offset into the decompressed extent.
    pub offset: u64,
    /// Bytes of file this item covers.
    pub num_bytes: u64,
}

impl FileExtent {
    /// Parse the item at key offset `file_offset`.
    pub fn parse(file_offset: u64, data: &[u8]) -> Result<Self> {
        let d = Le::new(data, "btrfs_file_extent_item");
        let ty = d.u8(off::TYPE)?;
        let mut e = FileExtent {
            file_offset,
            generation: d.u64(off::GENERATION)?,
            ram_bytes: d.u64(off::RAM_BYTES)?,
            compression: d.u8(off::COMPRESSION)?,
            encryption: d.u8(off::ENCRYPTION)?,
            other_encoding: d.u16(off::OTHER_ENCODING)?,
            kind: ExtentKind::Regular,
            disk_bytenr: 0,
            disk_num_bytes: 0,
            offset: 0,
            num_bytes: 0,
        };
        match ty {
            FILE_EXTENT_INLINE => {
                e.kind = ExtentKind::Inline { data: d.rest(off::INLINE_DATA)?.to_vec() };
                e.num_bytes = e.ram_bytes;
            }
            FILE_EXTENT_REG | FILE_EXTENT_PREALLOC => {
                e.kind = if ty == FILE_EXTENT_REG { ExtentKind::Regular } else { ExtentKind::Prealloc };
                e.disk_bytenr = d.u64(off::DISK_BYTENR)?;
                e.disk_num_bytes = d.u64(off::DISK_NUM_BYTES)?;
                e.offset = d.u64(off::OFFSET)?;
                e.num_bytes = d.u64(off::NUM_BYTES)?;
            }
            _ => return Err(CorruptKind::FileExtent { file_offset, field: "type", value: u64::from(ty) }.into()),
        }
        if e.compression >= NR_COMPRESS_TYPES {
            return Err(
                CorruptKind::FileExtent { file_offset, field: "compression", value: u64::from(e.compression) }.into()
            );
        }
        Ok(e)
    }

    /// The rules the kernel's tree-checker applies to a file extent item
    /// (`check_extent_data_item()`, fs/btrfs/tree-checker.c, 6.18) before anything sizes a
    /// buffer by it: an inline extent at file offset 0 whose uncompressed `ram_bytes` is its
    /// data's length; a regular or prealloc one with its sizes and addresses sector-aligned, not
    /// compressed when prealloc, its end not past 2^64; and no extent (`BTRFS_MAX_EXTENT_SIZE`)
    /// or compressed extent (`BTRFS_MAX_COMPRESSED`) larger than the kernel writes.
    pub fn check(&self, sectorsize: u64) -> Result<()> {
        let bad = |field: &'static str, value: u64| -> Result<()> {
            Err(CorruptKind::FileExtent { file_offset: self.file_offset, field, value }.into())
        };
        match &self.kind {
            ExtentKind::Inline { data } => {
                if self.file_offset != 0 {
                    return bad("inline extent at file offset", self.file_offset);
                }
                if self.compression == 0 && self.ram_bytes != crate::le::to_u64(data.len()) {
                    return bad("ram_bytes of an uncompressed inline extent", self.ram_bytes);
                }
                if self.compression != 0 && self.ram_bytes > sectorsize {
                    return bad("ram_bytes of a compressed inline extent", self.ram_bytes);
                }
            }
            ExtentKind::Regular | ExtentKind::Prealloc => {
                for (field, v) in [
                    ("ram_bytes", self.ram_bytes),
                    ("disk_bytenr", self.disk_bytenr),
                    ("disk_num_bytes", self.disk_num_bytes),
                    ("offset", self.offset),
                    ("num_bytes", self.num_bytes),
                ] {
                    if v % sectorsize != 0 {
                        return bad(field, v);
                    }
                }
                if self.kind == ExtentKind::Prealloc && self.compression != 0 {
                    return bad("compression of a prealloc extent", u64::from(self.compression));
                }
                if self.file_offset.checked_add(self.num_bytes).is_none() {
                    return bad("num_bytes", self.num_bytes);
                }
                if self.disk_num_bytes > MAX_EXTENT_SIZE
                    || (self.compression != 0 && self.disk_num_bytes > MAX_COMPRESSED)
                {
                    return bad("disk_num_bytes", self.disk_num_bytes);
                }
                if self.offset.checked_add(self.num_bytes).is_none_or(|e| self.disk_bytenr != 0 && e > self.ram_bytes) {
                    return bad("offset + num_bytes past ram_bytes", self.offset.saturating_add(self.num_bytes));
                }
            }
        }
        Ok(())
    }

    /// True for a hole (regular extent with no disk bytes).
    pub fn is_hole(&self) -> bool {
        self.kind == ExtentKind::Regular && self.disk_bytenr == 0
    }
}
