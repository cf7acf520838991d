//! `struct btrfs_chunk` and `struct btrfs_stripe`: the map from logical addresses to (device,
//! physical offset), for every profile, as `btrfs_map_block()` (fs/btrfs/volumes.c, 6.18) maps a
//! read.
//!
//! A chunk's data is cut in stripe units of `stripe_len` (64 KiB, `BTRFS_STRIPE_LEN`):
//! * SINGLE, DUP, RAID1, RAID1C3, RAID1C4: every stripe holds the whole chunk (one copy each);
//! * RAID0: unit `n` is on stripe `n % num_stripes`, row `n / num_stripes`;
//! * RAID10: `num_stripes / sub_stripes` groups of `sub_stripes` mirrors, units across groups;
//! * RAID5/RAID6: rows of `num_stripes - 1` (or `- 2`) data units and P (and Q); in row `r`
//!   data unit `i` is on stripe `(r + i) % num_stripes`, P on `(r + nr_data) % num_stripes`, Q on
//!   the next (`btrfs_map_block()`'s rotation, `raid_map` in `set_io_stripe()`).

use std::collections::BTreeMap;

use crate::error::{CorruptKind, Error, Result};
use crate::le::{to_u64, Le};

/// A stripe index computed modulo the stripe count as a usize (it is below the count).
fn idx(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// `BTRFS_BLOCK_GROUP_SYSTEM`.
pub(crate) const BLOCK_GROUP_SYSTEM: u64 = 1 << 1;
/// `BTRFS_BLOCK_GROUP_PROFILE_MASK`: RAID0, RAID1, DUP, RAID10, RAID5, RAID6, RAID1C3, RAID1C4.
const BLOCK_GROUP_PROFILE_MASK: u64 = 0xff << 3;

/// Field offsets of `struct btrfs_chunk` and of its `struct btrfs_stripe` array.
pub(crate) mod off {
    pub const LENGTH: usize = 0;
    pub const STRIPE_LEN: usize = 16;
    pub const TYPE: usize = 24;
    pub const NUM_STRIPES: usize = 44;
    pub const SUB_STRIPES: usize = 46;
    pub const STRIPES: usize = 48;
    pub const STRIPE_SIZE: usize = 32;
    pub const STRIPE_DEVID: usize = 0;
    pub const STRIPE_OFFSET: usize = 8;
}

/// Bytes of a chunk item with `num_stripes` stripes.
pub(crate) fn item_size(num_stripes: usize) -> usize {
    off::STRIPES + off::STRIPE_SIZE * num_stripes
}

/// A block group profile (`BTRFS_BLOCK_GROUP_*`; none of the bits is SINGLE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// One copy.
    Single,
    /// Two copies on one device.
    Dup,
    /// Striped, no redundancy.
    Raid0,
    /// Two copies on two devices.
    Raid1,
    /// Three copies.
    Raid1c3,
    /// Four copies.
    Raid1c4,
    /// Striped mirrors.
    Raid10,
    /// Striped with one parity.
    Raid5,
    /// Striped with two parities.
    Raid6,
}

impl Profile {
    fn from_bits(logical: u64, ty: u64) -> Result<Self> {
        Ok(match ty & BLOCK_GROUP_PROFILE_MASK {
            0 => Profile::Single,
            0x08 => Profile::Raid0,
            0x10 => Profile::Raid1,
            0x20 => Profile::Dup,
            0x40 => Profile::Raid10,
            0x80 => Profile::Raid5,
            0x100 => Profile::Raid6,
            0x200 => Profile::Raid1c3,
            0x400 => Profile::Raid1c4,
            profile => return Err(Error::UnsupportedProfile { logical, profile }),
        })
    }

