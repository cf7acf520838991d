//! An opened image: where its bytes are (a file, an inflated `.zst` in a sparse temporary file,
//! or memory), its superblock and chunk map, the root tree's root items, and the trees read so
//! far (each read once, when first asked for).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::chunk::{self, ChunkMap, Mapped, Place, Stripe, BLOCK_GROUP_SYSTEM};
use crate::error::{CorruptKind, Error, Result};
use crate::items::inode::Inode;
use crate::items::root::{RootItem, RootRef};
use crate::items::{key_type, objectid};
use crate::le::{to_u64, to_usize, Le};
use crate::log_replay;
use crate::superblock::{Superblock, BTRFS_SUPER_INFO_OFFSET, SUPER_INFO_SIZE};
use crate::tree::{Key, Tree};
use crate::FileExtent;

/// A UUID as text (8-4-4-4-12).
fn uuid_string(u: &[u8; 16]) -> String {
    crate::DevItem { devid: 0, total_bytes: 0, uuid: *u }.uuid_string()
}

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

/// One device of the filesystem: its bytes, its dev item, and a name for messages.
struct Device {
    storage: Storage,
    dev: crate::DevItem,
    name: String,
    generation: u64,
}

/// The csum tree's `EXTENT_CSUM` items: their data (one checksum per sector) by logical start.
type CsumItems = BTreeMap<u64, Vec<u8>>;

/// `BTRFS_TREE_LOG_OBJECTID`: the key objectid of the log root tree's root items.
const TREE_LOG_OBJECTID: u64 = u64::MAX - 5;
/// `BTRFS_FEATURE_INCOMPAT_NO_HOLES`.
const FEATURE_INCOMPAT_NO_HOLES: u64 = 1 << 9;
/// `BTRFS_FEATURE_INCOMPAT_EXTENT_TREE_V2`.
const FEATURE_INCOMPAT_EXTENT_TREE_V2: u64 = 1 << 13;
/// `BTRFS_FEATURE_INCOMPAT_RAID_STRIPE_TREE`.
const FEATURE_INCOMPAT_RAID_STRIPE_TREE: u64 = 1 << 14;

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

/// Notes kept for a report (each said once, sorted): at most [`Notes::MAX`]; past that only
/// counted, so that an image with damage everywhere cannot fill memory with messages.
#[derive(Debug, Default)]
struct Notes {
    set: std::collections::BTreeSet<String>,
    more: usize,
}

impl Notes {
    const MAX: usize = 10_000;

    fn add(&mut self, what: String) {
        if self.set.len() < Self::MAX {
            self.set.insert(what);
        } else if !self.set.contains(&what) {
            self.more += 1;
        }
    }

    fn lines(&self) -> Vec<String> {
        let mut v: Vec<String> = self.set.iter().cloned().collect();
        if self.more > 0 {
            v.push(format!("and {} more not listed", self.more));
        }
        v
    }
}

/// An opened image.
pub struct Image {
    devices: BTreeMap<u64, Device>,
    /// The chunk tree's dev items: every device of the filesystem.
    dev_items: BTreeMap<u64, crate::DevItem>,
    /// The superblock.
    pub sb: Superblock,
    /// The chunk map.
    pub chunks: ChunkMap,
    roots: BTreeMap<u64, RootItem>,
    root_refs: BTreeMap<u64, (u64, RootRef)>,
    trees: Mutex<HashMap<u64, Arc<Tree>>>,
    csums: Mutex<Option<Arc<CsumItems>>>,
    /// What was read from a second copy because the first failed its checks.
    repairs: Mutex<Notes>,
    /// What the walk skipped (damaged entries), each said once.
    skipped: Mutex<Notes>,
    /// Why a backup superblock was read, if one was (per device).
    sb_notes: Vec<String>,
    /// The log trees, when the image has some and they are replayed.
    log: Option<LogTrees>,
}

/// Largest image accepted from a `.zst` file (inflated into a sparse temporary file).
const MAX_ZST_IMAGE: u64 = 1 << 40;
/// Zeros a `.zst` image may hold past the device size its superblock gives (a copy of a block
/// device larger than the filesystem on it): skipped, not written.
const ZST_ZERO_SLACK: u64 = 1 << 30;
/// The first superblock copy (`btrfs_sb_offset(1)`): a `.zst` image with no valid superblock
/// by its end is not inflated further.
const SB_MIRROR: u64 = 64 << 20;
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
    open_devices(&[path], opts)
}

