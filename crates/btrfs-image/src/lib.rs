//! A read-only btrfs image reader: enough of the on-disk format to find every file, its
//! metadata and its data extents, and to verify what is on disk. One module per on-disk
//! structure, every field offset named after its field in `include/uapi/linux/btrfs_tree.h`:
//!
//! * [`superblock`]: `btrfs_super_block` with all four checksum types (crc32c, xxhash64,
//!   sha256, blake2b-256);
//! * [`chunk`]: `btrfs_chunk` and `btrfs_stripe` from the sys chunk array and the chunk tree,
//!   every profile (SINGLE, DUP, RAID0, RAID1, RAID1C3, RAID1C4, RAID10, RAID5, RAID6);
//! * [`raid56`]: RAID5/RAID6 rebuild of a data stripe from the others and P or Q (the kernel's
//!   lib/raid6 arithmetic in GF(2^8));
//! * devices: one image file per device, matched by fsid and devid from their superblocks;
//!   missing devices named from the chunk tree's dev items, their data read from the other
//!   copies or rebuilt;
//! * [`tree`]: `btrfs_header`, leaves and nodes, keys;
//! * [`items`]: `btrfs_inode_item`, `btrfs_dir_item` (directory entries and xattrs),
//!   `btrfs_file_extent_item`, `btrfs_root_item` and `btrfs_root_ref`;
//! * the log tree, replayed over the committed trees as the kernel does at mount
//!   ([`OpenOptions::replay_log`]; fs/btrfs/tree-log.c);
//! * [`Image`]: raw images, `.zst` images (inflated into a sparse temporary file: bounded
//!   memory), images in memory; trees read once, when first needed; the csum tree.
//!
//! Every read is bounds-checked; corrupt metadata is a typed [`Error`] ([`CorruptKind`] says
//! which structure), never a panic.
#![forbid(unsafe_code)]
#![warn(clippy::as_conversions)]

pub mod chunk;
mod error;
mod image;
pub mod items;
mod le;
mod log_replay;
pub mod raid56;
pub mod superblock;
pub mod tree;
mod walk;

pub use chunk::{ChunkMap, Mapped, Place, Profile, Stripe};
pub use error::{CorruptKind, Error, Result};
pub use image::{
    open_bytes, open_bytes_with, open_devices, open_image, open_image_with, open_shared, Image, OpenOptions,
};
pub use items::file_extent::{ExtentKind, FileExtent};
pub use items::inode::{Inode, Timespec};
pub use items::objectid::FS_TREE as BTRFS_FS_TREE_OBJECTID;
pub use superblock::{CsumType, DevItem, Superblock, BTRFS_SUPER_INFO_OFFSET};
pub use tree::{Item, Key, Tree};
pub use walk::{DirEntry, FileKind, Paths, Walk};
