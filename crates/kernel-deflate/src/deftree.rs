//! Models `lib/zlib_deflate/deftree.c` (zlib 1.1.3's trees.c as the kernel carries it): the
//! static tables, tallying, Huffman tree construction and the choice of stored, fixed or dynamic
//! block. The kernel's version has no `_tr_flush_bits`, no `Z_FIXED` and the 1.1.3 block
//! heuristic (`(opt_len + 3 + 7) >> 3`).

use std::sync::OnceLock;

use crate::deflate::State;
use crate::defutil::{
    bi_reverse, CtData, BL_CODES, D_CODES, HEAP_SIZE, LENGTH_CODES, LITERALS, L_CODES, MAX_BITS, MAX_MATCH, MIN_MATCH,
};

const MAX_BL_BITS: usize = 7;
const END_BLOCK: usize = 256;
const REP_3_6: usize = 16;
const REPZ_3_10: usize = 17;
const REPZ_11_138: usize = 18;
const STORED_BLOCK: u32 = 0;
const STATIC_TREES: u32 = 1;
const DYN_TREES: u32 = 2;
const SMALLEST: usize = 1;

const EXTRA_LBITS: [u8; LENGTH_CODES] =
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const EXTRA_DBITS: [u8; D_CODES] =
    [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const EXTRA_BLBITS: [u8; BL_CODES] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7];
/// The order in which bit-length code lengths are sent (`bl_order`).
const BL_ORDER: [u8; BL_CODES] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// The tables `tr_static_init()` computes once.
struct Static {
    ltree: [CtData; L_CODES + 2],
    dtree: [CtData; D_CODES],
    dist_code: [u8; 512],
    length_code: [u8; MAX_MATCH - MIN_MATCH + 1],
    base_length: [u16; LENGTH_CODES],
    base_dist: [u16; D_CODES],
}

/// Models `tr_static_init()` (the index loops follow the C: codes and table slots advance
/// together).
#[allow(clippy::needless_range_loop)]
fn tables() -> &'static Static {
    static T: OnceLock<Static> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Static {
            ltree: [CtData::default(); L_CODES + 2],
            dtree: [CtData::default(); D_CODES],
            dist_code: [0; 512],
            length_code: [0; MAX_MATCH - MIN_MATCH + 1],
            base_length: [0; LENGTH_CODES],
            base_dist: [0; D_CODES],
        };
        let mut length = 0usize;
        for code in 0..LENGTH_CODES - 1 {
            t.base_length[code] = length as u16;
            for _ in 0..1usize << EXTRA_LBITS[code] {
                t.length_code[length] = code as u8;
                length += 1;
            }
        }
        // Length 258 can be coded as 284 + 5 bits or as 285: the table uses 285.
        t.length_code[length - 1] = (LENGTH_CODES - 1) as u8;
        let mut dist = 0usize;
        for code in 0..16 {
            t.base_dist[code] = dist as u16;
            for _ in 0..1usize << EXTRA_DBITS[code] {
                t.dist_code[dist] = code as u8;
                dist += 1;
            }
        }
        dist >>= 7;
        for code in 16..D_CODES {
            t.base_dist[code] = (dist << 7) as u16;
            for _ in 0..1usize << (EXTRA_DBITS[code] - 7) {
                t.dist_code[256 + dist] = code as u8;
                dist += 1;
            }
        }
        let mut bl_count = [0u16; MAX_BITS + 1];
        for (n, e) in t.ltree.iter_mut().enumerate() {
            let len = match n {
                0..=143 => 8,
                144..=255 => 9,
                256..=279 => 7,
                _ => 8,
            };
            e.dl = len;
            bl_count[len as usize] += 1;
        }
        gen_codes(&mut t.ltree, L_CODES + 1, &bl_count);
        for (n, e) in t.dtree.iter_mut().enumerate() {
            e.dl = 5;
            e.fc = bi_reverse(n as u32, 5) as u16;
        }
        t
    })
}

/// `d_code()`: the distance code of `dist` (distance - 1).
fn d_code(t: &Static, dist: usize) -> usize {
    if dist < 256 {
        t.dist_code[dist] as usize
    } else {
        t.dist_code[256 + (dist >> 7)] as usize
    }
}

