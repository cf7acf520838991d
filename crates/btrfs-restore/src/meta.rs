//! An inode's metadata onto what extract created: owner (as root), mode with setuid, setgid and
//! sticky bits, extended attributes, and atime and mtime to the nanosecond — in that order,
//! since `chown` clears setuid bits and file capabilities, and every other change moves the
//! times.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use btrfs_image::{Inode, Timespec};
use rustix::fs::{self as rfs, AtFlags, Mode, Timestamps, XattrFlags};
use rustix::process::{Gid, Uid};

/// Extended attributes: (name, value), raw bytes.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// What to restore.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// Owner, mode and times (`false`: data only, modes from the umask).
    pub metadata: bool,
    /// Extended attributes.
    pub xattrs: bool,
    /// Running as root: owners are restored.
    pub root: bool,
    /// The process umask, for `metadata == false`.
    pub umask: u32,
    /// Safe mode (an untrusted image): no setuid or setgid bits, only `user.*` and POSIX ACL
    /// xattrs (no file capabilities, no security or trusted labels); device nodes are not made
    /// (extract).
    pub safe: bool,
}

/// The xattrs safe mode restores: user attributes and POSIX ACLs.
fn safe_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.") || name == b"system.posix_acl_access" || name == b"system.posix_acl_default"
}

/// What the destination refused: xattrs by name, and owners, each with a count and the first
/// error.
#[derive(Default)]
pub(crate) struct Refused {
    xattrs: Mutex<BTreeMap<Vec<u8>, (usize, String)>>,
    owners: Mutex<Option<(usize, String)>>,
    /// What safe mode dropped: a description and a count.
    dropped: Mutex<BTreeMap<String, usize>>,
}

impl Refused {
    fn note(&self, name: &[u8], e: rustix::io::Errno) {
        if let Ok(mut m) = self.xattrs.lock() {
            let ent = m.entry(name.to_vec()).or_insert((0, io::Error::from(e).to_string()));
            ent.0 += 1;
        }
    }

    fn owner(&self, e: rustix::io::Errno) {
        if let Ok(mut o) = self.owners.lock() {
            o.get_or_insert((0, io::Error::from(e).to_string())).0 += 1;
        }
    }

    /// Safe mode dropped `what` (counted per description).
    pub(crate) fn drop_safe(&self, what: String) {
        if let Ok(mut m) = self.dropped.lock() {
            *m.entry(what).or_default() += 1;
        }
    }

    /// One line per kind of thing safe mode dropped.
    pub(crate) fn safe_lines(&self) -> Vec<String> {
        let m = self.dropped.lock().map(|m| m.clone()).unwrap_or_default();
        m.into_iter().map(|(w, k)| format!("{k} {w}")).collect()
    }

    /// One line per refused xattr name (count, name, error), and one for owners.
    pub(crate) fn lines(&self) -> Vec<String> {
        let m = self.xattrs.lock().map(|m| m.clone()).unwrap_or_default();
        let mut v: Vec<String> =
            m.into_iter().map(|(n, (k, e))| format!("{k} xattrs {} not restored: {e}", n.escape_ascii())).collect();
        if let Ok(Some((k, e))) = self.owners.lock().map(|o| o.clone()) {
            v.push(format!("{k} owners not restored: {e}"));
        }
        v
    }
}

/// Is this `chown` error the destination refusing the owner (an unmapped id in a user
/// namespace, a filesystem without owners) rather than an I/O failure?
fn owner_refused(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [Errno::PERM, Errno::INVAL, Errno::OPNOTSUPP].contains(&e)
}

fn ts(t: Timespec) -> rfs::Timespec {
    rfs::Timespec { tv_sec: t.sec, tv_nsec: i64::from(t.nsec.min(999_999_999)) }
}

fn times(ino: &Inode) -> Timestamps {
    Timestamps { last_access: ts(ino.atime), last_modification: ts(ino.mtime) }
}

