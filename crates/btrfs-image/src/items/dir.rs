//! `struct btrfs_dir_item`: directory entries (DIR_ITEM, DIR_INDEX) and extended attributes
//! (XATTR_ITEM) share it: a location key, a type, a name and, for xattrs, the value.

use crate::error::{CorruptKind, Result};
use crate::le::Le;
use crate::tree::Key;

/// Field offsets of `struct btrfs_dir_item`.
pub(crate) mod off {
    pub const LOCATION: usize = 0;
    pub const DATA_LEN: usize = 25;
    pub const NAME_LEN: usize = 27;
    pub const TYPE: usize = 29;
    pub const NAME: usize = 30;
}

/// The type byte of a dir item (`BTRFS_FT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// `BTRFS_FT_REG_FILE`.
    Regular,
    /// `BTRFS_FT_DIR`.
    Directory,
    /// `BTRFS_FT_CHRDEV`.
    CharDevice,
    /// `BTRFS_FT_BLKDEV`.
    BlockDevice,
    /// `BTRFS_FT_FIFO`.
    Fifo,
    /// `BTRFS_FT_SOCK`.
    Socket,
    /// `BTRFS_FT_SYMLINK`.
    Symlink,
    /// `BTRFS_FT_XATTR`.
    Xattr,
    /// `BTRFS_FT_UNKNOWN` or a value this reader does not know.
    Unknown(u8),
}

impl FileType {
    fn from_code(c: u8) -> Self {
        match c {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::CharDevice,
            4 => FileType::BlockDevice,
            5 => FileType::Fifo,
            6 => FileType::Socket,
            7 => FileType::Symlink,
            8 => FileType::Xattr,
            c => FileType::Unknown(c),
        }
    }
}

/// One entry of a dir item (an item may hold several: hash collisions in DIR_ITEM and
/// XATTR_ITEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirItem {
    /// What the name points at: an inode (INODE_ITEM key) or a subvolume (ROOT_ITEM key).
    pub location: Key,
    /// Its type.
    pub ty: FileType,
    /// The name, raw bytes.
    pub name: Vec<u8>,
    /// The value (xattrs; empty for directory entries).
    pub data: Vec<u8>,
}

impl DirItem {
    /// Every entry of the item `data` of inode `ino`.
    pub fn parse_all(ino: u64, data: &[u8]) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let b = Le::new(&data[at..], "btrfs_dir_item");
            let name_len = b.len16(off::NAME_LEN)?;
            let data_len = b.len16(off::DATA_LEN)?;
            let end = off::NAME + name_len + data_len;
            if end > b.bytes.len() {
                return Err(CorruptKind::DirItem { ino }.into());
            }
            out.push(DirItem {
                location: Key::parse(&b, off::LOCATION)?,
                ty: FileType::from_code(b.u8(off::TYPE)?),
                name: b.slice(off::NAME, name_len)?.to_vec(),
                data: b.slice(off::NAME + name_len, data_len)?.to_vec(),
            });
            at += end;
        }
        Ok(out)
    }
}

/// A directory entry's name as the reader accepts it: not empty, no '/', no NUL, not '.' or
/// '..' (so a path built from names never leaves the directory it starts in).
pub fn check_name(dir: u64, name: &[u8]) -> Result<()> {
    // BTRFS_NAME_LEN: the tree-checker refuses longer names (`check_dir_item()`).
    if name.is_empty() || name.len() > 255 || name.contains(&b'/') || name.contains(&0) || name == b"." || name == b".."
    {
        return Err(CorruptKind::BadName { dir, name: name.escape_ascii().to_string() }.into());
    }
    Ok(())
}
