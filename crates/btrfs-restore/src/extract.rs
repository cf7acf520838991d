//! `extract`: a faithful restore of an image's tree under a destination directory, like
//! `btrfs restore -S -m -x` and more: regular files (extents decoded in parallel, data checksums
//! checked as the kernel's read path checks them), directories, symlinks (target bytes exactly),
//! hard links as hard links, fifos, sockets and device nodes, with owner, mode, xattrs and
//! times. Names are raw bytes throughout.
//!
//! Every file is written under a temporary name and renamed into place, so nothing
//! half-written ever stands under a final name; a failed or interrupted file leaves nothing
//! (see [`crate::dest`] for how names are created beneath DEST without following symlinks).
//! Directory metadata is restored last, deepest first, so their times are the image's.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use btrfs_image::{DirEntry, FileKind, Image, Inode, Walk};
use rayon::prelude::*;
use rustix::fs as rfs;

use crate::dest::{self, Cursor, Dest};
use crate::meta::{self, Policy, Refused, Xattrs};
use crate::{extent_bytes, plan_file, read_options, write_extents, Csum, FilePlan, ImageError, Label};

/// What to extract, and how. The default restores everything the inodes say.
#[derive(Clone, Debug)]
pub struct ExtractOptions {
    /// Replace what exists under the destination (atomically, by rename).
    pub force: bool,
    /// Only these paths (files, or directories and what is under them); all when empty.
    pub paths: Vec<OsString>,
    /// Owner, mode and times (`false`: data only, modes from the umask).
    pub metadata: bool,
    /// Extended attributes.
    pub xattrs: bool,
    /// Write extents whose data checksums do not match, with a warning each.
    pub ignore_csum: bool,
    /// Also restore snapshots (as `btrfs restore -s`); without it they are skipped.
    pub snapshots: bool,
    /// Only this subvolume (path in the image, or id), its contents at the top of DEST.
    pub subvol: Option<String>,
    /// Safe mode, for an untrusted image: no device nodes, no setuid or setgid bits, only
    /// `user.*` and POSIX ACL xattrs (no file capabilities, security or trusted labels); what
    /// was dropped is counted in [`ExtractReport::safe_dropped`].
    pub safe: bool,
    /// Keep what already exists under the destination and go on (a rerun after an interrupted
    /// extract: every file there was renamed into place whole), as `btrfs restore` does.
    pub skip_existing: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            force: false,
            paths: Vec::new(),
            metadata: true,
            xattrs: true,
            ignore_csum: false,
            snapshots: false,
            subvol: None,
            safe: false,
            skip_existing: false,
        }
    }
}

/// What `extract` did.
#[derive(Clone, Debug, Default)]
pub struct ExtractReport {
    /// Regular files written (the first name of each inode).
    pub files: usize,
    /// Directories created or used.
    pub dirs: usize,
    /// Symlinks.
    pub symlinks: usize,
    /// Further names of inodes already written, made hard links.
    pub hardlinks: usize,
    /// Fifos, sockets and device nodes.
    pub special: usize,
    /// Device nodes not created (not root).
    pub devices_skipped: usize,
    /// Snapshots skipped (no `snapshots`).
    pub snapshots_skipped: usize,
    /// Stale temporary files of an earlier, unfinished extract removed.
    pub stale_removed: usize,
    /// Owners were not restored (not root).
    pub owners_skipped: bool,
    /// Entries not written, one message each.
    pub errors: Vec<String>,
    /// What safe mode dropped, one line per kind (count and what).
    pub safe_dropped: Vec<String>,
    /// Entries kept as they were under the destination (`skip_existing`).
    pub existing_kept: usize,
    /// Warnings (extents written despite a checksum mismatch, xattrs the destination refused).
    pub warnings: Vec<String>,
}

/// The entries to restore: the walk, the entry DEST stands for (`--subvol`), and which entries
/// are kept (snapshots dropped unless asked for, the path filter applied with the directories
/// leading to what it names).
struct Selection {
    walk: Walk,
    base: Option<usize>,
    kept: Vec<bool>,
}

