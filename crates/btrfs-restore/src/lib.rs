//! Files out of a btrfs image with our decoders: `inspect` (files and extents), `extract` (like
//! `btrfs restore`), `verify` (every compressed extent decoded, every data checksum checked).
#![forbid(unsafe_code)]

mod dest;
mod extract;
mod meta;
mod usage;

pub use extract::{extract, ExtractOptions, ExtractReport};
pub use usage::{extents_past_end, usage};

use std::collections::{BTreeMap, HashSet};

use btrfs_image::{CorruptKind, DirEntry, ExtentKind, FileExtent, FileKind, Image, Tree, Walk};
use serde::Serialize;

use btrfs_compress::{decompress_extent, decompress_inline, CompressType, Error, Options, BTRFS_MAX_COMPRESSED};

/// A failure while reading an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reader refused the metadata.
    #[error("{0}")]
    Image(#[from] btrfs_image::Error),
    /// A codec refused an extent.
    #[error("{path}: extent at file offset {file_offset}: {err}")]
    Extent {
        /// File.
        path: String,
        /// Extent's file offset.
        file_offset: u64,
        /// What went wrong.
        err: Error,
    },
    /// Writing the output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A directory or file under the destination could not be created.
    #[error("cannot create {}: {err}", path.display())]
    Create {
        /// What could not be created.
        path: std::path::PathBuf,
        /// Why.
        err: std::io::Error,
    },
    /// A data sector whose checksum does not match (the kernel would return EIO on read).
    #[error("{path}: extent at file offset {file_offset}: data checksum mismatch at {at:#x}")]
    Csum {
        /// File.
        path: String,
        /// Extent's file offset.
        file_offset: u64,
        /// Logical address of the sector.
        at: u64,
    },
    /// SIGINT or SIGTERM: extract stopped and removed its temporary files.
    #[error("interrupted")]
    Interrupted,
    /// Paths asked for that are not in the image (each must name something).
    #[error("no such path in the image: {0}")]
    NoSuchPath(String),
}

/// One extent as `inspect` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ExtentInfo {
    /// File offset.
    pub file_offset: u64,
    /// inline, regular, prealloc or hole.
    pub kind: &'static str,
    /// none, zlib, lzo or zstd.
    pub compression: &'static str,
    /// Logical start on disk.
    pub disk_bytenr: u64,
    /// On-disk size (inline: the item's data size).
    pub disk_num_bytes: u64,
    /// Decompressed size of the whole extent.
    pub ram_bytes: u64,
    /// Offset into the decompressed extent.
    pub offset: u64,
    /// Bytes of file covered.
    pub num_bytes: u64,
}

/// One file as `inspect` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct FileInfo {
    /// Path (bytes that are not printable ASCII escaped as `\xNN`).
    pub path: String,
    /// Fs tree.
    pub tree: u64,
    /// Inode.
    pub ino: u64,
    /// file, dir, symlink, subvolume or other.
    pub kind: &'static str,
    /// i_size.
    pub size: u64,
    /// Mode bits (type and permissions).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u32,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// A symlink's target (escaped like the path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Names of the extended attributes (escaped).
    pub xattrs: Vec<String>,
    /// A subvolume's generation and whether it is a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subvolume: Option<SubvolInfo>,
    /// Extents.
    pub extents: Vec<ExtentInfo>,
}

/// What `inspect` says of a subvolume (its id is [`FileInfo::tree`]).
#[derive(Clone, Debug, Serialize)]
pub struct SubvolInfo {
    /// Generation of its root.
    pub generation: u64,
    /// A snapshot (it names the subvolume it was taken of).
    pub snapshot: bool,
    /// Read-only.
    pub readonly: bool,
}

fn comp_name(c: u8) -> &'static str {
    match CompressType::from_code(c) {
        Some(t) => t.name(),
        None => "unknown",
    }
}

