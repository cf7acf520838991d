//! An opened image: where its bytes are (a file, an inflated `.zst` in a sparse temporary file,
//! or memory), its superblock and chunk map, the root tree's root items, and the trees read so
//! far (each read once, when first asked for).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::chunk::{self, ChunkMap, BLOCK_GROUP_SYSTEM};
use crate::error::{CorruptKind, Error, Result};
use crate::items::inode::Inode;
use crate::items::root::{RootItem, RootRef};
use crate::items::{key_type, objectid};
use crate::le::{to_u64, to_usize, Le};
use crate::log_replay;
use crate::superblock::{Superblock, BTRFS_SUPER_INFO_OFFSET, SUPER_INFO_SIZE};
use crate::tree::{Key, Tree};
use crate::FileExtent;

/// Bytes of a `struct btrfs_disk_key` in the sys_chunk_array.
const DISK_KEY_SIZE: usize = 17;

enum Storage {
    File(File, u64),
    Mem(Arc<Vec<u8>>),
}

impl Storage {
    fn len(&self) -> u64 {
        match self {
            Storage::File(_, n) => *n,
            Storage::Mem(v) => to_u64(v.len()),
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = to_u64(buf.len());
        let past = CorruptKind::PastImageEnd { offset, len, size: self.len() };
        let end = offset.checked_add(len).filter(|&e| e <= self.len()).ok_or(past)?;
        match self {
            Storage::File(f, _) => f.read_exact_at(buf, offset)?,
            Storage::Mem(v) => {
                // In range: `end <= v.len()`, which fits in usize.
                let (a, b) = (to_usize(offset, "image offset")?, to_usize(end, "image offset")?);
                buf.copy_from_slice(&v[a..b]);
            }
        }
        Ok(())
    }
}

/// The csum tree's `EXTENT_CSUM` items: their data (one checksum per sector) by logical start.
type CsumItems = BTreeMap<u64, Vec<u8>>;

/// `BTRFS_TREE_LOG_OBJECTID`: the key objectid of the log root tree's root items.
const TREE_LOG_OBJECTID: u64 = u64::MAX - 5;
/// `BTRFS_FEATURE_INCOMPAT_NO_HOLES`.
const FEATURE_INCOMPAT_NO_HOLES: u64 = 1 << 9;

/// How an image is opened.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// Replay the log tree (what was fsynced after the last commit) over the committed trees,
    /// as the kernel does at mount. Default: yes; without it the last commit is read.
    pub replay_log: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { replay_log: true }
    }
}

/// The log trees read at open, to be replayed over each subvolume when it is first read.
struct LogTrees {
    /// Per subvolume id, its log tree.
    trees: BTreeMap<u64, crate::Tree>,
    /// The log trees' `EXTENT_CSUM` items.
    csums: CsumItems,
    /// The logical ranges whose checksums come from the log (sorted, disjoint).
    csum_ranges: Vec<(u64, u64)>,
}

/// An opened image.
pub struct Image {
    storage: Storage,
    /// The superblock.
    pub sb: Superblock,
    /// The chunk map.
    pub chunks: ChunkMap,
    roots: BTreeMap<u64, RootItem>,
    root_refs: BTreeMap<u64, (u64, RootRef)>,
    trees: Mutex<HashMap<u64, Arc<Tree>>>,
    csums: Mutex<Option<Arc<CsumItems>>>,
    /// What was read from a second copy because the first failed its checks.
    repairs: Mutex<Vec<String>>,
    /// Why a backup superblock was read, if one was.
    sb_note: Option<String>,
    /// The log trees, when the image has some and they are replayed.
    log: Option<LogTrees>,
}

/// Largest image accepted from a `.zst` file (inflated into a sparse temporary file).
const MAX_ZST_IMAGE: u64 = 1 << 40;
/// `ZSTD_WINDOWLOG_LIMIT_DEFAULT`: frames needing a larger window (128 MiB) are refused, which
/// bounds the memory an image takes to inflate.
const ZST_WINDOW_LOG_MAX: u32 = 27;

/// Open a raw image or a `.zst`-compressed one. A `.zst` image is inflated into an unlinked,
/// sparse temporary file (zero blocks are not written) under `$TMPDIR`, so memory stays bounded
/// by the zstd window whatever the image's size.
pub fn open_image(path: &Path) -> Result<Image> {
    open_image_with(path, OpenOptions::default())
}

