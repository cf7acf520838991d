//! `extract`: the files of an image written under a destination directory, every file through a
//! temporary name and a rename, so nothing half-written stands under a final name.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use btrfs_image::{DirEntry, FileKind, Image};
use rayon::prelude::*;

use crate::{plan_file, read_options, write_extents, FilePlan, ImageError};

/// What to extract, and how.
#[derive(Clone, Debug, Default)]
pub struct ExtractOptions {
    /// Replace files that exist under the destination.
    pub force: bool,
    /// Only these paths (files, or directories and what is under them); all when empty.
    pub paths: Vec<OsString>,
}

/// What `extract` did.
#[derive(Clone, Debug, Default)]
pub struct ExtractReport {
    /// Regular files written.
    pub files: usize,
    /// Files not written, one message each.
    pub errors: Vec<String>,
}

/// True when `path` is one of `filters` or under one.
fn wanted(path: &OsStr, filters: &[OsString]) -> bool {
    let path = path.as_bytes();
    filters.is_empty()
        || filters.iter().any(|f| {
            let f = trim_slashes(f.as_bytes());
            path == f || (path.starts_with(f) && path.get(f.len()) == Some(&b'/'))
        })
}

fn trim_slashes(mut b: &[u8]) -> &[u8] {
    while let [b'/', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b'/'] = b {
        b = rest;
    }
    b
}

/// A file being written: its plan, names, and the pieces still to write.
struct Job {
    plan: FilePlan,
    target: PathBuf,
    tmp: PathBuf,
    left: AtomicUsize,
    error: Mutex<Option<String>>,
}

/// Extents written per task: about 1 MiB, so that one large file does not hold a thread while
/// the others idle.
const EXTENTS_PER_TASK: usize = 8;

/// Plan one file and create its temporary file at full size.
fn start_job(img: &Image, dest: &Path, e: &DirEntry, force: bool) -> Result<Job, String> {
    let target = dest.join(&e.path);
    if !force && fs::symlink_metadata(&target).is_ok() {
        return Err(format!("{} exists (use --force to replace it)", target.display()));
    }
    let plan = img
        .fs_tree(e.tree)
        .map_err(ImageError::from)
        .and_then(|t| plan_file(img, &t, e))
        .map_err(|err| err.to_string())?;
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|err| format!("{}: {err}", parent.display()))?;
    }
    let tmp = target.with_file_name(format!(
        ".{}.tmp-{}",
        target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let created = fs::OpenOptions::new().write(true).create_new(true).open(&tmp).and_then(|f| f.set_len(plan.size));
    if let Err(err) = created {
        let _ = fs::remove_file(&tmp);
        return Err(format!("{}: {err}", tmp.display()));
    }
    let pieces = plan.extents.len().div_ceil(EXTENTS_PER_TASK).max(1);
    Ok(Job { plan, target, tmp, left: AtomicUsize::new(pieces), error: Mutex::new(None) })
}

impl Job {
    fn failed(&self) -> bool {
        self.error.lock().map(|g| g.is_some()).unwrap_or(true)
    }

    fn fail(&self, err: String) {
        if let Ok(mut g) = self.error.lock() {
            g.get_or_insert(err);
        }
    }

    /// Write one piece; the last piece publishes the file (or drops its temporary file).
    fn run(&self, img: &Image, range: std::ops::Range<usize>) {
        if !self.failed() {
            let opts = read_options();
            let r = fs::OpenOptions::new()
                .write(true)
                .open(&self.tmp)
                .map_err(|err| format!("{}: {err}", self.tmp.display()))
                .and_then(|f| write_extents(img, &self.plan, range, &f, &opts).map_err(|err| err.to_string()));
            if let Err(err) = r {
                self.fail(err);
            }
        }
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            if self.failed() {
                let _ = fs::remove_file(&self.tmp);
            } else if let Err(err) = fs::rename(&self.tmp, &self.target) {
                let _ = fs::remove_file(&self.tmp);
                self.fail(format!("{}: {err}", self.target.display()));
            }
        }
    }
}

/// Write the files of `img` (those under `opts.paths`) below `dest`. Directories are created
/// first; then every file is planned and its temporary file made at full size, and the extents
/// are written in pieces in parallel (rayon); `progress(done, total)` is called after each piece.
/// A file that fails is reported in [`ExtractReport::errors`] and never left under its name.
pub fn extract(
    img: &Image,
    dest: &Path,
    opts: &ExtractOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ExtractReport, ImageError> {
    let entries: Vec<_> = img.walk_files()?.into_iter().filter(|e| wanted(&e.path, &opts.paths)).collect();
    if entries.is_empty() && !opts.paths.is_empty() {
        let names: Vec<String> = opts.paths.iter().map(|p| p.as_bytes().escape_ascii().to_string()).collect();
        return Err(ImageError::NoSuchPath(names.join(", ")));
    }
    let mkdir = |p: PathBuf| fs::create_dir_all(&p).map_err(|err| ImageError::Create { path: p, err });
    mkdir(dest.to_path_buf())?;
    for e in entries.iter().filter(|e| matches!(e.kind, FileKind::Directory | FileKind::Subvolume)) {
        mkdir(dest.join(&e.path))?;
    }
    let files: Vec<_> = entries.iter().filter(|e| e.kind == FileKind::Regular).collect();
    let mut report = ExtractReport::default();
    let mut jobs = Vec::new();
    for e in &files {
        match start_job(img, dest, e, opts.force) {
            Ok(j) => jobs.push(j),
            Err(err) => report.errors.push(err),
        }
    }
    let tasks: Vec<(usize, std::ops::Range<usize>)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(i, j)| {
            let n = j.plan.extents.len();
            (0..n.div_ceil(EXTENTS_PER_TASK).max(1))
                .map(move |k| (i, k * EXTENTS_PER_TASK..((k + 1) * EXTENTS_PER_TASK).min(n)))
        })
        .collect();
    let done = AtomicUsize::new(0);
    tasks.par_iter().for_each(|(i, range)| {
        jobs[*i].run(img, range.clone());
        progress(done.fetch_add(1, Ordering::Relaxed) + 1, tasks.len());
    });
    for j in &jobs {
        if let Ok(Some(e)) = j.error.lock().map(|g| g.clone()) {
            report.errors.push(e);
        }
    }
    report.files = files.len() - report.errors.len();
    Ok(report)
}
