//! Models `lib/zlib_deflate/deflate.c`: the stream state machine (`zlib_deflate()`), the
//! sliding window and hash chains, `longest_match()`, and the two compressors the levels use:
//! `deflate_fast()` (levels 1-3) and `deflate_slow()` (4-9, lazy matching). This is zlib
//! 1.1.3's algorithm as the kernel keeps it: in particular no strings are inserted across a
//! flush (zlib 1.2.5.3's `s->insert`), which is why no userspace zlib writes these bytes.

use crate::deftree::Trees;
use crate::defutil::{Output, MAX_MATCH, MIN_LOOKAHEAD, MIN_MATCH};
use crate::{Error, Flush, KernelEra, Status, Stream};

const W_BITS: usize = 15;
const W_SIZE: usize = 1 << W_BITS;
const W_MASK: usize = W_SIZE - 1;
/// `MAX_MEM_LEVEL` of the kernel's zconf.h (userspace zlib allows 9).
const MEM_LEVEL: usize = 8;
const HASH_BITS: usize = MEM_LEVEL + 7;
const HASH_SIZE: usize = 1 << HASH_BITS;
const HASH_MASK: usize = HASH_SIZE - 1;
const HASH_SHIFT: usize = HASH_BITS.div_ceil(MIN_MATCH);
const MAX_DIST: usize = W_SIZE - MIN_LOOKAHEAD;
const WINDOW_SIZE: usize = 2 * W_SIZE;
const TOO_FAR: usize = 4096;
/// Bytes past the window that `longest_match()` may read (never written, never matter).
const WINDOW_SLACK: usize = 8;
const NIL: usize = 0;
const Z_DEFLATED: u16 = 8;

/// Two window bytes at `at`.
fn u16_at(w: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([w[at], w[at + 1]])
}

/// Eight window bytes at `at`, little-endian (for comparing matches a word at a time).
fn u64_at(w: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(w[at..at + 8].try_into().expect("eight bytes"))
}

/// `configuration_table[]`: good, lazy, nice, chain, and whether the level uses
/// `deflate_slow()`.
const CONFIG: [(usize, usize, usize, usize, bool); 10] = [
    (0, 0, 0, 0, false),
    (4, 4, 8, 4, false),
    (4, 5, 16, 8, false),
    (4, 6, 32, 32, false),
    (4, 4, 16, 16, true),
    (8, 16, 32, 32, true),
    (8, 16, 128, 128, true),
    (8, 32, 128, 256, true),
    (32, 128, 258, 1024, true),
    (32, 258, 258, 4096, true),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Init,
    Busy,
    Finish,
}

/// What [`State::next_position`] found.
enum Position {
    /// A string to match at `strstart`.
    Ready,
    /// Out of input without a flush: return for more.
    NeedMore,
    /// Everything consumed: end the block.
    InputDone,
}

/// `block_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockState {
    NeedMore,
    BlockDone,
    FinishStarted,
    FinishDone,
}

/// `deflate_state` plus the `z_stream` counters.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) era: KernelEra,
    pub(crate) level: i32,
    phase: Phase,
    trailer_written: bool,
    last_flush: i32,
    pub(crate) total_in: u64,
    pub(crate) total_out: u64,
    adler: u32,
    pub(crate) out: Output,
    pub(crate) trees: Trees,
    pub(crate) window: Vec<u8>,
    prev: Box<[u16; W_SIZE]>,
    head: Box<[u16; HASH_SIZE]>,
    ins_h: usize,
    pub(crate) block_start: i64,
    match_length: usize,
    prev_match: usize,
    match_available: bool,
    pub(crate) strstart: usize,
    match_start: usize,
    lookahead: usize,
    prev_length: usize,
    max_chain_length: usize,
    max_lazy_match: usize,
    good_match: usize,
    nice_match: usize,
}

