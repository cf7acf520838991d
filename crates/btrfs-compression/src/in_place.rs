//! Our in-place decompression driver, shared by zlib and zstd (the kernel has no such loop: it
//! decodes into a workspace buffer and copies with `btrfs_decompress_buf2page()`). The input is
//! mapped a page (or folio) at a time; output before the wanted range goes through a scratch
//! buffer and is dropped; the wanted range is decoded straight into the destination pages, each
//! mapped while the library writes it. When the input runs out with a destination page half
//! full, that page must be mapped again above the new input mapping (LIFO), which is counted as
//! a forced re-map.

use crate::{CompressedBio, DestRange, Error, Result};
use highmem::MapCtx;

/// What one library call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Output bytes produced.
    pub produced: usize,
    /// The stream ended.
    pub end: bool,
}

/// A streaming decoder the driver calls: one library call from `src` into `dst`.
pub trait StreamDecoder {
    /// Decode from `src` into `dst`.
    fn step(&mut self, src: &[u8], dst: &mut [u8]) -> Result<Step>;
    /// The error for a call that made no progress with input left and room for output.
    fn stuck(&self) -> Error;
}

/// Decode `cb` into `dest` in place, the input starting `skip` bytes in (a header already
/// read). Returns whether the stream ended; the caller zeroes the rest of `dest`
/// ([`DestRange::zero_rest`]) or calls a short stream an error.
pub fn decompress_in_place(
    dec: &mut impl StreamDecoder,
    scratch: &mut [u8],
    skip: usize,
    ctx: &mut MapCtx,
    cb: &CompressedBio,
    dest: &mut DestRange,
) -> Result<bool> {
    let mut frame = ctx.frame();
    let total_in = cb.compressed_len;
    let mut in_off = 0usize;
    let mut in_pos_start = skip;
    let mut total_out = 0usize;
    let mut remap_dest = false;
    let mut ended = false;
    'input: loop {
        let mut in_map = frame.map(&cb.folios, in_off, total_in - in_off)?;
        let in_size = in_map.len();
        let mut in_pos = in_pos_start.min(in_size);
        in_pos_start = 0;
        let (src, mut above) = in_map.split();
        let src = &src[..in_size];
        // Output before the wanted range: through the scratch buffer, dropped.
        while total_out < dest.start {
            let want = (dest.start - total_out).min(scratch.len());
            above.ctx().note_library_call(want);
            let s = dec.step(&src[in_pos..], &mut scratch[..want])?;
            in_pos += s.consumed;
            total_out += s.produced;
            if s.end {
                ended = true;
                break 'input;
            }
            if in_pos == in_size {
                if in_off + in_size >= total_in {
                    break 'input;
                }
                in_off += in_size;
                continue 'input;
            }
            if s.consumed == 0 && s.produced == 0 {
                return Err(dec.stuck());
            }
        }
        'dest: loop {
            if dest.is_full() {
                break 'input;
            }
            if remap_dest {
                above.ctx().note_forced_remap();
                remap_dest = false;
            }
            let at = dest.filled();
            let want = dest.len - at;
            let mut m = above.map_mut(&mut dest.pages, at, want)?;
            let win = m.len();
            let mut pos = 0usize;
            loop {
                m.ctx().note_library_call(win - pos);
                let s = dec.step(&src[in_pos..], &mut m[pos..])?;
                in_pos += s.consumed;
                pos += s.produced;
                total_out += s.produced;
                let stalled = s.consumed == 0 && s.produced == 0;
                if s.end || pos == win || in_pos == in_size || stalled {
                    drop(m);
                    dest.advance(pos);
                    if s.end {
                        ended = true;
                        break 'input;
                    }
                    if pos == win {
                        continue 'dest; // next destination piece (top slot only)
                    }
                    if in_pos < in_size {
                        return Err(dec.stuck());
                    }
                    // Input exhausted with the destination page half full.
                    if in_off + in_size >= total_in {
                        break 'input;
                    }
                    in_off += in_size;
                    remap_dest = !dest.is_full();
                    continue 'input;
                }
            }
        }
    }
    Ok(ended)
}
