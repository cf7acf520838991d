//! The on-disk structures (include/uapi/linux/btrfs_tree.h) and the walk over them.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use blake2::Digest;

/// Offset of the primary superblock.
pub const BTRFS_SUPER_INFO_OFFSET: u64 = 64 * 1024;
const SUPER_INFO_SIZE: usize = 4096;
const MAGIC: &[u8; 8] = b"_BHRfS_M";
const HEADER_SIZE: usize = 101;
const ITEM_SIZE: usize = 25;
const KEY_PTR_SIZE: usize = 33;
const MAX_LEVEL: u8 = 7;
/// The first fs tree (`BTRFS_FS_TREE_OBJECTID`).
pub const BTRFS_FS_TREE_OBJECTID: u64 = 5;
const CHUNK_TREE_OBJECTID: u64 = 3;
const CSUM_TREE_OBJECTID: u64 = 7;
const FIRST_FREE_OBJECTID: u64 = 256;
const LAST_FREE_OBJECTID: u64 = u64::MAX - 255; // -256
const EXTENT_CSUM_OBJECTID: u64 = u64::MAX - 9; // -10
const ROOT_DIR_INO: u64 = 256;

const INODE_ITEM_KEY: u8 = 1;
const DIR_INDEX_KEY: u8 = 96;
const EXTENT_DATA_KEY: u8 = 108;
const EXTENT_CSUM_KEY: u8 = 128;
const ROOT_ITEM_KEY: u8 = 132;
const CHUNK_ITEM_KEY: u8 = 228;

const BG_SYSTEM: u64 = 1 << 1;
const BG_PROFILE_MASK: u64 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10);
const BG_DUP: u64 = 1 << 5;

/// Errors of the reader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the image failed.
    #[error("cannot read image: {0}")]
    Io(#[from] std::io::Error),
    /// No btrfs superblock magic at 64 KiB.
    #[error("not a btrfs image (no superblock magic at 64 KiB)")]
    NotBtrfs,
    /// A checksum did not match.
    #[error("{what} checksum mismatch at {at:#x}")]
    BadChecksum {
        /// What was checked.
        what: &'static str,
        /// Its logical (or physical, for the superblock) address.
        at: u64,
    },
    /// A checksum algorithm this reader does not know.
    #[error("unknown checksum type {0}")]
    UnsupportedCsum(u16),
    /// A chunk uses a RAID profile this reader does not read.
    #[error("unsupported profile {profile:#x} in chunk at {logical:#x} (only SINGLE and DUP)")]
    UnsupportedProfile {
        /// Chunk start.
        logical: u64,
        /// Profile bits.
        profile: u64,
    },
    /// A logical address no chunk maps.
    #[error("logical address {0:#x} is not mapped by any chunk")]
    Unmapped(u64),
    /// Metadata that contradicts itself.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// A compressed image that decompresses to more than the limit.
    #[error("image larger than {0} bytes")]
    TooLarge(u64),
}

type Result<T> = std::result::Result<T, Error>;

fn corrupt(msg: impl Into<String>) -> Error {
    Error::Corrupt(msg.into())
}

/// Bounds-checked little-endian reads.
fn le(b: &[u8], off: usize, n: usize) -> Result<u64> {
    let s = b
        .get(off..off.checked_add(n).ok_or_else(|| corrupt("offset overflow"))?)
        .ok_or_else(|| corrupt(format!("read of {n} bytes at {off} past the end of a {}-byte structure", b.len())))?;
    let mut v = 0u64;
    for (i, &x) in s.iter().enumerate() {
        v |= u64::from(x) << (8 * i);
    }
    Ok(v)
}

fn u64_at(b: &[u8], off: usize) -> Result<u64> {
    le(b, off, 8)
}
fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    le(b, off, 4).map(|v| v as u32)
}
fn u16_at(b: &[u8], off: usize) -> Result<u16> {
    le(b, off, 2).map(|v| v as u16)
}
fn u8_at(b: &[u8], off: usize) -> Result<u8> {
    le(b, off, 1).map(|v| v as u8)
}
fn bytes_at(b: &[u8], off: usize, n: usize) -> Result<&[u8]> {
    b.get(off..off.checked_add(n).ok_or_else(|| corrupt("offset overflow"))?)
        .ok_or_else(|| corrupt(format!("{n} bytes at {off} past the end of a {}-byte structure", b.len())))
}

