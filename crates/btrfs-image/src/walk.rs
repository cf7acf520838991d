//! Directories to paths: the walk from the top subvolume's root directory through DIR_INDEX
//! items, into subvolumes, with names as raw bytes.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
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

/// A file found by walking the directories: one node of a [`Walk`], which holds its name and
/// its parent (no path is stored: a path is built on demand from parent links, so memory grows
/// with the number of entries, not with their depth).
#[derive(Clone, Copy, Debug)]
pub struct DirEntry {
    /// Fs tree (subvolume) holding the inode.
    pub tree: u64,
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: FileKind,
    /// The directory holding it (its index in the walk); `None` at the top.
    parent: Option<u32>,
    /// Levels below the top (0: a name in the top directory).
    depth: u32,
    /// One past the last index of its subtree (preorder: a subtree is a contiguous range).
    end: u32,
    /// Its name: `len` bytes at `at` of the walk's name arena.
    at: usize,
    len: u16,
}

/// Every entry of an image, as [`Image::walk_files`] found them: in preorder (a directory before
/// what it holds, siblings in name-byte order), each with a link to its parent; names live in
/// one arena. Paths are built on demand ([`Walk::path`], or incrementally by [`Walk::paths`]).
#[derive(Clone, Debug, Default)]
pub struct Walk {
    entries: Vec<DirEntry>,
    names: Vec<u8>,
}

/// An index kept in 32 bits (a walk indexes fewer than 2^32 entries).
fn ix(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// An index as kept: past 2^32 entries the walk refuses the image.
fn idx(i: usize) -> Result<u32> {
    u32::try_from(i).map_err(|_| CorruptKind::TooManyEntries.into())
}

/// Longest path [`Walk::display`] shows whole; longer ones keep their head and tail.
const DISPLAY_MAX: usize = 1024;

impl Walk {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the image holds no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in preorder; an entry's index here is what the other methods take.
    pub fn entries(&self) -> &[DirEntry] {
        &self.entries
    }

    /// The entries in preorder (as [`Walk::entries`]).
    pub fn iter(&self) -> std::slice::Iter<'_, DirEntry> {
        self.entries.iter()
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> &DirEntry {
        &self.entries[i]
    }

    /// The name of entry `i` (raw bytes).
    pub fn name(&self, i: usize) -> &OsStr {
        let e = &self.entries[i];
        OsStr::from_bytes(&self.names[e.at..e.at + usize::from(e.len)])
    }

    /// The directory holding entry `i`; `None` for a name in the top directory.
    pub fn parent(&self, i: usize) -> Option<usize> {
        self.entries[i].parent.map(ix)
    }

    /// Levels of entry `i` below the top directory (0 for a name in it).
    pub fn depth(&self, i: usize) -> usize {
        ix(self.entries[i].depth)
    }

    /// Entry `i` and everything under it: a contiguous range of indices.
    pub fn subtree(&self, i: usize) -> std::ops::Range<usize> {
        i..ix(self.entries[i].end)
    }

    /// The entries directly in `dir` (`None`: the top directory), in name order.
    pub fn children(&self, dir: Option<usize>) -> impl Iterator<Item = usize> + '_ {
        let (mut j, end) = match dir {
            Some(d) => (d + 1, ix(self.entries[d].end)),
            None => (0, self.entries.len()),
        };
        std::iter::from_fn(move || {
            (j < end).then(|| {
                let here = j;
                j = ix(self.entries[j].end);
                here
            })
        })
    }

    /// True when `i` is `anc` or lies under it (`None` is the top: everything).
    pub fn is_within(&self, i: usize, anc: Option<usize>) -> bool {
        anc.is_none_or(|a| self.subtree(a).contains(&i))
    }

    /// The path of entry `i` below directory `base` (`None`: from the top), names joined by
    /// `/`, raw bytes. Costs its length: for messages and output, not to store per entry.
    pub fn path_from(&self, base: Option<usize>, i: usize) -> OsString {
        let mut chain = Vec::new();
        let mut at = Some(i);
        while let Some(j) = at {
            if Some(j) == base {
                break;
            }
            chain.push(j);
            at = self.parent(j);
        }
        let mut v = Vec::new();
        for (k, &j) in chain.iter().rev().enumerate() {
            if k > 0 {
                v.push(b'/');
            }
            v.extend_from_slice(self.name(j).as_bytes());
        }
        OsString::from_vec(v)
    }

    /// The path of entry `i` from the top.
    pub fn path(&self, i: usize) -> OsString {
        self.path_from(None, i)
    }

    /// The path of entry `i` below `base` for people: printable ASCII as is, other bytes
    /// escaped (`\xNN`), and a path longer than 1 KiB shown by its head and tail around
    /// `…[N bytes]…`, so that a message about an entry 100,000 levels deep stays a line.
    pub fn display_from(&self, base: Option<usize>, i: usize) -> String {
        display(self.path_from(base, i).as_bytes())
    }

    /// [`Walk::display_from`] for each entry under `base` that `want`s, in walk order, in one
    /// pass that builds each path from the one before: many entries deep down cost the walk's
    /// names, not their depth each.
    pub fn display_each(&self, base: Option<usize>, want: impl Fn(usize) -> bool, mut f: impl FnMut(usize, String)) {
        let mut p = self.paths_from(base);
        while let Some((i, path)) = p.next_ref() {
            if want(i) {
                f(i, display(path));
            }
        }
    }

    /// [`Walk::display_from`] from the top.
    pub fn display(&self, i: usize) -> String {
        self.display_from(None, i)
    }

    /// The entry at `path` below `base` (`/`-separated names; empty components ignored);
    /// `Ok(None)` for the empty path (`base` itself), `Err(())` when nothing is there.
    #[allow(clippy::result_unit_err)]
    pub fn find_from(&self, base: Option<usize>, path: &[u8]) -> std::result::Result<Option<usize>, ()> {
        let mut at = base;
        let mut any = false;
        for c in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            at = Some(self.children(at).find(|&j| self.name(j).as_bytes() == c).ok_or(())?);
            any = true;
        }
        Ok(if any { at } else { None })
    }

    /// The entry at `path` from the top, if there is one.
    pub fn lookup(&self, path: impl AsRef<[u8]>) -> Option<&DirEntry> {
        self.find_from(None, path.as_ref()).ok().flatten().map(|i| &self.entries[i])
    }

    /// Every entry with its path from the top, in preorder, each path
    /// built from the one before: the cost is the output's size, the memory one path.
    pub fn paths(&self) -> Paths<'_> {
        self.paths_from(None)
    }

    /// [`Walk::paths`] of the entries under `base`, with paths below it.
    pub fn paths_from(&self, base: Option<usize>) -> Paths<'_> {
        let (next, end, top) = match base {
            Some(b) => (b + 1, self.subtree(b).end, self.depth(b) + 1),
            None => (0, self.len(), 0),
        };
        Paths { walk: self, next, end, top, buf: Vec::new(), ends: Vec::new() }
    }
}