impl State {
    /// Models `zlib_deflateInit2(strm, level, Z_DEFLATED, MAX_WBITS, MAX_MEM_LEVEL,
    /// Z_DEFAULT_STRATEGY)` as `zlib_deflateInit()` calls it.
    pub(crate) fn new(level: i32, era: KernelEra) -> Result<Self, Error> {
        if !(1..=9).contains(&level) {
            return Err(Error::Level(level));
        }
        let lit_bufsize = 1 << (MEM_LEVEL + 6);
        let mut s = State {
            era,
            level,
            phase: Phase::Init,
            trailer_written: false,
            last_flush: 0,
            total_in: 0,
            total_out: 0,
            adler: 1,
            out: Output::new(lit_bufsize * 4),
            trees: Trees::new(lit_bufsize),
            window: vec![0; WINDOW_SIZE + WINDOW_SLACK],
            prev: Box::new([0; W_SIZE]),
            head: Box::new([0; HASH_SIZE]),
            ins_h: 0,
            block_start: 0,
            match_length: 0,
            prev_match: 0,
            match_available: false,
            strstart: 0,
            match_start: 0,
            lookahead: 0,
            prev_length: 0,
            max_chain_length: 0,
            max_lazy_match: 0,
            good_match: 0,
            nice_match: 0,
        };
        s.reset(level)?;
        Ok(s)
    }

    /// Models `zlib_deflateReset()` (with a new level): the stream starts over. The window and
    /// chains are cleared too, which the kernel does not do; its output does not depend on
    /// them (matches are cut to the lookahead), and clearing makes that a fact.
    pub(crate) fn reset(&mut self, level: i32) -> Result<(), Error> {
        if !(1..=9).contains(&level) {
            return Err(Error::Level(level));
        }
        self.level = level;
        self.total_in = 0;
        self.total_out = 0;
        self.out.pending.clear();
        self.out.pending_out = 0;
        self.out.bi_buf = 0;
        self.out.bi_valid = 0;
        self.phase = Phase::Init;
        self.trailer_written = false;
        self.adler = 1;
        self.last_flush = Flush::NoFlush.rank();
        self.trees.tr_init();
        self.window.fill(0);
        self.prev.fill(0);
        self.lm_init();
        Ok(())
    }

    /// Models `lm_init()`.
    fn lm_init(&mut self) {
        self.head.fill(0);
        let (good, lazy, nice, chain, _) = CONFIG[self.level as usize];
        self.max_lazy_match = lazy;
        self.good_match = good;
        self.nice_match = nice;
        self.max_chain_length = chain;
        self.strstart = 0;
        self.block_start = 0;
        self.lookahead = 0;
        self.match_length = MIN_MATCH - 1;
        self.prev_length = MIN_MATCH - 1;
        self.match_available = false;
        self.ins_h = 0;
    }

    fn flush_pending(&mut self, strm: &mut Stream<'_>) {
        self.out.flush_pending(self.era, strm, &mut self.total_out);
    }

