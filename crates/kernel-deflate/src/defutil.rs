//! Models `lib/zlib_deflate/defutil.h`: the constants, the code/length records of the trees, the
//! 16-bit bit buffer and the pending output buffer.

use crate::{KernelEra, Stream};

/// Number of length codes, not counting the end-of-block code (`LENGTH_CODES`).
pub(crate) const LENGTH_CODES: usize = 29;
/// Literal bytes 0..255 (`LITERALS`).
pub(crate) const LITERALS: usize = 256;
/// Literal/length codes including end of block (`L_CODES`).
pub(crate) const L_CODES: usize = LITERALS + 1 + LENGTH_CODES;
/// Distance codes (`D_CODES`).
pub(crate) const D_CODES: usize = 30;
/// Codes that transfer the bit lengths (`BL_CODES`).
pub(crate) const BL_CODES: usize = 19;
/// Size of the heap that builds the trees (`HEAP_SIZE`).
pub(crate) const HEAP_SIZE: usize = 2 * L_CODES + 1;
/// Longest code (`MAX_BITS`).
pub(crate) const MAX_BITS: usize = 15;
/// Shortest and longest match (`MIN_MATCH`, `MAX_MATCH` of zutil.h).
pub(crate) const MIN_MATCH: usize = 3;
/// Longest match.
pub(crate) const MAX_MATCH: usize = 258;
/// Lookahead kept except at the end of the input (`MIN_LOOKAHEAD`).
pub(crate) const MIN_LOOKAHEAD: usize = MAX_MATCH + MIN_MATCH + 1;

/// One tree element (`ct_data`): `fc` is the frequency while the tree is built and the code
/// afterwards, `dl` the father node while it is built and the bit length afterwards (the two
/// unions of the C struct, kept as such because the kernel's code reuses them that way).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CtData {
    pub(crate) fc: u16,
    pub(crate) dl: u16,
}

impl CtData {
    pub(crate) fn freq(&self) -> u16 {
        self.fc
    }
    pub(crate) fn code(&self) -> u16 {
        self.fc
    }
    pub(crate) fn len(&self) -> u16 {
        self.dl
    }
}

/// The bit buffer and the pending bytes (`bi_buf`, `bi_valid`, `pending_buf`, `pending`,
/// `pending_out` of `deflate_state`).
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) pending: Vec<u8>,
    pub(crate) pending_out: usize,
    pub(crate) bi_buf: u16,
    pub(crate) bi_valid: u32,
}

impl Output {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { pending: Vec::with_capacity(capacity), pending_out: 0, bi_buf: 0, bi_valid: 0 }
    }

    /// Bytes not yet copied out (`s->pending`).
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len() - self.pending_out
    }

    /// `put_byte()`.
    pub(crate) fn put_byte(&mut self, b: u8) {
        self.pending.push(b);
    }

    /// `put_short()`: LSB first.
    pub(crate) fn put_short(&mut self, w: u16) {
        self.pending.extend_from_slice(&w.to_le_bytes());
    }

    /// `putShortMSB()` of deflate.c: MSB first (the zlib header and trailer).
    pub(crate) fn put_short_msb(&mut self, w: u16) {
        self.pending.extend_from_slice(&w.to_be_bytes());
    }

    /// `send_bits()`: `length` (1..=16) bits of `value`, LSB first, through the 16-bit buffer.
    pub(crate) fn send_bits(&mut self, value: u32, length: u32) {
        // The shifts are done in 32 bits and cut to 16, as C's int arithmetic does: with 16
        // valid bits the new value contributes nothing to this short.
        let v = value & 0xffff;
        if self.bi_valid > 16 - length {
            self.bi_buf |= (v << self.bi_valid) as u16;
            self.put_short(self.bi_buf);
            self.bi_buf = (v >> (16 - self.bi_valid)) as u16;
            self.bi_valid = self.bi_valid + length - 16;
        } else {
            self.bi_buf |= (v << self.bi_valid) as u16;
            self.bi_valid += length;
        }
    }

    /// `bi_flush()`: write the whole bytes of the bit buffer, keep at most 7 bits.
    pub(crate) fn bi_flush(&mut self) {
        if self.bi_valid == 16 {
            self.put_short(self.bi_buf);
            self.bi_buf = 0;
            self.bi_valid = 0;
        } else if self.bi_valid >= 8 {
            self.put_byte(self.bi_buf as u8);
            self.bi_buf >>= 8;
            self.bi_valid -= 8;
        }
    }

    /// `bi_windup()`: write everything and align on a byte.
    pub(crate) fn bi_windup(&mut self) {
        if self.bi_valid > 8 {
            self.put_short(self.bi_buf);
        } else if self.bi_valid > 0 {
            self.put_byte(self.bi_buf as u8);
        }
        self.bi_buf = 0;
        self.bi_valid = 0;
    }

    /// `flush_pending()`: copy as much pending output as fits into the stream. From Linux 6.3
    /// (the DFLTCC fix "does not write all available bits for Z_NO_FLUSH") it first moves the
    /// bit buffer's whole bytes into the pending bytes (`bi_flush()`); 6.2 and earlier do not.
    pub(crate) fn flush_pending(&mut self, era: KernelEra, strm: &mut Stream<'_>, total_out: &mut u64) {
        if era == KernelEra::Since6_3 {
            self.bi_flush();
        }
        let len = self.pending_len().min(strm.next_out.len());
        if len == 0 {
            return;
        }
        let out = std::mem::take(&mut strm.next_out);
        let (head, rest) = out.split_at_mut(len);
        head.copy_from_slice(&self.pending[self.pending_out..self.pending_out + len]);
        strm.next_out = rest;
        self.pending_out += len;
        *total_out += len as u64;
        if self.pending_out == self.pending.len() {
            self.pending.clear();
            self.pending_out = 0;
        }
    }
}

/// `bi_reverse()`: the first `len` (1..=15) bits of `code`, reversed.
pub(crate) fn bi_reverse(code: u32, len: u32) -> u32 {
    code.reverse_bits() >> (32 - len)
}
