//! `struct btrfs_inode_item` and `struct btrfs_timespec`.

use crate::error::{CorruptKind, Result};
use crate::items::key_type;
use crate::le::Le;
use crate::tree::Tree;

/// Field offsets of `struct btrfs_inode_item`.
pub(crate) mod off {
    pub const GENERATION: usize = 0;
    pub const SIZE: usize = 16;
    pub const NBYTES: usize = 24;
    pub const NLINK: usize = 40;
    pub const UID: usize = 44;
    pub const GID: usize = 48;
    pub const MODE: usize = 52;
    pub const RDEV: usize = 56;
    pub const FLAGS: usize = 64;
    pub const ATIME: usize = 112;
    pub const CTIME: usize = 124;
    pub const MTIME: usize = 136;
    pub const OTIME: usize = 148;
    /// `struct btrfs_timespec`: sec (le64), nsec (le32).
    pub const TIMESPEC_NSEC: usize = 8;
}

/// `BTRFS_INODE_NODATASUM`: the file's data has no checksums.
pub const INODE_NODATASUM: u64 = 1 << 0;

/// A time stamp (`struct btrfs_timespec`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timespec {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: u32,
}

impl Timespec {
    fn parse(b: &Le<'_>, at: usize) -> Result<Self> {
        Ok(Timespec { sec: b.i64(at)?, nsec: b.u32(at + off::TIMESPEC_NSEC)? })
    }
}

/// An inode's attributes (`struct btrfs_inode_item`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inode {
    /// Generation that created it.
    pub generation: u64,
    /// Size in bytes (`i_size`).
    pub size: u64,
    /// Bytes of data it holds on disk (`nbytes`).
    pub nbytes: u64,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mode bits (type and permissions, with setuid, setgid and sticky).
    pub mode: u32,
    /// Device number of a character or block device (the kernel's `new_encode_dev()`).
    pub rdev: u64,
    /// Inode flags (NODATASUM, COMPRESS, ...).
    pub flags: u64,
    /// Access time.
    pub atime: Timespec,
    /// Change time.
    pub ctime: Timespec,
    /// Modification time.
    pub mtime: Timespec,
    /// Creation time.
    pub otime: Timespec,
}

impl Inode {
    /// Parse an inode item.
    pub fn parse(data: &[u8]) -> Result<Self> {
        let b = Le::new(data, "btrfs_inode_item");
        Ok(Inode {
            generation: b.u64(off::GENERATION)?,
            size: b.u64(off::SIZE)?,
            nbytes: b.u64(off::NBYTES)?,
            nlink: b.u32(off::NLINK)?,
            uid: b.u32(off::UID)?,
            gid: b.u32(off::GID)?,
            mode: b.u32(off::MODE)?,
            rdev: b.u64(off::RDEV)?,
            flags: b.u64(off::FLAGS)?,
            atime: Timespec::parse(&b, off::ATIME)?,
            ctime: Timespec::parse(&b, off::CTIME)?,
            mtime: Timespec::parse(&b, off::MTIME)?,
            otime: Timespec::parse(&b, off::OTIME)?,
        })
    }

    /// The inode `ino` of `tree`.
    pub fn find(tree: &Tree, ino: u64) -> Result<Self> {
        if ino == crate::items::objectid::EMPTY_SUBVOL_DIR {
            return Ok(Self::empty_subvol_dir());
        }
        let it = tree.items_of(ino, key_type::INODE_ITEM).next().ok_or(CorruptKind::NoInode { tree: tree.id, ino })?;
        Self::parse(&it.data)
    }

    /// The inode the kernel makes up for an empty subvolume directory (`new_simple_dir()`,
    /// fs/btrfs/inode.c): a directory, mode 0755, one link, owned by root, its times the moment
    /// it is looked up; no item on disk holds it.
    pub fn empty_subvol_dir() -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let t = Timespec { sec: i64::try_from(now.as_secs()).unwrap_or(i64::MAX), nsec: now.subsec_nanos() };
        Inode { nlink: 1, mode: 0o040_755, atime: t, ctime: t, mtime: t, otime: t, ..Inode::default() }
    }
}
