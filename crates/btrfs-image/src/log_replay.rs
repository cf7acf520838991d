//! The log tree replayed over the committed trees, in memory, as the kernel does at mount
//! (`btrfs_recover_log_trees()`, fs/btrfs/tree-log.c, 6.18): what an image taken after an fsync
//! and before the next commit (what a crash leaves) holds for its readers.
//!
//! The log root tree (the superblock's `log_root`) holds one root item per subvolume that was
//! logged, keyed `(TREE_LOG_OBJECTID, ROOT_ITEM, subvolume id)`. Each log tree is replayed into
//! its subvolume's tree in the kernel's three passes over the log's items, in key order:
//!
//! 1. `LOG_WALK_REPLAY_INODES`: every logged inode item; before it is copied, the subvolume's
//!    xattrs of that inode that the log lacks are deleted (`replay_xattr_deletes()`), and for a
//!    directory the entries inside the log's `DIR_LOG_INDEX` ranges that the log lacks
//!    (`replay_dir_deletes()`); a regular file is then cut to its logged size (its extents past
//!    the size's sector are dropped). A logged inode with no links (an fsynced O_TMPFILE) is
//!    skipped with all its items.
//! 2. `LOG_WALK_REPLAY_DIR_INDEX`: every logged `DIR_INDEX` (`replay_one_name()`): an entry of
//!    the same name or index pointing elsewhere is unlinked; the name is added unless an inode
//!    reference in the log will add it, or its inode does not exist.
//! 3. `LOG_WALK_REPLAY_ALL`: xattr items copied; inode references (`add_inode_ref()`): names of
//!    the inode in that directory that the log lacks are unlinked, conflicting entries dropped,
//!    the logged names linked; file extents (`replay_one_extent()`): the range is dropped from
//!    the file (`btrfs_drop_extents()`: extents split or trimmed at its ends) and the logged
//!    extent inserted (a hole only without NO_HOLES); their data checksums come from the log.
//!
//! What this model leaves out, none of which changes what a reader sees: `DIR_ITEM` keys (the
//! walk reads `DIR_INDEX`; names are matched on those), link counts and `nbytes` (the logged
//! values are kept, the kernel recounts them: `fixup_inode_link_counts()`), orphan items, the
//! extent tree's back references. Entries naming a subvolume are left as they are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use crate::error::{CorruptKind, Result};
use crate::items::dir::DirItem;
use crate::items::key_type;
use crate::le::Le;
use crate::tree::{Item, Key, Tree};

/// `BTRFS_DIR_LOG_INDEX_KEY`: a range of directory indexes the log is authoritative for.
pub(crate) const DIR_LOG_INDEX: u8 = 72;
/// `BTRFS_INODE_EXTREF_KEY`.
const INODE_EXTREF: u8 = 13;
/// `BTRFS_FILE_EXTENT_INLINE`, `_REG`, `_PREALLOC`.
const EXTENT_INLINE: u8 = 0;
/// `S_IFMT`, `S_IFDIR`, `S_IFREG`.
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;

/// Field offsets: those of `btrfs_inode_item`, `btrfs_file_extent_item` and `btrfs_dir_item`
/// from their item modules, and of `btrfs_inode_ref`, `btrfs_inode_extref` and
/// `btrfs_dir_log_item`, which only the replay reads.
mod off {
    use crate::items::{dir, file_extent as fe, inode};
    pub const INODE_GENERATION: usize = inode::off::GENERATION;
    pub const INODE_SIZE: usize = inode::off::SIZE;
    pub const INODE_NLINK: usize = inode::off::NLINK;
    pub const INODE_MODE: usize = inode::off::MODE;
    pub const FE_RAM_BYTES: usize = fe::off::RAM_BYTES;
    pub const FE_COMPRESSION: usize = fe::off::COMPRESSION;
    pub const FE_TYPE: usize = fe::off::TYPE;
    pub const FE_DISK_BYTENR: usize = fe::off::DISK_BYTENR;
    pub const FE_DISK_NUM_BYTES: usize = fe::off::DISK_NUM_BYTES;
    pub const FE_OFFSET: usize = fe::off::OFFSET;
    pub const FE_NUM_BYTES: usize = fe::off::NUM_BYTES;
    /// The item's size: `num_bytes` is its last field.
    pub const FE_SIZE: usize = fe::off::NUM_BYTES + 8;
    /// `btrfs_inode_ref`: index (8), name_len (2), then the name.
    pub const REF_HEADER: usize = 10;
    /// `btrfs_inode_extref`: parent (8), index (8), name_len (2), then the name.
    pub const EXTREF_HEADER: usize = 18;
    pub const DIR_ITEM_HEADER: usize = dir::off::NAME;
    /// `btrfs_dir_log_item`: end.
    pub const DIR_LOG_END: usize = 0;
}