/// Which tree a descriptor describes (`tree_desc` with its `static_tree_desc`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tree {
    Lit,
    Dist,
    BitLen,
}

impl Tree {
    fn extra(self) -> &'static [u8] {
        match self {
            Tree::Lit => &EXTRA_LBITS,
            Tree::Dist => &EXTRA_DBITS,
            Tree::BitLen => &EXTRA_BLBITS,
        }
    }
    fn extra_base(self) -> usize {
        if self == Tree::Lit {
            LITERALS + 1
        } else {
            0
        }
    }
    fn elems(self) -> usize {
        match self {
            Tree::Lit => L_CODES,
            Tree::Dist => D_CODES,
            Tree::BitLen => BL_CODES,
        }
    }
    fn max_length(self) -> usize {
        if self == Tree::BitLen {
            MAX_BL_BITS
        } else {
            MAX_BITS
        }
    }
    fn stat(self) -> Option<&'static [CtData]> {
        match self {
            Tree::Lit => Some(&tables().ltree),
            Tree::Dist => Some(&tables().dtree),
            Tree::BitLen => None,
        }
    }
}

/// The Huffman-tree state of `deflate_state` (trees, heap, depth, counts, symbol buffers).
#[derive(Debug)]
pub(crate) struct Trees {
    pub(crate) dyn_ltree: Vec<CtData>,
    pub(crate) dyn_dtree: Vec<CtData>,
    pub(crate) bl_tree: Vec<CtData>,
    l_max_code: usize,
    d_max_code: usize,
    bl_count: [u16; MAX_BITS + 1],
    heap: [usize; HEAP_SIZE],
    heap_len: usize,
    heap_max: usize,
    depth: [u8; HEAP_SIZE],
    /// `(freq << 8) | depth` of each node: the order `smaller()` compares, in one word.
    key: [u32; HEAP_SIZE],
    pub(crate) l_buf: Vec<u8>,
    pub(crate) d_buf: Vec<u16>,
    pub(crate) last_lit: usize,
    pub(crate) lit_bufsize: usize,
    opt_len: u64,
    static_len: u64,
    matches: usize,
}

impl Trees {
    pub(crate) fn new(lit_bufsize: usize) -> Self {
        Self {
            dyn_ltree: vec![CtData::default(); HEAP_SIZE],
            dyn_dtree: vec![CtData::default(); 2 * D_CODES + 1],
            bl_tree: vec![CtData::default(); 2 * BL_CODES + 1],
            l_max_code: 0,
            d_max_code: 0,
            bl_count: [0; MAX_BITS + 1],
            heap: [0; HEAP_SIZE],
            heap_len: 0,
            heap_max: 0,
            depth: [0; HEAP_SIZE],
            key: [0; HEAP_SIZE],
            l_buf: vec![0; lit_bufsize],
            d_buf: vec![0; lit_bufsize],
            last_lit: 0,
            lit_bufsize,
            opt_len: 0,
            static_len: 0,
            matches: 0,
        }
    }

    /// Models `init_block()`.
    fn init_block(&mut self) {
        for e in self.dyn_ltree[..L_CODES].iter_mut() {
            e.fc = 0;
        }
        for e in self.dyn_dtree[..D_CODES].iter_mut() {
            e.fc = 0;
        }
        for e in self.bl_tree[..BL_CODES].iter_mut() {
            e.fc = 0;
        }
        self.dyn_ltree[END_BLOCK].fc = 1;
        self.opt_len = 0;
        self.static_len = 0;
        self.last_lit = 0;
        self.matches = 0;
    }

    /// Models `zlib_tr_init()` (the bit buffer is reset by the caller).
    pub(crate) fn tr_init(&mut self) {
        tables();
        self.init_block();
    }

    /// Set a node's frequency and depth (and its heap key).
    fn set_node(&mut self, tree: &mut [CtData], n: usize, freq: u16, depth: u8) {
        tree[n].fc = freq;
        self.depth[n] = depth;
        self.key[n] = u32::from(freq) << 8 | u32::from(depth);
    }

    /// `smaller()`: frequency, then depth as the tie-break (`<=`): the lexicographic order of
    /// `(freq, depth)`, which is the order of the keys.
    fn smaller(&self, n: usize, m: usize) -> bool {
        self.key[n] <= self.key[m]
    }