    /// Its name, as `btrfs filesystem df` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Single => "single",
            Profile::Dup => "DUP",
            Profile::Raid0 => "RAID0",
            Profile::Raid1 => "RAID1",
            Profile::Raid1c3 => "RAID1C3",
            Profile::Raid1c4 => "RAID1C4",
            Profile::Raid10 => "RAID10",
            Profile::Raid5 => "RAID5",
            Profile::Raid6 => "RAID6",
        }
    }

    /// Parity stripes per row (RAID5: 1, RAID6: 2).
    fn parity(self) -> usize {
        match self {
            Profile::Raid5 => 1,
            Profile::Raid6 => 2,
            _ => 0,
        }
    }

    /// Stripes the profile needs at least (`btrfs_raid_array[].devs_min`), and the number of
    /// stripes that hold every byte (mirrors).
    fn check(self, logical: u64, num_stripes: usize, sub_stripes: usize) -> Result<()> {
        let ok = match self {
            Profile::Single => num_stripes == 1,
            Profile::Raid0 => num_stripes >= 1,
            Profile::Dup | Profile::Raid1 => num_stripes == 2,
            Profile::Raid1c3 => num_stripes == 3,
            Profile::Raid1c4 => num_stripes == 4,
            Profile::Raid10 => sub_stripes == 2 && num_stripes >= 2 && num_stripes % 2 == 0,
            Profile::Raid5 => num_stripes >= 2,
            Profile::Raid6 => num_stripes >= 3,
        };
        if ok {
            Ok(())
        } else {
            Err(CorruptKind::Chunk { logical, problem: "stripe count impossible for its profile" }.into())
        }
    }
}

/// One stripe of a chunk: a device and the physical offset of the stripe's start on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stripe {
    /// Device id.
    pub devid: u64,
    /// Physical offset on the device.
    pub offset: u64,
}

#[derive(Clone, Debug)]
struct Chunk {
    length: u64,
    profile: Profile,
    stripe_len: u64,
    sub_stripes: usize,
    stripes: Vec<Stripe>,
}

/// Where a run of logical bytes lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// Copies of the same bytes: one for SINGLE and RAID0, each mirror's for the others, in the
    /// kernel's mirror order.
    Mirrors(Vec<Stripe>),
    /// RAID5/RAID6: the row of the full stripe, its data units in order, then P (then Q), each at
    /// the run's offset within its unit; the run is in data unit `data`.
    Parity {
        /// Which data unit of the row holds the bytes.
        data: usize,
        /// Data units, then P, then Q.
        row: Vec<Stripe>,
        /// Data units per row.
        nr_data: usize,
    },
}

/// A run of logical bytes inside one stripe unit, and where it lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// Where.
    pub place: Place,
    /// Bytes from the address to the end of its stripe unit (or chunk).
    pub run: u64,
    /// The chunk's profile.
    pub profile: Profile,
}

impl Mapped {
    /// How many ways the bytes can be read (`btrfs_num_copies()`): each mirror, or for RAID5 the
    /// data and a rebuild from P, for RAID6 also a rebuild from Q.
    pub fn copies(&self) -> usize {
        match &self.place {
            Place::Mirrors(m) => m.len(),
            Place::Parity { row, nr_data, .. } => 1 + row.len() - nr_data,
        }
    }
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
        let sub_stripes = c.len16(off::SUB_STRIPES)?;
        let stripe_len = c.u64(off::STRIPE_LEN)?;
        if num_stripes == 0 {
            return Err(CorruptKind::Chunk { logical, problem: "no stripes" }.into());
        }
        if length == 0 {
            return Err(CorruptKind::Chunk { logical, problem: "length 0" }.into());
        }
        if !stripe_len.is_power_of_two() || !(4096..=1 << 30).contains(&stripe_len) {
            return Err(CorruptKind::Chunk { logical, problem: "stripe length not a power of two" }.into());
        }
        let profile = Profile::from_bits(logical, ty)?;
        profile.check(logical, num_stripes, sub_stripes)?;
        let mut stripes = Vec::with_capacity(num_stripes);
        for i in 0..num_stripes {
            let s = off::STRIPES + i * off::STRIPE_SIZE;
            stripes.push(Stripe { devid: c.u64(s + off::STRIPE_DEVID)?, offset: c.u64(s + off::STRIPE_OFFSET)? });
        }
        logical.checked_add(length).ok_or(CorruptKind::Chunk { logical, problem: "end overflows" })?;
        self.chunks.insert(logical, Chunk { length, profile, stripe_len, sub_stripes, stripes });
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