/// The checksum algorithm of the filesystem (`btrfs_csum_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumType {
    /// crc32c (0).
    Crc32c,
    /// xxhash64 (1).
    Xxhash64,
    /// sha256 (2).
    Sha256,
    /// blake2b-256 (3).
    Blake2b,
}

impl CsumType {
    fn from_code(c: u16) -> Result<Self> {
        Ok(match c {
            0 => CsumType::Crc32c,
            1 => CsumType::Xxhash64,
            2 => CsumType::Sha256,
            3 => CsumType::Blake2b,
            _ => return Err(Error::UnsupportedCsum(c)),
        })
    }

    /// Bytes of one checksum.
    pub fn size(self) -> usize {
        match self {
            CsumType::Crc32c => 4,
            CsumType::Xxhash64 => 8,
            CsumType::Sha256 | CsumType::Blake2b => 32,
        }
    }

    /// Name as btrfs-progs prints it.
    pub fn name(self) -> &'static str {
        match self {
            CsumType::Crc32c => "crc32c",
            CsumType::Xxhash64 => "xxhash64",
            CsumType::Sha256 => "sha256",
            CsumType::Blake2b => "blake2b",
        }
    }

    /// The checksum of `data`, as stored (little-endian for the integer ones).
    pub fn compute(self, data: &[u8]) -> Vec<u8> {
        match self {
            CsumType::Crc32c => crc32c::crc32c(data).to_le_bytes().to_vec(),
            CsumType::Xxhash64 => xxhash_rust::xxh64::xxh64(data, 0).to_le_bytes().to_vec(),
            CsumType::Sha256 => sha2::Sha256::digest(data).to_vec(),
            CsumType::Blake2b => blake2::Blake2b::<blake2::digest::consts::U32>::digest(data).to_vec(),
        }
    }
}

/// The fields of the superblock the reader uses.
#[derive(Clone, Debug)]
pub struct Superblock {
    /// Filesystem UUID.
    pub fsid: [u8; 16],
    /// Metadata UUID (the fsid unless the metadata_uuid feature is set).
    pub metadata_uuid: [u8; 16],
    /// Transaction generation.
    pub generation: u64,
    /// Root tree address.
    pub root: u64,
    /// Chunk tree address.
    pub chunk_root: u64,
    /// Root tree level.
    pub root_level: u8,
    /// Chunk tree level.
    pub chunk_root_level: u8,
    /// Sector size.
    pub sectorsize: u32,
    /// Tree block size.
    pub nodesize: u32,
    /// Bytes of the filesystem.
    pub total_bytes: u64,
    /// Devices.
    pub num_devices: u64,
    /// Checksum algorithm.
    pub csum_type: CsumType,
    /// Label.
    pub label: String,
    /// Incompatible feature flags.
    pub incompat_flags: u64,
    sys_chunk_array: Vec<u8>,
}

impl Superblock {
    /// Parse and verify a superblock copy.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < SUPER_INFO_SIZE || bytes_at(b, 64, 8)? != MAGIC {
            return Err(Error::NotBtrfs);
        }
        let csum_type = CsumType::from_code(u16_at(b, 196)?)?;
        let want = csum_type.compute(&b[32..SUPER_INFO_SIZE]);
        if b[..want.len()] != want[..] {
            return Err(Error::BadChecksum { what: "superblock", at: BTRFS_SUPER_INFO_OFFSET });
        }
        let mut fsid = [0u8; 16];
        fsid.copy_from_slice(bytes_at(b, 32, 16)?);
        let incompat_flags = u64_at(b, 188)?;
        const METADATA_UUID: u64 = 1 << 10;
        let mut metadata_uuid = fsid;
        if incompat_flags & METADATA_UUID != 0 {
            metadata_uuid.copy_from_slice(bytes_at(b, 571, 16)?);
        }
        let sys_len = u32_at(b, 160)? as usize;
        if sys_len > 2048 {
            return Err(corrupt(format!("sys_chunk_array_size {sys_len} > 2048")));
        }
        let sectorsize = u32_at(b, 144)?;
        let nodesize = u32_at(b, 148)?;
        if !sectorsize.is_power_of_two() || !(4096..=65536).contains(&sectorsize) {
            return Err(corrupt(format!("sectorsize {sectorsize}")));
        }
        if !nodesize.is_power_of_two() || !(4096..=65536).contains(&nodesize) || nodesize < sectorsize {
            return Err(corrupt(format!("nodesize {nodesize}")));
        }
        let label_raw = bytes_at(b, 299, 256)?;
        let label = String::from_utf8_lossy(&label_raw[..label_raw.iter().position(|&c| c == 0).unwrap_or(256)]).into();
        Ok(Self {
            fsid,
            metadata_uuid,
            generation: u64_at(b, 72)?,
            root: u64_at(b, 80)?,
            chunk_root: u64_at(b, 88)?,
            root_level: u8_at(b, 198)?,
            chunk_root_level: u8_at(b, 199)?,
            sectorsize,
            nodesize,
            total_bytes: u64_at(b, 112)?,
            num_devices: u64_at(b, 136)?,
            csum_type,
            label,
            incompat_flags,
            sys_chunk_array: bytes_at(b, 811, sys_len)?.to_vec(),
        })
    }
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

