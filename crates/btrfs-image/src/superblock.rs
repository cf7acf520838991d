//! `struct btrfs_super_block` (include/uapi/linux/btrfs_tree.h) and the checksum algorithms.

use blake2::Digest;

use crate::error::{CorruptKind, Error, Result};
use crate::le::Le;

/// Offset of the primary superblock.
pub const BTRFS_SUPER_INFO_OFFSET: u64 = 64 * 1024;
/// `BTRFS_SUPER_INFO_SIZE`.
pub(crate) const SUPER_INFO_SIZE: usize = 4096;
const MAGIC: &[u8; 8] = b"_BHRfS_M";
/// `BTRFS_SYSTEM_CHUNK_ARRAY_SIZE`.
const SYSTEM_CHUNK_ARRAY_SIZE: usize = 2048;
/// `BTRFS_FEATURE_INCOMPAT_METADATA_UUID`.
const FEATURE_INCOMPAT_METADATA_UUID: u64 = 1 << 10;
/// `BTRFS_CSUM_SIZE`: the checksum field of the superblock and of tree block headers.
pub(crate) const CSUM_SIZE: usize = 32;

/// Field offsets of `struct btrfs_super_block`.
mod off {
    pub const FSID: usize = 32;
    pub const MAGIC: usize = 64;
    pub const GENERATION: usize = 72;
    pub const ROOT: usize = 80;
    pub const CHUNK_ROOT: usize = 88;
    pub const LOG_ROOT: usize = 96;
    pub const TOTAL_BYTES: usize = 112;
    pub const NUM_DEVICES: usize = 136;
    pub const SECTORSIZE: usize = 144;
    pub const NODESIZE: usize = 148;
    pub const SYS_CHUNK_ARRAY_SIZE: usize = 160;
    pub const INCOMPAT_FLAGS: usize = 188;
    pub const CSUM_TYPE: usize = 196;
    pub const ROOT_LEVEL: usize = 198;
    pub const CHUNK_ROOT_LEVEL: usize = 199;
    pub const LOG_ROOT_LEVEL: usize = 200;
    pub const DEV_ITEM: usize = 201;
    pub const LABEL: usize = 299;
    pub const LABEL_SIZE: usize = 256;
    pub const METADATA_UUID: usize = 571;
    pub const SYS_CHUNK_ARRAY: usize = 811;
}

/// The checksum algorithm of the filesystem (`btrfs_csum_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumType {
    /// crc32c (0).
    Crc32c,
    /// xxhash64 (1).
    Xxhash64,
    /// sha256 (2).
    Sha256,
    /// blake2b-256 (3).
    Blake2b,
}

impl CsumType {
    fn from_code(c: u16) -> Result<Self> {
        Ok(match c {
            0 => CsumType::Crc32c,
            1 => CsumType::Xxhash64,
            2 => CsumType::Sha256,
            3 => CsumType::Blake2b,
            _ => return Err(Error::UnsupportedCsum(c)),
        })
    }

    /// Bytes of one checksum.
    pub fn size(self) -> usize {
        match self {
            CsumType::Crc32c => 4,
            CsumType::Xxhash64 => 8,
            CsumType::Sha256 | CsumType::Blake2b => 32,
        }
    }

    /// Name as btrfs-progs prints it.
    pub fn name(self) -> &'static str {
        match self {
            CsumType::Crc32c => "crc32c",
            CsumType::Xxhash64 => "xxhash64",
            CsumType::Sha256 => "sha256",
            CsumType::Blake2b => "blake2b",
        }
    }

    /// The checksum of `data`, as stored (little-endian for the integer ones).
    pub fn compute(self, data: &[u8]) -> Vec<u8> {
        match self {
            CsumType::Crc32c => crc32c::crc32c(data).to_le_bytes().to_vec(),
            CsumType::Xxhash64 => xxhash_rust::xxh64::xxh64(data, 0).to_le_bytes().to_vec(),
            CsumType::Sha256 => sha2::Sha256::digest(data).to_vec(),
            CsumType::Blake2b => blake2::Blake2b::<blake2::digest::consts::U32>::digest(data).to_vec(),
        }
    }

    /// True when the first bytes of `block` hold the checksum of the rest after [`CSUM_SIZE`].
    pub(crate) fn matches(self, block: &[u8]) -> bool {
        match (block.get(..self.size()), block.get(CSUM_SIZE..)) {
            (Some(sum), Some(rest)) => sum == &self.compute(rest)[..],
            _ => false,
        }
    }
}

