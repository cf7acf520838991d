//! Compressed bios and destination ranges, and `btrfs_decompress_buf2page()`.

use highmem::{FolioVec, Frame, PhysMem};

use crate::{Error, Result, BTRFS_MAX_COMPRESSED};

/// The pages of one compressed extent as read from disk (`struct compressed_bio`'s
/// `compressed_folios`, order-0 folios, lowmem) and its length (`cb->compressed_len`).
#[derive(Debug)]
pub struct CompressedBio {
    /// The compressed pages.
    pub folios: FolioVec,
    /// Bytes of compressed data (the sector-padded on-disk size, `disk_num_bytes`).
    pub compressed_len: usize,
}

impl CompressedBio {
    /// Put `data` (the extent's on-disk bytes, at most 128 KiB) into fresh pages of `mem`.
    pub fn from_slice(mem: &PhysMem, data: &[u8]) -> Result<Self> {
        Self::from_slice_order(mem, data, 0)
    }

    /// Compressed pages of `len` bytes filled by `read(offset, buf)` straight from the device,
    /// with no intermediate buffer (the bio's read). The tail of the last page is zeroed.
    pub fn read_with<E>(
        mem: &PhysMem,
        len: usize,
        order: u32,
        mut read: impl FnMut(usize, &mut [u8]) -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<Self, E>> {
        if len == 0 || len > BTRFS_MAX_COMPRESSED {
            return Err(Error::InvalidArgument(format!(
                "compressed extent of {len} bytes (must be 1..={BTRFS_MAX_COMPRESSED})"
            )));
        }
        let mut folios = FolioVec::alloc_dirty(mem, len, order)?;
        let mut off = 0;
        while off < folios.len() {
            let fsize = folios.folios()[folios.locate(off).map_or(0, |(i, _)| i)].size();
            let chunk = folios.folio_address_mut(off, fsize);
            let n = fsize.min(len.saturating_sub(off));
            if let Err(e) = read(off, &mut chunk[..n]) {
                return Ok(Err(e));
            }
            chunk[n..].fill(0);
            off += fsize;
        }
        Ok(Ok(Self { folios, compressed_len: len }))
    }

    /// As [`CompressedBio::from_slice`] with folios of `order` (large compressed folios).
    pub fn from_slice_order(mem: &PhysMem, data: &[u8], order: u32) -> Result<Self> {
        if data.is_empty() || data.len() > BTRFS_MAX_COMPRESSED {
            return Err(Error::InvalidArgument(format!(
                "compressed extent of {} bytes (must be 1..={BTRFS_MAX_COMPRESSED})",
                data.len()
            )));
        }
        Ok(Self { folios: FolioVec::from_slice(mem, data, order)?, compressed_len: data.len() })
    }
}

/// Where decompressed bytes go (`cb->orig_bio`): page-cache pages for bytes
/// `[start, start + len)` of the decompressed extent. `start` is the file extent item's
/// `offset`, `len` its `num_bytes` (or less, for a partial read).
#[derive(Debug)]
pub struct DestRange {
    /// The destination pages; byte 0 is decompressed byte `start`.
    pub pages: FolioVec,
    /// First decompressed byte wanted.
    pub start: usize,
    /// Bytes wanted.
    pub len: usize,
    filled: usize,
    produced: Option<usize>,
}

impl DestRange {
    /// Fresh zeroed destination pages of `order` for `len` bytes starting at decompressed byte
    /// `start`.
    pub fn new(mem: &PhysMem, start: usize, len: usize, order: u32) -> Result<Self> {
        Ok(Self { pages: FolioVec::alloc(mem, len.max(1), order)?, start, len, filled: 0, produced: None })
    }

    /// As [`DestRange::new`] without clearing the pages first: every wanted byte is written by
    /// the decompression or by [`DestRange::zero_rest`].
    pub fn new_dirty(mem: &PhysMem, start: usize, len: usize, order: u32) -> Result<Self> {
        Ok(Self { pages: FolioVec::alloc_dirty(mem, len.max(1), order)?, start, len, filled: 0, produced: None })
    }

    /// Start over with the same pages (a new read into the same page-cache pages).
    pub fn reset(&mut self) {
        self.filled = 0;
        self.produced = None;
    }

    /// Record that `n` more bytes were written straight into the pages (loops that decompress
    /// in place instead of through [`btrfs_decompress_buf2page`]).
    pub fn advance(&mut self, n: usize) {
        self.filled = (self.filled + n).min(self.len);
    }

    /// Bytes written so far (the bio's progress).
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Bytes the stream itself supplied, before any zero-fill ([`DestRange::zero_rest`]).
    pub fn stream_bytes(&self) -> usize {
        self.produced.unwrap_or(self.filled)
    }

    /// True once every wanted byte was written.
    pub fn is_full(&self) -> bool {
        self.filled >= self.len
    }

    /// Zero what the stream did not cover (`zero_fill_bio()` after a short stream).
    pub fn zero_rest(&mut self, frame: &mut Frame<'_>) -> Result<()> {
        self.produced.get_or_insert(self.filled);
        if self.filled < self.len {
            frame.memzero_pages(&mut self.pages, self.filled, self.len - self.filled)?;
            self.filled = self.len;
        }
        Ok(())
    }

    /// The wanted bytes as a vector (read through the direct map, not counted).
    pub fn to_vec(&self) -> Vec<u8> {
        self.pages.to_vec(0, self.len)
    }
}

/// Models `btrfs_decompress_buf2page()`: copy the decompressed bytes `buf`, which are bytes
/// `[decompressed, decompressed + buf.len())` of the extent, into the part of `dest` they
/// overlap, one page mapping per piece (`memcpy_to_page()`).
///
/// Returns `true` while the destination wants more (the C function's 1) and `false` once it is
/// full (0).
pub fn btrfs_decompress_buf2page(
    frame: &mut Frame<'_>,
    buf: &[u8],
    decompressed: usize,
    dest: &mut DestRange,
) -> Result<bool> {
    let buf_end = decompressed + buf.len();
    let dst_end = dest.start + dest.len;
    let lo = decompressed.max(dest.start + dest.filled);
    let hi = buf_end.min(dst_end);
    if lo < hi {
        frame.memcpy_to_pages(&mut dest.pages, lo - dest.start, &buf[lo - decompressed..hi - decompressed])?;
        dest.filled = hi - dest.start;
    }
    Ok(buf_end < dst_end)
}

/// The common end of the inline `*_decompress()` functions: copy what the stream produced (at
/// most `destlen` bytes) to `dest` at `dest_off` (`memcpy_to_folio()`); fewer than `destlen`
/// bytes zero-fills the rest and is `-EIO` (`short`, or [`crate::CorruptKind::ShortOutput`]).
pub fn finish_inline(
    frame: &mut Frame<'_>,
    dest: &mut FolioVec,
    dest_off: usize,
    destlen: usize,
    produced: &[u8],
    codec: &'static str,
    short: Option<crate::CorruptKind>,
) -> Result<()> {
    let n = produced.len().min(destlen);
    frame.memcpy_to_pages(dest, dest_off, &produced[..n])?;
    if n < destlen {
        frame.memzero_pages(dest, dest_off + n, destlen - n)?;
        let kind = short.unwrap_or(crate::CorruptKind::ShortOutput { codec, got: n, expected: destlen });
        return Err(Error::corrupt(kind));
    }
    Ok(())
}
