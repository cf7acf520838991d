//! The compressed output of one `compress_folios` call, as a cursor in the manner of bytes'
//! `BufMut`: [`OutCursor::chunk_mut`] offers the rest of the current output page (the kernel
//! hands the library one page at a time, and zlib's bytes depend on it), [`OutCursor::advance`]
//! records what the library wrote, and [`OutCursor::next_folio`] allocates the next output folio
//! (`btrfs_alloc_compr_folio()`), refusing past `max_out` with `-E2BIG`. It knows `tot_out`.

use highmem::{FolioVec, PhysMem};

use crate::{alloc_compr_folio, Error, Incompressible, Result};

/// Where the compressed bytes of one call go.
pub struct OutCursor<'o> {
    mem: PhysMem,
    out: &'o mut FolioVec,
    order: u32,
    max_out: usize,
    /// Start of the current folio in the output.
    base: usize,
    /// Usable bytes of the current folio (at most what `max_out` leaves).
    size: usize,
    /// Bytes written into the current folio.
    pos: usize,
}

impl<'o> OutCursor<'o> {
    /// A cursor over `out` (empty) with its first folio of `order` allocated, as the zlib and
    /// zstd loops start.
    pub fn new(mem: &PhysMem, out: &'o mut FolioVec, order: u32, max_out: usize) -> Result<Self> {
        let mut c = Self::lazy(mem, out, order, max_out);
        c.size = alloc_compr_folio(&c.mem, c.out, order, max_out)?.min(max_out);
        Ok(c)
    }

    /// A cursor that allocates folios only when [`OutCursor::reserve`] asks (lzo).
    pub fn lazy(mem: &PhysMem, out: &'o mut FolioVec, order: u32, max_out: usize) -> Self {
        Self { mem: mem.clone(), out, order, max_out, base: 0, size: 0, pos: 0 }
    }

    /// The rest of the current output page (and folio), to be written from its start.
    pub fn chunk_mut(&mut self) -> &mut [u8] {
        let ps = self.mem.page_size();
        let n = (ps - self.pos % ps).min(self.size - self.pos);
        self.out.folio_address_mut(self.base + self.pos, n)
    }

    /// `n` bytes of [`OutCursor::chunk_mut`] were written.
    pub fn advance(&mut self, n: usize) {
        debug_assert!(self.pos + n <= self.size);
        self.pos += n;
    }

    /// Compressed bytes so far (`tot_out` plus the current folio's).
    pub fn tot_out(&self) -> usize {
        self.base + self.pos
    }

    /// Where the next byte goes, and the room left in its folio.
    pub fn position(&self) -> (usize, usize) {
        (self.base + self.pos, self.size - self.pos)
    }

    /// The current folio is full.
    pub fn folio_full(&self) -> bool {
        self.pos == self.size
    }

    /// The output has reached `max_out` ("we've reached the end of our output range").
    pub fn at_limit(&self) -> bool {
        self.base + self.pos >= self.max_out
    }

    /// Move to a new output folio (the current one is full).
    pub fn next_folio(&mut self) -> Result<()> {
        debug_assert!(self.folio_full());
        self.base += self.size;
        self.size = alloc_compr_folio(&self.mem, self.out, self.order, self.max_out)?.min(self.max_out - self.base);
        self.pos = 0;
        Ok(())
    }

    /// Make sure the output holds `upto` bytes, allocating folios as needed (lzo writes at
    /// positions it computes itself); `-E2BIG` past `max_out`.
    pub fn reserve(&mut self, upto: usize) -> Result<()> {
        while self.out.len() < upto {
            if self.out.len() >= self.max_out {
                return Err(Error::Incompressible(Incompressible::OutOfOutput));
            }
            alloc_compr_folio(&self.mem, self.out, self.order, self.max_out)?;
        }
        Ok(())
    }

    /// The output limit.
    pub fn max_out(&self) -> usize {
        self.max_out
    }

    /// The output folios, for loops that map them (lzo, the 2022 zstd loop).
    pub fn folios(&mut self) -> &mut FolioVec {
        self.out
    }
}