/// The fields of the superblock the reader uses.
#[derive(Clone, Debug)]
pub struct Superblock {
    /// Filesystem UUID (`fsid`).
    pub fsid: [u8; 16],
    /// Metadata UUID (the fsid unless the metadata_uuid feature is set).
    pub metadata_uuid: [u8; 16],
    /// Transaction generation.
    pub generation: u64,
    /// Root tree address.
    pub root: u64,
    /// Chunk tree address.
    pub chunk_root: u64,
    /// Root tree level.
    pub root_level: u8,
    /// Chunk tree level.
    pub chunk_root_level: u8,
    /// Sector size.
    pub sectorsize: u32,
    /// Tree block size.
    pub nodesize: u32,
    /// Bytes of the filesystem.
    pub total_bytes: u64,
    /// Root block of the log tree: non-zero when fsync wrote after the last commit (the kernel
    /// replays the log at mount).
    pub log_root: u64,
    /// Level of the log root tree's root block.
    pub log_root_level: u8,
    /// Devices.
    pub num_devices: u64,
    /// Checksum algorithm.
    pub csum_type: CsumType,
    /// Label (lossy UTF-8).
    pub label: String,
    /// Incompatible feature flags.
    pub incompat_flags: u64,
    /// The device this copy of the superblock is on (`dev_item`).
    pub dev: DevItem,
    pub(crate) sys_chunk_array: Vec<u8>,
}

/// `struct btrfs_dev_item`: a device of the filesystem (in each device's superblock, and in the
/// chunk tree for every device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevItem {
    /// Device id.
    pub devid: u64,
    /// Bytes of the device the filesystem uses.
    pub total_bytes: u64,
    /// Device UUID.
    pub uuid: [u8; 16],
}

impl DevItem {
    /// Field offsets of `struct btrfs_dev_item`.
    const DEVID: usize = 0;
    const TOTAL_BYTES: usize = 8;
    const UUID: usize = 66;

    /// Parse a dev item.
    pub fn parse(b: &[u8]) -> Result<Self> {
        let d = Le::new(b, "btrfs_dev_item");
        Ok(DevItem { devid: d.u64(Self::DEVID)?, total_bytes: d.u64(Self::TOTAL_BYTES)?, uuid: d.uuid(Self::UUID)? })
    }

    /// The UUID as text (8-4-4-4-12).
    pub fn uuid_string(&self) -> String {
        let h: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }
}

impl Superblock {
    /// Parse and verify a superblock copy.
    pub fn parse(b: &[u8]) -> Result<Self> {
        let s = Le::new(b, "btrfs_super_block");
        if b.len() < SUPER_INFO_SIZE || s.slice(off::MAGIC, 8)? != MAGIC {
            return Err(Error::NotBtrfs);
        }
        let csum_type = CsumType::from_code(s.u16(off::CSUM_TYPE)?)?;
        if !csum_type.matches(&b[..SUPER_INFO_SIZE]) {
            return Err(Error::BadChecksum { what: "superblock", at: BTRFS_SUPER_INFO_OFFSET });
        }
        let fsid = s.uuid(off::FSID)?;
        let incompat_flags = s.u64(off::INCOMPAT_FLAGS)?;
        let metadata_uuid =
            if incompat_flags & FEATURE_INCOMPAT_METADATA_UUID != 0 { s.uuid(off::METADATA_UUID)? } else { fsid };
        let sys_len = s.len32(off::SYS_CHUNK_ARRAY_SIZE)?;
        if sys_len > SYSTEM_CHUNK_ARRAY_SIZE {
            return Err(field("sys_chunk_array_size", u64::from(s.u32(off::SYS_CHUNK_ARRAY_SIZE)?)));
        }
        let sectorsize = s.u32(off::SECTORSIZE)?;
        let nodesize = s.u32(off::NODESIZE)?;
        if !sectorsize.is_power_of_two() || !(4096..=65536).contains(&sectorsize) {
            return Err(field("sectorsize", u64::from(sectorsize)));
        }
        if !nodesize.is_power_of_two() || !(4096..=65536).contains(&nodesize) || nodesize < sectorsize {
            return Err(field("nodesize", u64::from(nodesize)));
        }
        let label_raw = s.slice(off::LABEL, off::LABEL_SIZE)?;
        let label_len = label_raw.iter().position(|&c| c == 0).unwrap_or(off::LABEL_SIZE);
        Ok(Self {
            fsid,
            metadata_uuid,
            generation: s.u64(off::GENERATION)?,
            root: s.u64(off::ROOT)?,
            chunk_root: s.u64(off::CHUNK_ROOT)?,
            root_level: s.u8(off::ROOT_LEVEL)?,
            chunk_root_level: s.u8(off::CHUNK_ROOT_LEVEL)?,
            sectorsize,
            nodesize,
            total_bytes: s.u64(off::TOTAL_BYTES)?,
            log_root: s.u64(off::LOG_ROOT)?,
            log_root_level: s.u8(off::LOG_ROOT_LEVEL)?,
            num_devices: s.u64(off::NUM_DEVICES)?,
            csum_type,
            label: String::from_utf8_lossy(&label_raw[..label_len]).into(),
            incompat_flags,
            dev: DevItem::parse(s.rest(off::DEV_ITEM)?)?,
            sys_chunk_array: s.slice(off::SYS_CHUNK_ARRAY, sys_len)?.to_vec(),
        })
    }
}

fn field(field: &'static str, value: u64) -> Error {
    Error::Corrupt(CorruptKind::Superblock { field, value })
}