/// One name of an inode reference: the directory, the index in it, the name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RefName {
    parent: u64,
    index: u64,
    name: Vec<u8>,
}

/// The names of an `INODE_REF` item (`parent` from its key) or an `INODE_EXTREF` item.
fn ref_names(key: &Key, data: &[u8]) -> Result<Vec<RefName>> {
    let mut out = Vec::new();
    let mut at = 0;
    let ext = key.ty == INODE_EXTREF;
    while at < data.len() {
        let b = Le::new(&data[at..], if ext { "btrfs_inode_extref" } else { "btrfs_inode_ref" });
        let (parent, index, len_at, header) = if ext {
            (b.u64(0)?, b.u64(8)?, 16, off::EXTREF_HEADER)
        } else {
            (key.offset, b.u64(0)?, 8, off::REF_HEADER)
        };
        let n = b.len16(len_at)?;
        out.push(RefName { parent, index, name: b.slice(header, n)?.to_vec() });
        at += header + n;
    }
    Ok(out)
}

fn write_ref_names(key: &Key, names: &[RefName]) -> Vec<u8> {
    let mut v = Vec::new();
    for r in names {
        if key.ty == INODE_EXTREF {
            v.extend_from_slice(&r.parent.to_le_bytes());
        }
        v.extend_from_slice(&r.index.to_le_bytes());
        v.extend_from_slice(&u16::try_from(r.name.len()).unwrap_or(u16::MAX).to_le_bytes());
        v.extend_from_slice(&r.name);
    }
    v
}

/// A `btrfs_dir_item` naming inode `ino` (a `DIR_INDEX` item's data).
fn dir_item(ino: u64, ft: u8, name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(off::DIR_ITEM_HEADER + name.len());
    v.extend_from_slice(&ino.to_le_bytes());
    v.push(key_type::INODE_ITEM);
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes()); // transid
    v.extend_from_slice(&0u16.to_le_bytes()); // data_len
    v.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes());
    v.push(ft);
    v.extend_from_slice(name);
    v
}

/// `btrfs_inode_type()`: the `BTRFS_FT_*` of a mode.
fn file_type(mode: u32) -> u8 {
    match mode & S_IFMT {
        S_IFREG => 1,
        S_IFDIR => 2,
        0o020_000 => 3,
        0o060_000 => 4,
        0o010_000 => 5,
        0o140_000 => 6,
        0o120_000 => 7,
        _ => 0,
    }
}

fn le64(d: &[u8], at: usize, what: &'static str) -> Result<u64> {
    Le::new(d, what).u64(at)
}