fn kind_name(k: FileKind) -> &'static str {
    match k {
        FileKind::Regular => "file",
        FileKind::Directory => "dir",
        FileKind::Symlink => "symlink",
        FileKind::Subvolume => "subvolume",
        FileKind::CharDevice => "chardev",
        FileKind::BlockDevice => "blockdev",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "socket",
        FileKind::Other => "other",
    }
}

/// Files and their extents (`btrfs inspect-internal dump-tree` restricted to data), read as
/// they are shown: [`Inspect::files`] builds each entry's [`FileInfo`] on demand, so memory stays
/// linear in the number of entries whatever their depth (only the output holds whole paths).
pub fn inspect(img: &Image) -> Result<Inspect<'_>, ImageError> {
    Ok(Inspect { img, walk: img.walk_files()? })
}

/// The walk behind [`inspect`]; serializes as the JSON array of its [`FileInfo`]s.
#[must_use = "inspect checks each entry only as its files are iterated"]
pub struct Inspect<'i> {
    img: &'i Image,
    /// The image's entries.
    pub walk: Walk,
}

impl Inspect<'_> {
    /// Every entry's [`FileInfo`], in walk order. An entry whose metadata fails its checks is
    /// skipped and said ([`Image::skipped`]).
    pub fn files(&self) -> impl Iterator<Item = FileInfo> + '_ {
        self.walk.paths().filter_map(|(i, path)| match file_info(self.img, &self.walk, i, &path) {
            Ok(f) => Some(f),
            Err(err) => {
                self.img.note_skipped(format!("{}: {err}", self.walk.display(i)));
                None
            }
        })
    }
}

impl Serialize for Inspect<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.files())
    }
}

/// What `inspect` shows of entry `i` (at `path`).
fn file_info(img: &Image, walk: &Walk, i: usize, path: &std::ffi::OsStr) -> Result<FileInfo, ImageError> {
    use std::os::unix::ffi::OsStrExt;
    let e = walk.get(i);
    let tree = img.fs_tree(e.tree)?;
    let ino = img.inode(&tree, e.ino)?;
    let extents = if e.kind == FileKind::Regular || e.kind == FileKind::Symlink {
        img.file_extents(&tree, e.ino)?.iter().map(extent_info).collect()
    } else {
        Vec::new()
    };
    let target = match e.kind {
        FileKind::Symlink => Some(extract::symlink_target(img, e, &|| walk.display(i))?.escape_ascii().to_string()),
        _ => None,
    };
    let xattrs = img.xattrs(&tree, e.ino)?.iter().map(|(n, _)| n.escape_ascii().to_string()).collect();
    let subvolume = (e.kind == FileKind::Subvolume).then(|| img.root_item(e.tree)).flatten().map(|r| SubvolInfo {
        generation: r.generation,
        snapshot: r.is_snapshot(),
        readonly: r.flags & btrfs_image::items::root::ROOT_SUBVOL_RDONLY != 0,
    });
    Ok(FileInfo {
        path: path.as_bytes().escape_ascii().to_string(),
        tree: e.tree,
        ino: e.ino,
        kind: kind_name(e.kind),
        size: if e.kind == FileKind::Regular || e.kind == FileKind::Symlink { ino.size } else { 0 },
        mode: ino.mode,
        uid: ino.uid,
        gid: ino.gid,
        nlink: ino.nlink,
        mtime_ns: i128::from(ino.mtime.sec) * 1_000_000_000 + i128::from(ino.mtime.nsec),
        target,
        xattrs,
        subvolume,
        extents,
    })
}

fn extent_info(e: &FileExtent) -> ExtentInfo {
    let (kind, disk) = match &e.kind {
        ExtentKind::Inline { data } => ("inline", data.len() as u64),
        ExtentKind::Prealloc => ("prealloc", e.disk_num_bytes),
        ExtentKind::Regular if e.is_hole() => ("hole", 0),
        ExtentKind::Regular => ("regular", e.disk_num_bytes),
    };
    ExtentInfo {
        file_offset: e.file_offset,
        kind,
        compression: comp_name(e.compression),
        disk_bytenr: e.disk_bytenr,
        disk_num_bytes: disk,
        ram_bytes: e.ram_bytes,
        offset: e.offset,
        num_bytes: e.num_bytes,
    }
}

