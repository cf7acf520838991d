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

use btrfs_image::{DirEntry, FileKind, Image, Inode};
use rayon::prelude::*;

use crate::dest::{self, split, Dest};
use crate::meta::{self, Policy, Refused, Xattrs};
use crate::paths::{at_or_under, trim_slashes, under};
use crate::{extent_bytes, plan_file, read_options, write_extents, Csum, FilePlan, ImageError};

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

/// True when `path` is one of `filters`, under one, or a directory leading to one.
fn wanted(path: &OsStr, filters: &[OsString]) -> bool {
    let path = path.as_bytes();
    filters.is_empty()
        || filters.iter().any(|f| at_or_under(path, f.as_bytes()) || under(trim_slashes(f.as_bytes()), path))
}

/// The entries to restore: snapshots dropped unless asked for, the subvolume selected and its
/// prefix removed, the path filter applied (with the directories leading to what it names).
fn select(img: &Image, opts: &ExtractOptions, report: &mut ExtractReport) -> Result<Vec<DirEntry>, ImageError> {
    let mut entries = img.walk_files()?;
    if !opts.snapshots {
        let snaps: Vec<Vec<u8>> = entries
            .iter()
            .filter(|e| e.kind == FileKind::Subvolume && img.root_item(e.tree).is_some_and(|r| r.is_snapshot()))
            .map(|e| e.path.as_bytes().to_vec())
            .collect();
        report.snapshots_skipped = snaps.len();
        entries.retain(|e| !snaps.iter().any(|s| e.path.as_bytes() == &s[..] || under(e.path.as_bytes(), s)));
    }
    if let Some(sel) = &opts.subvol {
        let sub = entries
            .iter()
            .find(|e| {
                e.kind == FileKind::Subvolume
                    && (e.path.as_bytes() == trim_slashes(sel.as_bytes()) || sel.parse::<u64>() == Ok(e.tree))
            })
            .ok_or_else(|| ImageError::NoSuchPath(format!("subvolume {sel}")))?;
        let prefix = sub.path.as_bytes().to_vec();
        entries = entries
            .into_iter()
            .filter(|e| under(e.path.as_bytes(), &prefix))
            .map(|mut e| {
                e.path = OsStr::from_bytes(&e.path.as_bytes()[prefix.len() + 1..]).to_os_string();
                e
            })
            .collect();
    }
    // Every PATH given must name something: a typo beside a good path is not ignored.
    let missing: Vec<String> = opts
        .paths
        .iter()
        .filter(|f| !entries.iter().any(|e| at_or_under(e.path.as_bytes(), f.as_bytes())))
        .map(|p| p.as_bytes().escape_ascii().to_string())
        .collect();
    if !missing.is_empty() {
        return Err(ImageError::NoSuchPath(missing.join(", ")));
    }
    entries.retain(|e| wanted(&e.path, &opts.paths));
    Ok(entries)
}

/// Shared state of one extract.
struct Run<'a> {
    img: &'a Image,
    dest: Dest,
    opts: &'a ExtractOptions,
    policy: Policy,
    refused: Refused,
    cancel: &'a AtomicBool,
    errors: Mutex<Vec<String>>,
    warnings: Mutex<Vec<String>>,
    /// Entries kept as they were (`skip_existing`).
    kept: std::sync::atomic::AtomicUsize,
}

/// The outcome of an entry that exists under the destination and is kept.
const KEPT: &str = "kept: it exists under the destination";

