//! Tree blocks: `struct btrfs_header`, leaves of `struct btrfs_item` and nodes of
//! `struct btrfs_key_ptr`, keys (`struct btrfs_disk_key`), and the walk of a whole tree.

use std::collections::HashSet;

use crate::error::{CorruptKind, Error, Result};
use crate::le::Le;
use crate::Image;

/// `BTRFS_MAX_LEVEL`.
const MAX_LEVEL: u8 = 8;

/// Field offsets of `struct btrfs_header`, `struct btrfs_item`, `struct btrfs_key_ptr` and
/// `struct btrfs_disk_key`.
mod off {
    pub const HEADER_FSID: usize = 32;
    pub const HEADER_BYTENR: usize = 48;
    pub const HEADER_NRITEMS: usize = 96;
    pub const HEADER_LEVEL: usize = 100;
    pub const HEADER_SIZE: usize = 101;
    pub const ITEM_OFFSET: usize = 17;
    pub const ITEM_SIZE_FIELD: usize = 21;
    pub const ITEM_SIZE: usize = 25;
    pub const KEY_PTR_BLOCKPTR: usize = 17;
    pub const KEY_PTR_SIZE: usize = 33;
    pub const KEY_OBJECTID: usize = 0;
    pub const KEY_TYPE: usize = 8;
    pub const KEY_OFFSET: usize = 9;
}

/// A key (`btrfs_disk_key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Object id.
    pub objectid: u64,
    /// Item type.
    pub ty: u8,
    /// Offset.
    pub offset: u64,
}

impl Key {
    pub(crate) fn parse(b: &Le<'_>, at: usize) -> Result<Self> {
        Ok(Key {
            objectid: b.u64(at + off::KEY_OBJECTID)?,
            ty: b.u8(at + off::KEY_TYPE)?,
            offset: b.u64(at + off::KEY_OFFSET)?,
        })
    }
}

/// One item of a leaf: key and data.
#[derive(Clone, Debug)]
pub struct Item {
    /// Key.
    pub key: Key,
    /// Item data.
    pub data: Vec<u8>,
}

/// All items of one tree, in key order.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    /// Tree id.
    pub id: u64,
    /// Items in key order.
    pub items: Vec<Item>,
}

impl Tree {
    /// Items with `objectid` and `ty`.
    pub fn items_of(&self, objectid: u64, ty: u8) -> impl Iterator<Item = &Item> {
        let lo = self.items.partition_point(|i| (i.key.objectid, i.key.ty) < (objectid, ty));
        self.items[lo..].iter().take_while(move |i| i.key.objectid == objectid && i.key.ty == ty)
    }
}

impl Image {
    /// A tree block, its checksum, address and filesystem checked; where the first copy fails
    /// (or is on a missing device), the next (`btrfs_read_extent_buffer()` tries every mirror):
    /// DUP's and RAID1's second copy, RAID1C3/C4's others, RAID5/6 rebuilt from parity.
    fn read_block(&self, bytenr: u64) -> Result<Vec<u8>> {
        let first = self.read_block_copy(bytenr, 0);
        let Err(why) = &first else { return first };
        let copies = self.chunks.copies(bytenr);
        for copy in 1..copies {
            if let Ok(b) = self.read_block_copy(bytenr, copy) {
                let profile = self.chunks.profile(bytenr).map_or("", |p| p.name());
                self.note_repair(format!(
                    "tree block {bytenr:#x} read from copy {} of {copies} ({profile}; the first: {why})",
                    copy + 1
                ));
                return Ok(b);
            }
        }
        first
    }

    fn read_block_copy(&self, bytenr: u64, copy: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; usize::try_from(self.sb.nodesize).unwrap_or(usize::MAX)];
        self.read_copy_into(bytenr, &mut b, copy)?;
        if !self.sb.csum_type.matches(&b) {
            return Err(Error::BadChecksum { what: "tree block", at: bytenr });
        }
        let h = Le::new(&b, "btrfs_header");
        if h.u64(off::HEADER_BYTENR)? != bytenr {
            return Err(CorruptKind::TreeBlock { bytenr, problem: "header names another address" }.into());
        }
        if h.uuid(off::HEADER_FSID)? != self.sb.metadata_uuid {
            return Err(CorruptKind::TreeBlock { bytenr, problem: "belongs to another filesystem" }.into());
        }
        Ok(b)
    }

    /// Every item of the tree rooted at `bytenr` (depth-first, key order).
    pub fn read_tree(&self, id: u64, bytenr: u64, level: u8) -> Result<Tree> {
        if level >= MAX_LEVEL {
            return Err(CorruptKind::RootLevel { tree: id, level }.into());
        }
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        self.walk_block(bytenr, level, &mut items, &mut seen)?;
        Ok(Tree { id, items })
    }

    fn walk_block(&self, bytenr: u64, level: u8, out: &mut Vec<Item>, seen: &mut HashSet<u64>) -> Result<()> {
        if !seen.insert(bytenr) {
            return Err(CorruptKind::TreeCycle(bytenr).into());
        }
        let block = self.read_block(bytenr)?;
        let b = Le::new(&block, "tree block");
        let nritems = b.len32(off::HEADER_NRITEMS)?;
        if b.u8(off::HEADER_LEVEL)? != level {
            return Err(CorruptKind::TreeBlock { bytenr, problem: "level differs from its parent's pointer" }.into());
        }
        let room = block.len() - off::HEADER_SIZE;
        if level == 0 {
            if nritems > room / off::ITEM_SIZE {
                return Err(CorruptKind::TreeBlock { bytenr, problem: "more items than fit" }.into());
            }
            let data = Le::new(&block[off::HEADER_SIZE..], "leaf data");
            for i in 0..nritems {
                let p = off::HEADER_SIZE + i * off::ITEM_SIZE;
                let key = Key::parse(&b, p)?;
                let at = b.len32(p + off::ITEM_OFFSET)?;
                let size = b.len32(p + off::ITEM_SIZE_FIELD)?;
                let bytes = data
                    .slice(at, size)
                    .map_err(|_| CorruptKind::TreeBlock { bytenr, problem: "an item points outside the leaf" })?;
                out.push(Item { key, data: bytes.to_vec() });
            }
        } else {
            if nritems == 0 || nritems > room / off::KEY_PTR_SIZE {
                return Err(CorruptKind::TreeBlock { bytenr, problem: "no pointers, or more than fit" }.into());
            }
            for i in 0..nritems {
                let child = b.u64(off::HEADER_SIZE + i * off::KEY_PTR_SIZE + off::KEY_PTR_BLOCKPTR)?;
                self.walk_block(child, level - 1, out, seen)?;
            }
        }
        Ok(())
    }
}