fn perms(ino: &Inode, p: &Policy, dir: bool, refused: &Refused) -> Mode {
    if p.metadata {
        let mut mode = ino.mode & 0o7777;
        if p.safe && mode & 0o6000 != 0 {
            refused.drop_safe(format!("{} bits dropped", if mode & 0o4000 != 0 { "setuid" } else { "setgid" }));
            mode &= !0o6000;
        }
        Mode::from_raw_mode(mode)
    } else {
        let base = if dir || ino.mode & 0o111 != 0 { 0o777 } else { 0o666 };
        Mode::from_raw_mode(base & !p.umask)
    }
}

/// Is this error the destination refusing the attribute (rather than an I/O failure)?
fn refusal(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [Errno::OPNOTSUPP, Errno::PERM, Errno::ACCESS, Errno::INVAL, Errno::NOSPC, Errno::TOOBIG, Errno::RANGE].contains(&e)
}

/// Restore onto an open regular file or directory.
pub(crate) fn apply_fd(
    fd: impl AsFd,
    ino: &Inode,
    xattrs: &Xattrs,
    p: &Policy,
    dir: bool,
    refused: &Refused,
) -> io::Result<()> {
    if p.metadata && p.root {
        match rfs::fchown(&fd, Some(Uid::from_raw(ino.uid)), Some(Gid::from_raw(ino.gid))) {
            Err(e) if owner_refused(e) => refused.owner(e),
            r => r?,
        }
    }
    rfs::fchmod(&fd, perms(ino, p, dir, refused))?;
    if p.xattrs {
        for (name, value) in xattrs {
            if p.safe && !safe_xattr(name) {
                refused.drop_safe(format!("xattrs {} dropped", name.escape_ascii()));
                continue;
            }
            match rfs::fsetxattr(&fd, OsStr::from_bytes(name), value, XattrFlags::empty()) {
                Err(e) if refusal(e) => refused.note(name, e),
                r => r?,
            }
        }
    }
    if p.metadata {
        rfs::futimens(&fd, &times(ino))?;
    }
    Ok(())
}

/// Restore onto `name` in `dir` without following it (symlinks, fifos, sockets, devices).
pub(crate) fn apply_at(
    dir: impl AsFd,
    name: &OsStr,
    ino: &Inode,
    xattrs: &Xattrs,
    p: &Policy,
    symlink: bool,
    refused: &Refused,
) -> io::Result<()> {
    if p.metadata && p.root {
        let (u, g) = (Some(Uid::from_raw(ino.uid)), Some(Gid::from_raw(ino.gid)));
        match rfs::chownat(&dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW) {
            Err(e) if owner_refused(e) => refused.owner(e),
            r => r?,
        }
    }
    if !symlink {
        rfs::chmodat(&dir, name, perms(ino, p, false, refused), AtFlags::empty())?;
    }
    if p.xattrs && !xattrs.is_empty() {
        // No fd-relative lsetxattr: name the file through the directory's fd.
        let mut path = format!("/proc/self/fd/{}/", dir.as_fd().as_raw_fd()).into_bytes();
        path.extend_from_slice(name.as_bytes());
        for (xn, value) in xattrs {
            if p.safe && !safe_xattr(xn) {
                refused.drop_safe(format!("xattrs {} dropped", xn.escape_ascii()));
                continue;
            }
            match rfs::lsetxattr(OsStr::from_bytes(&path), OsStr::from_bytes(xn), value, XattrFlags::empty()) {
                Err(e) if refusal(e) => refused.note(xn, e),
                r => r?,
            }
        }
    }
    if p.metadata {
        rfs::utimensat(&dir, name, &times(ino), AtFlags::SYMLINK_NOFOLLOW)?;
    }
    Ok(())
}

/// An inode item's rdev, which btrfs stores as the kernel's own `dev_t` (`MAJOR()` above
/// `MINORBITS` = 20), as the C library's dev_t.
pub(crate) fn decode_dev(rdev: u64) -> u64 {
    let (major, minor) = (rdev >> 20, rdev & 0xf_ffff);
    rfs::makedev(u32::try_from(major).unwrap_or(0), u32::try_from(minor).unwrap_or(0))
}
