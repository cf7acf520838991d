//! `struct btrfs_root_item` and `struct btrfs_root_ref`: where each tree starts, and which
//! subvolume sits under which directory.

use crate::error::Result;
use crate::le::Le;

/// Field offsets of `struct btrfs_root_item` (after its embedded inode item) and of
/// `struct btrfs_root_ref`.
mod off {
    pub const GENERATION: usize = 160;
    pub const BYTENR: usize = 176;
    pub const FLAGS: usize = 208;
    pub const LEVEL: usize = 238;
    pub const UUID: usize = 247;
    pub const PARENT_UUID: usize = 263;
    pub const REF_DIRID: usize = 0;
    pub const REF_NAME_LEN: usize = 16;
    pub const REF_NAME: usize = 18;
}

/// `BTRFS_ROOT_SUBVOL_RDONLY`.
pub const ROOT_SUBVOL_RDONLY: u64 = 1 << 0;

/// A tree's root item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootItem {
    /// Root block.
    pub bytenr: u64,
    /// Its level.
    pub level: u8,
    /// Generation of the root.
    pub generation: u64,
    /// Flags (RDONLY).
    pub flags: u64,
    /// The subvolume's UUID (zero on old filesystems).
    pub uuid: [u8; 16],
    /// The UUID of the subvolume a snapshot was taken of (zero for a subvolume).
    pub parent_uuid: [u8; 16],
}

impl RootItem {
    /// Parse a root item (old, shorter items have no UUIDs: zero).
    pub fn parse(data: &[u8]) -> Result<Self> {
        let b = Le::new(data, "btrfs_root_item");
        Ok(RootItem {
            bytenr: b.u64(off::BYTENR)?,
            level: b.u8(off::LEVEL)?,
            generation: b.u64(off::GENERATION)?,
            flags: b.u64(off::FLAGS)?,
            uuid: b.uuid(off::UUID).unwrap_or_default(),
            parent_uuid: b.uuid(off::PARENT_UUID).unwrap_or_default(),
        })
    }

    /// True for a snapshot (it names the subvolume it was taken of).
    pub fn is_snapshot(&self) -> bool {
        self.parent_uuid != [0; 16]
    }
}

/// A ROOT_REF: subvolume `key.offset` sits in directory `dirid` of tree `key.objectid` as `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootRef {
    /// Directory inode in the parent tree.
    pub dirid: u64,
    /// The name of the subvolume in that directory, raw bytes.
    pub name: Vec<u8>,
}

impl RootRef {
    /// Parse a root ref.
    pub fn parse(data: &[u8]) -> Result<Self> {
        let b = Le::new(data, "btrfs_root_ref");
        let n = b.len16(off::REF_NAME_LEN)?;
        Ok(RootRef { dirid: b.u64(off::REF_DIRID)?, name: b.slice(off::REF_NAME, n)?.to_vec() })
    }
}