/// `opts` with the image's sector size: lzo's segments, how much an inline extent holds, how
/// far a stream may be padded. Every entry point that decodes an image's extents reads with it.
fn for_image(img: &Image, opts: &Options) -> Options {
    Options { sectorsize: img.sb.sectorsize as usize, ..*opts }
}

/// A file's path for messages, made only when one is written (a path costs its depth).
pub type Label<'a> = &'a (dyn Fn() -> String + Sync);

/// Bytes `[0, len)` of extent `e` as the file sees them (from `e.file_offset`).
fn extent_bytes(img: &Image, e: &FileExtent, len: u64, path: Label<'_>, opts: &Options) -> Result<Vec<u8>, ImageError> {
    let fail = |err: Error| ImageError::Extent { path: path(), file_offset: e.file_offset, err };
    let len = len as usize;
    let opts = &for_image(img, opts);
    match &e.kind {
        ExtentKind::Inline { data } => {
            if e.compression == 0 {
                let mut v = data.clone();
                v.resize(len, 0);
                return Ok(v);
            }
            let alg =
                CompressType::from_code(e.compression).ok_or_else(|| fail(Error::InvalidArgument("codec".into())))?;
            let ram = (e.ram_bytes as usize).clamp(1, opts.sectorsize);
            let mut v = decompress_inline(alg, data, ram, opts).map_err(fail)?.to_vec();
            v.resize(len, 0);
            Ok(v)
        }
        ExtentKind::Prealloc => Ok(vec![0; len]),
        ExtentKind::Regular if e.is_hole() => Ok(vec![0; len]),
        ExtentKind::Regular if e.compression == 0 => Ok(img.read_logical(e.disk_bytenr + e.offset, len)?),
        ExtentKind::Regular => {
            let alg =
                CompressType::from_code(e.compression).ok_or_else(|| fail(Error::InvalidArgument("codec".into())))?;
            if e.disk_num_bytes == 0 || e.disk_num_bytes > BTRFS_MAX_COMPRESSED as u64 {
                return Err(fail(Error::InvalidArgument(format!("compressed extent of {} bytes", e.disk_num_bytes))));
            }
            let disk = img.read_logical(e.disk_bytenr, e.disk_num_bytes as usize)?;
            let v = decompress_extent(alg, &disk, e.ram_bytes as usize, e.offset as usize, len, opts).map_err(fail)?;
            Ok(v.to_vec())
        }
    }
}

/// The options `extract` and `verify` read with: the fastest correct path (decompress straight
/// into a destination mapped as one range of an order-5 folio; on the heap backend that is a plain
/// slice, no system calls).
pub fn read_options() -> Options {
    Options {
        strategy: btrfs_compress::Strategy::Range,
        folio_order: 5,
        out_order: 5,
        decompress_loop: btrfs_compress::LoopVariant::InPlace,
        ..Options::default()
    }
}

/// Largest uncompressed extent read at once; longer ones are read in pieces.
const PIECE: u64 = 1 << 20;

/// A regular file's extents, checked and clipped to its size, ready to be written in pieces.
#[derive(Clone, Debug)]
pub struct FilePlan {
    /// The file.
    pub entry: DirEntry,
    /// Its size.
    pub size: u64,
    /// Its extents in file order, none past the size, none overlapping.
    pub extents: Vec<FileExtent>,
}

/// Plan the writing of a regular file.
pub fn plan_file(img: &Image, tree: &Tree, entry: &DirEntry) -> Result<FilePlan, ImageError> {
    let size = img.inode(tree, entry.ino)?.size;
    let mut extents = Vec::new();
    let mut pos = 0;
    for e in img.file_extents(tree, entry.ino)? {
        if e.file_offset >= size {
            break;
        }
        if e.file_offset < pos {
            return Err(ImageError::Image(
                CorruptKind::ExtentsOverlap { ino: entry.ino, file_offset: e.file_offset }.into(),
            ));
        }
        pos = e.file_offset + e.num_bytes.min(size - e.file_offset);
        extents.push(e);
    }
    Ok(FilePlan { entry: *entry, size, extents })
}