    /// Models `zlib_deflate()`.
    pub(crate) fn deflate(&mut self, strm: &mut Stream<'_>, flush: Flush) -> Result<Status, Error> {
        if self.phase == Phase::Finish && flush != Flush::Finish {
            return Err(Error::Stream("deflate called again after Z_FINISH without Z_FINISH"));
        }
        if strm.next_out.is_empty() {
            return Ok(Status::BufError);
        }
        let old_flush = self.last_flush;
        self.last_flush = flush.rank();

        if self.phase == Phase::Init {
            let mut header = (Z_DEFLATED + (((W_BITS - 8) as u16) << 4)) << 8;
            let level_flags = ((self.level - 1) >> 1).min(3) as u16;
            header |= level_flags << 6;
            header += 31 - header % 31;
            self.phase = Phase::Busy;
            self.out.put_short_msb(header);
            self.adler = 1;
        }

        if self.out.pending_len() != 0 {
            self.flush_pending(strm);
            if strm.next_out.is_empty() {
                self.last_flush = -1;
                return Ok(Status::Ok);
            }
        } else if strm.next_in.is_empty() && flush.rank() <= old_flush && flush != Flush::Finish {
            return Ok(Status::BufError);
        }

        if self.phase == Phase::Finish && !strm.next_in.is_empty() {
            return Ok(Status::BufError);
        }

        if !strm.next_in.is_empty() || self.lookahead != 0 || (flush != Flush::NoFlush && self.phase != Phase::Finish) {
            let bstate = if CONFIG[self.level as usize].4 {
                self.deflate_slow(strm, flush)
            } else {
                self.deflate_fast(strm, flush)
            };
            if matches!(bstate, BlockState::FinishStarted | BlockState::FinishDone) {
                self.phase = Phase::Finish;
            }
            if matches!(bstate, BlockState::NeedMore | BlockState::FinishStarted) {
                if strm.next_out.is_empty() {
                    self.last_flush = -1;
                }
                return Ok(Status::Ok);
            }
            if bstate == BlockState::BlockDone {
                // Z_SYNC_FLUSH or Z_FULL_FLUSH: the empty stored block.
                self.tr_stored_block(None, 0, false);
                if flush == Flush::FullFlush {
                    self.head.fill(0);
                }
                self.flush_pending(strm);
                if strm.next_out.is_empty() {
                    self.last_flush = -1;
                    return Ok(Status::Ok);
                }
            }
        }

        if flush != Flush::Finish {
            return Ok(Status::Ok);
        }
        if !self.trailer_written {
            self.out.put_short_msb((self.adler >> 16) as u16);
            self.out.put_short_msb((self.adler & 0xffff) as u16);
        }
        self.flush_pending(strm);
        self.trailer_written = true;
        if self.out.pending_len() == 0 {
            return Ok(Status::StreamEnd);
        }
        Ok(Status::Ok)
    }

    /// Models `read_buf()`: up to `size` input bytes into the window at `at`, with the Adler-32.
    fn read_buf(&mut self, strm: &mut Stream<'_>, at: usize, size: usize) -> usize {
        let len = strm.next_in.len().min(size);
        if len == 0 {
            return 0;
        }
        let (head, rest) = strm.next_in.split_at(len);
        self.adler = crate::adler32(self.adler, head);
        self.window[at..at + len].copy_from_slice(head);
        strm.next_in = rest;
        self.total_in += len as u64;
        len
    }

    /// `UPDATE_HASH()`.
    fn update_hash(h: usize, c: u8) -> usize {
        ((h << HASH_SHIFT) ^ c as usize) & HASH_MASK
    }

    /// `INSERT_STRING()`: insert the string at `pos`, return the previous head of its chain.
    fn insert_string(&mut self, pos: usize) -> usize {
        self.ins_h = Self::update_hash(self.ins_h, self.window[pos + MIN_MATCH - 1]);
        let head = self.head[self.ins_h] as usize;
        self.prev[pos & W_MASK] = head as u16;
        self.head[self.ins_h] = pos as u16;
        head
    }

    /// Models `longest_match()`: the longest match at `strstart` along the chain from
    /// `cur_match`, longer than `prev_length`; never more than the lookahead.
    fn longest_match(&mut self, mut cur_match: usize) -> usize {
        let mut chain_length = self.max_chain_length;
        let scan = self.strstart;
        let mut best_len = self.prev_length;
        let mut nice_match = self.nice_match;
        let limit = if self.strstart > MAX_DIST { self.strstart - MAX_DIST } else { NIL };
        let w = &self.window;
        let strend = scan + MAX_MATCH;
        // The C compares bytes best_len - 1 and best_len, then 0 and 1: the same test on two
        // pairs at once.
        let scan_start = u16_at(w, scan);
        let mut scan_end = u16_at(w, scan + best_len - 1);
        if self.prev_length >= self.good_match {
            chain_length >>= 2;
        }
        if nice_match > self.lookahead {
            nice_match = self.lookahead;
        }
        loop {
            let m = cur_match;
            if u16_at(w, m + best_len - 1) == scan_end && u16_at(w, m) == scan_start {
                // Bytes 2 are equal by the hash; compare from byte 3 up to MAX_MATCH, eight at a
                // time (the window has eight bytes of slack past its end for this).
                let mut len = 3;
                while len < MAX_MATCH {
                    let x = u64_at(w, scan + len) ^ u64_at(w, m + len);
                    if x != 0 {
                        len += (x.trailing_zeros() / 8) as usize;
                        break;
                    }
                    len += 8;
                }
                let len = len.min(MAX_MATCH);
                debug_assert!(scan + len <= strend);
                if len > best_len {
                    self.match_start = cur_match;
                    best_len = len;
                    if len >= nice_match {
                        break;
                    }
                    scan_end = u16_at(w, scan + best_len - 1);
                }
            }
            cur_match = self.prev[cur_match & W_MASK] as usize;
            if cur_match <= limit {
                break;
            }
            chain_length -= 1;
            if chain_length == 0 {
                break;
            }
        }
        best_len.min(self.lookahead)
    }