/// [`open_image`] with options.
pub fn open_image_with(path: &Path, opts: OpenOptions) -> Result<Image> {
    let mut f = File::open(path)?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic)?;
    let storage = if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        let f = File::open(path)?;
        let (tmp, len) = unzstd_to_sparse(f)?;
        Storage::File(tmp, len)
    } else {
        let len = f.metadata()?.len();
        Storage::File(f, len)
    };
    Image::open(storage, opts)
}

/// Open an image held in memory.
pub fn open_bytes(data: Vec<u8>) -> Result<Image> {
    open_shared(Arc::new(data))
}

/// [`open_bytes`] with options.
pub fn open_bytes_with(data: Vec<u8>, opts: OpenOptions) -> Result<Image> {
    Image::open(Storage::Mem(Arc::new(data)), opts)
}

/// Open an image held in shared memory (no copy).
pub fn open_shared(data: Arc<Vec<u8>>) -> Result<Image> {
    Image::open(Storage::Mem(data), OpenOptions::default())
}

/// A new temporary file, already unlinked (it lives while it is open).
fn unlinked_temp() -> Result<File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    let name = format!(".btrfs-image-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let p = dir.join(name);
    let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&p)?;
    std::fs::remove_file(&p)?;
    Ok(f)
}

fn unzstd_to_sparse(mut src: File) -> Result<(File, u64)> {
    let zerr = |c| Error::from(CorruptKind::CompressedImage(zstd_safe::get_error_name(c).into()));
    let out = unlinked_temp()?;
    let mut dctx = zstd_safe::DCtx::create();
    dctx.set_parameter(zstd_safe::DParameter::WindowLogMax(ZST_WINDOW_LOG_MAX)).map_err(zerr)?;
    const BLOCK: usize = 64 << 10;
    let mut inbuf = vec![0u8; 1 << 20];
    let mut chunk = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let mut last = 1;
    let emit = |got: usize, chunk: &[u8], pos: &mut u64| -> Result<()> {
        for (i, b) in chunk[..got].chunks(BLOCK).enumerate() {
            if b.iter().any(|&x| x != 0) {
                out.write_all_at(b, *pos + to_u64(i * BLOCK))?;
            }
        }
        *pos += to_u64(got);
        if *pos > MAX_ZST_IMAGE {
            return Err(Error::TooLarge(MAX_ZST_IMAGE));
        }
        Ok(())
    };
    loop {
        let n = src.read(&mut inbuf)?;
        if n == 0 {
            break;
        }
        let mut input = zstd_safe::InBuffer::around(&inbuf[..n]);
        // Until the input is used up and the decoder has no more output for it.
        loop {
            let mut ob = zstd_safe::OutBuffer::around(&mut chunk[..]);
            last = dctx.decompress_stream(&mut ob, &mut input).map_err(zerr)?;
            let got = ob.pos();
            emit(got, &chunk, &mut pos)?;
            if input.pos == n && (got == 0 || last == 0) {
                break;
            }
        }
    }
    if last != 0 {
        return Err(CorruptKind::CompressedImage("truncated".into()).into());
    }
    out.set_len(pos)?;
    Ok((out, pos))
}

