//! A read-only btrfs image reader: enough of the on-disk format to find every file and its data
//! extents and to verify what is on disk.
//!
//! * the superblock (at 64 KiB) with all four checksum types (crc32c, xxhash64, sha256,
//!   blake2b-256), the system chunk array and the chunk tree (SINGLE and DUP; other profiles are
//!   [`Error::UnsupportedProfile`]);
//! * the root tree, fs trees and subvolumes, inodes and directory entries to paths;
//! * `EXTENT_DATA` items (inline, regular, prealloc, holes) and the csum tree, to check the
//!   on-disk (compressed) bytes of every data extent;
//! * raw images and `.zst`-compressed images.
//!
//! Every read is bounds-checked; corrupt metadata is a typed [`Error`], never a panic.
#![forbid(unsafe_code)]

mod reader;

pub use reader::{
    open_bytes, open_image, open_shared, ChunkMap, CsumType, DirEntry, Error, ExtentKind, FileExtent, FileKind, Image,
    Inode, Item, Key, Superblock, Tree, BTRFS_FS_TREE_OBJECTID, BTRFS_SUPER_INFO_OFFSET,
};
