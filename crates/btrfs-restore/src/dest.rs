//! The destination directory: every name is created relative to a directory file descriptor
//! reached from DEST one checked name at a time without following a symlink (`O_NOFOLLOW`; see
//! [`Cursor`]), so no image, however crafted, makes us write outside DEST, and no tree is too
//! deep (no path string is ever built). New files are created under a
//! temporary name of our own (`O_CREAT | O_EXCL | O_NOFOLLOW`) and renamed into place, with
//! `RENAME_NOREPLACE` unless the user asked to replace files.
//!
//! rustix is the system-call layer: its `*at` calls, `openat2`, xattrs and `renameat2` are
//! safe wrappers, which keeps `unsafe` out of this crate.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use btrfs_image::Walk;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags};

/// The marker in our temporary names: `.NAME.btrfs-compress-tmp-PID`.
pub(crate) const TMP_MARK: &[u8] = b".btrfs-compress-tmp-";

/// Longest name kept whole in a temporary name: with the dot, the marker and a pid, a temporary
/// name stays within NAME_MAX (255) for every name the image can hold.
const TMP_NAME_KEPT: usize = 200;

/// `name` as its temporary name holds it: whole up to 200 bytes, else its first 183 bytes, `~`
/// and 16 hex digits of a hash of the whole name (FNV-1a: the same in every run, so that a later
/// run recognizes the temporaries of an earlier one).
fn tmp_key(name: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if name.len() <= TMP_NAME_KEPT {
        return name.into();
    }
    let h = name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut v = name[..TMP_NAME_KEPT - 17].to_vec();
    v.extend_from_slice(format!("~{h:016x}").as_bytes());
    v.into()
}

/// The temporary name for `name` in this process.
pub(crate) fn tmp_name(name: &OsStr) -> OsString {
    let key = tmp_key(name.as_bytes());
    let mut v = Vec::with_capacity(key.len() + 32);
    v.push(b'.');
    v.extend_from_slice(&key);
    v.extend_from_slice(TMP_MARK);
    v.extend_from_slice(std::process::id().to_string().as_bytes());
    OsString::from_vec(v)
}

/// The key (see [`tmp_key`]) and process id of one of our temporary names, if it is one.
fn tmp_parts(name: &[u8]) -> Option<(&[u8], u32)> {
    let at = name.windows(TMP_MARK.len()).rposition(|w| w == TMP_MARK)?;
    let pid = std::str::from_utf8(&name[at + TMP_MARK.len()..]).ok()?.parse().ok()?;
    let key = name[..at].strip_prefix(b".")?;
    Some((key, pid))
}

/// DEST, opened.
pub(crate) struct Dest {
    root: OwnedFd,
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

/// Flags of every directory opened beneath DEST: one name at a time, never through a symlink.
const DIR_FLAGS: OFlags = OFlags::DIRECTORY.union(OFlags::RDONLY).union(OFlags::CLOEXEC).union(OFlags::NOFOLLOW);

/// A directory's identity: device and inode number.
fn ident(fd: impl AsFd) -> io::Result<(u64, u64)> {
    let st = rfs::fstat(fd).map_err(errno)?;
    Ok((st.st_dev, st.st_ino))
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

    /// Remove temporaries of our naming left by an extract that did not finish (its process
    /// is gone): only in the directories `dirs` (DEST's part of the image, in walk order; a
    /// missing one is skipped with all under it), on DEST's filesystem (no walk of all of DEST,
    /// nor across mount points), and only a temporary of a name of that directory (`.NAME` +
    /// mark + pid, NAME one of `names(dir)`) that is not itself such a name. The number removed.
    pub(crate) fn remove_stale<'w>(
        &self,
        cursor: &mut Cursor<'_>,
        dirs: impl Iterator<Item = Option<usize>>,
        names: impl Fn(Option<usize>) -> Vec<&'w [u8]>,
    ) -> usize {
        let Ok(root_dev) = ident(&self.root).map(|id| id.0) else { return 0 };
        let mut removed = 0;
        let mut gone: Option<usize> = None;
        for d in dirs {
            // Under a directory that is not there (or is another filesystem): nothing to do.
            if let (Some(g), Some(i)) = (gone, d) {
                if cursor.walk.is_within(i, Some(g)) {
                    continue;
                }
            }
            let fd = match cursor.goto(d) {
                Ok(fd) if ident(fd).map(|id| id.0).ok() == Some(root_dev) => fd,
                _ => {
                    gone = d;
                    continue;
                }
            };
            let names = names(d);
            let own: HashSet<&[u8]> = names.iter().copied().collect();
            let keys: HashSet<std::borrow::Cow<'_, [u8]>> = names.iter().map(|n| tmp_key(n)).collect();
            let Ok(dir) = rfs::Dir::read_from(fd) else { continue };
            let mut doomed = Vec::new();
            for ent in dir.flatten() {
                let name = ent.file_name().to_bytes();
                if own.contains(name) || ent.file_type() == rfs::FileType::Directory {
                    continue;
                }
                let Some((key, pid)) = tmp_parts(name) else { continue };
                if !keys.contains(key) {
                    continue;
                }
                let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
                if !alive {
                    doomed.push(OsString::from_vec(name.to_vec()));
                }
            }
            let Ok(fd) = cursor.goto(d) else { continue };
            removed += doomed.iter().filter(|n| rfs::unlinkat(fd, n.as_os_str(), AtFlags::empty()).is_ok()).count();
        }
        removed
    }
}

