//! The destination directory: every name is created relative to a directory file descriptor
//! opened beneath DEST without following a symlink (`openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`, or one `O_NOFOLLOW` component at a time where `openat2` is missing), so
//! no image, however crafted, makes us write outside DEST. New files are created under a
//! temporary name of our own (`O_CREAT | O_EXCL | O_NOFOLLOW`) and renamed into place, with
//! `RENAME_NOREPLACE` unless the user asked to replace files.
//!
//! rustix is the system-call layer: its `*at` calls, `openat2`, xattrs and `renameat2` are
//! safe wrappers, which keeps `unsafe` out of this crate.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags, ResolveFlags};

/// The marker in our temporary names: `.NAME.btrfs-compress-tmp-PID`.
pub(crate) const TMP_MARK: &[u8] = b".btrfs-compress-tmp-";

/// The temporary name for `name` in this process.
pub(crate) fn tmp_name(name: &OsStr) -> OsString {
    let mut v = Vec::with_capacity(name.len() + 32);
    v.push(b'.');
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(TMP_MARK);
    v.extend_from_slice(std::process::id().to_string().as_bytes());
    OsString::from_vec(v)
}

/// The process id of one of our temporary names, if it is one.
fn tmp_owner(name: &[u8]) -> Option<u32> {
    let at = name.windows(TMP_MARK.len()).rposition(|w| w == TMP_MARK)?;
    std::str::from_utf8(&name[at + TMP_MARK.len()..]).ok()?.parse().ok()
}

/// The parent of a relative path and its last name.
pub(crate) fn split(path: &OsStr) -> (&OsStr, &OsStr) {
    let b = path.as_bytes();
    match b.iter().rposition(|&c| c == b'/') {
        Some(i) => (OsStr::from_bytes(&b[..i]), OsStr::from_bytes(&b[i + 1..])),
        None => (OsStr::new(""), path),
    }
}

/// DEST, opened.
pub(crate) struct Dest {
    root: OwnedFd,
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

impl Dest {
    /// Create DEST if needed (the user named it: its own path may go through symlinks) and
    /// open it.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let root =
            rfs::open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(errno)?;
        Ok(Dest { root })
    }