fn key_at(b: &[u8], off: usize) -> Result<Key> {
    Ok(Key { objectid: u64_at(b, off)?, ty: u8_at(b, off + 8)?, offset: u64_at(b, off + 9)? })
}

#[derive(Clone, Debug)]
struct Chunk {
    length: u64,
    profile: u64,
    stripes: Vec<u64>,
}

/// Logical to physical address translation.
#[derive(Clone, Debug, Default)]
pub struct ChunkMap {
    chunks: BTreeMap<u64, Chunk>,
}

impl ChunkMap {
    fn insert(&mut self, logical: u64, item: &[u8]) -> Result<()> {
        let length = u64_at(item, 0)?;
        let ty = u64_at(item, 24)?;
        let num_stripes = u16_at(item, 44)? as usize;
        if num_stripes == 0 || length == 0 {
            return Err(corrupt(format!("chunk at {logical:#x} with {num_stripes} stripes, length {length}")));
        }
        let profile = ty & BG_PROFILE_MASK;
        if profile != 0 && profile != BG_DUP {
            return Err(Error::UnsupportedProfile { logical, profile });
        }
        let mut stripes = Vec::with_capacity(num_stripes.min(16));
        for i in 0..num_stripes {
            let s = 48 + i * 32;
            let devid = u64_at(item, s)?;
            if devid != 1 {
                return Err(corrupt(format!("chunk at {logical:#x} on device {devid} (single-device images only)")));
            }
            stripes.push(u64_at(item, s + 8)?);
        }
        logical.checked_add(length).ok_or_else(|| corrupt("chunk end overflows"))?;
        self.chunks.insert(logical, Chunk { length, profile, stripes });
        Ok(())
    }

    /// Physical address of `len` bytes at `logical` (which must lie in one chunk).
    pub fn map(&self, logical: u64, len: u64) -> Result<u64> {
        let (&start, c) = self.chunks.range(..=logical).next_back().ok_or(Error::Unmapped(logical))?;
        let end = start + c.length;
        if logical.checked_add(len).is_none_or(|e| e > end) {
            return Err(Error::Unmapped(logical));
        }
        // SINGLE has one stripe; DUP has two identical copies: read the first.
        Ok(c.stripes[0] + (logical - start))
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// True when no chunk is known.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Profiles in use (0 = SINGLE, `BG_DUP`).
    pub fn profiles(&self) -> HashSet<u64> {
        self.chunks.values().map(|c| c.profile).collect()
    }
}

enum Storage {
    File(File, u64),
    Mem(std::sync::Arc<Vec<u8>>),
}

impl Storage {
    fn len(&self) -> u64 {
        match self {
            Storage::File(_, n) => *n,
            Storage::Mem(v) => v.len() as u64,
        }
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let end = off.checked_add(buf.len() as u64).ok_or_else(|| corrupt("read offset overflows"))?;
        if end > self.len() {
            return Err(corrupt(format!(
                "read of {} bytes at {off:#x} past the end of the image ({} bytes)",
                buf.len(),
                self.len()
            )));
        }
        match self {
            Storage::File(f, _) => f.read_exact_at(buf, off)?,
            Storage::Mem(v) => buf.copy_from_slice(&v[off as usize..end as usize]),
        }
        Ok(())
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

/// An inode's attributes.
#[derive(Clone, Copy, Debug)]
pub struct Inode {
    /// Size in bytes.
    pub size: u64,
    /// Mode bits (type and permissions).
    pub mode: u32,
    /// Link count.
    pub nlink: u32,
    /// Inode flags (NODATASUM, COMPRESS, ...).
    pub flags: u64,
}

/// What kind of file an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// A subvolume's root directory.
    Subvolume,
    /// Anything else (device, fifo, socket).
    Other,
}

/// A file found by walking the directories.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// Path from the top of the filesystem, `/` separated, no leading slash.
    pub path: String,
    /// Fs tree (subvolume) holding the inode.
    pub tree: u64,
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: FileKind,
}

/// The kind of a file extent item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtentKind {
    /// Data stored in the item (possibly compressed).
    Inline {
        /// The item's data bytes.
        data: Vec<u8>,
    },
    /// A regular extent; `disk_bytenr == 0` is a hole.
    Regular,
    /// Preallocated (reads as zeros).
    Prealloc,
}