    /// Models `fill_window()`: slide the window when needed, read input, re-seed the hash.
    fn fill_window(&mut self, strm: &mut Stream<'_>) {
        loop {
            let mut more = WINDOW_SIZE - self.lookahead - self.strstart;
            if self.strstart >= W_SIZE + MAX_DIST {
                self.window.copy_within(W_SIZE..2 * W_SIZE, 0);
                self.match_start = self.match_start.wrapping_sub(W_SIZE);
                self.strstart -= W_SIZE;
                self.block_start -= W_SIZE as i64;
                for p in self.head.iter_mut().chain(self.prev.iter_mut()) {
                    let m = *p as usize;
                    *p = if m >= W_SIZE { (m - W_SIZE) as u16 } else { NIL as u16 };
                }
                more += W_SIZE;
            }
            if strm.next_in.is_empty() {
                return;
            }
            let at = self.strstart + self.lookahead;
            let n = self.read_buf(strm, at, more);
            self.lookahead += n;
            if self.lookahead >= MIN_MATCH {
                self.ins_h = self.window[self.strstart] as usize;
                self.ins_h = Self::update_hash(self.ins_h, self.window[self.strstart + 1]);
            }
            if self.lookahead >= MIN_LOOKAHEAD || strm.next_in.is_empty() {
                return;
            }
        }
    }

    /// `FLUSH_BLOCK_ONLY()`: end the current block and flush what fits.
    fn flush_block_only(&mut self, strm: &mut Stream<'_>, eof: bool) {
        let buf = (self.block_start >= 0).then_some(self.block_start as usize);
        let stored_len = (self.strstart as i64 - self.block_start) as usize;
        self.tr_flush_block(buf, stored_len, eof);
        self.block_start = self.strstart as i64;
        self.flush_pending(strm);
    }

    /// The top of both compressors' loop: keep `MIN_LOOKAHEAD` bytes ahead (`fill_window()`),
    /// then insert the string at `strstart` into its chain, `hash_head` becoming the chain's
    /// previous head (left as it was when fewer than `MIN_MATCH` bytes remain, as in the C).
    fn next_position(&mut self, strm: &mut Stream<'_>, flush: Flush, hash_head: &mut usize) -> Position {
        if self.lookahead < MIN_LOOKAHEAD {
            self.fill_window(strm);
            if self.lookahead < MIN_LOOKAHEAD && flush == Flush::NoFlush {
                return Position::NeedMore;
            }
            if self.lookahead == 0 {
                return Position::InputDone;
            }
        }
        if self.lookahead >= MIN_MATCH {
            *hash_head = self.insert_string(self.strstart);
        }
        Position::Ready
    }

