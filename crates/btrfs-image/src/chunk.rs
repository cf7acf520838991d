//! `struct btrfs_chunk` and `struct btrfs_stripe`: the map from logical to physical addresses.

use std::collections::BTreeMap;

use crate::error::{CorruptKind, Error, Result};
use crate::le::Le;

/// `BTRFS_BLOCK_GROUP_SYSTEM`.
pub(crate) const BLOCK_GROUP_SYSTEM: u64 = 1 << 1;
/// `BTRFS_BLOCK_GROUP_PROFILE_MASK`: RAID0, RAID1, DUP, RAID10, RAID5, RAID6, RAID1C3, RAID1C4.
const BLOCK_GROUP_PROFILE_MASK: u64 = 0xff << 3;
/// `BTRFS_BLOCK_GROUP_DUP`.
const BLOCK_GROUP_DUP: u64 = 1 << 5;

/// Field offsets of `struct btrfs_chunk` and of its `struct btrfs_stripe` array.
pub(crate) mod off {
    pub const LENGTH: usize = 0;
    pub const TYPE: usize = 24;
    pub const NUM_STRIPES: usize = 44;
    pub const STRIPES: usize = 48;
    pub const STRIPE_SIZE: usize = 32;
    pub const STRIPE_DEVID: usize = 0;
    pub const STRIPE_OFFSET: usize = 8;
}

/// Bytes of a chunk item with `num_stripes` stripes.
pub(crate) fn item_size(num_stripes: usize) -> usize {
    off::STRIPES + off::STRIPE_SIZE * num_stripes
}

#[derive(Clone, Debug)]
struct Chunk {
    length: u64,
    /// Physical offset of each copy: one for SINGLE, two for DUP (the first is read, the second
    /// where the first fails its checksum, as the kernel reads mirror 2).
    physical: Vec<u64>,
}

/// Logical to physical address translation.
#[derive(Clone, Debug, Default)]
pub struct ChunkMap {
    chunks: BTreeMap<u64, Chunk>,
}

impl ChunkMap {
    /// Add the chunk item at `logical`; its type bits are returned.
    pub(crate) fn insert(&mut self, logical: u64, item: &[u8]) -> Result<u64> {
        let c = Le::new(item, "btrfs_chunk");
        let length = c.u64(off::LENGTH)?;
        let ty = c.u64(off::TYPE)?;
        let num_stripes = c.len16(off::NUM_STRIPES)?;
        if num_stripes == 0 {
            return Err(CorruptKind::Chunk { logical, problem: "no stripes" }.into());
        }
        if length == 0 {
            return Err(CorruptKind::Chunk { logical, problem: "length 0" }.into());
        }
        let profile = ty & BLOCK_GROUP_PROFILE_MASK;
        if profile != 0 && profile != BLOCK_GROUP_DUP {
            return Err(Error::UnsupportedProfile { logical, profile });
        }
        let mut physical = Vec::with_capacity(num_stripes.min(2));
        for i in 0..num_stripes {
            let s = off::STRIPES + i * off::STRIPE_SIZE;
            let devid = c.u64(s + off::STRIPE_DEVID)?;
            if devid != 1 {
                return Err(CorruptKind::ChunkDevice { logical, devid }.into());
            }
            if physical.len() < 2 {
                physical.push(c.u64(s + off::STRIPE_OFFSET)?);
            }
        }
        logical.checked_add(length).ok_or(CorruptKind::Chunk { logical, problem: "end overflows" })?;
        self.chunks.insert(logical, Chunk { length, physical });
        Ok(ty)
    }

    /// The chunk holding `logical`: its start and its length.
    fn find(&self, logical: u64) -> Result<(u64, &Chunk)> {
        let (&start, c) = self.chunks.range(..=logical).next_back().ok_or(Error::Unmapped(logical))?;
        if logical - start >= c.length {
            return Err(Error::Unmapped(logical));
        }
        Ok((start, c))
    }

    /// Physical address of `len` bytes at `logical` (which must lie in one chunk).
    pub fn map(&self, logical: u64, len: u64) -> Result<u64> {
        let (start, c) = self.find(logical)?;
        if logical.checked_add(len).is_none_or(|e| e > start + c.length) {
            return Err(Error::Unmapped(logical));
        }
        Ok(c.physical[0] + (logical - start))
    }

    /// Physical address of `logical` and the bytes that follow it in its chunk.
    pub(crate) fn map_run(&self, logical: u64) -> Result<(u64, u64)> {
        self.map_run_copy(logical, 0)
    }

    /// Physical address of `logical` in copy `copy` (0 or, for DUP, 1), and the bytes that follow
    /// it in its chunk.
    pub fn map_run_copy(&self, logical: u64, copy: usize) -> Result<(u64, u64)> {
        let (start, c) = self.find(logical)?;
        let p = c.physical.get(copy).ok_or(Error::Unmapped(logical))?;
        Ok((p + (logical - start), start + c.length - logical))
    }

    /// How many copies the chunk holding `logical` keeps (1, or 2 for DUP).
    pub fn copies(&self, logical: u64) -> usize {
        self.find(logical).map_or(1, |(_, c)| c.physical.len())
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// True when no chunk is known.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}