/// `path` for people (see [`Walk::display_from`]).
fn display(b: &[u8]) -> String {
    if b.len() <= DISPLAY_MAX {
        return b.escape_ascii().to_string();
    }
    let (head, tail) = (&b[..DISPLAY_MAX / 4], &b[b.len() - DISPLAY_MAX / 2..]);
    let cut = b.len() - head.len() - tail.len();
    format!("{}…[{cut} bytes]…{}", head.escape_ascii(), tail.escape_ascii())
}

impl<'a> IntoIterator for &'a Walk {
    type Item = &'a DirEntry;
    type IntoIter = std::slice::Iter<'a, DirEntry>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

/// The iterator of [`Walk::paths`]: (index, path).
pub struct Paths<'w> {
    walk: &'w Walk,
    next: usize,
    end: usize,
    /// Depth of the first level shown.
    top: usize,
    buf: Vec<u8>,
    /// Where the path of each directory on the current chain ends in `buf`.
    ends: Vec<usize>,
}

impl Paths<'_> {
    /// The next entry and its path, borrowed (no copy).
    pub fn next_ref(&mut self) -> Option<(usize, &[u8])> {
        let i = self.next;
        if i >= self.end {
            return None;
        }
        self.next += 1;
        let d = self.walk.depth(i) - self.top;
        self.ends.truncate(d);
        self.buf.truncate(self.ends.last().copied().unwrap_or(0));
        if d > 0 {
            self.buf.push(b'/');
        }
        self.buf.extend_from_slice(self.walk.name(i).as_bytes());
        self.ends.push(self.buf.len());
        Some((i, &self.buf))
    }
}

impl Iterator for Paths<'_> {
    type Item = (usize, OsString);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref().map(|(i, p)| (i, OsStr::from_bytes(p).to_os_string()))
    }
}

/// A directory still to be read: where its entries go.
struct Pending {
    tree: u64,
    dir: u64,
    /// Its entry (`None`: the top directory).
    entry: Option<u32>,
}

