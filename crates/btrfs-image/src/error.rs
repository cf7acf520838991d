//! The reader's errors: what went wrong, typed; corrupt metadata says which structure and which
//! field.

/// Errors of the reader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the image failed.
    #[error("cannot read image: {0}")]
    Io(#[from] std::io::Error),
    /// No btrfs superblock magic at 64 KiB.
    #[error("not a btrfs image (no superblock magic at 64 KiB)")]
    NotBtrfs,
    /// A checksum did not match.
    #[error("{what} checksum mismatch at {at:#x}")]
    BadChecksum {
        /// What was checked.
        what: &'static str,
        /// Its logical (or physical, for the superblock) address.
        at: u64,
    },
    /// A checksum algorithm this reader does not know.
    #[error("unknown checksum type {0}")]
    UnsupportedCsum(u16),
    /// A chunk's profile bits name no profile btrfs has.
    #[error("unknown profile bits {profile:#x} in chunk at {logical:#x}")]
    UnsupportedProfile {
        /// Chunk start.
        logical: u64,
        /// Profile bits.
        profile: u64,
    },
    /// A read that needs a device that was not given.
    #[error("device {devid} is missing (give it with the others)")]
    MissingDevice {
        /// Device id.
        devid: u64,
    },
    /// A RAID5/6 stripe that cannot be rebuilt: more of its row is missing than parity covers.
    #[error("logical address {logical:#x}: its RAID5/6 stripe cannot be rebuilt (too many devices missing)")]
    Unrebuildable {
        /// Logical address.
        logical: u64,
    },
    /// An on-disk feature this reader does not read (its incompat bit is set).
    #[error("the filesystem uses {0}, which this reader does not read")]
    UnsupportedFeature(&'static str),
    /// Device files that do not make one filesystem.
    #[error("{0}")]
    Devices(String),
    /// A logical address no chunk maps.
    #[error("logical address {0:#x} is not mapped by any chunk")]
    Unmapped(u64),
    /// Metadata that contradicts itself.
    #[error("corrupt metadata: {0}")]
    Corrupt(CorruptKind),
    /// A compressed image that decompresses to more than the limit.
    #[error("image larger than {0} bytes")]
    TooLarge(u64),
}

impl From<CorruptKind> for Error {
    fn from(k: CorruptKind) -> Self {
        Error::Corrupt(k)
    }
}

/// What is corrupt, by structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptKind {
    /// A field read past the end of its structure.
    #[error("{what}: {len} bytes at {offset} past the end of its {size} bytes")]
    Short {
        /// The structure (e.g. "btrfs_inode_item").
        what: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Its length.
        len: usize,
        /// Bytes the structure has.
        size: usize,
    },
    /// A read past the end of the image.
    #[error("read of {len} bytes at {offset:#x} past the end of the image ({size} bytes)")]
    PastImageEnd {
        /// Physical offset.
        offset: u64,
        /// Bytes.
        len: u64,
        /// Image size.
        size: u64,
    },
    /// A superblock field out of range.
    #[error("superblock {field} {value}")]
    Superblock {
        /// Field name in `btrfs_super_block`.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A bad entry of the superblock's sys_chunk_array.
    #[error("sys_chunk_array: {0}")]
    SysChunkArray(&'static str),
    /// A chunk item that cannot be right.
    #[error("chunk at {logical:#x}: {problem}")]
    Chunk {
        /// Chunk start.
        logical: u64,
        /// What is wrong.
        problem: &'static str,
    },
    /// A tree block whose header contradicts where it was found.
    #[error("tree block {bytenr:#x}: {problem}")]
    TreeBlock {
        /// Logical address.
        bytenr: u64,
        /// What is wrong.
        problem: &'static str,
    },
    /// A tree block reached twice in one walk.
    #[error("tree block {0:#x} reached twice (cycle)")]
    TreeCycle(u64),
    /// A root item with an impossible level.
    #[error("tree {tree} root level {level}")]
    RootLevel {
        /// Tree id.
        tree: u64,
        /// Level.
        level: u8,
    },
    /// A tree the root tree does not list.
    #[error("no root item for tree {0}")]
    NoRoot(u64),
    /// An inode without an inode item.
    #[error("tree {tree} has no inode {ino}")]
    NoInode {
        /// Tree id.
        tree: u64,
        /// Inode number.
        ino: u64,
    },
    /// A dir or xattr item longer than its item.
    #[error("dir item of inode {ino} longer than its item")]
    DirItem {
        /// Inode holding it.
        ino: u64,
    },
    /// A file name that cannot be one (empty, '/', NUL, '.' or '..').
    #[error("bad file name {name:?} in directory {dir}")]
    BadName {
        /// Directory inode.
        dir: u64,
        /// The name, escaped.
        name: String,
    },
    /// A directory reached twice (a loop of directories).
    #[error("directory {dir} of tree {tree} reached twice")]
    DirectoryLoop {
        /// Tree id.
        tree: u64,
        /// Directory inode.
        dir: u64,
    },
    /// More entries than a walk can index (2^32).
    #[error("more than 2^32 directory entries")]
    TooManyEntries,
    /// A file extent item of unknown type or compression.
    #[error("file extent at file offset {file_offset}: {field} {value}")]
    FileExtent {
        /// The key offset.
        file_offset: u64,
        /// Field name in `btrfs_file_extent_item`.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// File extents of one inode that overlap.
    #[error("inode {ino}: extents overlap at file offset {file_offset}")]
    ExtentsOverlap {
        /// Inode.
        ino: u64,
        /// Where.
        file_offset: u64,
    },
    /// A `.zst` image that does not decompress.
    #[error("compressed image: {0}")]
    CompressedImage(String),
    /// A log tree item that replay cannot apply.
    #[error("log tree, inode {ino}: {problem}")]
    LogTree {
        /// Inode.
        ino: u64,
        /// What is wrong.
        problem: &'static str,
    },
    /// A value that does not fit this machine's address space.
    #[error("{0} does not fit in memory")]
    TooBig(&'static str),
}

/// The reader's result type.
pub type Result<T> = std::result::Result<T, Error>;