/// One `EXTENT_DATA` item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileExtent {
    /// File offset (the key offset).
    pub file_offset: u64,
    /// Generation.
    pub generation: u64,
    /// Decompressed size of the whole extent.
    pub ram_bytes: u64,
    /// Compression code (0 none, 1 zlib, 2 lzo, 3 zstd).
    pub compression: u8,
    /// Encryption (must be 0).
    pub encryption: u8,
    /// Other encoding (must be 0).
    pub other_encoding: u16,
    /// Inline, regular or prealloc.
    pub kind: ExtentKind,
    /// Logical start of the on-disk extent (0 = hole).
    pub disk_bytenr: u64,
    /// On-disk size.
    pub disk_num_bytes: u64,
    /// Offset into the decompressed extent.
    pub offset: u64,
    /// Bytes of file this item covers.
    pub num_bytes: u64,
}

impl FileExtent {
    fn parse(file_offset: u64, d: &[u8]) -> Result<Self> {
        let ty = u8_at(d, 20)?;
        let mut e = FileExtent {
            file_offset,
            generation: u64_at(d, 0)?,
            ram_bytes: u64_at(d, 8)?,
            compression: u8_at(d, 16)?,
            encryption: u8_at(d, 17)?,
            other_encoding: u16_at(d, 18)?,
            kind: ExtentKind::Regular,
            disk_bytenr: 0,
            disk_num_bytes: 0,
            offset: 0,
            num_bytes: 0,
        };
        match ty {
            0 => {
                e.kind = ExtentKind::Inline { data: d[21..].to_vec() };
                e.num_bytes = e.ram_bytes;
            }
            1 | 2 => {
                e.kind = if ty == 1 { ExtentKind::Regular } else { ExtentKind::Prealloc };
                e.disk_bytenr = u64_at(d, 21)?;
                e.disk_num_bytes = u64_at(d, 29)?;
                e.offset = u64_at(d, 37)?;
                e.num_bytes = u64_at(d, 45)?;
            }
            _ => return Err(corrupt(format!("file extent type {ty} at file offset {file_offset}"))),
        }
        if e.compression > 3 {
            return Err(corrupt(format!("compression type {} at file offset {file_offset}", e.compression)));
        }
        Ok(e)
    }

    /// True for a hole (regular extent with no disk bytes).
    pub fn is_hole(&self) -> bool {
        self.kind == ExtentKind::Regular && self.disk_bytenr == 0
    }
}

/// An opened image.
pub struct Image {
    storage: Storage,
    /// The superblock.
    pub sb: Superblock,
    /// The chunk map.
    pub chunks: ChunkMap,
    roots: BTreeMap<u64, (u64, u8)>,
    csums: BTreeMap<u64, Vec<u8>>,
}

/// Largest image accepted from a `.zst` file (decompressed into memory).
const MAX_ZST_IMAGE: u64 = 4 << 30;

/// Open a raw image or a `.zst`-compressed one.
pub fn open_image(path: &Path) -> Result<Image> {
    let mut f = File::open(path)?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic)?;
    let len = f.metadata()?.len();
    let storage = if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Storage::Mem(std::sync::Arc::new(unzstd(&std::fs::read(path)?)?))
    } else {
        Storage::File(f, len)
    };
    Image::open(storage)
}

/// Open an image held in memory.
pub fn open_bytes(data: Vec<u8>) -> Result<Image> {
    open_shared(std::sync::Arc::new(data))
}

/// Open an image held in shared memory (no copy).
pub fn open_shared(data: std::sync::Arc<Vec<u8>>) -> Result<Image> {
    Image::open(Storage::Mem(data))
}