/// Open a filesystem from one image (or block device) per device, raw or `.zst`: matched by the
/// fsid and devid of their superblocks. Devices of another filesystem, and two of one devid, are
/// an error; devices not given are named by [`Image::warnings`] and their data read from the
/// other copies (or rebuilt from parity) where the profile keeps some.
pub fn open_devices(paths: &[&Path], opts: OpenOptions) -> Result<Image> {
    let mut storages = Vec::with_capacity(paths.len());
    for p in paths {
        storages.push((p.display().to_string(), open_storage(p)?));
    }
    Image::open(storages, opts)
}

fn open_storage(path: &Path) -> Result<Storage> {
    let mut f = File::open(path)?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic)?;
    let storage = if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        let f = File::open(path)?;
        let (tmp, len) = unzstd_to_sparse(f)?;
        Storage::File(tmp, len)
    } else {
        let len = f.metadata()?.len();
        let len = if len == 0 { block_device_size(&f).unwrap_or(0) } else { len };
        Storage::File(f, len)
    };
    Ok(storage)
}

/// The size of a block device (its metadata says 0): where seeking to the end lands.
fn block_device_size(f: &File) -> Option<u64> {
    use std::io::Seek;
    let mut g = f.try_clone().ok()?;
    g.seek(std::io::SeekFrom::End(0)).ok()
}

/// Open an image held in memory.
pub fn open_bytes(data: Vec<u8>) -> Result<Image> {
    open_shared(Arc::new(data))
}

/// [`open_bytes`] with options.
pub fn open_bytes_with(data: Vec<u8>, opts: OpenOptions) -> Result<Image> {
    Image::open(vec![("image in memory".into(), Storage::Mem(Arc::new(data)))], opts)
}