impl Selection {
    /// The kept entries under the base, in walk order.
    fn entries(&self) -> impl DoubleEndedIterator<Item = usize> + '_ {
        let range = match self.base {
            Some(b) => b + 1..self.walk.subtree(b).end,
            None => 0..self.walk.len(),
        };
        range.filter(|&i| self.kept[i])
    }
}

fn select(img: &Image, opts: &ExtractOptions, report: &mut ExtractReport) -> Result<Selection, ImageError> {
    let walk = img.walk_files()?;
    let mut kept = vec![true; walk.len()];
    if !opts.snapshots {
        for (i, e) in walk.entries().iter().enumerate() {
            if e.kind == FileKind::Subvolume && img.root_item(e.tree).is_some_and(|r| r.is_snapshot()) {
                report.snapshots_skipped += 1;
                kept[walk.subtree(i)].fill(false);
            }
        }
    }
    let base = match &opts.subvol {
        Some(sel) => {
            let by_path = walk.find_from(None, sel.as_bytes()).ok().flatten();
            let by_id = sel.parse::<u64>().ok();
            let sub = walk.entries().iter().enumerate().position(|(i, e)| {
                e.kind == FileKind::Subvolume && kept[i] && (by_path == Some(i) || by_id == Some(e.tree))
            });
            Some(sub.ok_or_else(|| ImageError::NoSuchPath(format!("subvolume {sel}")))?)
        }
        None => None,
    };
    if !opts.paths.is_empty() {
        // Every PATH given must name something: a typo beside a good path is not ignored.
        let mut wanted = vec![false; walk.len()];
        let mut missing = Vec::new();
        let mut all = false;
        for f in &opts.paths {
            match walk.find_from(base, f.as_bytes()) {
                Ok(None) => all = true,
                Ok(Some(i)) if kept[i] => {
                    wanted[walk.subtree(i)].fill(true);
                    let mut up = walk.parent(i);
                    while let Some(a) = up.filter(|&a| Some(a) != base) {
                        wanted[a] = true;
                        up = walk.parent(a);
                    }
                }
                _ => missing.push(f.as_bytes().escape_ascii().to_string()),
            }
        }
        if !missing.is_empty() {
            return Err(ImageError::NoSuchPath(missing.join(", ")));
        }
        if !all {
            kept.iter_mut().zip(&wanted).for_each(|(k, w)| *k &= *w);
        }
    }
    Ok(Selection { walk, base, kept })
}

/// Shared state of one extract.
struct Run<'a> {
    img: &'a Image,
    sel: &'a Selection,
    dest: Dest,
    opts: &'a ExtractOptions,
    policy: Policy,
    refused: Refused,
    cancel: &'a AtomicBool,
    /// Entries not written: (entry, why); their paths are made at the end, in one pass.
    errors: Mutex<Vec<(usize, String)>>,
    warnings: Mutex<Vec<String>>,
    /// Entries kept as they were (`skip_existing`).
    kept: std::sync::atomic::AtomicUsize,
}

/// The outcome of an entry that exists under the destination and is kept.
const KEPT: &str = "kept: it exists under the destination";