fn unzstd(data: &[u8]) -> Result<Vec<u8>> {
    let mut dctx = zstd_safe::DCtx::create();
    dctx.set_parameter(zstd_safe::DParameter::WindowLogMax(31)).map_err(|_| corrupt("zstd parameters"))?;
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut input = zstd_safe::InBuffer::around(data);
    loop {
        let mut ob = zstd_safe::OutBuffer::around(&mut chunk[..]);
        let r = dctx
            .decompress_stream(&mut ob, &mut input)
            .map_err(|c| corrupt(format!("compressed image: {}", zstd_safe::get_error_name(c))))?;
        let n = ob.pos();
        out.extend_from_slice(&chunk[..n]);
        if out.len() as u64 > MAX_ZST_IMAGE {
            return Err(Error::TooLarge(MAX_ZST_IMAGE));
        }
        if r == 0 && input.pos == data.len() {
            return Ok(out);
        }
        if n == 0 && input.pos == data.len() {
            return Err(corrupt("compressed image is truncated"));
        }
    }
}

impl Image {
    fn open(storage: Storage) -> Result<Self> {
        let mut sbb = vec![0u8; SUPER_INFO_SIZE];
        if storage.len() < BTRFS_SUPER_INFO_OFFSET + SUPER_INFO_SIZE as u64 {
            return Err(Error::NotBtrfs);
        }
        storage.read_at(BTRFS_SUPER_INFO_OFFSET, &mut sbb)?;
        let sb = Superblock::parse(&sbb)?;
        let mut img =
            Image { storage, sb, chunks: ChunkMap::default(), roots: BTreeMap::new(), csums: BTreeMap::new() };
        img.read_sys_chunks()?;
        let chunk_tree = img.read_tree(CHUNK_TREE_OBJECTID, img.sb.chunk_root, img.sb.chunk_root_level)?;
        for it in &chunk_tree.items {
            if it.key.ty == CHUNK_ITEM_KEY {
                img.chunks.insert(it.key.offset, &it.data)?;
            }
        }
        let root_tree = img.read_tree(1, img.sb.root, img.sb.root_level)?;
        for it in &root_tree.items {
            if it.key.ty == ROOT_ITEM_KEY {
                let bytenr = u64_at(&it.data, 176)?;
                let level = u8_at(&it.data, 238)?;
                img.roots.insert(it.key.objectid, (bytenr, level));
            }
        }
        if let Some(&(b, l)) = img.roots.get(&CSUM_TREE_OBJECTID) {
            let t = img.read_tree(CSUM_TREE_OBJECTID, b, l)?;
            for it in t.items {
                if it.key.objectid == EXTENT_CSUM_OBJECTID && it.key.ty == EXTENT_CSUM_KEY {
                    img.csums.insert(it.key.offset, it.data);
                }
            }
        }
        Ok(img)
    }

    fn read_sys_chunks(&mut self) -> Result<()> {
        let a = self.sb.sys_chunk_array.clone();
        let mut off = 0;
        while off < a.len() {
            let key = key_at(&a, off)?;
            off += 17;
            if key.ty != CHUNK_ITEM_KEY {
                return Err(corrupt(format!("sys_chunk_array holds key type {}", key.ty)));
            }
            let n = u16_at(&a, off + 44)? as usize;
            let size = 48 + 32 * n;
            self.chunks.insert(key.offset, bytes_at(&a, off, size)?)?;
            if u64_at(&a, off + 24)? & BG_SYSTEM == 0 {
                return Err(corrupt("sys_chunk_array holds a non-system chunk"));
            }
            off += size;
        }
        if self.chunks.is_empty() {
            return Err(corrupt("empty sys_chunk_array"));
        }
        Ok(())
    }

    /// Read `len` bytes at a logical address.
    pub fn read_logical(&self, logical: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        self.read_logical_into(logical, &mut out)?;
        Ok(out)
    }

