//! Typed errors with the kernel's errno classes.

use highmem::MapError;

/// Result of this workspace's compression calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the compression paths, each mapping to the errno the kernel would return
/// ([`Error::errno`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `-E2BIG`: the data did not compress (output would not be smaller, the early bail fired, or
    /// the output folios ran out). Not a failure: the caller stores the data uncompressed.
    #[error("incompressible: {0}")]
    Incompressible(Incompressible),
    /// `-EIO` or `-EUCLEAN`: the compressed data is damaged.
    #[error("corrupt compressed data: {0}")]
    Corrupt(CorruptKind),
    /// `-EIO`: the compression library failed while compressing.
    #[error("{codec} library error: {msg}")]
    Library {
        /// Which codec.
        codec: &'static str,
        /// What it said.
        msg: String,
    },
    /// `-EINVAL`: a caller passed something the kernel would refuse (lengths, levels, names).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A failure of the page-mapping layer (slots exhausted, out of frames, a system call).
    #[error("page mapping: {0}")]
    Map(#[from] MapError),
}

impl Error {
    /// The kernel errno this error stands for (positive value).
    pub fn errno(&self) -> i32 {
        const E2BIG: i32 = 7;
        const EIO: i32 = 5;
        const ENOMEM: i32 = 12;
        const EINVAL: i32 = 22;
        const EUCLEAN: i32 = 117;
        match self {
            Error::Incompressible(_) => E2BIG,
            Error::Corrupt(k) if k.is_euclean() => EUCLEAN,
            Error::Corrupt(_) | Error::Library { .. } => EIO,
            Error::InvalidArgument(_) => EINVAL,
            Error::Map(MapError::OutOfFrames) => ENOMEM,
            Error::Map(_) => EIO,
        }
    }

    /// Shorthand for a corrupt-data error.
    pub fn corrupt(kind: CorruptKind) -> Self {
        Error::Corrupt(kind)
    }
}

/// Why the kernel's rules do not store the data compressed (each is `-E2BIG`, or the caller's
/// "not worth it" check).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Incompressible {
    /// More than 8 KiB in and the output already larger than the input (zlib, lzo, zstd).
    #[error("output larger than input (early bail)")]
    EarlyBail,
    /// The output folios (at most 128 KiB) or the output range ran out.
    #[error("out of output folios")]
    OutOfOutput,
    /// The finished stream is not smaller than the input.
    #[error("compressed size not smaller than input")]
    NotSmaller,
    /// Smaller, but not by a sector: `compress_file_range()` stores it plain.
    #[error("compressed extent would not save a sector")]
    SavesNoSector,
    /// Compressed inline data larger than `max_inline`.
    #[error("compressed inline data larger than max_inline")]
    InlineTooLarge,
    /// A reference function's output buffer was too small.
    #[error("reference output buffer too small")]
    BufferTooSmall,
}

/// What exactly is wrong with compressed data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptKind {
    /// The stream is shorter than its own header.
    #[error("stream too short ({len} bytes)")]
    TooShort {
        /// Bytes present.
        len: usize,
    },
    /// lzo: the total length in the header does not fit the extent (`-EUCLEAN`).
    #[error("lzo total length {total} does not match the compressed size {compressed_len}")]
    LzoTotalLength {
        /// Value in the header.
        total: usize,
        /// Size of the compressed data.
        compressed_len: usize,
    },
    /// lzo: a segment header crosses a sector boundary (`-EUCLEAN`).
    #[error("lzo segment header at {offset} crosses a sector boundary")]
    LzoHeaderCrossesSector {
        /// Offset of the header.
        offset: usize,
    },
    /// lzo: a segment is longer than the worst case for one sector, or runs past the total.
    #[error("lzo segment of {seg_len} bytes at {offset} is too long (limit {limit})")]
    LzoSegmentLength {
        /// Offset of the segment header.
        offset: usize,
        /// Length in the header.
        seg_len: usize,
        /// Largest allowed.
        limit: usize,
    },
    /// lzo: an inline extent's framing does not match its size (`-EUCLEAN`).
    #[error("lzo inline framing: {0}")]
    LzoInline(String),
    /// The decompressor rejected the data.
    #[error("{codec}: {msg}")]
    Stream {
        /// Which codec.
        codec: &'static str,
        /// What it said.
        msg: String,
    },
    /// zstd: the frame needs a window larger than the 128 KiB btrfs allows.
    #[error("zstd frame needs a window of {window} bytes, over the 128 KiB limit")]
    ZstdWindowTooLarge {
        /// Window announced by the frame.
        window: u64,
    },
    /// The stream ended before producing the expected output.
    #[error("{codec}: stream ended after {got} of {expected} bytes")]
    ShortOutput {
        /// Which codec.
        codec: &'static str,
        /// Bytes produced.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The stream needs more input than the extent holds.
    #[error("{codec}: stream truncated (input exhausted)")]
    Truncated {
        /// Which codec.
        codec: &'static str,
    },
}

impl CorruptKind {
    /// True for the kinds the kernel reports as `-EUCLEAN` (header sanity checks) rather than
    /// `-EIO`.
    pub fn is_euclean(&self) -> bool {
        matches!(
            self,
            CorruptKind::LzoTotalLength { .. }
                | CorruptKind::LzoHeaderCrossesSector { .. }
                | CorruptKind::LzoInline(_)
                | CorruptKind::TooShort { .. }
        )
    }
}