impl Run<'_> {
    fn error(&self, i: usize, msg: impl std::fmt::Display) {
        let msg = msg.to_string();
        if msg == KEPT {
            self.kept.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Ok(mut v) = self.errors.lock() {
            v.push((i, msg));
        }
    }

    /// Entry `i` for a message (below DEST).
    fn label(&self, i: usize) -> String {
        self.sel.walk.display_from(self.sel.base, i)
    }

    fn name(&self, i: usize) -> &OsStr {
        self.sel.walk.name(i)
    }

    /// What an existing name under the destination means without `force`: an error; with
    /// `skip_existing`, kept ([`KEPT`]) when it is what this extract writes there (`whole`: a
    /// regular file of the image's size and, with metadata, mtime; a symlink to the image's
    /// target; a link to the same inode; the same kind of special file), else an error too: a
    /// rerun after an interrupt finds only whole files (they are renamed into place whole), so
    /// anything else is not ours to keep silently.
    fn existing(&self, whole: impl FnOnce() -> bool) -> String {
        if !self.opts.skip_existing {
            "exists (use --force to replace it)".into()
        } else if whole() {
            KEPT.into()
        } else {
            "exists and differs from the image (size, time, target or kind): not kept, not replaced (use --force to replace it)".into()
        }
    }

    fn inode(&self, e: &DirEntry) -> Result<(Inode, Xattrs), ImageError> {
        let tree = self.img.fs_tree(e.tree)?;
        let ino = self.img.inode(&tree, e.ino)?;
        let xattrs = if self.opts.xattrs { self.img.xattrs(&tree, e.ino)? } else { Vec::new() };
        Ok((ino, xattrs))
    }

    fn stopped(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// The descriptor of the directory holding entry `i`, of its own.
fn parent_fd(cursor: &mut Cursor<'_>, i: usize) -> Result<OwnedFd, String> {
    let up = cursor.up(i);
    cursor.goto(up).and_then(|fd| fd.try_clone_to_owned()).map_err(|err| format!("parent directory: {err}"))
}

/// A regular file being written: its plan, where, and the pieces still to write.
struct Job {
    /// Its entry in the walk.
    index: usize,
    plan: FilePlan,
    dir: OwnedFd,
    name: OsString,
    file: File,
    inode: Inode,
    xattrs: Xattrs,
    left: AtomicUsize,
    error: Mutex<Option<String>>,
}

/// Extents written per task: about 1 MiB, so that one large file does not hold a thread while
/// the others idle.
const EXTENTS_PER_TASK: usize = 8;
/// Files in flight at once (each holds two descriptors).
const FILES_PER_BATCH: usize = 256;

impl Job {
    fn fail(&self, err: String) {
        if let Ok(mut g) = self.error.lock() {
            g.get_or_insert(err);
        }
    }

    fn failed(&self) -> bool {
        self.error.lock().map(|g| g.is_some()).unwrap_or(true)
    }

    /// Write one piece; the last piece restores the metadata and publishes the file, or drops
    /// its temporary file.
    fn run(&self, run: &Run<'_>, range: std::ops::Range<usize>) {
        if run.stopped() {
            self.fail("interrupted".into());
        }
        if !self.failed() {
            let csum = if run.opts.ignore_csum { Csum::Warn } else { Csum::Check };
            let label = || run.label(self.index);
            match write_extents(run.img, &self.plan, range, &self.file, &read_options(), csum, &label) {
                Ok(w) if !w.is_empty() => run.warnings.lock().map(|mut v| v.extend(w)).unwrap_or(()),
                Ok(_) => {}
                Err(err) => self.fail(err.to_string()),
            }
        }
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let r = if self.failed() {
                Err(std::io::Error::other("failed"))
            } else {
                meta::apply_fd(&self.file, &self.inode, &self.xattrs, &run.policy, false, &run.refused)
                    .and_then(|()| dest::publish(&self.dir, &self.name, run.opts.force))
            };
            if let Err(err) = r {
                dest::drop_tmp(&self.dir, &self.name);
                if !self.failed() {
                    self.fail(err.to_string());
                }
            }
        }
    }
}

fn start_job(run: &Run<'_>, i: usize, dir: OwnedFd) -> Result<Job, String> {
    let e = run.sel.walk.get(i);
    let name = run.name(i).to_os_string();
    if !run.opts.force && dest::exists(&dir, &name) {
        return Err(run.existing(|| {
            let Ok((inode, _)) = run.inode(e) else { return false };
            dest::stat(&dir, &name).is_ok_and(|st| {
                let mtime = (i128::from(st.st_mtime), i128::from(st.st_mtime_nsec));
                let times = mtime == (i128::from(inode.mtime.sec), i128::from(inode.mtime.nsec));
                rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile
                    && st.st_size as u64 == inode.size
                    && (!run.policy.metadata || times)
            })
        }));
    }
    let tree = run.img.fs_tree(e.tree).map_err(|err| err.to_string())?;
    let plan = plan_file(run.img, &tree, e).map_err(|err| err.to_string())?;
    let (inode, xattrs) = run.inode(e).map_err(|err| err.to_string())?;
    let fd = dest::create_tmp(&dir, &name).map_err(|err| err.to_string())?;
    let file = File::from(fd);
    if let Err(err) = file.set_len(plan.size) {
        dest::drop_tmp(&dir, &name);
        return Err(err.to_string());
    }
    let pieces = plan.extents.len().div_ceil(EXTENTS_PER_TASK).max(1);
    Ok(Job { index: i, plan, dir, name, file, inode, xattrs, left: AtomicUsize::new(pieces), error: Mutex::new(None) })
}

/// Write regular files in batches (the first name of each inode); the inodes written or kept
/// (`skip_existing`), and how many were kept.
fn write_files(
    run: &Run<'_>,
    cursor: &mut Cursor<'_>,
    files: &[usize],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> (HashSet<(u64, u64)>, usize) {
    let done = AtomicUsize::new(0);
    let mut written = HashSet::new();
    let mut kept_files = 0;
    for batch in files.chunks(FILES_PER_BATCH) {
        if run.stopped() {
            break;
        }
        // Parent directories in walk order (the cursor moves little), then the files in parallel.
        let dirs: Vec<Result<OwnedFd, String>> = batch.iter().map(|&i| parent_fd(cursor, i)).collect();
        let jobs: Vec<(usize, Option<Job>, bool)> = batch
            .par_iter()
            .zip(dirs)
            .map(|(&i, dir)| match dir.and_then(|d| start_job(run, i, d)) {
                Ok(j) => (i, Some(j), false),
                Err(err) => {
                    // A file kept as it was is there for its hard links too.
                    let kept = err == KEPT;
                    run.error(i, err);
                    (i, None, kept)
                }
            })
            .collect();
        let tasks: Vec<(&Job, std::ops::Range<usize>)> = jobs
            .iter()
            .filter_map(|(_, j, _)| j.as_ref())
            .flat_map(|j| {
                let n = j.plan.extents.len();
                (0..n.div_ceil(EXTENTS_PER_TASK).max(1))
                    .map(move |k| (j, k * EXTENTS_PER_TASK..((k + 1) * EXTENTS_PER_TASK).min(n)))
            })
            .collect();
        tasks.par_iter().for_each(|(j, range)| j.run(run, range.clone()));
        for (i, j, kept) in &jobs {
            let e = run.sel.walk.get(*i);
            match j.as_ref().and_then(|j| j.error.lock().ok().and_then(|g| g.clone())) {
                Some(err) => run.error(*i, err),
                None if j.is_some() || *kept => {
                    written.insert((e.tree, e.ino));
                    kept_files += usize::from(*kept);
                }
                None => {}
            }
        }
        progress(done.fetch_add(batch.len(), Ordering::Relaxed) + batch.len(), files.len());
    }
    (written, kept_files)
}

/// A symlink, fifo, socket or device node: created under the temporary name, its metadata
/// restored, renamed into place.
fn make_other(run: &Run<'_>, i: usize, dir: OwnedFd, report: &mut ExtractReport) -> Result<(), String> {
    let e = run.sel.walk.get(i);
    let name = run.name(i);
    let (ino, xattrs) = run.inode(e).map_err(|err| err.to_string())?;
    if !run.opts.force && dest::exists(&dir, name) {
        return Err(run.existing(|| {
            let Ok(st) = dest::stat(&dir, name) else { return false };
            match (e.kind, rfs::FileType::from_raw_mode(st.st_mode)) {
                (FileKind::Symlink, rfs::FileType::Symlink) => symlink_target(run.img, e, &|| run.label(i))
                    .is_ok_and(|t| rfs::readlinkat(&dir, name, Vec::new()).is_ok_and(|l| l.as_bytes() == &t[..])),
                (FileKind::Fifo, rfs::FileType::Fifo) | (FileKind::Socket, rfs::FileType::Socket) => true,
                (FileKind::CharDevice, rfs::FileType::CharacterDevice)
                | (FileKind::BlockDevice, rfs::FileType::BlockDevice) => st.st_rdev == meta::decode_dev(ino.rdev),
                _ => false,
            }
        }));
    }
    let created = match e.kind {
        FileKind::Symlink => {
            let target = symlink_target(run.img, e, &|| run.label(i)).map_err(|err| err.to_string())?;
            dest::symlink_tmp(&dir, name, &target)
        }
        FileKind::Fifo => dest::mknod_tmp(&dir, name, rustix::fs::FileType::Fifo, 0),
        FileKind::Socket => dest::mknod_tmp(&dir, name, rustix::fs::FileType::Socket, 0),
        FileKind::CharDevice | FileKind::BlockDevice if run.policy.safe => {
            run.refused.drop_safe("device nodes not made".into());
            return Ok(());
        }
        FileKind::CharDevice | FileKind::BlockDevice if !run.policy.root => {
            report.devices_skipped += 1;
            return Ok(());
        }
        FileKind::CharDevice | FileKind::BlockDevice => {
            let ty = if e.kind == FileKind::CharDevice {
                rustix::fs::FileType::CharacterDevice
            } else {
                rustix::fs::FileType::BlockDevice
            };
            match dest::mknod_tmp(&dir, name, ty, meta::decode_dev(ino.rdev)) {
                // Root without CAP_MKNOD (a container): skipped, as for a user.
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                    report.devices_skipped += 1;
                    return Ok(());
                }
                r => r,
            }
        }
        _ => return Err("file type not restored".into()),
    };
    created.map_err(|err| err.to_string())?;
    let symlink = e.kind == FileKind::Symlink;
    let r = meta::apply_at(&dir, &dest::tmp_name(name), &ino, &xattrs, &run.policy, symlink, &run.refused)
        .and_then(|()| dest::publish(&dir, name, run.opts.force));
    if let Err(err) = r {
        dest::drop_tmp(&dir, name);
        return Err(err.to_string());
    }
    if symlink {
        report.symlinks += 1;
    } else {
        report.special += 1;
    }
    Ok(())
}

/// A symlink's target: the data of its inline extent, bytes exactly.
pub(crate) fn symlink_target(img: &Image, e: &DirEntry, label: Label<'_>) -> Result<Vec<u8>, ImageError> {
    let tree = img.fs_tree(e.tree)?;
    let size = img.inode(&tree, e.ino)?.size;
    let ext = img.file_extents(&tree, e.ino)?;
    let first = ext.first().ok_or_else(|| {
        ImageError::Image(
            btrfs_image::CorruptKind::FileExtent { file_offset: 0, field: "symlink target", value: 0 }.into(),
        )
    })?;
    // A target is at most PATH_MAX - 1 bytes (the kernel refuses longer ones).
    const PATH_MAX: u64 = 4096;
    let target = extent_bytes(img, first, size.min(PATH_MAX), label, &read_options())?;
    if target.is_empty() || target.contains(&0) {
        return Err(ImageError::Image(
            btrfs_image::CorruptKind::FileExtent { file_offset: 0, field: "symlink target", value: size }.into(),
        ));
    }
    Ok(target)
}

/// A further name `i` of an inode already written under its first name `first`: a hard link.
fn make_link(run: &Run<'_>, i: usize, first: usize, dir: OwnedFd, src_dir: OwnedFd) -> Result<(), String> {
    let name = run.name(i);
    if !run.opts.force && dest::exists(&dir, name) {
        return Err(run.existing(|| {
            let id = |d: &OwnedFd, n: &OsStr| dest::stat(d, n).map(|st| (st.st_dev, st.st_ino));
            id(&dir, name).is_ok_and(|a| id(&src_dir, run.name(first)).is_ok_and(|b| a == b))
        }));
    }
    dest::link_tmp(&src_dir, run.name(first), &dir, name).map_err(|err| err.to_string())?;
    dest::publish(&dir, name, run.opts.force).map_err(|err| {
        dest::drop_tmp(&dir, name);
        err.to_string()
    })
}

/// The process umask (from /proc; 022 when unknown).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("Umask:"))?;
            u32::from_str_radix(l.trim_start_matches("Umask:").trim(), 8).ok()
        })
        .unwrap_or(0o022)
}