impl Image {
    fn open(storage: Storage, opts: OpenOptions) -> Result<Self> {
        let mut sbb = vec![0u8; SUPER_INFO_SIZE];
        if storage.len() < BTRFS_SUPER_INFO_OFFSET + to_u64(SUPER_INFO_SIZE) {
            return Err(Error::NotBtrfs);
        }
        storage.read_at(BTRFS_SUPER_INFO_OFFSET, &mut sbb)?;
        let (sb, sb_note) = match Superblock::parse(&sbb) {
            Ok(sb) => (sb, None),
            Err(primary) => {
                // The copies at 64 MiB and 256 GiB (`btrfs_sb_offset()`), the newest that
                // parses, as `btrfs restore -u` reads them; the kernel would not mount.
                let mut best: Option<(Superblock, u64)> = None;
                for at in [64u64 << 20, 256u64 << 30] {
                    if storage.len() < at + to_u64(SUPER_INFO_SIZE) || storage.read_at(at, &mut sbb).is_err() {
                        continue;
                    }
                    if let Ok(sb) = Superblock::parse(&sbb) {
                        if best.as_ref().is_none_or(|(b, _)| sb.generation > b.generation) {
                            best = Some((sb, at));
                        }
                    }
                }
                let Some((sb, at)) = best else { return Err(primary) };
                let note = format!(
                    "the primary superblock is unreadable ({primary}); read its copy at {} MiB (generation {})",
                    at >> 20,
                    sb.generation
                );
                (sb, Some(note))
            }
        };
        let mut img = Image {
            storage,
            sb,
            chunks: ChunkMap::default(),
            roots: BTreeMap::new(),
            root_refs: BTreeMap::new(),
            trees: Mutex::new(HashMap::new()),
            csums: Mutex::new(None),
            repairs: Mutex::new(Vec::new()),
            sb_note,
            log: None,
        };
        img.read_sys_chunks()?;
        let chunk_tree = img.read_tree(objectid::CHUNK_TREE, img.sb.chunk_root, img.sb.chunk_root_level)?;
        for it in chunk_tree.items.iter().filter(|it| it.key.ty == key_type::CHUNK_ITEM) {
            img.chunks.insert(it.key.offset, &it.data)?;
        }
        let root_tree = img.read_tree(objectid::ROOT_TREE, img.sb.root, img.sb.root_level)?;
        for it in &root_tree.items {
            match it.key.ty {
                key_type::ROOT_ITEM => {
                    img.roots.insert(it.key.objectid, RootItem::parse(&it.data)?);
                }
                key_type::ROOT_REF => {
                    img.root_refs.insert(it.key.offset, (it.key.objectid, RootRef::parse(&it.data)?));
                }
                _ => {}
            }
        }
        if opts.replay_log && img.sb.log_root != 0 {
            img.log = Some(img.read_log_trees()?);
        }
        Ok(img)
    }

    /// The log root tree and every log tree it lists, with their checksum items
    /// (`btrfs_recover_log_trees()` reads them the same way before it replays).
    fn read_log_trees(&self) -> Result<LogTrees> {
        let root = self.read_tree(TREE_LOG_OBJECTID, self.sb.log_root, self.sb.log_root_level)?;
        let mut trees = BTreeMap::new();
        let mut csums = CsumItems::new();
        let mut csum_ranges = Vec::new();
        for it in root.items.iter().filter(|i| i.key.objectid == TREE_LOG_OBJECTID && i.key.ty == key_type::ROOT_ITEM) {
            let r = RootItem::parse(&it.data)?;
            let t = self.read_tree(it.key.offset, r.bytenr, r.level)?;
            csum_ranges.extend(log_replay::csum_ranges(&t)?);
            for c in
                t.items.iter().filter(|i| i.key.objectid == objectid::EXTENT_CSUM && i.key.ty == key_type::EXTENT_CSUM)
            {
                csums.insert(c.key.offset, c.data.clone());
            }
            trees.insert(it.key.offset, t);
        }
        csum_ranges.sort_unstable();
        // Disjoint, so that the last range starting at or before a sector is the one to test.
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(csum_ranges.len());
        for (s, e) in csum_ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        Ok(LogTrees { trees, csums, csum_ranges: merged })
    }

    fn read_sys_chunks(&mut self) -> Result<()> {
        let a = std::mem::take(&mut self.sb.sys_chunk_array);
        let b = Le::new(&a, "sys_chunk_array");
        let mut at = 0;
        while at < a.len() {
            let key = Key::parse(&b, at)?;
            at += DISK_KEY_SIZE;
            if key.ty != key_type::CHUNK_ITEM {
                return Err(CorruptKind::SysChunkArray("holds a key that is not a chunk item").into());
            }
            let size = chunk::item_size(b.len16(at + chunk::off::NUM_STRIPES)?);
            let ty = self.chunks.insert(key.offset, b.slice(at, size)?)?;
            if ty & BLOCK_GROUP_SYSTEM == 0 {
                return Err(CorruptKind::SysChunkArray("holds a non-system chunk").into());
            }
            at += size;
        }
        self.sb.sys_chunk_array = a;
        if self.chunks.is_empty() {
            return Err(CorruptKind::SysChunkArray("empty").into());
        }
        Ok(())
    }

    /// Read `len` bytes at a logical address.
    pub fn read_logical(&self, logical: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        self.read_logical_into(logical, &mut out)?;
        Ok(out)
    }