impl Image {
    /// Every file, directory and subvolume, walking directory indexes from the top subvolume,
    /// depth first (siblings in name-byte order). An entry that cannot be one (a bad name, a
    /// damaged dir item), a directory reached twice, and a subvolume whose tree cannot be read
    /// are skipped, with the rest of the tree walked, and said in [`Image::skipped`]; only an
    /// unreadable top subvolume is an error. Memory is linear in the number of entries, whatever
    /// their depth.
    pub fn walk_files(&self) -> Result<Walk> {
        let mut w = Walk::default();
        // Entries to emit, last first; each a child of an emitted directory, or the top.
        let mut stack: Vec<(DirEntry, Option<Pending>)> = Vec::new();
        let mut visited = HashSet::new();
        let mut todo = Some(Pending { tree: objectid::FS_TREE, dir: objectid::FIRST_FREE, entry: None });
        loop {
            if let Some(p) = todo.take() {
                self.read_dir(&mut w, p, &mut visited, &mut stack)?;
            }
            let Some((mut e, pending)) = stack.pop() else { break };
            let idx = idx(w.entries.len())?;
            e.depth = e.parent.map_or(0, |p| w.entries[ix(p)].depth + 1);
            w.entries.push(e);
            todo = pending.map(|p| Pending { entry: Some(idx), ..p });
        }
        // Subtree ends: sizes summed from the leaves up (children come after their parent).
        let n = w.entries.len();
        let mut size = vec![1u32; n];
        for i in (0..n).rev() {
            if let Some(p) = w.entries[i].parent {
                size[ix(p)] += size[i];
            }
        }
        for (i, e) in w.entries.iter_mut().enumerate() {
            e.end = idx(i)? + size[i];
        }
        Ok(w)
    }

    /// Read directory `p`'s index and push its entries on `stack` (smallest name on top).
    fn read_dir(
        &self,
        w: &mut Walk,
        p: Pending,
        visited: &mut HashSet<(u64, u64)>,
        stack: &mut Vec<(DirEntry, Option<Pending>)>,
    ) -> Result<()> {
        let (tid, dir) = (p.tree, p.dir);
        let here = |w: &Walk| match p.entry {
            None => "the top directory".to_string(),
            Some(i) => w.display(ix(i)),
        };
        if !visited.insert((tid, dir)) {
            self.note_skipped(format!("{}: {}", here(w), CorruptKind::DirectoryLoop { tree: tid, dir }));
            return Ok(());
        }
        // The top subvolume must be readable; a subvolume that is not is skipped.
        let tree = match self.fs_tree(tid) {
            Ok(t) => t,
            Err(e) if p.entry.is_some() => {
                self.note_skipped(format!("{}: subvolume {tid}: {e}", here(w)));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let first = stack.len();
        for it in tree.items_of(dir, key_type::DIR_INDEX) {
            let items = match DirItem::parse_all(dir, &it.data) {
                Ok(v) => v,
                Err(e) => {
                    self.note_skipped(format!("{}: an entry (index {}): {e}", here(w), it.key.offset));
                    continue;
                }
            };
            for d in items {
                if let Err(e) = check_name(dir, &d.name) {
                    self.note_skipped(format!("{}: {e}", here(w)));
                    continue;
                }
                let at = w.names.len();
                w.names.extend_from_slice(&d.name);
                let node = |tree, ino, kind| DirEntry {
                    tree,
                    ino,
                    kind,
                    parent: p.entry,
                    depth: 0,
                    end: 0,
                    at,
                    len: u16::try_from(d.name.len()).unwrap_or(u16::MAX),
                };
                if d.location.ty == key_type::ROOT_ITEM {
                    let sub = d.location.objectid;
                    // Followed only where the subvolume's back reference names this entry: a
                    // snapshot copies its directories' subvolume entries, and the kernel shows
                    // those as empty directories (`fixup_tree_root_location()` finds no root
                    // ref from this tree, `new_simple_dir()`).
                    let ours = self
                        .root_ref(sub)
                        .is_some_and(|(parent, r)| *parent == tid && r.dirid == dir && r.name == d.name);
                    if !ours {
                        stack.push((node(tid, objectid::EMPTY_SUBVOL_DIR, FileKind::Directory), None));
                        continue;
                    }
                    let next = self.root_item(sub).is_some().then_some(Pending {
                        tree: sub,
                        dir: objectid::FIRST_FREE,
                        entry: None,
                    });
                    stack.push((node(sub, objectid::FIRST_FREE, FileKind::Subvolume), next));
                    continue;
                }
                let kind = FileKind::of(d.ty);
                let ino = d.location.objectid;
                let next = (kind == FileKind::Directory && ino != objectid::EMPTY_SUBVOL_DIR).then_some(Pending {
                    tree: tid,
                    dir: ino,
                    entry: None,
                });
                stack.push((node(tid, ino, kind), next));
            }
        }
        // Largest name first, so that the smallest is popped (emitted) first.
        let names = &w.names;
        stack[first..].sort_by(|a, b| {
            let n = |e: &DirEntry| &names[e.at..e.at + usize::from(e.len)];
            n(&b.0).cmp(n(&a.0))
        });
        Ok(())
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
