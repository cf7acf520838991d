//! The host's files at any depth. Trees are walked by directory descriptors ([`walk`]), linear in
//! their entries; a file whose path is longer than the kernel takes at once (PATH_MAX, 4096
//! bytes) is opened a piece at a time: each piece under PATH_MAX, cut at a slash, opened as a
//! directory relative to the one before (`openat`; its cost grows with the depth, so a tree with
//! very many files far past PATH_MAX is slow to estimate, never wrong). Where `std::fs` fails with
//! "File name too long", `estimate` reads every file.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

/// Longest piece of a path handed to one system call (under PATH_MAX with room to spare).
const PIECE: usize = 4000;

/// What a path is, not following a final symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// `lstat` of a path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub kind: Kind,
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
}

/// The directory holding the last piece of `path` (`None`: the current directory, for a path
/// short enough to hand over whole) and that last piece.
fn beneath(path: &Path) -> io::Result<(Option<OwnedFd>, &OsStr)> {
    let mut rest = path.as_os_str().as_bytes();
    let mut dir: Option<OwnedFd> = None;
    while rest.len() >= PIECE {
        let cut = rest[..PIECE]
            .iter()
            .rposition(|&c| c == b'/')
            .filter(|&i| i > 0)
            .ok_or_else(|| io::Error::from(rustix::io::Errno::NAMETOOLONG))?;
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let piece = OsStr::from_bytes(&rest[..cut]);
        let next = match &dir {
            Some(d) => rfs::openat(d, piece, flags, Mode::empty()),
            None => rfs::openat(rfs::CWD, piece, flags, Mode::empty()),
        };
        dir = Some(next.map_err(io::Error::from)?);
        rest = &rest[cut..];
        while let [b'/', more @ ..] = rest {
            rest = more;
        }
    }
    Ok((dir, OsStr::from_bytes(rest)))
}

fn open_flags(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let (dir, last) = beneath(path)?;
    let r = match &dir {
        Some(d) => rfs::openat(d, last, flags | OFlags::CLOEXEC, Mode::empty()),
        None => rfs::openat(rfs::CWD, last, flags | OFlags::CLOEXEC, Mode::empty()),
    };
    r.map_err(io::Error::from)
}

/// Open a file for reading.
pub(crate) fn open(path: &Path) -> io::Result<File> {
    open_flags(path, OFlags::RDONLY).map(File::from)
}

/// `lstat`.
pub(crate) fn lstat(path: &Path) -> io::Result<Meta> {
    let (dir, last) = beneath(path)?;
    let st = match &dir {
        Some(d) => rfs::statat(d, last, AtFlags::SYMLINK_NOFOLLOW),
        None => rfs::statat(rfs::CWD, last, AtFlags::SYMLINK_NOFOLLOW),
    }
    .map_err(io::Error::from)?;
    Ok(meta_of(&st))
}

fn meta_of(st: &rfs::Stat) -> Meta {
    let kind = match rfs::FileType::from_raw_mode(st.st_mode) {
        rfs::FileType::RegularFile => Kind::File,
        rfs::FileType::Directory => Kind::Dir,
        rfs::FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    };
    Meta { kind, dev: st.st_dev, ino: st.st_ino, len: u64::try_from(st.st_size).unwrap_or(0) }
}

/// A directory's identity: device and inode.
fn ident(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    let st = rfs::fstat(fd).map_err(io::Error::from)?;
    Ok((st.st_dev, st.st_ino))
}

/// The names in a directory, sorted.
fn names(fd: &OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    let mut v = Vec::new();
    for ent in rfs::Dir::read_from(fd).map_err(io::Error::from)? {
        let ent = ent.map_err(io::Error::from)?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            v.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    v.sort();
    Ok(v)
}

/// What [`walk`] meets: a path, and what it is (or why it cannot be looked at or listed).
pub(crate) enum Found<'p> {
    Entry(&'p Path, Meta),
    Unreadable(&'p Path, io::Error),
}

/// Every entry under directory `top`, depth first in name order, by descriptors: one open per
/// directory (down by name, never through a symlink; up by `..`, which must land on the
/// directory it left), so the cost is linear in the entries whatever the depth. Paths are kept
/// as one buffer, grown and cut as the walk moves.
pub(crate) fn walk(top: &Path, mut f: impl FnMut(Found<'_>)) {
    struct Frame {
        names: std::vec::IntoIter<std::ffi::OsString>,
        id: (u64, u64),
    }
    let dir_flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let start = open_flags(top, dir_flags).and_then(|fd| Ok((names(&fd)?, ident(&fd)?, fd)));
    let (list, id, mut fd) = match start {
        Ok(x) => x,
        Err(e) => return f(Found::Unreadable(top, e)),
    };
    let mut path = top.to_path_buf();
    let mut frames = vec![Frame { names: list.into_iter(), id }];
    while let Some(frame) = frames.last_mut() {
        let Some(name) = frame.names.next() else {
            frames.pop();
            let Some(parent) = frames.last() else { break };
            let up = rfs::openat(&fd, "..", dir_flags, Mode::empty()).map_err(io::Error::from);
            match up.and_then(|u| Ok((ident(&u)?, u))) {
                Ok((id, u)) if id == parent.id => fd = u,
                Ok(_) => {
                    let e = io::Error::other("moved while it was read");
                    return f(Found::Unreadable(&path, e));
                }
                Err(e) => return f(Found::Unreadable(&path, e)),
            }
            path.pop();
            continue;
        };
        path.push(&name);
        let st = match rfs::statat(&fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => {
                f(Found::Unreadable(&path, e.into()));
                path.pop();
                continue;
            }
        };
        let meta = meta_of(&st);
        if meta.kind != Kind::Dir {
            f(Found::Entry(&path, meta));
            path.pop();
            continue;
        }
        let sub = rfs::openat(&fd, &name, dir_flags | OFlags::NOFOLLOW, Mode::empty()).map_err(io::Error::from);
        match sub.and_then(|s| Ok((names(&s)?, ident(&s)?, s))) {
            Ok((list, id, s)) => {
                f(Found::Entry(&path, meta));
                fd = s;
                frames.push(Frame { names: list.into_iter(), id });
            }
            Err(e) => {
                f(Found::Unreadable(&path, e));
                path.pop();
            }
        }
    }
}