    /// Where the bytes at `logical` live, up to the end of their stripe unit
    /// (`btrfs_map_block()` for a read).
    pub fn map(&self, logical: u64) -> Result<Mapped> {
        let (start, c) = self.find(logical)?;
        let offset = logical - start;
        let chunk_left = c.length - offset;
        let sl = c.stripe_len;
        let unit = offset / sl;
        let in_unit = offset % sl;
        let unit_left = (sl - in_unit).min(chunk_left);
        let at = |s: &Stripe, row: u64| -> Result<Stripe> {
            let phys = row
                .checked_mul(sl)
                .and_then(|p| p.checked_add(in_unit))
                .and_then(|p| p.checked_add(s.offset))
                .ok_or(CorruptKind::Chunk { logical: start, problem: "stripe beyond the device's addresses" })?;
            Ok(Stripe { devid: s.devid, offset: phys })
        };
        let n = to_u64(c.stripes.len());
        let (place, run) = match c.profile {
            Profile::Single | Profile::Dup | Profile::Raid1 | Profile::Raid1c3 | Profile::Raid1c4 => {
                // Every stripe holds the chunk whole: the run goes to the chunk's end.
                let m = c.stripes.iter().map(|s| at(s, 0).map(|x| Stripe { offset: x.offset + unit * sl, ..x }));
                (Place::Mirrors(m.collect::<Result<_>>()?), chunk_left)
            }
            Profile::Raid0 => {
                let s = &c.stripes[idx(unit % n)];
                (Place::Mirrors(vec![at(s, unit / n)?]), unit_left)
            }
            Profile::Raid10 => {
                let sub = to_u64(c.sub_stripes);
                let factor = n / sub;
                let first = (unit % factor) * sub;
                let row = unit / factor;
                let m = (first..first + sub).map(|i| at(&c.stripes[idx(i)], row));
                (Place::Mirrors(m.collect::<Result<_>>()?), unit_left)
            }
            Profile::Raid5 | Profile::Raid6 => {
                let nr_data = c.stripes.len() - c.profile.parity();
                let nd = to_u64(nr_data);
                let data = idx(unit % nd);
                let row = unit / nd;
                let rot = row % n;
                let row_stripes = (0..n).map(|i| at(&c.stripes[idx((rot + i) % n)], row)).collect::<Result<_>>()?;
                (Place::Parity { data, row: row_stripes, nr_data }, unit_left)
            }
        };
        Ok(Mapped { place, run, profile: c.profile })
    }