/// Open an image held in shared memory (no copy).
pub fn open_shared(data: Arc<Vec<u8>>) -> Result<Image> {
    Image::open(vec![("image in memory".into(), Storage::Mem(data))], OpenOptions::default())
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
    // The device's size, from its superblock once that is inflated: data past it is refused
    // (a `.zst` bomb never fills $TMPDIR), zeros past it are skipped up to a bound.
    let mut device: Option<u64> = None;
    let sb_end = BTRFS_SUPER_INFO_OFFSET + to_u64(SUPER_INFO_SIZE);
    let mut emit = |got: usize, chunk: &[u8], pos: &mut u64| -> Result<()> {
        for (i, b) in chunk[..got].chunks(BLOCK).enumerate() {
            if b.iter().any(|&x| x != 0) {
                let at = *pos + to_u64(i * BLOCK);
                if let Some(size) = device.filter(|&d| at >= d) {
                    return Err(CorruptKind::CompressedImage(format!(
                        "it holds data past the {size}-byte device its superblock describes"
                    ))
                    .into());
                }
                out.write_all_at(b, at)?;
            }
        }
        *pos += to_u64(got);
        // The device's size from the primary superblock, or from the copy at 64 MiB where the
        // primary does not parse (as `read_superblock` reads it); with neither, inflating stops
        // there: a damaged superblock must not lift the bound.
        for at in [BTRFS_SUPER_INFO_OFFSET, SB_MIRROR] {
            if device.is_none() && *pos >= at + to_u64(SUPER_INFO_SIZE) {
                let mut sbb = vec![0u8; SUPER_INFO_SIZE];
                if out.read_exact_at(&mut sbb, at).is_ok() {
                    device = Superblock::parse(&sbb).ok().map(|sb| sb.dev.total_bytes.max(sb_end));
                }
            }
        }
        if device.is_none() && *pos >= SB_MIRROR + to_u64(SUPER_INFO_SIZE) {
            return Err(CorruptKind::CompressedImage(
                "no valid superblock at 64 KiB or 64 MiB: not inflated further (use the raw image)".into(),
            )
            .into());
        }
        let limit = device.map_or(MAX_ZST_IMAGE, |d| d.saturating_add(ZST_ZERO_SLACK)).min(MAX_ZST_IMAGE);
        if *pos > limit {
            return Err(Error::TooLarge(limit));
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

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("fsid", &uuid_string(&self.sb.fsid))
            .field("generation", &self.sb.generation)
            .field("devices", &self.devices())
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

impl Image {
    /// A device's superblock: the primary, or where it is unreadable the newest of its copies at
    /// 64 MiB and 256 GiB (`btrfs_sb_offset()`), as `btrfs restore -u` reads them (the kernel
    /// would not mount); the second value says why a copy was read.
    fn read_superblock(storage: &Storage) -> Result<(Superblock, Option<String>)> {
        let mut sbb = vec![0u8; SUPER_INFO_SIZE];
        if storage.len() < BTRFS_SUPER_INFO_OFFSET + to_u64(SUPER_INFO_SIZE) {
            return Err(Error::NotBtrfs);
        }
        storage.read_at(BTRFS_SUPER_INFO_OFFSET, &mut sbb)?;
        match Superblock::parse(&sbb) {
            Ok(sb) => Ok((sb, None)),
            Err(primary) => {
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
                Ok((sb, Some(note)))
            }
        }
    }

    fn open(storages: Vec<(String, Storage)>, opts: OpenOptions) -> Result<Self> {
        let several = storages.len() > 1;
        let mut devices: BTreeMap<u64, Device> = BTreeMap::new();
        let mut best: Option<Superblock> = None;
        let mut sb_notes = Vec::new();
        for (name, storage) in storages {
            let (sb, note) = Self::read_superblock(&storage).map_err(|e| {
                if several {
                    Error::Devices(format!("{name}: {e}"))
                } else {
                    e
                }
            })?;
            if let Some(n) = note {
                sb_notes.push(if several { format!("{name}: {n}") } else { n });
            }
            if let Some(b) = &best {
                if sb.fsid != b.fsid {
                    return Err(Error::Devices(format!(
                        "{name} is a device of another filesystem (fsid {}, not {})",
                        uuid_string(&sb.fsid),
                        uuid_string(&b.fsid)
                    )));
                }
            }
            let devid = sb.dev.devid;
            if let Some(d) = devices.get(&devid) {
                return Err(Error::Devices(format!("{name} and {} are both device {devid} of the filesystem", d.name)));
            }
            devices.insert(devid, Device { storage, dev: sb.dev, name, generation: sb.generation });
            if best.as_ref().is_none_or(|b| sb.generation > b.generation) {
                best = Some(sb);
            }
        }
        let sb = best.ok_or(Error::NotBtrfs)?;
        // Features that change where data is (the kernel's experimental configs write them):
        // refused rather than read wrongly.
        for (bit, name) in [
            (FEATURE_INCOMPAT_EXTENT_TREE_V2, "extent-tree-v2 (BTRFS_FEATURE_INCOMPAT_EXTENT_TREE_V2)"),
            (FEATURE_INCOMPAT_RAID_STRIPE_TREE, "the raid-stripe-tree (BTRFS_FEATURE_INCOMPAT_RAID_STRIPE_TREE)"),
        ] {
            if sb.incompat_flags & bit != 0 {
                return Err(Error::UnsupportedFeature(name));
            }
        }
        let mut img = Image {
            devices,
            dev_items: BTreeMap::new(),
            sb,
            chunks: ChunkMap::default(),
            roots: BTreeMap::new(),
            root_refs: BTreeMap::new(),
            trees: Mutex::new(HashMap::new()),
            csums: Mutex::new(None),
            repairs: Mutex::new(Notes::default()),
            skipped: Mutex::new(Notes::default()),
            sb_notes,
            log: None,
        };
        img.read_sys_chunks()?;
        let chunk_tree = img.read_tree(objectid::CHUNK_TREE, img.sb.chunk_root, img.sb.chunk_root_level)?;
        for it in &chunk_tree.items {
            match it.key.ty {
                key_type::CHUNK_ITEM => {
                    img.chunks.insert(it.key.offset, &it.data)?;
                }
                key_type::DEV_ITEM => {
                    let d = crate::DevItem::parse(&it.data)?;
                    img.dev_items.insert(d.devid, d);
                }
                _ => {}
            }
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

    /// Read `len` bytes at a logical address (at most `BTRFS_MAX_EXTENT_SIZE`, and only once
    /// the whole range is known to be mapped: a length from the image sizes no buffer before it
    /// is checked).
    pub fn read_logical(&self, logical: u64, len: usize) -> Result<Vec<u8>> {
        let n = to_u64(len);
        if n > crate::items::file_extent::MAX_EXTENT_SIZE {
            return Err(CorruptKind::TooBig("a read of more than 128 MiB").into());
        }
        for piece in self.chunks.pieces(logical, n) {
            piece?;
        }
        let mut out = vec![0u8; len];
        self.read_logical_into(logical, &mut out)?;
        Ok(out)
    }

    /// Read `out.len()` bytes at a logical address into `out` (across stripes and chunks where
    /// the range spans several): each piece from the first copy that can be read (a mirror on a
    /// device that was given, or a RAID5/6 data stripe rebuilt from the others).
    pub fn read_logical_into(&self, logical: u64, out: &mut [u8]) -> Result<()> {
        self.read_pieces(logical, out, None)
    }

    /// Read from copy `copy` only (`0..ChunkMap::copies()`: each mirror in the kernel's mirror
    /// order; for RAID5/6, 0 the data stripe, 1 rebuilt from P, 2 rebuilt from Q).
    pub fn read_copy_into(&self, logical: u64, out: &mut [u8], copy: usize) -> Result<()> {
        self.read_pieces(logical, out, Some(copy))
    }

    fn read_pieces(&self, logical: u64, out: &mut [u8], copy: Option<usize>) -> Result<()> {
        let mut done = 0;
        for p in self.chunks.pieces(logical, to_u64(out.len())) {
            let (at, m, n) = p?;
            // A piece is at most the buffer's rest, which fits in usize.
            let n = to_usize(n, "read")?;
            let piece = &mut out[done..done + n];
            match copy {
                Some(c) => self.read_mapped(at, &m, piece, c)?,
                None => {
                    let mut err = None;
                    for c in 0..m.copies() {
                        match self.read_mapped(at, &m, piece, c) {
                            Ok(()) => {
                                err = None;
                                break;
                            }
                            Err(e) => {
                                err.get_or_insert(e);
                            }
                        }
                    }
                    if let Some(e) = err {
                        return Err(e);
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    /// One stripe unit's piece from copy `copy`.
    fn read_mapped(&self, logical: u64, m: &Mapped, buf: &mut [u8], copy: usize) -> Result<()> {
        match &m.place {
            Place::Mirrors(v) => self.read_phys(*v.get(copy).ok_or(Error::Unmapped(logical))?, buf),
            Place::Parity { data, row, nr_data } => {
                if copy == 0 {
                    match self.read_phys(row[*data], buf) {
                        Err(Error::MissingDevice { .. }) => {}
                        r => return r,
                    }
                }
                self.rebuild(logical, row, *data, *nr_data, copy >= 2, buf)
            }
        }
    }

    /// Every other copy of the data at `[logical, logical + len)` checked, as scrub checks it:
    /// each mirror on a device given against the data checksums, and for RAID5/6 the parity of
    /// every row the range touches against its data units. One message per damaged copy or
    /// row (naming the device); copies on missing devices are not checked.
    pub fn check_redundancy(&self, logical: u64, len: u64) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let Ok(first) = self.chunks.map(logical) else { return Ok(out) };
        if let Place::Mirrors(m) = &first.place {
            let n = usize::try_from(len).map_err(|_| CorruptKind::TooBig("extent"))?;
            let mut buf = vec![0u8; n];
            for copy in 0..m.len() {
                if self.read_copy_into(logical, &mut buf, copy).is_err() {
                    continue; // on a device not given, or past the end of a truncated one
                }
                if let Err(Error::BadChecksum { at, .. }) = self.verify_data(logical, &buf) {
                    let dev = self.chunks.mirror(at, copy).map(|s| s.devid).unwrap_or(0);
                    out.push(format!(
                        "copy {} of {} ({}) on device {dev} fails its checksum at {at:#x}",
                        copy + 1,
                        m.len(),
                        first.profile.name()
                    ));
                }
            }
            return Ok(out);
        }
        // RAID5/6: each piece's data unit against the checksums (a damaged one is rebuilt from
        // parity when read), then once per row the parity against the data, where no data unit
        // of the row failed (P alone cannot say which unit is wrong).
        let mut pieces = Vec::new();
        let mut damaged_rows = std::collections::HashSet::new();
        for p in self.chunks.pieces(logical, len) {
            let (at, m, n) = p?;
            if let Place::Parity { data, row, .. } = &m.place {
                let size = usize::try_from(n).map_err(|_| CorruptKind::TooBig("stripe"))?;
                let mut v = vec![0u8; size];
                if self.read_phys(row[*data], &mut v).is_ok() {
                    if let Err(Error::BadChecksum { at: bad, .. }) = self.verify_data(at, &v) {
                        out.push(format!(
                            "{} data on device {} fails its checksum at {bad:#x} (rebuilt from parity)",
                            m.profile.name(),
                            row[*data].devid
                        ));
                        damaged_rows.insert(row[0]);
                    }
                }
                pieces.push((at, size, m));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (at, size, m) in pieces {
            let Place::Parity { row, nr_data, .. } = &m.place else { continue };
            if damaged_rows.contains(&row[0]) || !seen.insert(row[0]) {
                continue;
            }
            let units: Vec<Option<Vec<u8>>> = row
                .iter()
                .map(|&s| {
                    let mut v = vec![0u8; size];
                    self.read_phys(s, &mut v).ok().map(|()| v)
                })
                .collect();
            if units.iter().all(Option::is_some) {
                let data: Vec<&[u8]> = units[..*nr_data].iter().flatten().map(|v| &v[..]).collect();
                let (p, q) = crate::raid56::syndrome(&data);
                for (k, want) in [p, q].iter().enumerate().take(row.len() - nr_data) {
                    if units[nr_data + k].as_deref() != Some(&want[..]) {
                        out.push(format!(
                            "{} row at {at:#x}: {} on device {} does not match its data",
                            m.profile.name(),
                            ["P", "Q"][k],
                            row[nr_data + k].devid
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Bytes at a device's physical offset.
    fn read_phys(&self, s: Stripe, buf: &mut [u8]) -> Result<()> {
        let d = self.devices.get(&s.devid).ok_or(Error::MissingDevice { devid: s.devid })?;
        d.storage.read_at(s.offset, buf)
    }

    /// A RAID5/6 data stripe's piece rebuilt from the row's other units that can be read: from P,
    /// or (`without_p`, or P unreadable) from Q.
    fn rebuild(
        &self,
        logical: u64,
        row: &[Stripe],
        want: usize,
        nr_data: usize,
        without_p: bool,
        buf: &mut [u8],
    ) -> Result<()> {
        let read = |s: Stripe| -> Option<Vec<u8>> {
            let mut v = vec![0u8; buf.len()];
            self.read_phys(s, &mut v).ok().map(|()| v)
        };
        let units: Vec<Option<Vec<u8>>> = (0..nr_data).map(|i| if i == want { None } else { read(row[i]) }).collect();
        let p = if without_p { None } else { row.get(nr_data).and_then(|&s| read(s)) };
        let q = row.get(nr_data + 1).and_then(|&s| read(s));
        let r =
            crate::raid56::Row { data: units.iter().map(|u| u.as_deref()).collect(), p: p.as_deref(), q: q.as_deref() };
        crate::raid56::rebuild(&r, want, buf).ok_or(Error::Unrebuildable { logical })
    }

    /// Bytes the image files hold (all devices given).
    pub fn size(&self) -> u64 {
        self.devices.values().map(|d| d.storage.len()).sum()
    }

    /// Whether a device given is shorter than the filesystem says it is (a truncated copy).
    pub fn truncated(&self) -> bool {
        self.devices.values().any(|d| d.storage.len() < d.dev.total_bytes)
    }

    /// Whether the bytes of `[logical, logical + len)` lie inside the device files (a truncated
    /// image lacks those past its end): each piece in at least one copy on a device given.
    pub fn present(&self, logical: u64, len: u64) -> bool {
        self.chunks.pieces(logical, len).all(|p| {
            let Ok((_, m, n)) = p else { return false };
            let inside = |s: &Stripe| {
                self.devices
                    .get(&s.devid)
                    .is_some_and(|d| s.offset.checked_add(n).is_some_and(|e| e <= d.storage.len()))
            };
            match &m.place {
                Place::Mirrors(v) => v.iter().any(inside),
                Place::Parity { data, row, .. } => inside(&row[*data]),
            }
        })
    }

    /// The devices of the filesystem (the chunk tree's dev items) that were not given.
    pub fn missing_devices(&self) -> Vec<crate::DevItem> {
        self.dev_items.values().filter(|d| !self.devices.contains_key(&d.devid)).copied().collect()
    }

    /// The devices given: device id and the name it was opened by.
    pub fn devices(&self) -> Vec<(u64, String)> {
        self.devices.iter().map(|(&id, d)| (id, d.name.clone())).collect()
    }

    /// What a reader of this image must be told, one line each: a log tree the kernel would
    /// replay at mount (replayed, or with `replay_log` off not shown), devices missing or stale,
    /// a file shorter than the device it is an image of.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self.sb_notes.clone();
        for d in self.missing_devices() {
            w.push(format!(
                "device {} (uuid {}, {} bytes) is missing: its data is read from the other copies, or rebuilt \
                 from parity, where the profile keeps them ({})",
                d.devid,
                d.uuid_string(),
                d.total_bytes,
                self.profiles_of(d.devid)
            ));
        }
        for d in self.devices.values().filter(|d| d.generation < self.sb.generation) {
            w.push(format!(
                "{} (device {}) is of generation {}, older than the filesystem's {}: it missed writes",
                d.name, d.dev.devid, d.generation, self.sb.generation
            ));
        }
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
        for d in self.devices.values().filter(|d| d.storage.len() < d.dev.total_bytes) {
            let which = if self.devices.len() > 1 { format!(" (device {})", d.dev.devid) } else { String::new() };
            w.push(format!(
                "{}{which} is truncated: {} bytes of a {}-byte device; data past its end is missing",
                if self.devices.len() > 1 { d.name.as_str() } else { "the image" },
                d.storage.len(),
                d.dev.total_bytes
            ));
        }
        w
    }

    /// The profiles of the chunks with a stripe on device `devid`, for messages.
    fn profiles_of(&self, devid: u64) -> String {
        let mut p: Vec<&str> = self
            .chunks
            .chunks()
            .filter(|(_, _, _, s)| s.iter().any(|s| s.devid == devid))
            .map(|(_, _, p, _)| p.name())
            .collect();
        p.sort_unstable();
        p.dedup();
        if p.is_empty() {
            "no chunk on it".into()
        } else {
            format!("its chunks: {}", p.join(", "))
        }
    }

    /// What was read from a DUP chunk's second copy because the first failed its checksum (one
    /// line each), so far: the kernel reads mirror 2 the same way.
    pub fn repairs(&self) -> Vec<String> {
        self.repairs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).lines()
    }

    /// What the directory walk skipped because its metadata is damaged (one line each): the
    /// rest was walked. A command that shows the image should fail after its report.
    pub fn skipped(&self) -> Vec<String> {
        self.skipped.lock().unwrap_or_else(std::sync::PoisonError::into_inner).lines()
    }

    /// Record that `what` was skipped because its metadata is damaged (reported by
    /// [`Image::skipped`]): for readers that go on with the rest of the image.
    pub fn note_skipped(&self, what: String) {
        self.skipped.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add(what);
    }

    /// Record that `what` was read from a second copy (reported by [`Image::repairs`]).
    pub fn note_repair(&self, what: String) {
        self.repairs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add(what);
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
    /// Each item is checked as the kernel's tree-checker checks it ([`FileExtent::check`]).
    pub fn file_extents(&self, tree: &Tree, ino: u64) -> Result<Vec<FileExtent>> {
        let ss = u64::from(self.sb.sectorsize);
        tree.items_of(ino, key_type::EXTENT_DATA)
            .map(|it| {
                let e = FileExtent::parse(it.key.offset, &it.data)?;
                e.check(ss)?;
                Ok(e)
            })
            .collect()
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