/// A directory descriptor that moves over the tree being restored: from the directory it is
/// at to another, up by `..` and down one name at a time (`O_NOFOLLOW`), so that no path string
/// is built and no depth is too deep (a path past PATH_MAX is just more steps). Every directory
/// is recorded (device, inode) when first entered; a move up must land on the directory recorded
/// there, else it fails (a directory under DEST was moved while we worked). Moves in walk order
/// cost, in all, twice the number of directories.
pub(crate) struct Cursor<'a> {
    dest: &'a Dest,
    walk: &'a Walk,
    /// The walk's entry DEST stands for (`None`: the top).
    base: Option<usize>,
    /// Where the cursor is (`None`: DEST) and its descriptor (`None`: DEST's).
    at: Option<usize>,
    fd: Option<OwnedFd>,
    ids: HashMap<usize, (u64, u64)>,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(dest: &'a Dest, walk: &'a Walk, base: Option<usize>) -> Self {
        Cursor { dest, walk, base, at: None, fd: None, ids: HashMap::new() }
    }

    /// The directory holding `i` (`None`: DEST).
    pub(crate) fn up(&self, i: usize) -> Option<usize> {
        self.walk.parent(i).filter(|&p| Some(p) != self.base)
    }

    /// Levels below DEST.
    fn level(&self, x: Option<usize>) -> usize {
        match (x, self.base) {
            (None, _) => 0,
            (Some(i), None) => self.walk.depth(i) + 1,
            (Some(i), Some(b)) => self.walk.depth(i) - self.walk.depth(b),
        }
    }

    /// The descriptor of directory `target` (`None`: DEST). On failure the cursor is back at DEST.
    pub(crate) fn goto(&mut self, target: Option<usize>) -> io::Result<BorrowedFd<'_>> {
        if target != self.at {
            if let Err(e) = self.step(target) {
                self.at = None;
                self.fd = None;
                return Err(e);
            }
        }
        Ok(self.fd.as_ref().map_or(self.dest.root.as_fd(), |f| f.as_fd()))
    }

    fn step(&mut self, target: Option<usize>) -> io::Result<()> {
        let up = |x: Option<usize>| x.and_then(|i| self.up(i));
        let (mut a, mut b) = (self.at, target);
        let mut ups = 0;
        let mut down = Vec::new();
        while self.level(a) > self.level(b) {
            a = up(a);
            ups += 1;
        }
        while self.level(b) > self.level(a) {
            down.extend(b);
            b = up(b);
        }
        while a != b {
            a = up(a);
            ups += 1;
            down.extend(b);
            b = up(b);
        }
        let moved = || io::Error::other("a directory under the destination was moved or replaced while extracting");
        // Up to the common ancestor: DEST itself needs no steps.
        let mut fd = match (a, self.fd.take()) {
            (None, _) => None,
            (Some(_), f) if ups == 0 => f,
            (Some(lca), Some(mut f)) => {
                for _ in 0..ups {
                    f = rfs::openat(&f, "..", DIR_FLAGS, Mode::empty()).map_err(errno)?;
                }
                if self.ids.get(&lca) != Some(&ident(&f)?) {
                    return Err(moved());
                }
                Some(f)
            }
            (Some(_), None) => return Err(moved()),
        };
        for &j in down.iter().rev() {
            let parent = fd.as_ref().map_or(self.dest.root.as_fd(), |f| f.as_fd());
            let f = rfs::openat(parent, self.walk.name(j), DIR_FLAGS, Mode::empty()).map_err(errno)?;
            let id = ident(&f)?;
            if *self.ids.entry(j).or_insert(id) != id {
                return Err(moved());
            }
            fd = Some(f);
        }
        self.at = target;
        self.fd = fd;
        Ok(())
    }
}

/// What `name` in `dir` is (symlinks not followed).
pub(crate) fn stat(dir: impl AsFd, name: &OsStr) -> io::Result<rfs::Stat> {
    rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name the image can hold (up to 255 bytes) has a temporary name within NAME_MAX;
    /// names that share their first 200 bytes still get different ones; a later run recognizes
    /// them.
    #[test]
    fn temporary_names_fit_name_max_and_stay_distinct() {
        let pid = std::process::id().to_string();
        assert_eq!(tmp_name(OsStr::new("a")).as_bytes(), format!(".a.btrfs-compress-tmp-{pid}").as_bytes());
        let (a, b) = (vec![b'x'; 255], [vec![b'x'; 254], vec![b'y']].concat());
        let (ta, tb) = (tmp_name(OsStr::from_bytes(&a)), tmp_name(OsStr::from_bytes(&b)));
        assert!(ta.len() <= 255 && tb.len() <= 255, "{} {}", ta.len(), tb.len());
        assert_ne!(ta, tb);
        for n in [&a[..], &b[..], b"short", &[b'z'; 200][..], &[b'z'; 201][..]] {
            let t = tmp_name(OsStr::from_bytes(n));
            assert!(t.len() <= 255);
            assert_eq!(tmp_parts(t.as_bytes()), Some((&*tmp_key(n), std::process::id())));
        }
        assert_eq!(tmp_parts(b"plain-name"), None);
    }
}