    /// `[logical, logical + len)` cut where stripe units (and chunks) end: each piece's address,
    /// where it lives, and its length. An address no chunk maps ends the walk with its error.
    pub fn pieces(&self, logical: u64, len: u64) -> impl Iterator<Item = Result<(u64, Mapped, u64)>> + '_ {
        let mut done = 0u64;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let r = logical.checked_add(done).ok_or(Error::Unmapped(logical)).and_then(|at| {
                let m = self.map(at)?;
                let n = m.run.min(len - done);
                Ok((at, m, n))
            });
            // After an error, nothing more.
            done = match &r {
                Ok((_, _, n)) => done + n,
                Err(_) => len,
            };
            Some(r)
        })
    }

    /// Where copy `copy` of the byte at `logical` is: a mirror, or for RAID5/6 (copy 0 only) the
    /// data stripe.
    pub fn mirror(&self, logical: u64, copy: usize) -> Result<Stripe> {
        match self.map(logical)?.place {
            Place::Mirrors(v) => v.get(copy).copied(),
            Place::Parity { data, row, .. } => (copy == 0).then(|| row[data]),
        }
        .ok_or(Error::Unmapped(logical))
    }

    /// How many ways the chunk holding `logical` can be read (1 for SINGLE and RAID0, 2 for
    /// DUP, RAID1, RAID10 and RAID5, 3 for RAID1C3 and RAID6, 4 for RAID1C4).
    pub fn copies(&self, logical: u64) -> usize {
        self.map(logical).map_or(1, |m| m.copies())
    }

    /// The profile of the chunk holding `logical`.
    pub fn profile(&self, logical: u64) -> Option<Profile> {
        self.find(logical).ok().map(|(_, c)| c.profile)
    }

    /// Every device id a chunk names.
    pub fn devids(&self) -> std::collections::BTreeSet<u64> {
        self.chunks.values().flat_map(|c| c.stripes.iter().map(|s| s.devid)).collect()
    }

    /// Every chunk: its start, length, profile and stripes.
    pub fn chunks(&self) -> impl Iterator<Item = (u64, u64, Profile, &[Stripe])> {
        self.chunks.iter().map(|(&s, c)| (s, c.length, c.profile, &c.stripes[..]))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(length: u64, ty: u64, sub: u16, stripes: &[(u64, u64)]) -> Vec<u8> {
        let mut v = vec![0u8; item_size(stripes.len())];
        v[off::LENGTH..off::LENGTH + 8].copy_from_slice(&length.to_le_bytes());
        v[off::STRIPE_LEN..off::STRIPE_LEN + 8].copy_from_slice(&65536u64.to_le_bytes());
        v[off::TYPE..off::TYPE + 8].copy_from_slice(&ty.to_le_bytes());
        v[off::NUM_STRIPES..off::NUM_STRIPES + 2].copy_from_slice(&u16::try_from(stripes.len()).unwrap().to_le_bytes());
        v[off::SUB_STRIPES..off::SUB_STRIPES + 2].copy_from_slice(&sub.to_le_bytes());
        for (i, &(devid, offset)) in stripes.iter().enumerate() {
            let s = off::STRIPES + i * off::STRIPE_SIZE;
            v[s..s + 8].copy_from_slice(&devid.to_le_bytes());
            v[s + 8..s + 16].copy_from_slice(&offset.to_le_bytes());
        }
        v
    }

    const K64: u64 = 65536;

    #[test]
    fn raid0_raid10_and_raid5_rotate_as_the_kernel_does() {
        let mut m = ChunkMap::default();
        m.insert(1 << 30, &item(6 * K64, 0x08 | 1, 0, &[(1, 1000 * K64), (2, 2000 * K64), (3, 3000 * K64)])).unwrap();
        // Unit 4: stripe 1, row 1.
        let x = m.map((1 << 30) + 4 * K64 + 5).unwrap();
        assert_eq!(x.place, Place::Mirrors(vec![Stripe { devid: 2, offset: 2001 * K64 + 5 }]));
        assert_eq!(x.run, K64 - 5);

        let mut m = ChunkMap::default();
        m.insert(0, &item(8 * K64, 0x40 | 1, 2, &[(1, 0), (2, 0), (3, 0), (4, 0)])).unwrap();
        // Unit 3: group 1 (stripes 2 and 3), row 1.
        let x = m.map(3 * K64).unwrap();
        assert_eq!(x.place, Place::Mirrors(vec![Stripe { devid: 3, offset: K64 }, Stripe { devid: 4, offset: K64 }]));
        assert_eq!(x.copies(), 2);

        let mut m = ChunkMap::default();
        m.insert(0, &item(8 * K64, 0x80 | 1, 0, &[(1, 0), (2, 0), (3, 0)])).unwrap();
        // Row 1 rotates by one: data 0 on stripe 1, data 1 on stripe 2, P on stripe 0.
        let x = m.map(3 * K64).unwrap();
        let row =
            vec![Stripe { devid: 2, offset: K64 }, Stripe { devid: 3, offset: K64 }, Stripe { devid: 1, offset: K64 }];
        assert_eq!(x.place, Place::Parity { data: 1, row, nr_data: 2 });
        assert_eq!(x.copies(), 2);
    }

    #[test]
    fn impossible_chunks_are_refused() {
        let mut m = ChunkMap::default();
        assert!(m.insert(0, &item(K64, 0x10 | 1, 0, &[(1, 0)])).is_err(), "RAID1 with one stripe");
        assert!(m.insert(0, &item(K64, 0x18 | 1, 0, &[(1, 0), (2, 0)])).is_err(), "two profile bits");
        assert!(m.insert(0, &item(K64, 1, 0, &[(1, 0), (2, 0)])).is_err(), "SINGLE with two stripes");
        assert!(m.insert(0, &item(K64, 0x40 | 1, 0, &[(1, 0), (2, 0)])).is_err(), "RAID10 without sub_stripes");
    }
}