    /// Models `deflate_fast()` (levels 1-3): no lazy matching; the strings of a match are
    /// inserted only if it is at most `max_lazy_match` (`max_insert_length`) long.
    fn deflate_fast(&mut self, strm: &mut Stream<'_>, flush: Flush) -> BlockState {
        let mut hash_head = NIL;
        loop {
            match self.next_position(strm, flush, &mut hash_head) {
                Position::Ready => {}
                Position::NeedMore => return BlockState::NeedMore,
                Position::InputDone => break,
            }
            if hash_head != NIL && self.strstart.wrapping_sub(hash_head) <= MAX_DIST {
                self.match_length = self.longest_match(hash_head);
            }
            let bflush;
            if self.match_length >= MIN_MATCH {
                bflush = self.tr_tally(self.strstart - self.match_start, self.match_length - MIN_MATCH);
                self.lookahead -= self.match_length;
                if self.match_length <= self.max_lazy_match && self.lookahead >= MIN_MATCH {
                    self.match_length -= 1;
                    loop {
                        self.strstart += 1;
                        hash_head = self.insert_string(self.strstart);
                        self.match_length -= 1;
                        if self.match_length == 0 {
                            break;
                        }
                    }
                    self.strstart += 1;
                } else {
                    self.strstart += self.match_length;
                    self.match_length = 0;
                    self.ins_h = self.window[self.strstart] as usize;
                    self.ins_h = Self::update_hash(self.ins_h, self.window[self.strstart + 1]);
                }
            } else {
                bflush = self.tr_tally(0, self.window[self.strstart] as usize);
                self.lookahead -= 1;
                self.strstart += 1;
            }
            if bflush {
                self.flush_block_only(strm, false);
                if strm.next_out.is_empty() {
                    return BlockState::NeedMore;
                }
            }
        }
        self.finish_block(strm, flush)
    }

    /// The end of both compressors: `FLUSH_BLOCK(s, flush == Z_FINISH)` and the block state.
    fn finish_block(&mut self, strm: &mut Stream<'_>, flush: Flush) -> BlockState {
        let eof = flush == Flush::Finish;
        self.flush_block_only(strm, eof);
        if strm.next_out.is_empty() {
            return if eof { BlockState::FinishStarted } else { BlockState::NeedMore };
        }
        if eof {
            BlockState::FinishDone
        } else {
            BlockState::BlockDone
        }
    }

    /// Models `deflate_slow()` (levels 4-9): a match is taken only if the next position has no
    /// longer one; length-3 matches farther than `TOO_FAR` are dropped.
    fn deflate_slow(&mut self, strm: &mut Stream<'_>, flush: Flush) -> BlockState {
        let mut hash_head = NIL;
        loop {
            match self.next_position(strm, flush, &mut hash_head) {
                Position::Ready => {}
                Position::NeedMore => return BlockState::NeedMore,
                Position::InputDone => break,
            }
            self.prev_length = self.match_length;
            self.prev_match = self.match_start;
            self.match_length = MIN_MATCH - 1;
            if hash_head != NIL
                && self.prev_length < self.max_lazy_match
                && self.strstart.wrapping_sub(hash_head) <= MAX_DIST
            {
                self.match_length = self.longest_match(hash_head);
                if self.match_length <= 5
                    && self.match_length == MIN_MATCH
                    && self.strstart.wrapping_sub(self.match_start) > TOO_FAR
                {
                    self.match_length = MIN_MATCH - 1;
                }
            }
            if self.prev_length >= MIN_MATCH && self.match_length <= self.prev_length {
                let max_insert = self.strstart + self.lookahead - MIN_MATCH;
                let bflush = self.tr_tally(self.strstart - 1 - self.prev_match, self.prev_length - MIN_MATCH);
                self.lookahead -= self.prev_length - 1;
                self.prev_length -= 2;
                loop {
                    self.strstart += 1;
                    if self.strstart <= max_insert {
                        hash_head = self.insert_string(self.strstart);
                    }
                    self.prev_length -= 1;
                    if self.prev_length == 0 {
                        break;
                    }
                }
                self.match_available = false;
                self.match_length = MIN_MATCH - 1;
                self.strstart += 1;
                if bflush {
                    self.flush_block_only(strm, false);
                    if strm.next_out.is_empty() {
                        return BlockState::NeedMore;
                    }
                }
            } else if self.match_available {
                if self.tr_tally(0, self.window[self.strstart - 1] as usize) {
                    self.flush_block_only(strm, false);
                }
                self.strstart += 1;
                self.lookahead -= 1;
                if strm.next_out.is_empty() {
                    return BlockState::NeedMore;
                }
            } else {
                self.match_available = true;
                self.strstart += 1;
                self.lookahead -= 1;
            }
        }
        if self.match_available {
            self.tr_tally(0, self.window[self.strstart - 1] as usize);
            self.match_available = false;
        }
        self.finish_block(strm, flush)
    }
}