fn is_dir(e: &DirEntry) -> bool {
    matches!(e.kind, FileKind::Directory | FileKind::Subvolume)
}

/// Create the directories, parents first (walk order); those made, and which entries lie under
/// one that failed (nothing is made there).
fn make_dirs(run: &Run<'_>, cursor: &mut Cursor<'_>) -> (Vec<usize>, Vec<bool>) {
    let walk = &run.sel.walk;
    let mut made = Vec::new();
    let mut blocked = vec![false; walk.len()];
    for i in run.sel.entries() {
        if !is_dir(walk.get(i)) || blocked[i] {
            continue;
        }
        let up = cursor.up(i);
        match cursor.goto(up).and_then(|dir| dest::mkdir(dir, walk.name(i))) {
            Ok(()) => made.push(i),
            Err(err) => {
                run.error(i, err);
                blocked[walk.subtree(i)].fill(true);
            }
        }
    }
    (made, blocked)
}

/// Directory metadata last, deepest first, so that creating their contents does not move
/// their times.
fn dir_metadata(run: &Run<'_>, cursor: &mut Cursor<'_>, dirs: &[usize]) {
    for &i in dirs.iter().rev() {
        if run.stopped() {
            break;
        }
        let r = run.inode(run.sel.walk.get(i)).map_err(|err| err.to_string()).and_then(|(ino, xattrs)| {
            let fd = cursor.goto(Some(i)).map_err(|err| err.to_string())?;
            meta::apply_fd(fd, &ino, &xattrs, &run.policy, true, &run.refused).map_err(|err| err.to_string())
        });
        if let Err(err) = r {
            run.error(i, err);
        }
    }
}