    /// The directory `rel` beneath DEST ("" is DEST), never through a symlink.
    pub(crate) fn dir(&self, rel: &OsStr) -> io::Result<OwnedFd> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let rel = if rel.is_empty() { OsStr::new(".") } else { rel };
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rfs::openat2(&self.root, rel, flags, Mode::empty(), resolve) {
            // No openat2 (before 5.6), or a seccomp filter that refuses it.
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {}
            r => return r.map_err(errno),
        }
        // One component at a time (names are checked: no "..", no "/").
        let mut fd = rfs::openat(&self.root, ".", flags, Mode::empty()).map_err(errno)?;
        for c in rel.as_bytes().split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".") {
            fd = rfs::openat(&fd, OsStr::from_bytes(c), flags, Mode::empty()).map_err(errno)?;
        }
        Ok(fd)
    }

    /// Remove temporaries of our naming left by an extract that did not finish (its process
    /// is gone): only in the directories the image's `entries` are in, on DEST's filesystem (no
    /// walk of all of DEST, nor across mount points), and only a temporary of an entry's own
    /// name (`.NAME` + mark + pid, NAME an entry of that directory) that is not itself the name
    /// of an entry. The number removed.
    pub(crate) fn remove_stale(&self, entries: &[crate::DirEntry]) -> usize {
        let mut dirs: std::collections::BTreeMap<&OsStr, std::collections::HashSet<&[u8]>> = Default::default();
        for e in entries {
            let (parent, name) = split(&e.path);
            dirs.entry(parent).or_default().insert(name.as_bytes());
        }
        let Ok(root_dev) = rfs::fstat(&self.root).map(|st| st.st_dev) else { return 0 };
        let mut removed = 0;
        for (rel, names) in dirs {
            let Ok(fd) = self.dir(rel) else { continue };
            if rfs::fstat(&fd).map(|st| st.st_dev) != Ok(root_dev) {
                continue;
            }
            let Ok(dir) = rfs::Dir::read_from(&fd) else { continue };
            for ent in dir.flatten() {
                let name = ent.file_name().to_bytes();
                if names.contains(name) || ent.file_type() == rfs::FileType::Directory {
                    continue;
                }
                let Some(pid) = tmp_owner(name) else { continue };
                // `.NAME<mark><pid>`: NAME must be an entry of this directory.
                let Some(at) = name.windows(TMP_MARK.len()).rposition(|w| w == TMP_MARK) else { continue };
                if name.first() != Some(&b'.') || !names.contains(&name[1..at]) {
                    continue;
                }
                let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
                if !alive && rfs::unlinkat(&fd, OsStr::from_bytes(name), AtFlags::empty()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// True when `name` exists in `dir` (as anything; symlinks not followed).
pub(crate) fn exists(dir: impl AsFd, name: &OsStr) -> bool {
    rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// Make directory `name` in `dir` (mode 0700 until its metadata is restored at the end); an
/// existing directory is used as it is.
pub(crate) fn mkdir(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    match rfs::mkdirat(&dir, name, Mode::RWXU) {
        Err(rustix::io::Errno::EXIST) => match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory => Ok(()),
            _ => Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a directory")),
        },
        r => r.map_err(errno),
    }
}

/// Create the temporary file for `name` in `dir`.
pub(crate) fn create_tmp(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(dir, tmp_name(name), flags, Mode::RUSR | Mode::WUSR).map_err(errno)
}

/// Rename our temporary for `name` onto `name`: atomically, and without replacing an existing
/// `name` unless `force`.
pub(crate) fn publish(dir: impl AsFd, name: &OsStr, force: bool) -> io::Result<()> {
    let flags = if force { RenameFlags::empty() } else { RenameFlags::NOREPLACE };
    let r = match rfs::renameat_with(&dir, tmp_name(name), &dir, name, flags) {
        // A filesystem without RENAME_NOREPLACE: check, then rename (not atomic against a
        // racing writer, which DEST is not expected to have).
        Err(rustix::io::Errno::INVAL) if !force => {
            if exists(&dir, name) {
                Err(rustix::io::Errno::EXIST)
            } else {
                rfs::renameat(&dir, tmp_name(name), &dir, name)
            }
        }
        r => r,
    };
    r.map_err(|e| {
        if e == rustix::io::Errno::EXIST {
            io::Error::new(io::ErrorKind::AlreadyExists, "exists (use --force to replace it)")
        } else {
            errno(e)
        }
    })
}

/// Remove our temporary for `name` (after a failure).
pub(crate) fn drop_tmp(dir: impl AsFd, name: &OsStr) {
    let _ = rfs::unlinkat(dir, tmp_name(name), AtFlags::empty());
}

/// A symlink to `target` as the temporary for `name`.
pub(crate) fn symlink_tmp(dir: impl AsFd, name: &OsStr, target: &[u8]) -> io::Result<()> {
    rfs::symlinkat(OsStr::from_bytes(target), dir, tmp_name(name)).map_err(errno)
}

/// A hard link to `src` (in `src_dir`) as the temporary for `name` in `dir`.
pub(crate) fn link_tmp(src_dir: impl AsFd, src: &OsStr, dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    rfs::linkat(src_dir, src, dir, tmp_name(name), AtFlags::empty()).map_err(errno)
}

/// A fifo, socket or device node as the temporary for `name` (mode bits set later).
pub(crate) fn mknod_tmp(dir: impl AsFd, name: &OsStr, ty: rfs::FileType, rdev: u64) -> io::Result<()> {
    rfs::mknodat(dir, tmp_name(name), ty, Mode::RUSR | Mode::WUSR, rdev).map_err(errno)
}