impl Run<'_> {
    fn error(&self, e: &DirEntry, msg: impl std::fmt::Display) {
        let msg = msg.to_string();
        if msg == KEPT {
            self.kept.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Ok(mut v) = self.errors.lock() {
            v.push(format!("{}: {msg}", e.path_escaped()));
        }
    }

    /// What an existing name under the destination means: kept ([`KEPT`]) with
    /// `skip_existing`, an error without `force`.
    fn existing(&self) -> String {
        if self.opts.skip_existing {
            KEPT.into()
        } else {
            "exists (use --force to replace it)".into()
        }
    }

    fn inode(&self, e: &DirEntry) -> Result<(Inode, Xattrs), ImageError> {
        let tree = self.img.fs_tree(e.tree)?;
        let ino = self.img.inode(&tree, e.ino)?;
        let xattrs = if self.opts.xattrs { self.img.xattrs(&tree, e.ino)? } else { Vec::new() };
        Ok((ino, xattrs))
    }

    fn parent(&self, e: &DirEntry) -> std::io::Result<(OwnedFd, OsString)> {
        let (parent, name) = split(&e.path);
        Ok((self.dest.dir(parent)?, name.to_os_string()))
    }

    fn stopped(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// A regular file being written: its plan, where, and the pieces still to write.
struct Job {
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
            match write_extents(run.img, &self.plan, range, &self.file, &read_options(), csum) {
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

fn start_job(run: &Run<'_>, e: &DirEntry) -> Result<Job, String> {
    let (dir, name) = run.parent(e).map_err(|err| format!("parent directory: {err}"))?;
    if !run.opts.force && dest::exists(&dir, &name) {
        return Err(run.existing());
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
    Ok(Job { plan, dir, name, file, inode, xattrs, left: AtomicUsize::new(pieces), error: Mutex::new(None) })
}

/// Write regular files in batches (the first name of each inode); the inodes written or kept
/// (`skip_existing`), and how many were kept.
fn write_files(
    run: &Run<'_>,
    files: &[&DirEntry],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> (HashSet<(u64, u64)>, usize) {
    let done = AtomicUsize::new(0);
    let mut written = HashSet::new();
    let mut kept_files = 0;
    for batch in files.chunks(FILES_PER_BATCH) {
        if run.stopped() {
            break;
        }
        let jobs: Vec<(&DirEntry, Option<Job>, bool)> = batch
            .par_iter()
            .map(|e| match start_job(run, e) {
                Ok(j) => (*e, Some(j), false),
                Err(err) => {
                    // A file kept as it was is there for its hard links too.
                    let kept = err == KEPT;
                    run.error(e, err);
                    (*e, None, kept)
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
        for (e, j, kept) in &jobs {
            match j.as_ref().and_then(|j| j.error.lock().ok().and_then(|g| g.clone())) {
                Some(err) => run.error(e, err),
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
fn make_other(run: &Run<'_>, e: &DirEntry, report: &mut ExtractReport) -> Result<(), String> {
    let (dir, name) = run.parent(e).map_err(|err| format!("parent directory: {err}"))?;
    if !run.opts.force && dest::exists(&dir, &name) {
        return Err(run.existing());
    }
    let (ino, xattrs) = run.inode(e).map_err(|err| err.to_string())?;
    let created = match e.kind {
        FileKind::Symlink => {
            let target = symlink_target(run.img, e).map_err(|err| err.to_string())?;
            dest::symlink_tmp(&dir, &name, &target)
        }
        FileKind::Fifo => dest::mknod_tmp(&dir, &name, rustix::fs::FileType::Fifo, 0),
        FileKind::Socket => dest::mknod_tmp(&dir, &name, rustix::fs::FileType::Socket, 0),
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
            match dest::mknod_tmp(&dir, &name, ty, meta::decode_dev(ino.rdev)) {
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
    let r = meta::apply_at(&dir, &dest::tmp_name(&name), &ino, &xattrs, &run.policy, symlink, &run.refused)
        .and_then(|()| dest::publish(&dir, &name, run.opts.force));
    if let Err(err) = r {
        dest::drop_tmp(&dir, &name);
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
pub(crate) fn symlink_target(img: &Image, e: &DirEntry) -> Result<Vec<u8>, ImageError> {
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
    let target = extent_bytes(img, first, size.min(PATH_MAX), &e.path_escaped(), &read_options())?;
    if target.is_empty() || target.contains(&0) {
        return Err(ImageError::Image(
            btrfs_image::CorruptKind::FileExtent { file_offset: 0, field: "symlink target", value: size }.into(),
        ));
    }
    Ok(target)
}

/// A further name of an inode already written: a hard link to its first name.
fn make_link(run: &Run<'_>, e: &DirEntry, first: &DirEntry) -> Result<(), String> {
    let (dir, name) = run.parent(e).map_err(|err| format!("parent directory: {err}"))?;
    let (src_dir, src) = run.parent(first).map_err(|err| format!("first name: {err}"))?;
    if !run.opts.force && dest::exists(&dir, &name) {
        return Err(run.existing());
    }
    dest::link_tmp(&src_dir, &src, &dir, &name).map_err(|err| err.to_string())?;
    dest::publish(&dir, &name, run.opts.force).map_err(|err| {
        dest::drop_tmp(&dir, &name);
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

fn is_dir(e: &&DirEntry) -> bool {
    matches!(e.kind, FileKind::Directory | FileKind::Subvolume)
}

/// Create the directories, parents first (the entries are sorted by path); those made, and
/// the paths of those that failed (nothing is made under them).
fn make_dirs<'e>(run: &Run<'_>, entries: &'e [DirEntry]) -> (Vec<&'e DirEntry>, Vec<&'e [u8]>) {
    let mut made = Vec::new();
    let mut failed: Vec<&[u8]> = Vec::new();
    for e in entries.iter().filter(is_dir) {
        if failed.iter().any(|d| under(e.path.as_bytes(), d)) {
            continue;
        }
        match run.parent(e).and_then(|(dir, name)| dest::mkdir(&dir, &name)) {
            Ok(()) => made.push(e),
            Err(err) => {
                run.error(e, err);
                failed.push(e.path.as_bytes());
            }
        }
    }
    (made, failed)
}

/// Directory metadata last, deepest first, so that creating their contents does not move
/// their times.
fn dir_metadata(run: &Run<'_>, dirs: &[&DirEntry]) {
    for e in dirs.iter().rev() {
        if run.stopped() {
            break;
        }
        let r = run.inode(e).map_err(|err| err.to_string()).and_then(|(ino, xattrs)| {
            let fd = run.dest.dir(&e.path).map_err(|err| err.to_string())?;
            meta::apply_fd(&fd, &ino, &xattrs, &run.policy, true, &run.refused).map_err(|err| err.to_string())
        });
        if let Err(err) = r {
            run.error(e, err);
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
pub fn extract(
    img: &Image,
    dest: &Path,
    opts: &ExtractOptions,
    cancel: &AtomicBool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ExtractReport, ImageError> {
    let mut report = ExtractReport::default();
    let entries = select(img, opts, &mut report)?;
    let root = rustix::process::geteuid().is_root();
    report.owners_skipped = opts.metadata && !root;
    let dest = Dest::open(dest).map_err(|err| ImageError::Create { path: dest.to_path_buf(), err })?;
    report.stale_removed = dest.remove_stale(&entries);
    let policy = Policy { metadata: opts.metadata, xattrs: opts.xattrs, root, umask: umask(), safe: opts.safe };
    let run = Run {
        img,
        dest,
        opts,
        policy,
        refused: Refused::default(),
        cancel,
        errors: Mutex::new(Vec::new()),
        kept: std::sync::atomic::AtomicUsize::new(0),
        warnings: Mutex::new(Vec::new()),
    };
    let (made_dirs, failed_dirs) = make_dirs(&run, &entries);
    report.dirs = made_dirs.len();
    let outside = |e: &DirEntry| failed_dirs.iter().any(|d| under(e.path.as_bytes(), d));
    // Regular files: the first name of each inode carries the data, the others become links.
    let mut first: HashMap<(u64, u64), &DirEntry> = HashMap::new();
    let mut files = Vec::new();
    let mut links = Vec::new();
    for e in entries.iter().filter(|e| e.kind == FileKind::Regular && !outside(e)) {
        match first.get(&(e.tree, e.ino)) {
            Some(f) => links.push((e, *f)),
            None => {
                first.insert((e.tree, e.ino), e);
                files.push(e);
            }
        }
    }
    let (written, kept_files) = write_files(&run, &files, progress);
    report.files = written.len() - kept_files;
    for (e, f) in links {
        if run.stopped() {
            break;
        }
        if !written.contains(&(f.tree, f.ino)) {
            run.error(e, "not linked: its first name failed");
            continue;
        }
        match make_link(&run, e, f) {
            Ok(()) => report.hardlinks += 1,
            Err(err) => run.error(e, err),
        }
    }
    let others = entries
        .iter()
        .filter(|e| !is_dir(e) && e.kind != FileKind::Regular && e.kind != FileKind::Other && !outside(e));
    for e in others {
        if run.stopped() {
            break;
        }
        if let Err(err) = make_other(&run, e, &mut report) {
            run.error(e, err);
        }
    }
    dir_metadata(&run, &made_dirs);
    if run.stopped() {
        return Err(ImageError::Interrupted);
    }
    report.errors = run.errors.into_inner().unwrap_or_default();
    report.existing_kept = run.kept.into_inner();
    report.warnings = run.warnings.into_inner().unwrap_or_default();
    report.warnings.extend(run.refused.lines());
    report.safe_dropped = run.refused.safe_lines();
    Ok(report)
}