fn set64(d: &mut [u8], at: usize, v: u64) {
    if let Some(s) = d.get_mut(at..at + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// A file extent item's fields that the replay needs.
struct Extent {
    ty: u8,
    compressed: bool,
    disk_bytenr: u64,
    disk_num_bytes: u64,
    offset: u64,
    num_bytes: u64,
    ram_bytes: u64,
}

impl Extent {
    fn parse(d: &[u8]) -> Result<Self> {
        let b = Le::new(d, "btrfs_file_extent_item");
        let ty = b.u8(off::FE_TYPE)?;
        let inline = ty == EXTENT_INLINE;
        Ok(Extent {
            ty,
            compressed: b.u8(off::FE_COMPRESSION)? != 0,
            ram_bytes: b.u64(off::FE_RAM_BYTES)?,
            disk_bytenr: if inline { 0 } else { b.u64(off::FE_DISK_BYTENR)? },
            disk_num_bytes: if inline { 0 } else { b.u64(off::FE_DISK_NUM_BYTES)? },
            offset: if inline { 0 } else { b.u64(off::FE_OFFSET)? },
            num_bytes: if inline { 0 } else { b.u64(off::FE_NUM_BYTES)? },
        })
    }

    /// The file range's end: `num_bytes` past the start, or `ram_bytes` for an inline extent
    /// (as `btrfs_drop_extents()` reckons it).
    fn end(&self, start: u64) -> u64 {
        start.saturating_add(if self.ty == EXTENT_INLINE { self.ram_bytes } else { self.num_bytes })
    }

    /// The logical range whose data checksums `replay_one_extent()` copies from the log: the
    /// whole disk extent when compressed, else the referenced part.
    fn csum_range(&self) -> Option<(u64, u64)> {
        if self.ty == EXTENT_INLINE || self.disk_bytenr == 0 {
            return None;
        }
        Some(if self.compressed {
            (self.disk_bytenr, self.disk_bytenr.saturating_add(self.disk_num_bytes))
        } else {
            let s = self.disk_bytenr.saturating_add(self.offset);
            (s, s.saturating_add(self.num_bytes))
        })
    }
}

/// What a replay needs of the filesystem.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    /// Sector size.
    pub sectorsize: u64,
    /// `BTRFS_FEATURE_INCOMPAT_NO_HOLES`: holes are not items.
    pub no_holes: bool,
}

/// The logical ranges whose data checksums the replay of `log` takes from the log's
/// `EXTENT_CSUM` items (one per logged data extent that is replayed).
pub(crate) fn csum_ranges(log: &Tree) -> Result<Vec<(u64, u64)>> {
    let skipped = unlinked_inodes(log)?;
    let mut v = Vec::new();
    for it in log.items.iter().filter(|i| i.key.ty == key_type::EXTENT_DATA && !skipped.contains(&i.key.objectid)) {
        if let Some(r) = Extent::parse(&it.data)?.csum_range() {
            v.push(r);
        }
    }
    Ok(v)
}

/// Logged inodes with no links: `replay_one_buffer()` skips them and their items.
fn unlinked_inodes(log: &Tree) -> Result<HashSet<u64>> {
    let mut s = HashSet::new();
    for it in log.items.iter().filter(|i| i.key.ty == key_type::INODE_ITEM) {
        if Le::new(&it.data, "btrfs_inode_item").u32(off::INODE_NLINK)? == 0 {
            s.insert(it.key.objectid);
        }
    }
    Ok(s)
}

/// Replay `log` over `committed` (the subvolume tree of the same id).
pub(crate) fn replay(committed: &Tree, log: &Tree, geo: Geometry) -> Result<Tree> {
    let mut r = Replay {
        items: committed.items.iter().map(|i| (i.key, i.data.clone())).collect(),
        log,
        geo,
        names: HashMap::new(),
    };
    let skipped = unlinked_inodes(log)?;
    let live = || log.items.iter().filter(|i| !skipped.contains(&i.key.objectid));
    for it in live().filter(|i| i.key.ty == key_type::INODE_ITEM) {
        r.replay_inode(it)?;
    }
    for it in live().filter(|i| i.key.ty == key_type::DIR_INDEX) {
        r.replay_one_name(it)?;
    }
    for it in live() {
        match it.key.ty {
            key_type::XATTR_ITEM => {
                r.items.insert(it.key, it.data.clone());
            }
            key_type::INODE_REF | INODE_EXTREF => r.add_inode_ref(it)?,
            key_type::EXTENT_DATA => r.replay_one_extent(it)?,
            _ => {}
        }
    }
    Ok(Tree { id: committed.id, items: r.items.into_iter().map(|(key, data)| Item { key, data }).collect() })
}

struct Replay<'a> {
    items: BTreeMap<Key, Vec<u8>>,
    log: &'a Tree,
    geo: Geometry,
    /// Per directory, name -> index of its `DIR_INDEX` entries (built when first asked).
    names: HashMap<u64, HashMap<Vec<u8>, u64>>,
}

fn key(objectid: u64, ty: u8, offset: u64) -> Key {
    Key { objectid, ty, offset }
}

/// The keys of `objectid` and `ty`, every offset.
fn span(objectid: u64, ty: u8) -> (Bound<Key>, Bound<Key>) {
    (Bound::Included(key(objectid, ty, 0)), Bound::Included(key(objectid, ty, u64::MAX)))
}