    /// Models `pqdownheap()`.
    fn pqdownheap(&mut self, mut k: usize) {
        let v = self.heap[k];
        let mut j = k << 1;
        while j <= self.heap_len {
            if j < self.heap_len && self.smaller(self.heap[j + 1], self.heap[j]) {
                j += 1;
            }
            if self.smaller(v, self.heap[j]) {
                break;
            }
            self.heap[k] = self.heap[j];
            k = j;
            j <<= 1;
        }
        self.heap[k] = v;
    }

    /// Models `gen_bitlen()`, with the overflow fix-up for lengths above the maximum.
    fn gen_bitlen(&mut self, tree: &mut [CtData], kind: Tree, max_code: usize) {
        let stree = kind.stat();
        let extra = kind.extra();
        let base = kind.extra_base();
        let max_length = kind.max_length();
        self.bl_count = [0; MAX_BITS + 1];
        tree[self.heap[self.heap_max]].dl = 0;
        let mut overflow = 0i32;
        for h in self.heap_max + 1..HEAP_SIZE {
            let n = self.heap[h];
            let mut bits = tree[tree[n].dl as usize].dl as usize + 1;
            if bits > max_length {
                bits = max_length;
                overflow += 1;
            }
            tree[n].dl = bits as u16;
            if n > max_code {
                continue; // not a leaf
            }
            self.bl_count[bits] += 1;
            let xbits = if n >= base { extra[n - base] as u64 } else { 0 };
            let f = tree[n].freq() as u64;
            self.opt_len = self.opt_len.wrapping_add(f * (bits as u64 + xbits));
            if let Some(st) = stree {
                self.static_len = self.static_len.wrapping_add(f * (st[n].len() as u64 + xbits));
            }
        }
        if overflow == 0 {
            return;
        }
        loop {
            let mut bits = max_length - 1;
            while self.bl_count[bits] == 0 {
                bits -= 1;
            }
            self.bl_count[bits] -= 1;
            self.bl_count[bits + 1] += 2;
            self.bl_count[max_length] -= 1;
            overflow -= 2;
            if overflow <= 0 {
                break;
            }
        }
        let mut h = HEAP_SIZE;
        for bits in (1..=max_length).rev() {
            let mut n = self.bl_count[bits];
            while n != 0 {
                h -= 1;
                let m = self.heap[h];
                if m > max_code {
                    continue;
                }
                if tree[m].len() as usize != bits {
                    let delta = (bits as i64 - tree[m].len() as i64) * tree[m].freq() as i64;
                    self.opt_len = self.opt_len.wrapping_add(delta as u64);
                    tree[m].dl = bits as u16;
                }
                n -= 1;
            }
        }
    }

    /// Models `build_tree()`: the tree of `kind`, its lengths and codes; returns `max_code`.
    fn build_tree(&mut self, tree: &mut [CtData], kind: Tree) -> usize {
        let stree = kind.stat();
        let elems = kind.elems();
        let mut max_code: isize = -1;
        self.heap_len = 0;
        self.heap_max = HEAP_SIZE;
        for n in 0..elems {
            let f = tree[n].freq();
            if f != 0 {
                self.heap_len += 1;
                self.heap[self.heap_len] = n;
                max_code = n as isize;
                self.set_node(tree, n, f, 0);
            } else {
                tree[n].dl = 0;
            }
        }
        // At least two codes of non-zero frequency.
        while self.heap_len < 2 {
            let node = if max_code < 2 {
                max_code += 1;
                max_code as usize
            } else {
                0
            };
            self.heap_len += 1;
            self.heap[self.heap_len] = node;
            self.set_node(tree, node, 1, 0);
            self.opt_len = self.opt_len.wrapping_sub(1);
            if let Some(st) = stree {
                self.static_len = self.static_len.wrapping_sub(st[node].len() as u64);
            }
        }
        let max_code = max_code as usize;
        for n in (1..=self.heap_len / 2).rev() {
            self.pqdownheap(n);
        }
        let mut node = elems;
        loop {
            // pqremove
            let n = self.heap[SMALLEST];
            self.heap[SMALLEST] = self.heap[self.heap_len];
            self.heap_len -= 1;
            self.pqdownheap(SMALLEST);
            let m = self.heap[SMALLEST];
            self.heap_max -= 1;
            self.heap[self.heap_max] = n;
            self.heap_max -= 1;
            self.heap[self.heap_max] = m;
            let (f, d) = (tree[n].freq().wrapping_add(tree[m].freq()), self.depth[n].max(self.depth[m]) + 1);
            self.set_node(tree, node, f, d);
            tree[n].dl = node as u16;
            tree[m].dl = node as u16;
            self.heap[SMALLEST] = node;
            node += 1;
            self.pqdownheap(SMALLEST);
            if self.heap_len < 2 {
                break;
            }
        }
        self.heap_max -= 1;
        self.heap[self.heap_max] = self.heap[SMALLEST];
        self.gen_bitlen(tree, kind, max_code);
        gen_codes(tree, max_code, &self.bl_count);
        max_code
    }