    /// Read `out.len()` bytes at a logical address into `out` (across chunks where the range
    /// spans several).
    pub fn read_logical_into(&self, logical: u64, out: &mut [u8]) -> Result<()> {
        self.read_copy_into(logical, out, 0)
    }

    /// Read from copy `copy` (0, or 1 for the second copy of a DUP chunk; see
    /// [`ChunkMap::copies`](crate::ChunkMap::copies)).
    pub fn read_copy_into(&self, logical: u64, out: &mut [u8], copy: usize) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            let at = logical.checked_add(to_u64(done)).ok_or(Error::Unmapped(logical))?;
            let (phys, run) = self.chunks.map_run_copy(at, copy)?;
            let n = usize::try_from(run).unwrap_or(usize::MAX).min(out.len() - done);
            self.storage.read_at(phys, &mut out[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Bytes the image file holds.
    pub fn size(&self) -> u64 {
        self.storage.len()
    }

    /// Whether the bytes of `[logical, logical + len)` lie inside the image file (a truncated
    /// image lacks those past its end).
    pub fn present(&self, logical: u64, len: u64) -> bool {
        let mut done = 0u64;
        while done < len {
            let Some(at) = logical.checked_add(done) else { return false };
            let Ok((phys, run)) = self.chunks.map_run(at) else { return false };
            let n = run.min(len - done);
            if phys.checked_add(n).is_none_or(|e| e > self.size()) {
                return false;
            }
            done += n;
        }
        true
    }

    /// What a reader of this image must be told, one line each: a log tree the kernel would
    /// replay at mount (what was fsynced after the last commit is not shown here), a file
    /// shorter than the device it is an image of.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self.sb_note.iter().cloned().collect();
        match &self.log {
            Some(log) => w.push(format!(
                "replayed the log tree (what was fsynced after the commit of generation {}: {} items in {} \
                 subvolume(s)) as the kernel does at mount; --no-log reads that commit",
                self.sb.generation,
                log.trees.values().map(log_replay::logged_items).sum::<usize>(),
                log.trees.len()
            )),
            None if self.sb.log_root != 0 => w.push(format!(
                "the image has a log tree (fsync after the commit of generation {}) that was not replayed: what \
                 was fsynced after that commit is not shown",
                self.sb.generation
            )),
            None => {}
        }
        if self.sb.num_devices == 1 && self.size() < self.sb.total_bytes {
            w.push(format!(
                "the image is truncated: {} bytes of a {}-byte device; data past its end is missing",
                self.size(),
                self.sb.total_bytes
            ));
        }
        w
    }

    /// What was read from a DUP chunk's second copy because the first failed its checksum (one
    /// line each), so far: the kernel reads mirror 2 the same way.
    pub fn repairs(&self) -> Vec<String> {
        self.repairs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Record that `what` was read from a second copy (reported by [`Image::repairs`]).
    pub fn note_repair(&self, what: String) {
        self.repairs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(what);
    }

    /// Root block address and level of tree `id` (from its ROOT_ITEM).
    pub fn tree_root(&self, id: u64) -> Option<(u64, u8)> {
        self.roots.get(&id).map(|r| (r.bytenr, r.level))
    }

    /// The root item of tree `id`.
    pub fn root_item(&self, id: u64) -> Option<&RootItem> {
        self.roots.get(&id)
    }

    /// Where subvolume `id` is linked: its parent tree and the root ref (directory and name).
    pub fn root_ref(&self, id: u64) -> Option<&(u64, RootRef)> {
        self.root_refs.get(&id)
    }

    /// The ids of all fs trees (5 and the subvolumes).
    pub fn fs_tree_ids(&self) -> Vec<u64> {
        self.roots
            .keys()
            .copied()
            .filter(|&id| id == objectid::FS_TREE || (objectid::FIRST_FREE..=objectid::LAST_FREE).contains(&id))
            .collect()
    }

    /// Tree `id`, read on first use and kept.
    pub fn fs_tree(&self, id: u64) -> Result<Arc<Tree>> {
        let mut trees = self.trees.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = trees.get(&id) {
            return Ok(Arc::clone(t));
        }
        let r = self.roots.get(&id).ok_or(CorruptKind::NoRoot(id))?;
        let mut t = self.read_tree(id, r.bytenr, r.level)?;
        if let Some(log) = self.log.as_ref().and_then(|l| l.trees.get(&id)) {
            let geo = log_replay::Geometry {
                sectorsize: u64::from(self.sb.sectorsize),
                no_holes: self.sb.incompat_flags & FEATURE_INCOMPAT_NO_HOLES != 0,
            };
            t = log_replay::replay(&t, log, geo)?;
        }
        let t = Arc::new(t);
        trees.insert(id, Arc::clone(&t));
        Ok(t)
    }

    /// An inode's attributes.
    pub fn inode(&self, tree: &Tree, ino: u64) -> Result<Inode> {
        Inode::find(tree, ino)
    }

    /// The file extent items of an inode, in file order.
    pub fn file_extents(&self, tree: &Tree, ino: u64) -> Result<Vec<FileExtent>> {
        tree.items_of(ino, key_type::EXTENT_DATA).map(|it| FileExtent::parse(it.key.offset, &it.data)).collect()
    }

    /// The data checksum items (`EXTENT_CSUM`), by logical start; read on first use.
    fn csum_items(&self) -> Result<Arc<CsumItems>> {
        let mut c = self.csums.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(m) = &*c {
            return Ok(Arc::clone(m));
        }
        let mut m = BTreeMap::new();
        if let Some(r) = self.roots.get(&objectid::CSUM_TREE) {
            let t = self.read_tree(objectid::CSUM_TREE, r.bytenr, r.level)?;
            for it in t.items {
                if it.key.objectid == objectid::EXTENT_CSUM && it.key.ty == key_type::EXTENT_CSUM {
                    m.insert(it.key.offset, it.data);
                }
            }
        }
        let m = Arc::new(m);
        *c = Some(Arc::clone(&m));
        Ok(m)
    }

    /// The stored checksum of the sector at `sector`, if it has one: from the log for the data
    /// of replayed extents (`replay_one_extent()` copies those into the csum tree), else from
    /// the csum tree.
    fn sector_csum<'c>(&'c self, csums: &'c CsumItems, sector: u64) -> Option<&'c [u8]> {
        if let Some(log) = &self.log {
            let i = log.csum_ranges.partition_point(|r| r.0 <= sector);
            if i > 0 && sector < log.csum_ranges[i - 1].1 {
                if let Some(c) = self.csum_in(&log.csums, sector) {
                    return Some(c);
                }
            }
        }
        self.csum_in(csums, sector)
    }

    fn csum_in<'c>(&self, csums: &'c CsumItems, sector: u64) -> Option<&'c [u8]> {
        let ss = u64::from(self.sb.sectorsize);
        let cs = self.sb.csum_type.size();
        let (&start, sums) = csums.range(..=sector).next_back()?;
        let idx = usize::try_from((sector - start) / ss).ok()?;
        sums.get(idx.checked_mul(cs)?..(idx + 1).checked_mul(cs)?)
    }

