//! Items of the fs and root trees, one module per on-disk structure, and the item keys.

pub mod dir;
pub mod file_extent;
pub mod inode;
pub mod root;

/// Item types (`BTRFS_*_KEY`).
pub mod key_type {
    /// `BTRFS_INODE_ITEM_KEY`.
    pub const INODE_ITEM: u8 = 1;
    /// `BTRFS_INODE_REF_KEY`.
    pub const INODE_REF: u8 = 12;
    /// `BTRFS_XATTR_ITEM_KEY`.
    pub const XATTR_ITEM: u8 = 24;
    /// `BTRFS_DIR_ITEM_KEY`.
    pub const DIR_ITEM: u8 = 84;
    /// `BTRFS_DIR_INDEX_KEY`.
    pub const DIR_INDEX: u8 = 96;
    /// `BTRFS_EXTENT_DATA_KEY`.
    pub const EXTENT_DATA: u8 = 108;
    /// `BTRFS_EXTENT_CSUM_KEY`.
    pub const EXTENT_CSUM: u8 = 128;
    /// `BTRFS_ROOT_ITEM_KEY`.
    pub const ROOT_ITEM: u8 = 132;
    /// `BTRFS_ROOT_BACKREF_KEY`.
    pub const ROOT_BACKREF: u8 = 144;
    /// `BTRFS_ROOT_REF_KEY`.
    pub const ROOT_REF: u8 = 156;
    /// `BTRFS_DEV_ITEM_KEY`.
    pub const DEV_ITEM: u8 = 216;
    /// `BTRFS_CHUNK_ITEM_KEY`.
    pub const CHUNK_ITEM: u8 = 228;
}

/// Object ids (`BTRFS_*_OBJECTID`).
pub mod objectid {
    /// `BTRFS_ROOT_TREE_OBJECTID`.
    pub const ROOT_TREE: u64 = 1;
    /// `BTRFS_CHUNK_TREE_OBJECTID`.
    pub const CHUNK_TREE: u64 = 3;
    /// `BTRFS_FS_TREE_OBJECTID`: the top subvolume.
    pub const FS_TREE: u64 = 5;
    /// `BTRFS_CSUM_TREE_OBJECTID`.
    pub const CSUM_TREE: u64 = 7;
    /// `BTRFS_FIRST_FREE_OBJECTID`: the root directory of every fs tree, and the first subvolume id.
    pub const FIRST_FREE: u64 = 256;
    /// `BTRFS_EMPTY_SUBVOL_DIR_OBJECTID`: the inode number of the empty directory the kernel shows
    /// in place of a subvolume entry it does not follow (a snapshot's copy of an entry whose
    /// subvolume's back reference names another directory).
    pub const EMPTY_SUBVOL_DIR: u64 = 2;
    /// `BTRFS_LAST_FREE_OBJECTID` (-256).
    pub const LAST_FREE: u64 = u64::MAX - 255;
    /// `BTRFS_EXTENT_CSUM_OBJECTID` (-10).
    pub const EXTENT_CSUM: u64 = u64::MAX - 9;
}