    /// Models `scan_tree()`: bit-length code frequencies of a tree's lengths.
    fn scan_tree(&mut self, tree: &mut [CtData], max_code: usize) {
        tree[max_code + 1].dl = 0xffff; // guard
        let bl = &mut self.bl_tree;
        length_runs(tree, max_code, |run| match run {
            LenRun::Plain { len, count } => bl[len].fc += count as u16,
            LenRun::Repeat { len, with_first, .. } => {
                if with_first {
                    bl[len].fc += 1;
                }
                bl[REP_3_6].fc += 1;
            }
            LenRun::Zeros { count } if count <= 10 => bl[REPZ_3_10].fc += 1,
            LenRun::Zeros { .. } => bl[REPZ_11_138].fc += 1,
        });
    }

    /// Models `build_bl_tree()`: returns the index in `bl_order` of the last code to send.
    fn build_bl_tree(&mut self) -> usize {
        let mut l = std::mem::take(&mut self.dyn_ltree);
        let mut d = std::mem::take(&mut self.dyn_dtree);
        self.scan_tree(&mut l, self.l_max_code);
        self.scan_tree(&mut d, self.d_max_code);
        self.dyn_ltree = l;
        self.dyn_dtree = d;
        let mut bl = std::mem::take(&mut self.bl_tree);
        self.build_tree(&mut bl, Tree::BitLen);
        self.bl_tree = bl;
        let mut max_blindex = BL_CODES - 1;
        while max_blindex >= 3 {
            if self.bl_tree[BL_ORDER[max_blindex] as usize].len() != 0 {
                break;
            }
            max_blindex -= 1;
        }
        self.opt_len = self.opt_len.wrapping_add(3 * (max_blindex as u64 + 1) + 5 + 5 + 4);
        max_blindex
    }
}

/// One step of the run-length coding of a tree's code lengths, as `scan_tree()` counts it and
/// `send_tree()` sends it.
enum LenRun {
    /// `count` codes of `len`, each sent as itself.
    Plain { len: usize, count: usize },
    /// `count` codes of a non-zero `len` (3 to 6 after the first, which is sent first when it
    /// differs from the previous length): code 16.
    Repeat { len: usize, with_first: bool, count: usize },
    /// `count` zero lengths: code 17 (3 to 10) or 18 (11 to 138).
    Zeros { count: usize },
}

/// The run walk shared by `scan_tree()` and `send_tree()` (the C duplicates it): lengths of
/// `tree[0..=max_code]`, with the guard at `max_code + 1` set by the caller.
fn length_runs(tree: &[CtData], max_code: usize, mut f: impl FnMut(LenRun)) {
    let mut prevlen: i32 = -1;
    let mut nextlen = tree[0].len() as i32;
    let mut count = 0usize;
    let (mut max_count, mut min_count) = if nextlen == 0 { (138, 3) } else { (7, 4) };
    for n in 0..=max_code {
        let curlen = nextlen;
        nextlen = tree[n + 1].len() as i32;
        count += 1;
        if count < max_count && curlen == nextlen {
            continue;
        } else if count < min_count {
            f(LenRun::Plain { len: curlen as usize, count });
        } else if curlen != 0 {
            f(LenRun::Repeat { len: curlen as usize, with_first: curlen != prevlen, count });
        } else {
            f(LenRun::Zeros { count });
        }
        count = 0;
        prevlen = curlen;
        (max_count, min_count) = if nextlen == 0 {
            (138, 3)
        } else if curlen == nextlen {
            (6, 3)
        } else {
            (7, 4)
        };
    }
}