    /// The checksums stored for the sectors of `[logical, logical + len)`, or `None` for sectors
    /// without one (NODATASUM). One entry per sector.
    pub fn data_csums(&self, logical: u64, len: u64) -> Result<Vec<Option<Vec<u8>>>> {
        let csums = self.csum_items()?;
        let ss = u64::from(self.sb.sectorsize);
        Ok((0..len.div_ceil(ss)).map(|i| self.sector_csum(&csums, logical + i * ss).map(<[u8]>::to_vec)).collect())
    }

    /// Check the on-disk bytes of a data extent against the csum tree. Returns the number of
    /// sectors checked (sectors without a checksum are skipped). Extract calls it for every
    /// piece it writes: no allocation per sector but the checksum itself.
    pub fn verify_data(&self, logical: u64, data: &[u8]) -> Result<usize> {
        let csums = self.csum_items()?;
        let ss = usize::try_from(self.sb.sectorsize).unwrap_or(usize::MAX);
        let mut checked = 0;
        for (i, sector) in data.chunks(ss).enumerate() {
            let at = logical + to_u64(i * ss);
            let Some(sum) = self.sector_csum(&csums, at) else { continue };
            if self.sb.csum_type.compute(sector) != sum {
                return Err(Error::BadChecksum { what: "data", at });
            }
            checked += 1;
        }
        Ok(checked)
    }

    /// Sectors with a data checksum in the image.
    pub fn csum_sectors(&self) -> Result<usize> {
        Ok(self.csum_items()?.values().map(|v| v.len() / self.sb.csum_type.size()).sum())
    }
}