/// Restore the entries of `img` (as `opts` selects them) below `dest`. Directories first
/// (mode 0700 while they fill), then regular files in parallel (rayon), then hard links,
/// symlinks and special files, then directory metadata deepest first. `progress(done, total)`
/// is called after each batch of files. A file that fails is reported in
/// [`ExtractReport::errors`] and never left under its name; when `cancel` becomes true (a
/// signal), work stops, every temporary file is removed and [`ImageError::Interrupted`] is
/// returned.
///
/// No path string is built to reach a directory (a cursor moves over the tree by
/// descriptors), so a tree of any depth is restored, in memory linear in its entries.
pub fn extract(
    img: &Image,
    dest: &Path,
    opts: &ExtractOptions,
    cancel: &AtomicBool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ExtractReport, ImageError> {
    let mut report = ExtractReport::default();
    let sel = select(img, opts, &mut report)?;
    let root = rustix::process::geteuid().is_root();
    report.owners_skipped = opts.metadata && !root;
    let dest = Dest::open(dest).map_err(|err| ImageError::Create { path: dest.to_path_buf(), err })?;
    let policy = Policy { metadata: opts.metadata, xattrs: opts.xattrs, root, umask: umask(), safe: opts.safe };
    let run = Run {
        img,
        sel: &sel,
        dest,
        opts,
        policy,
        refused: Refused::default(),
        cancel,
        errors: Mutex::new(Vec::new()),
        kept: std::sync::atomic::AtomicUsize::new(0),
        warnings: Mutex::new(Vec::new()),
    };
    let walk = &sel.walk;
    let mut cursor = Cursor::new(&run.dest, walk, sel.base);
    {
        let dirs = std::iter::once(None).chain(sel.entries().filter(|&i| is_dir(walk.get(i))).map(Some));
        let names = |d: Option<usize>| {
            walk.children(d.or(sel.base)).filter(|&j| sel.kept[j]).map(|j| walk.name(j).as_bytes()).collect()
        };
        report.stale_removed = run.dest.remove_stale(&mut cursor, dirs, names);
    }
    let (made_dirs, blocked) = make_dirs(&run, &mut cursor);
    report.dirs = made_dirs.len();
    // Regular files: the first name of each inode carries the data, the others become links.
    let mut first: HashMap<(u64, u64), usize> = HashMap::new();
    let mut files = Vec::new();
    let mut links = Vec::new();
    for i in sel.entries().filter(|&i| walk.get(i).kind == FileKind::Regular && !blocked[i]) {
        let e = walk.get(i);
        match first.get(&(e.tree, e.ino)) {
            Some(&f) => links.push((i, f)),
            None => {
                first.insert((e.tree, e.ino), i);
                files.push(i);
            }
        }
    }
    let (written, kept_files) = write_files(&run, &mut cursor, &files, progress);
    report.files = written.len() - kept_files;
    // A second cursor for the first names: the links' own directories come in walk order.
    let mut src_cursor = Cursor::new(&run.dest, walk, sel.base);
    for (i, f) in links {
        if run.stopped() {
            break;
        }
        let fe = walk.get(f);
        if !written.contains(&(fe.tree, fe.ino)) {
            run.error(i, "not linked: its first name failed");
            continue;
        }
        let r = parent_fd(&mut cursor, i).and_then(|dir| {
            let src = parent_fd(&mut src_cursor, f).map_err(|err| format!("first name: {err}"))?;
            make_link(&run, i, f, dir, src)
        });
        match r {
            Ok(()) => report.hardlinks += 1,
            Err(err) => run.error(i, err),
        }
    }
    drop(src_cursor);
    let others = sel.entries().filter(|&i| {
        let e = walk.get(i);
        !is_dir(e) && e.kind != FileKind::Regular && e.kind != FileKind::Other && !blocked[i]
    });
    for i in others {
        if run.stopped() {
            break;
        }
        if let Err(err) = parent_fd(&mut cursor, i).and_then(|dir| make_other(&run, i, dir, &mut report)) {
            run.error(i, err);
        }
    }
    dir_metadata(&run, &mut cursor, &made_dirs);
    drop(cursor);
    if run.stopped() {
        return Err(ImageError::Interrupted);
    }
    report.errors = messages(&sel, run.errors.into_inner().unwrap_or_default());
    report.existing_kept = run.kept.into_inner();
    report.warnings = run.warnings.into_inner().unwrap_or_default();
    report.warnings.extend(run.refused.lines());
    report.safe_dropped = run.refused.safe_lines();
    Ok(report)
}

/// `PATH: why` for every entry that failed, in walk order; the paths made in one pass over the
/// walk ([`Walk::display_each`]), so that many failures deep down cost no more than the walk.
fn messages(sel: &Selection, mut errors: Vec<(usize, String)>) -> Vec<String> {
    errors.sort_by_key(|(i, _)| *i);
    let mut wanted = vec![false; sel.walk.len()];
    errors.iter().for_each(|(i, _)| wanted[*i] = true);
    let mut shown = HashMap::new();
    sel.walk.display_each(
        sel.base,
        |i| wanted[i],
        |i, p| {
            shown.insert(i, p);
        },
    );
    errors.into_iter().map(|(i, m)| format!("{}: {m}", shown.get(&i).map_or("?", String::as_str))).collect()
}