impl Replay<'_> {
    fn mode(&self, ino: u64) -> Result<Option<u32>> {
        match self.items.get(&key(ino, key_type::INODE_ITEM, 0)) {
            Some(d) => Ok(Some(Le::new(d, "btrfs_inode_item").u32(off::INODE_MODE)?)),
            None => Ok(None),
        }
    }

    fn exists(&self, ino: u64) -> bool {
        self.items.contains_key(&key(ino, key_type::INODE_ITEM, 0))
    }

    /// The `DIR_INDEX` entry at `index` of `dir`.
    fn entry_at(&self, dir: u64, index: u64) -> Result<Option<DirItem>> {
        match self.items.get(&key(dir, key_type::DIR_INDEX, index)) {
            Some(d) => Ok(DirItem::parse_all(dir, d)?.into_iter().next()),
            None => Ok(None),
        }
    }

    fn names_of(&mut self, dir: u64) -> Result<&mut HashMap<Vec<u8>, u64>> {
        if !self.names.contains_key(&dir) {
            let mut m = HashMap::new();
            for (k, d) in self.items.range(span(dir, key_type::DIR_INDEX)) {
                for e in DirItem::parse_all(dir, d)? {
                    m.insert(e.name, k.offset);
                }
            }
            self.names.insert(dir, m);
        }
        Ok(self.names.entry(dir).or_default())
    }

    /// The entry named `name` in `dir` (what `btrfs_lookup_dir_item()` finds): its index and item.
    fn entry_named(&mut self, dir: u64, name: &[u8]) -> Result<Option<(u64, DirItem)>> {
        let Some(&index) = self.names_of(dir)?.get(name) else { return Ok(None) };
        Ok(self.entry_at(dir, index)?.map(|e| (index, e)))
    }

    /// The directory's size moves by twice a name's length per name (`btrfs_i_size_write()`
    /// in `btrfs_add_link()` and `btrfs_unlink_inode()`).
    fn dir_size(&mut self, dir: u64, name: &[u8], add: bool) {
        if let Some(d) = self.items.get_mut(&key(dir, key_type::INODE_ITEM, 0)) {
            let Ok(size) = le64(d, off::INODE_SIZE, "btrfs_inode_item") else { return };
            let n = 2 * crate::le::to_u64(name.len());
            set64(d, off::INODE_SIZE, if add { size.saturating_add(n) } else { size.saturating_sub(n) });
        }
    }

    /// `btrfs_unlink_inode()`: `name` leaves `dir` and the inode's references.
    fn unlink(&mut self, dir: u64, ino: u64, name: &[u8]) -> Result<()> {
        if let Some(index) = self.names_of(dir)?.remove(name) {
            self.items.remove(&key(dir, key_type::DIR_INDEX, index));
            self.dir_size(dir, name, false);
        }
        let refs: Vec<Key> = self
            .items
            .range(span(ino, key_type::INODE_REF))
            .chain(self.items.range(span(ino, INODE_EXTREF)))
            .map(|(k, _)| *k)
            .collect();
        for k in refs {
            let Some(d) = self.items.get(&k) else { continue };
            let mut names = ref_names(&k, d)?;
            let before = names.len();
            names.retain(|r| !(r.parent == dir && r.name == name));
            if names.len() != before {
                if names.is_empty() {
                    self.items.remove(&k);
                } else {
                    self.items.insert(k, write_ref_names(&k, &names));
                }
            }
        }
        Ok(())
    }

    /// `btrfs_add_link()`: `name` at `index` of `dir` names `ino`, with a back reference. A
    /// name already in the directory stays (-EEXIST).
    fn add_link(&mut self, dir: u64, ino: u64, name: &[u8], index: u64) -> Result<()> {
        if self.names_of(dir)?.contains_key(name) {
            return Ok(());
        }
        let ft = file_type(self.mode(ino)?.unwrap_or(0));
        self.items.insert(key(dir, key_type::DIR_INDEX, index), dir_item(ino, ft, name));
        self.names_of(dir)?.insert(name.to_vec(), index);
        self.dir_size(dir, name, true);
        let rk = key(ino, key_type::INODE_REF, dir);
        let mut names = match self.items.get(&rk) {
            Some(d) => ref_names(&rk, d)?,
            None => Vec::new(),
        };
        if !names.iter().any(|r| r.name == name) {
            names.push(RefName { parent: dir, index, name: name.to_vec() });
            self.items.insert(rk, write_ref_names(&rk, &names));
        }
        Ok(())
    }

    /// Pass 1 for one logged inode item.
    fn replay_inode(&mut self, it: &Item) -> Result<()> {
        let ino = it.key.objectid;
        let b = Le::new(&it.data, "btrfs_inode_item");
        let mode = b.u32(off::INODE_MODE)?;
        self.replay_xattr_deletes(ino)?;
        if mode & S_IFMT == S_IFDIR {
            self.replay_dir_deletes(ino)?;
        }
        // overwrite_item(): an inode logged with generation 0 only says it exists (a directory
        // fsync): an existing item keeps its fields but a regular file's non-zero size.
        let k = key(ino, key_type::INODE_ITEM, 0);
        match self.items.get_mut(&k) {
            Some(old) if b.u64(off::INODE_GENERATION)? == 0 => {
                let size = b.u64(off::INODE_SIZE)?;
                let old_mode = Le::new(old, "btrfs_inode_item").u32(off::INODE_MODE)?;
                if mode & S_IFMT == S_IFREG && old_mode & S_IFMT == S_IFREG && size != 0 {
                    set64(old, off::INODE_SIZE, size);
                }
            }
            old => {
                // A directory's size is its names' (twice their length): the old item's, or 0
                // for a new directory, then counted as names are linked and unlinked.
                let dir_size = match old {
                    Some(o) if mode & S_IFMT == S_IFDIR => {
                        let ob = Le::new(o, "btrfs_inode_item");
                        (ob.u32(off::INODE_MODE)? & S_IFMT == S_IFDIR).then_some(ob.u64(off::INODE_SIZE)?)
                    }
                    None if mode & S_IFMT == S_IFDIR => Some(0),
                    _ => None,
                };
                let mut new = it.data.clone();
                if let Some(size) = dir_size {
                    set64(&mut new, off::INODE_SIZE, size);
                }
                self.items.insert(k, new);
            }
        }
        if mode & S_IFMT == S_IFREG {
            let size = le64(&self.items[&k], off::INODE_SIZE, "btrfs_inode_item")?;
            let from = size.div_ceil(self.geo.sectorsize).saturating_mul(self.geo.sectorsize);
            self.drop_extents(ino, from, u64::MAX)?;
        }
        Ok(())
    }

    /// `replay_xattr_deletes()`: the inode's xattrs that the log does not hold are deleted.
    fn replay_xattr_deletes(&mut self, ino: u64) -> Result<()> {
        let keys: Vec<Key> = self.items.range(span(ino, key_type::XATTR_ITEM)).map(|(k, _)| *k).collect();
        for k in keys {
            let logged: Vec<Vec<u8>> = match self.log_item(&k) {
                Some(d) => DirItem::parse_all(ino, d)?.into_iter().map(|e| e.name).collect(),
                None => Vec::new(),
            };
            let here = DirItem::parse_all(ino, &self.items[&k])?;
            if here.iter().all(|e| logged.contains(&e.name)) {
                continue;
            }
            // Keep the entries the log holds, as they are.
            let data = &self.items[&k];
            let mut kept = Vec::new();
            let mut at = 0;
            for e in &here {
                let len = off::DIR_ITEM_HEADER + e.name.len() + e.data.len();
                if logged.contains(&e.name) {
                    kept.extend_from_slice(data.get(at..at + len).ok_or(CorruptKind::DirItem { ino })?);
                }
                at += len;
            }
            if kept.is_empty() {
                self.items.remove(&k);
            } else {
                self.items.insert(k, kept);
            }
        }
        Ok(())
    }

    fn log_item(&self, k: &Key) -> Option<&[u8]> {
        let i = self.log.items.binary_search_by(|i| i.key.cmp(k)).ok()?;
        Some(&self.log.items[i].data)
    }

    /// `replay_dir_deletes()`: entries of `dir` inside the log's `DIR_LOG_INDEX` ranges that the
    /// log does not hold (same index, same name) were deleted before the fsync.
    fn replay_dir_deletes(&mut self, dir: u64) -> Result<()> {
        let mut ranges = Vec::new();
        for it in self.log.items_of(dir, DIR_LOG_INDEX) {
            ranges.push((it.key.offset, le64(&it.data, off::DIR_LOG_END, "btrfs_dir_log_item")?));
        }
        for (start, end) in ranges {
            let lo = Bound::Included(key(dir, key_type::DIR_INDEX, start));
            let hi = Bound::Included(key(dir, key_type::DIR_INDEX, end));
            let found: Vec<(u64, DirItem)> = self
                .items
                .range((lo, hi))
                .map(|(k, d)| Ok(DirItem::parse_all(dir, d)?.into_iter().next().map(|e| (k.offset, e))))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect();
            for (index, e) in found {
                let in_log = match self.log_item(&key(dir, key_type::DIR_INDEX, index)) {
                    Some(d) => DirItem::parse_all(dir, d)?.iter().any(|l| l.name == e.name),
                    None => false,
                };
                if !in_log && e.location.ty == key_type::INODE_ITEM {
                    self.unlink(dir, e.location.objectid, &e.name)?;
                }
            }
        }
        Ok(())
    }

    /// Pass 2: `replay_one_name()` for one logged `DIR_INDEX`.
    fn replay_one_name(&mut self, it: &Item) -> Result<()> {
        let dir = it.key.objectid;
        let index = it.key.offset;
        let Some(e) = DirItem::parse_all(dir, &it.data)?.into_iter().next() else { return Ok(()) };
        let target = e.location;
        let exists = target.ty == key_type::INODE_ITEM && self.exists(target.objectid);
        let same = |d: &DirItem| d.location == target && d.ty == e.ty;
        let mut by_name = false;
        if let Some((_, d)) = self.entry_named(dir, &e.name)? {
            by_name = same(&d);
            if !by_name && exists && d.location.ty == key_type::INODE_ITEM {
                self.unlink(dir, d.location.objectid, &e.name)?;
            }
        }
        let mut by_index = false;
        if let Some(d) = self.entry_at(dir, index)?.filter(|d| d.name == e.name) {
            by_index = same(&d);
            if !by_index && exists && d.location.ty == key_type::INODE_ITEM {
                self.unlink(dir, d.location.objectid, &e.name)?;
            }
        }
        if by_name && by_index {
            return Ok(());
        }
        // A reference in the log adds this name in pass 3.
        let rk = key(target.objectid, key_type::INODE_REF, dir);
        if let Some(d) = self.log_item(&rk) {
            if ref_names(&rk, d)?.iter().any(|r| r.name == e.name) {
                return Ok(());
            }
        }
        for x in self.log.items_of(target.objectid, INODE_EXTREF) {
            if ref_names(&x.key, &x.data)?.iter().any(|r| r.parent == dir && r.name == e.name) {
                return Ok(());
            }
        }
        // insert_one_name(): only for an inode that exists.
        if exists {
            self.add_link(dir, target.objectid, &e.name, index)?;
        }
        Ok(())
    }

    /// Pass 3: `add_inode_ref()` for one logged `INODE_REF` or `INODE_EXTREF` item.
    fn add_inode_ref(&mut self, it: &Item) -> Result<()> {
        let ino = it.key.objectid;
        let logged = ref_names(&it.key, &it.data)?;
        if it.key.ty == key_type::INODE_REF && !self.exists(it.key.offset) {
            return Ok(());
        }
        if !self.exists(ino) {
            return Err(CorruptKind::LogTree { ino, problem: "a reference to an inode that does not exist" }.into());
        }
        for r in &logged {
            if !self.exists(r.parent) {
                return Ok(());
            }
            if self.inode_in_dir(r.parent, ino, r.index, &r.name)? {
                continue;
            }
            // __add_inode_ref(): the root directory's own reference stays as it is.
            if ino == r.parent {
                return Ok(());
            }
            // Names of the inode in this directory that the log lacks.
            let mut stale = Vec::new();
            let committed_refs = self
                .items
                .range(span(ino, key_type::INODE_REF))
                .chain(self.items.range(span(ino, INODE_EXTREF)))
                .map(|(k, d)| ref_names(k, d))
                .collect::<Result<Vec<_>>>()?;
            for n in committed_refs.into_iter().flatten().filter(|n| n.parent == r.parent) {
                if !self.backref_in_log(ino, &n)? {
                    stale.push(n.name);
                }
            }
            for n in stale {
                self.unlink(r.parent, ino, &n)?;
            }
            // A conflicting index, then a conflicting name.
            if let Some(d) = self.entry_at(r.parent, r.index)?.filter(|d| d.name == r.name) {
                if d.location.ty == key_type::INODE_ITEM {
                    self.unlink(r.parent, d.location.objectid, &r.name)?;
                }
            }
            if let Some((_, d)) = self.entry_named(r.parent, &r.name)? {
                if d.location.ty == key_type::INODE_ITEM {
                    self.unlink(r.parent, d.location.objectid, &r.name)?;
                }
            }
            self.add_link(r.parent, ino, &r.name, r.index)?;
        }
        // unlink_old_inode_refs(): the names of the subvolume's item at this key that the
        // logged item lacks; then the logged item replaces it.
        if let Some(d) = self.items.get(&it.key) {
            let stale: Vec<RefName> = ref_names(&it.key, d)?
                .into_iter()
                .filter(|n| !logged.iter().any(|l| l.parent == n.parent && l.name == n.name))
                .collect();
            for n in stale {
                self.unlink(n.parent, ino, &n.name)?;
            }
        }
        self.items.insert(it.key, it.data.clone());
        Ok(())
    }

    /// `inode_in_dir()`: `name` at `index` of `dir`, and `name` in `dir`, both name `ino`.
    fn inode_in_dir(&mut self, dir: u64, ino: u64, index: u64, name: &[u8]) -> Result<bool> {
        let at = self.entry_at(dir, index)?.is_some_and(|d| d.name == name && d.location.objectid == ino);
        Ok(at && self.entry_named(dir, name)?.is_some_and(|(_, d)| d.location.objectid == ino))
    }

    /// `backref_in_log()`: the log holds this name of `ino` in its directory.
    fn backref_in_log(&self, ino: u64, n: &RefName) -> Result<bool> {
        let rk = key(ino, key_type::INODE_REF, n.parent);
        if let Some(d) = self.log_item(&rk) {
            if ref_names(&rk, d)?.iter().any(|l| l.name == n.name) {
                return Ok(true);
            }
        }
        for x in self.log.items_of(ino, INODE_EXTREF) {
            if ref_names(&x.key, &x.data)?.iter().any(|l| l.parent == n.parent && l.name == n.name) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Pass 3: `replay_one_extent()` for one logged file extent item.
    fn replay_one_extent(&mut self, it: &Item) -> Result<()> {
        let ino = it.key.objectid;
        let start = it.key.offset;
        let e = Extent::parse(&it.data)?;
        let end = if e.ty == EXTENT_INLINE {
            let ss = self.geo.sectorsize;
            start.saturating_add(e.ram_bytes).div_ceil(ss).saturating_mul(ss)
        } else {
            start.saturating_add(e.num_bytes)
        };
        if !self.exists(ino) {
            return Err(CorruptKind::LogTree { ino, problem: "a file extent of an inode that does not exist" }.into());
        }
        if e.ty != EXTENT_INLINE {
            let same = self.items.get(&it.key).is_some_and(|d| d.get(..off::FE_SIZE) == it.data.get(..off::FE_SIZE));
            if same {
                return Ok(());
            }
        }
        self.drop_extents(ino, start, end)?;
        if e.ty == EXTENT_INLINE || e.disk_bytenr != 0 || !self.geo.no_holes {
            self.items.insert(it.key, it.data.clone());
        }
        Ok(())
    }

    /// `btrfs_drop_extents()`: the file range `[start, end)` of `ino` holds no extent after it;
    /// an extent across either end keeps its part outside (its item split or trimmed, the
    /// extent offset moved with it).
    fn drop_extents(&mut self, ino: u64, start: u64, end: u64) -> Result<()> {
        let found: Vec<(Key, Vec<u8>)> =
            self.items.range(span(ino, key_type::EXTENT_DATA)).map(|(k, d)| (*k, d.clone())).collect();
        for (k, d) in found {
            let e = Extent::parse(&d)?;
            let (s, t) = (k.offset, e.end(k.offset));
            if t <= start || s >= end {
                continue;
            }
            self.items.remove(&k);
            if e.ty == EXTENT_INLINE {
                continue;
            }
            if s < start {
                let mut front = d.clone();
                set64(&mut front, off::FE_NUM_BYTES, start - s);
                self.items.insert(k, front);
            }
            if t > end {
                let mut back = d;
                set64(&mut back, off::FE_OFFSET, e.offset.saturating_add(end - s));
                set64(&mut back, off::FE_NUM_BYTES, t - end);
                self.items.insert(key(ino, key_type::EXTENT_DATA, end), back);
            }
        }
        Ok(())
    }
}

/// How many items a log tree holds for replay (all but its checksum items).
pub(crate) fn logged_items(log: &Tree) -> usize {
    log.items.iter().filter(|i| i.key.ty != key_type::EXTENT_CSUM).count()
}