    /// Read `out.len()` bytes at a logical address into `out`.
    pub fn read_logical_into(&self, logical: u64, out: &mut [u8]) -> Result<()> {
        let len = out.len();
        let mut done = 0;
        while done < len {
            // Stay inside one chunk per read.
            let at = logical + done as u64;
            let (&start, c) = self.chunks.chunks.range(..=at).next_back().ok_or(Error::Unmapped(at))?;
            let end = start + c.length;
            if at >= end {
                return Err(Error::Unmapped(at));
            }
            let n = ((end - at) as usize).min(len - done);
            let phys = self.chunks.map(at, n as u64)?;
            self.storage.read_at(phys, &mut out[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    fn read_block(&self, logical: u64) -> Result<Vec<u8>> {
        let ns = self.sb.nodesize as usize;
        let b = self.read_logical(logical, ns)?;
        let cs = self.sb.csum_type;
        if b[..cs.size()] != cs.compute(&b[32..])[..] {
            return Err(Error::BadChecksum { what: "tree block", at: logical });
        }
        if u64_at(&b, 48)? != logical {
            return Err(corrupt(format!("tree block at {logical:#x} claims bytenr {:#x}", u64_at(&b, 48)?)));
        }
        if bytes_at(&b, 32, 16)? != self.sb.metadata_uuid {
            return Err(corrupt(format!("tree block at {logical:#x} belongs to another filesystem")));
        }
        Ok(b)
    }

    /// Every item of the tree rooted at `bytenr` (depth-first, key order).
    pub fn read_tree(&self, id: u64, bytenr: u64, level: u8) -> Result<Tree> {
        if level > MAX_LEVEL {
            return Err(corrupt(format!("tree {id} root level {level}")));
        }
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        self.walk(bytenr, level, &mut items, &mut seen)?;
        Ok(Tree { id, items })
    }

    fn walk(&self, bytenr: u64, level: u8, out: &mut Vec<Item>, seen: &mut HashSet<u64>) -> Result<()> {
        if !seen.insert(bytenr) {
            return Err(corrupt(format!("tree block {bytenr:#x} reached twice (cycle)")));
        }
        let b = self.read_block(bytenr)?;
        let nritems = u32_at(&b, 96)? as usize;
        let got_level = u8_at(&b, 100)?;
        if got_level != level {
            return Err(corrupt(format!("tree block {bytenr:#x} has level {got_level}, expected {level}")));
        }
        let ns = b.len();
        if level == 0 {
            if nritems > (ns - HEADER_SIZE) / ITEM_SIZE {
                return Err(corrupt(format!("leaf {bytenr:#x} claims {nritems} items")));
            }
            for i in 0..nritems {
                let p = HEADER_SIZE + i * ITEM_SIZE;
                let key = key_at(&b, p)?;
                let off = u32_at(&b, p + 17)? as usize;
                let size = u32_at(&b, p + 21)? as usize;
                let data = bytes_at(&b[HEADER_SIZE..], off, size)
                    .map_err(|_| corrupt(format!("item {i} of leaf {bytenr:#x} points outside the leaf")))?;
                out.push(Item { key, data: data.to_vec() });
            }
        } else {
            if nritems == 0 || nritems > (ns - HEADER_SIZE) / KEY_PTR_SIZE {
                return Err(corrupt(format!("node {bytenr:#x} claims {nritems} pointers")));
            }
            for i in 0..nritems {
                let p = HEADER_SIZE + i * KEY_PTR_SIZE;
                let child = u64_at(&b, p + 17)?;
                self.walk(child, level - 1, out, seen)?;
            }
        }
        Ok(())
    }

    /// Root block address and level of tree `id` (from its ROOT_ITEM).
    pub fn tree_root(&self, id: u64) -> Option<(u64, u8)> {
        self.roots.get(&id).copied()
    }

    /// The ids of all fs trees (5 and the subvolumes).
    pub fn fs_tree_ids(&self) -> Vec<u64> {
        self.roots
            .keys()
            .copied()
            .filter(|&id| id == BTRFS_FS_TREE_OBJECTID || (FIRST_FREE_OBJECTID..=LAST_FREE_OBJECTID).contains(&id))
            .collect()
    }

    /// Read a whole fs tree.
    pub fn fs_tree(&self, id: u64) -> Result<Tree> {
        let &(b, l) = self.roots.get(&id).ok_or_else(|| corrupt(format!("no root item for tree {id}")))?;
        self.read_tree(id, b, l)
    }

    /// An inode's attributes.
    pub fn inode(&self, tree: &Tree, ino: u64) -> Result<Inode> {
        let it = tree
            .items_of(ino, INODE_ITEM_KEY)
            .next()
            .ok_or_else(|| corrupt(format!("tree {} has no inode {ino}", tree.id)))?;
        let d = &it.data;
        Ok(Inode { size: u64_at(d, 16)?, nlink: u32_at(d, 40)?, mode: u32_at(d, 52)?, flags: u64_at(d, 64)? })
    }

    /// The file extent items of an inode, in file order.
    pub fn file_extents(&self, tree: &Tree, ino: u64) -> Result<Vec<FileExtent>> {
        tree.items_of(ino, EXTENT_DATA_KEY).map(|it| FileExtent::parse(it.key.offset, &it.data)).collect()
    }

    /// Every file, directory and subvolume, walking directory indexes from the top subvolume.
    pub fn walk_files(&self) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        let mut trees: BTreeMap<u64, Tree> = BTreeMap::new();
        let mut stack = vec![(BTRFS_FS_TREE_OBJECTID, ROOT_DIR_INO, String::new())];
        let mut visited = HashSet::new();
        while let Some((tid, dir, prefix)) = stack.pop() {
            if !visited.insert((tid, dir)) {
                return Err(corrupt(format!("directory {dir} of tree {tid} reached twice")));
            }
            let tree = match trees.entry(tid) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => v.insert(self.fs_tree(tid)?),
            };
            let entries: Vec<(String, Key, u8)> = tree
                .items_of(dir, DIR_INDEX_KEY)
                .map(|it| {
                    let d = &it.data;
                    let loc = key_at(d, 0)?;
                    let name_len = u16_at(d, 27)? as usize;
                    let data_len = u16_at(d, 25)? as usize;
                    let ty = u8_at(d, 29)?;
                    let name = bytes_at(d, 30, name_len)?;
                    if 30 + name_len + data_len > d.len() {
                        return Err(corrupt("dir item longer than its item"));
                    }
                    let name = String::from_utf8_lossy(name).into_owned();
                    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                        return Err(corrupt(format!("bad file name {name:?} in directory {dir}")));
                    }
                    Ok((name, loc, ty))
                })
                .collect::<Result<_>>()?;
            for (name, loc, ty) in entries {
                let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
                if loc.ty == ROOT_ITEM_KEY {
                    out.push(DirEntry {
                        path: path.clone(),
                        tree: loc.objectid,
                        ino: ROOT_DIR_INO,
                        kind: FileKind::Subvolume,
                    });
                    if self.roots.contains_key(&loc.objectid) {
                        stack.push((loc.objectid, ROOT_DIR_INO, path));
                    }
                    continue;
                }
                let kind = match ty {
                    1 => FileKind::Regular,
                    2 => FileKind::Directory,
                    7 => FileKind::Symlink,
                    _ => FileKind::Other,
                };
                out.push(DirEntry { path: path.clone(), tree: tid, ino: loc.objectid, kind });
                if kind == FileKind::Directory {
                    stack.push((tid, loc.objectid, path));
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The checksums stored for the sectors of `[logical, logical + len)`, or `None` for sectors
    /// without one (NODATASUM). One entry per sector.
    pub fn data_csums(&self, logical: u64, len: u64) -> Vec<Option<Vec<u8>>> {
        let ss = u64::from(self.sb.sectorsize);
        let cs = self.sb.csum_type.size();
        (0..len.div_ceil(ss))
            .map(|i| {
                let sector = logical + i * ss;
                let (&start, sums) = self.csums.range(..=sector).next_back()?;
                let idx = ((sector - start) / ss) as usize;
                sums.get(idx * cs..(idx + 1) * cs).map(<[u8]>::to_vec)
            })
            .collect()
    }

    /// Check the on-disk bytes of a data extent against the csum tree. Returns the number of
    /// sectors checked (sectors without a checksum are skipped).
    pub fn verify_data(&self, logical: u64, data: &[u8]) -> Result<usize> {
        let ss = self.sb.sectorsize as usize;
        let mut checked = 0;
        for (i, sum) in self.data_csums(logical, data.len() as u64).into_iter().enumerate() {
            let Some(sum) = sum else { continue };
            let sector = &data[i * ss..((i + 1) * ss).min(data.len())];
            if self.sb.csum_type.compute(sector) != sum {
                return Err(Error::BadChecksum { what: "data", at: logical + (i * ss) as u64 });
            }
            checked += 1;
        }
        Ok(checked)
    }

    /// Sectors with a data checksum in the image.
    pub fn csum_sectors(&self) -> usize {
        self.csums.values().map(|v| v.len() / self.sb.csum_type.size()).sum()
    }
}