/// Models `gen_codes()`: canonical codes from the bit lengths, bit-reversed for sending.
fn gen_codes(tree: &mut [CtData], max_code: usize, bl_count: &[u16; MAX_BITS + 1]) {
    let mut next_code = [0u16; MAX_BITS + 1];
    let mut code = 0u16;
    for bits in 1..=MAX_BITS {
        code = (code.wrapping_add(bl_count[bits - 1])) << 1;
        next_code[bits] = code;
    }
    for e in tree.iter_mut().take(max_code + 1) {
        let len = e.len() as usize;
        if len == 0 {
            continue;
        }
        e.fc = bi_reverse(next_code[len] as u32, len as u32) as u16;
        next_code[len] = next_code[len].wrapping_add(1);
    }
}

impl State {
    /// Models `send_tree()`: a tree's lengths in compressed form, with the bit-length codes
    /// (the guard `scan_tree()` set is still in place).
    fn send_tree(&mut self, which: Tree, max_code: usize) {
        let tree = if which == Tree::Lit { &self.trees.dyn_ltree } else { &self.trees.dyn_dtree };
        let bl = &self.trees.bl_tree;
        let out = &mut self.out;
        let send_code =
            |out: &mut crate::defutil::Output, c: usize| out.send_bits(bl[c].code() as u32, bl[c].len() as u32);
        length_runs(tree, max_code, |run| match run {
            LenRun::Plain { len, count } => (0..count).for_each(|_| send_code(out, len)),
            LenRun::Repeat { len, with_first, mut count } => {
                if with_first {
                    send_code(out, len);
                    count -= 1;
                }
                send_code(out, REP_3_6);
                out.send_bits(count as u32 - 3, 2);
            }
            LenRun::Zeros { count } if count <= 10 => {
                send_code(out, REPZ_3_10);
                out.send_bits(count as u32 - 3, 3);
            }
            LenRun::Zeros { count } => {
                send_code(out, REPZ_11_138);
                out.send_bits(count as u32 - 11, 7);
            }
        });
    }

    /// Models `send_all_trees()`.
    fn send_all_trees(&mut self, lcodes: usize, dcodes: usize, blcodes: usize) {
        self.out.send_bits(lcodes as u32 - 257, 5);
        self.out.send_bits(dcodes as u32 - 1, 5);
        self.out.send_bits(blcodes as u32 - 4, 4);
        for &o in BL_ORDER.iter().take(blcodes) {
            let len = self.trees.bl_tree[o as usize].len();
            self.out.send_bits(len as u32, 3);
        }
        self.send_tree(Tree::Lit, lcodes - 1);
        self.send_tree(Tree::Dist, dcodes - 1);
    }

    /// Models `zlib_tr_stored_block()` and `copy_block()`: a stored block of
    /// `window[buf..buf + len]` (nothing for the empty marker block of a sync flush).
    pub(crate) fn tr_stored_block(&mut self, buf: Option<usize>, stored_len: usize, eof: bool) {
        self.out.send_bits((STORED_BLOCK << 1) + u32::from(eof), 3);
        self.out.bi_windup();
        self.out.put_short(stored_len as u16);
        self.out.put_short(!(stored_len as u16));
        if let Some(b) = buf {
            self.out.pending.extend_from_slice(&self.window[b..b + stored_len]);
        }
    }

    /// Models `compress_block()`: the tallied symbols with the given trees.
    fn compress_block(&mut self, dynamic: bool) {
        let t = tables();
        let (ltree, dtree): (&[CtData], &[CtData]) =
            if dynamic { (&self.trees.dyn_ltree, &self.trees.dyn_dtree) } else { (&t.ltree, &t.dtree) };
        let out = &mut self.out;
        for lx in 0..self.trees.last_lit {
            let dist = self.trees.d_buf[lx] as usize;
            let lc = self.trees.l_buf[lx] as usize;
            if dist == 0 {
                out.send_bits(ltree[lc].code() as u32, ltree[lc].len() as u32);
            } else {
                let code = t.length_code[lc] as usize;
                let c = code + LITERALS + 1;
                out.send_bits(ltree[c].code() as u32, ltree[c].len() as u32);
                let extra = EXTRA_LBITS[code] as u32;
                if extra != 0 {
                    out.send_bits((lc - t.base_length[code] as usize) as u32, extra);
                }
                let dist = dist - 1;
                let code = d_code(t, dist);
                out.send_bits(dtree[code].code() as u32, dtree[code].len() as u32);
                let extra = EXTRA_DBITS[code] as u32;
                if extra != 0 {
                    out.send_bits((dist - t.base_dist[code] as usize) as u32, extra);
                }
            }
        }
        out.send_bits(ltree[END_BLOCK].code() as u32, ltree[END_BLOCK].len() as u32);
    }

