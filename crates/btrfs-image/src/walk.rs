//! Directories to paths: the walk from the top subvolume's root directory through DIR_INDEX
//! items, into subvolumes, with names as raw bytes.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::error::{CorruptKind, Result};
use crate::items::dir::{check_name, DirItem, FileType};
use crate::items::{key_type, objectid};
use crate::Image;

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
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// A type byte this reader does not know.
    Other,
}

impl FileKind {
    fn of(ty: FileType) -> Self {
        match ty {
            FileType::Regular => FileKind::Regular,
            FileType::Directory => FileKind::Directory,
            FileType::Symlink => FileKind::Symlink,
            FileType::CharDevice => FileKind::CharDevice,
            FileType::BlockDevice => FileKind::BlockDevice,
            FileType::Fifo => FileKind::Fifo,
            FileType::Socket => FileKind::Socket,
            FileType::Xattr | FileType::Unknown(_) => FileKind::Other,
        }
    }
}

/// A file found by walking the directories.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// Path from the top of the filesystem: names joined by `/`, no leading slash, raw bytes.
    pub path: OsString,
    /// Fs tree (subvolume) holding the inode.
    pub tree: u64,
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: FileKind,
}

impl DirEntry {
    /// The path for people: printable ASCII as is, other bytes escaped (`\xNN`), so names
    /// that are not UTF-8 print unambiguously.
    pub fn path_escaped(&self) -> String {
        self.path.as_bytes().escape_ascii().to_string()
    }
}

impl Image {
    /// Every file, directory and subvolume, walking directory indexes from the top subvolume,
    /// sorted by path bytes. An entry that cannot be one (a bad name, a damaged dir item), a
    /// directory reached twice, and a subvolume whose tree cannot be read are skipped, with the
    /// rest of the tree walked, and said in [`Image::skipped`]; only an unreadable top
    /// subvolume is an error.
    pub fn walk_files(&self) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        let mut stack = vec![(objectid::FS_TREE, objectid::FIRST_FREE, Vec::<u8>::new())];
        let mut visited = HashSet::new();
        while let Some((tid, dir, prefix)) = stack.pop() {
            let here =
                || if prefix.is_empty() { "the top directory".to_string() } else { prefix.escape_ascii().to_string() };
            if !visited.insert((tid, dir)) {
                self.note_skipped(format!("{}: {}", here(), CorruptKind::DirectoryLoop { tree: tid, dir }));
                continue;
            }
            // The top subvolume must be readable; a subvolume that is not is skipped.
            let tree = match self.fs_tree(tid) {
                Ok(t) => t,
                Err(e) if !prefix.is_empty() => {
                    self.note_skipped(format!("{}: subvolume {tid}: {e}", here()));
                    continue;
                }
                Err(e) => return Err(e),
            };
            for it in tree.items_of(dir, key_type::DIR_INDEX) {
                let items = match DirItem::parse_all(dir, &it.data) {
                    Ok(v) => v,
                    Err(e) => {
                        self.note_skipped(format!("{}: an entry (index {}): {e}", here(), it.key.offset));
                        continue;
                    }
                };
                for d in items {
                    if let Err(e) = check_name(dir, &d.name) {
                        self.note_skipped(format!("{}: {e}", here()));
                        continue;
                    }
                    let mut path = prefix.clone();
                    if !path.is_empty() {
                        path.push(b'/');
                    }
                    path.extend_from_slice(&d.name);
                    if d.location.ty == key_type::ROOT_ITEM {
                        let sub = d.location.objectid;
                        // Followed only where the subvolume's back reference names this entry:
                        // a snapshot copies its directories' subvolume entries, and the kernel
                        // shows those as empty directories (`fixup_tree_root_location()` finds
                        // no root ref from this tree, `new_simple_dir()`).
                        let here = self
                            .root_ref(sub)
                            .is_some_and(|(parent, r)| *parent == tid && r.dirid == dir && r.name == d.name);
                        if !here {
                            out.push(DirEntry {
                                path: OsString::from_vec(path),
                                tree: tid,
                                ino: objectid::EMPTY_SUBVOL_DIR,
                                kind: FileKind::Directory,
                            });
                            continue;
                        }
                        out.push(DirEntry {
                            path: OsString::from_vec(path.clone()),
                            tree: sub,
                            ino: objectid::FIRST_FREE,
                            kind: FileKind::Subvolume,
                        });
                        if self.root_item(sub).is_some() {
                            stack.push((sub, objectid::FIRST_FREE, path));
                        }
                        continue;
                    }
                    let kind = FileKind::of(d.ty);
                    let ino = d.location.objectid;
                    out.push(DirEntry { path: OsString::from_vec(path.clone()), tree: tid, ino, kind });
                    if kind == FileKind::Directory && ino != objectid::EMPTY_SUBVOL_DIR {
                        stack.push((tid, ino, path));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        Ok(out)
    }

    /// The extended attributes of an inode: (name, value), raw bytes, in key order.
    pub fn xattrs(&self, tree: &crate::Tree, ino: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut v = Vec::new();
        for it in tree.items_of(ino, key_type::XATTR_ITEM) {
            for d in DirItem::parse_all(ino, &it.data)? {
                v.push((d.name, d.data));
            }
        }
        Ok(v)
    }
}