/// What to do with a data sector whose checksum does not match, as the kernel's read path
/// would (it returns EIO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Csum {
    /// Refuse the extent: [`ImageError::Csum`].
    Check,
    /// Write it anyway; the mismatch is returned as a warning (`--ignore-csum`).
    Warn,
    /// Do not look at checksums.
    Skip,
}

/// Checks the on-disk bytes of one file's extents against the csum tree, under a [`Csum`]
/// policy, collecting the warnings of [`Csum::Warn`].
struct Checker<'a> {
    img: &'a Image,
    path: Label<'a>,
    csum: Csum,
    warnings: Vec<String>,
}

impl Checker<'_> {
    /// Check `data`, read at `logical`, of the extent at `file_offset`: a sector that fails is
    /// read again from the other copies ([`other_copy_good`]; `data` then holds the good bytes);
    /// where none passes it is an error, or a warning under [`Csum::Warn`].
    fn check(&mut self, logical: u64, data: &mut [u8], file_offset: u64) -> Result<(), ImageError> {
        if self.csum == Csum::Skip {
            return Ok(());
        }
        let checked = match self.img.verify_data(logical, data) {
            Err(btrfs_image::Error::BadChecksum { at, .. }) => match other_copy_good(self.img, logical, data) {
                Some(c) => {
                    self.img.note_repair(format!("{} @{file_offset}: data at {logical:#x} {c}", (self.path)()));
                    Ok(0)
                }
                None => Err(btrfs_image::Error::BadChecksum { what: "data", at }),
            },
            r => r,
        };
        match checked {
            Ok(_) => Ok(()),
            Err(btrfs_image::Error::BadChecksum { at, .. }) => {
                let e = ImageError::Csum { path: (self.path)(), file_offset, at };
                if self.csum == Csum::Warn {
                    self.warnings.push(format!("{e} (written anyway: --ignore-csum)"));
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Repair `data` (read at `logical`) sector by sector from the other copies, as the kernel's read
/// repair does: each sector whose checksum fails is read again from each copy in turn (DUP's and
/// RAID1's second, RAID1C3/C4's others, RAID5/6 rebuilt from P, then from Q) until one passes.
/// Per sector, so that a RAID5/6 rebuild of one unit does not use another damaged one. Which
/// copies served, said for the repair note; `None` if a sector has no good copy.
fn other_copy_good(img: &Image, logical: u64, data: &mut [u8]) -> Option<String> {
    let ss = img.sb.sectorsize as usize;
    let copies = img.chunks.copies(logical);
    let mut used = std::collections::BTreeSet::new();
    for (i, sector) in data.chunks_mut(ss).enumerate() {
        let at = logical + (i * ss) as u64;
        if img.verify_data(at, sector).is_ok() {
            continue;
        }
        let c =
            (0..copies).find(|&c| img.read_copy_into(at, sector, c).is_ok() && img.verify_data(at, sector).is_ok())?;
        used.insert(c + 1);
    }
    let profile = img.chunks.profile(logical).map_or("", |p| p.name());
    let which: Vec<String> = used.iter().map(|c| c.to_string()).collect();
    Some(format!("read from copy {} of {copies} ({profile}; the first fails its checksum)", which.join(", ")))
}

/// Write extents `range` of `plan` into `f` at their file offsets (`pwrite`); holes, prealloc
/// and gaps are left to the file's zeros (the caller sizes the file first). The on-disk bytes
/// of every regular extent are checked against the csum tree first (`csum`); the warnings of
/// [`Csum::Warn`] are returned. `path` names the file in messages.
pub fn write_extents(
    img: &Image,
    plan: &FilePlan,
    range: std::ops::Range<usize>,
    f: &std::fs::File,
    opts: &Options,
    csum: Csum,
    path: Label<'_>,
) -> Result<Vec<String>, ImageError> {
    use std::os::unix::fs::FileExt;
    let opts = &for_image(img, opts);
    let ss = u64::from(img.sb.sectorsize);
    let mut checker = Checker { img, path, csum, warnings: Vec::new() };
    for e in &plan.extents[range] {
        if e.is_hole() || e.kind == ExtentKind::Prealloc {
            continue;
        }
        let len = e.num_bytes.min(plan.size - e.file_offset);
        if e.compression == 0 && e.kind == ExtentKind::Regular {
            let mut done = 0;
            while done < len {
                let k = (len - done).min(PIECE);
                // Whole sectors, so that each can be checked (the file may end mid-sector).
                let at = e.disk_bytenr + e.offset + done;
                let room = e.disk_num_bytes.saturating_sub(e.offset + done);
                let mut buf = img.read_logical(at, k.next_multiple_of(ss).min(room.max(k)) as usize)?;
                checker.check(at, &mut buf, e.file_offset)?;
                buf.truncate(k as usize);
                f.write_all_at(&buf, e.file_offset + done)?;
                done += k;
            }
        } else if e.kind == ExtentKind::Regular {
            write_compressed(e, len as usize, f, opts, &mut checker)?;
        } else {
            f.write_all_at(&extent_bytes(img, e, len, path, opts)?, e.file_offset)?;
        }
    }
    Ok(checker.warnings)
}

/// Decode a compressed regular extent straight from the image into the file: the disk bytes are
/// read into the compressed pages, decompressed into destination pages that are not cleared
/// first, and written from those pages (no intermediate buffers).
fn write_compressed(
    e: &FileExtent,
    len: usize,
    f: &std::fs::File,
    opts: &Options,
    checker: &mut Checker<'_>,
) -> Result<(), ImageError> {
    use std::os::unix::fs::FileExt;
    let (img, path) = (checker.img, checker.path);
    let fail = |err: Error| ImageError::Extent { path: path(), file_offset: e.file_offset, err };
    let alg = CompressType::from_code(e.compression).ok_or_else(|| fail(Error::InvalidArgument("codec".into())))?;
    let ram = e.ram_bytes as usize;
    let disk = e.disk_num_bytes as usize;
    if ram == 0 || ram > btrfs_compress::BTRFS_MAX_UNCOMPRESSED || e.offset as usize + len > ram {
        return Err(fail(Error::InvalidArgument(format!(
            "extent of ram_bytes {ram} read at offset {} for {len} bytes",
            e.offset
        ))));
    }
    let r = btrfs_compress::with_ctx(opts, |ctx| {
        let mem = ctx.mem().clone();
        let cb = match btrfs_compress::CompressedBio::read_with(&mem, disk, opts.effective_out_order(), |off, buf| {
            let at = e.disk_bytenr + off as u64;
            img.read_logical_into(at, buf)?;
            checker.check(at, buf, e.file_offset)
        })? {
            Ok(cb) => cb,
            Err(err) => return Ok(Err(err)),
        };
        let mut dest =
            btrfs_compress::DestRange::new_dirty(&mem, e.offset as usize, len, opts.effective_folio_order())?;
        btrfs_compress::Engine::global().codecs().decompress_bio(alg, opts, ctx, &cb, &mut dest)?;
        let mut w = 0;
        while w < len {
            let (i, o) = dest.pages.locate(w).expect("inside the destination");
            let folio = &dest.pages.folios()[i];
            let n = (folio.size() - o).min(len - w);
            if let Err(err) = f.write_all_at(&folio.folio_address()[o..o + n], e.file_offset + w as u64) {
                return Ok(Err(ImageError::from(err)));
            }
            w += n;
        }
        Ok(Ok(()))
    });
    match r {
        Ok(inner) => inner,
        Err(err) => Err(fail(err)),
    }
}

/// What `verify` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Compressed extents decoded, per algorithm.
    pub decoded: BTreeMap<String, usize>,
    /// Data sectors whose checksum matched.
    pub csum_sectors: usize,
    /// Data extents checked.
    pub extents: usize,
    /// Failures: file, extent offset, error.
    pub failures: Vec<String>,
    /// Damaged copies that another copy (or parity) makes good, as scrub reports corrected
    /// errors: file, extent offset, which copy on which device.
    pub repairable: Vec<String>,
}

/// Decode every compressed extent and check every data checksum, with the checks `extract` makes
/// on every file ([`plan_file`]), and every other copy and RAID5/6 parity
/// ([`VerifyReport::repairable`]).
pub fn verify(img: &Image, opts: &Options) -> Result<VerifyReport, ImageError> {
    let opts = &for_image(img, opts);
    let mut r = VerifyReport::default();
    let mut seen = HashSet::new();
    let walk = img.walk_files()?;
    for (i, entry) in walk.entries().iter().enumerate() {
        if entry.kind != FileKind::Regular {
            continue;
        }
        let label = || walk.display(i);
        let tree = img.fs_tree(entry.tree)?;
        // The checks extract makes before it writes a byte (tree-checker rules on every extent
        // item, no overlaps, the inode's size): a file that fails them fails here, named, and
        // the rest is verified.
        let plan = match plan_file(img, &tree, entry) {
            Ok(p) => p,
            Err(err) => {
                r.failures.push(format!("{}: {err}", label()));
                continue;
            }
        };
        for e in plan.extents {
            let where_ = || format!("{} @{}", label(), e.file_offset);
            match &e.kind {
                ExtentKind::Inline { .. } if e.compression != 0 => {
                    r.extents += 1;
                    let sector = u64::from(img.sb.sectorsize);
                    match extent_bytes(img, &e, e.ram_bytes.min(sector), &label, opts) {
                        Ok(_) => *r.decoded.entry(comp_name(e.compression).into()).or_default() += 1,
                        Err(err) => r.failures.push(format!("{}: {err}", where_())),
                    }
                }
                ExtentKind::Regular if !e.is_hole() => {
                    if !seen.insert(e.disk_bytenr) {
                        continue; // shared (reflinked) extent, checked once
                    }
                    r.extents += 1;
                    let mut disk = match img.read_logical(e.disk_bytenr, e.disk_num_bytes as usize) {
                        Ok(d) => d,
                        Err(err) => {
                            r.failures.push(format!("{}: {err}", where_()));
                            continue;
                        }
                    };
                    match img.verify_data(e.disk_bytenr, &disk) {
                        Ok(n) => r.csum_sectors += n,
                        Err(err @ btrfs_image::Error::BadChecksum { .. }) => {
                            match other_copy_good(img, e.disk_bytenr, &mut disk) {
                                Some(c) => {
                                    r.csum_sectors += img.verify_data(e.disk_bytenr, &disk).unwrap_or(0);
                                    img.note_repair(format!("{}: data {c}", where_()));
                                }
                                None => r.failures.push(format!("{}: {err}", where_())),
                            }
                        }
                        Err(err) => r.failures.push(format!("{}: {err}", where_())),
                    }
                    match img.check_redundancy(e.disk_bytenr, e.disk_num_bytes) {
                        Ok(faults) => r.repairable.extend(faults.into_iter().map(|f| format!("{}: {f}", where_()))),
                        Err(err) => r.failures.push(format!("{}: {err}", where_())),
                    }
                    if let Some(alg) = CompressType::from_code(e.compression).filter(|&a| a != CompressType::None) {
                        let ram = e.ram_bytes as usize;
                        match decompress_extent(alg, &disk, ram, 0, ram, opts) {
                            Ok(_) => *r.decoded.entry(alg.name().into()).or_default() += 1,
                            Err(err) => r.failures.push(format!("{} ({}): {err}", where_(), alg.name())),
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(r)
}