    /// Models `zlib_tr_flush_block()`: end the block as stored, fixed or dynamic, whichever is
    /// smallest by the 1.1.3 rules (stored if `stored_len + 4 <= opt_lenb` and the data is
    /// still in the window; fixed if its size equals the best).
    pub(crate) fn tr_flush_block(&mut self, buf: Option<usize>, stored_len: usize, eof: bool) {
        let tr = &mut self.trees;
        let mut l = std::mem::take(&mut tr.dyn_ltree);
        tr.l_max_code = tr.build_tree(&mut l, Tree::Lit);
        tr.dyn_ltree = l;
        let mut d = std::mem::take(&mut tr.dyn_dtree);
        tr.d_max_code = tr.build_tree(&mut d, Tree::Dist);
        tr.dyn_dtree = d;
        let max_blindex = tr.build_bl_tree();
        let mut opt_lenb = tr.opt_len.wrapping_add(3 + 7) >> 3;
        let static_lenb = tr.static_len.wrapping_add(3 + 7) >> 3;
        if static_lenb <= opt_lenb {
            opt_lenb = static_lenb;
        }
        if stored_len as u64 + 4 <= opt_lenb && buf.is_some() {
            self.tr_stored_block(buf, stored_len, eof);
        } else if static_lenb == opt_lenb {
            self.out.send_bits((STATIC_TREES << 1) + u32::from(eof), 3);
            self.compress_block(false);
        } else {
            self.out.send_bits((DYN_TREES << 1) + u32::from(eof), 3);
            let (lc, dc) = (self.trees.l_max_code + 1, self.trees.d_max_code + 1);
            self.send_all_trees(lc, dc, max_blindex + 1);
            self.compress_block(true);
        }
        self.trees.init_block();
        if eof {
            self.out.bi_windup();
        }
    }

    /// Models `zlib_tr_tally()`: record a literal (`dist == 0`) or a match; true when the block
    /// should end (the literal buffer is full, or the 1.1.3 guess that stopping pays, tried
    /// every 4096 symbols above level 2).
    pub(crate) fn tr_tally(&mut self, dist: usize, lc: usize) -> bool {
        let t = tables();
        let tr = &mut self.trees;
        tr.d_buf[tr.last_lit] = dist as u16;
        tr.l_buf[tr.last_lit] = lc as u8;
        tr.last_lit += 1;
        if dist == 0 {
            tr.dyn_ltree[lc].fc = tr.dyn_ltree[lc].fc.wrapping_add(1);
        } else {
            tr.matches += 1;
            let dist = dist - 1;
            let lcode = t.length_code[lc] as usize + LITERALS + 1;
            tr.dyn_ltree[lcode].fc = tr.dyn_ltree[lcode].fc.wrapping_add(1);
            let dcode = d_code(t, dist);
            tr.dyn_dtree[dcode].fc = tr.dyn_dtree[dcode].fc.wrapping_add(1);
        }
        if tr.last_lit & 0xfff == 0 && self.level > 2 {
            let mut out_length = tr.last_lit as u64 * 8;
            let in_length = (self.strstart as i64 - self.block_start) as u64;
            for (dcode, e) in tr.dyn_dtree.iter().take(D_CODES).enumerate() {
                out_length += e.freq() as u64 * (5 + EXTRA_DBITS[dcode] as u64);
            }
            out_length >>= 3;
            if tr.matches < tr.last_lit / 2 && out_length < in_length / 2 {
                return true;
            }
        }
        tr.last_lit == tr.lit_bufsize - 1
    }
}
