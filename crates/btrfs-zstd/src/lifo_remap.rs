//! The zstd compression loop of v1-v4 of the 2022 kmap_local conversion (not merged): it
//! kmaps the output page too, so LIFO forces re-maps; kept to count them.
use crate::*;
use btrfs_compression::Incompressible;

/// The zstd loop of Fabio De Francesco's 2022 kmap_local conversion, v1-v4 (11-16 Jun 2022;
/// v4 was briefly in for-next, never merged):
/// input mapped first (lower slot), output mapped above it with kmap_local as well. An output
/// switch only replaces the top slot, but an input switch while the output page is half full must
/// unmap the output, unmap the input, map the next input and map the same output page again;
/// those re-maps are counted as [`highmem::MapCounters::forced_remaps`]. Produces the same bytes
/// as [`compress_folios`].
pub fn compress_folios_lifo_remap(
    ws: &mut Workspace,
    level: i32,
    ctx: &mut MapCtx,
    args: &CompressArgs<'_>,
    out: &mut FolioVec,
) -> Result<CompressResult> {
    let mem = ctx.mem().clone();
    let input = args.input;
    init_cstream(&mut ws.cctx, level, args.len)?;
    let mut frame = ctx.frame();

    let mut start = args.start;
    let mut len = args.len;
    let mut max_out = args.max_out;
    let mut tot_in = 0usize;
    let mut tot_out = 0usize;
    let mut out_size = alloc_compr_folio(&mem, out, args.out_order, max_out)?.min(max_out);
    let mut out_base = out.len() - out.folios().last().map_or(0, |f| f.size());
    let mut out_pos = 0usize;
    let mut remap_out = false;

    'input: loop {
        let mut in_map = frame.map(input, start, len)?;
        let cur_len = in_map.len();
        let mut in_pos = 0usize;
        let (src, mut above) = in_map.split();
        'out: loop {
            // Map (the rest of) the current output folio above the input page.
            if remap_out {
                above.ctx().note_forced_remap();
                remap_out = false;
            }
            let mut out_map = above.map_mut(out, out_base + out_pos, out_size - out_pos)?;
            let win = out_map.len();
            let mut win_pos = 0usize;
            loop {
                let (consumed, produced) = {
                    out_map.ctx().note_library_call(cur_len - in_pos);
                    let mut ob = OutBuffer::around_pos(&mut out_map[..], win_pos);
                    let mut ib = InBuffer { src: &src[..cur_len], pos: in_pos };
                    ws.cctx.compress_stream2(&mut ob, &mut ib, zstd_sys_continue()).map_err(lib_err)?;
                    (ib.pos - in_pos, ob.pos() - win_pos)
                };
                in_pos += consumed;
                win_pos += produced;
                out_pos += produced;
                if tot_in + in_pos > EARLY_BAIL_INPUT && tot_in + in_pos < tot_out + out_pos {
                    return Err(Error::Incompressible(Incompressible::EarlyBail));
                }
                if out_pos >= max_out {
                    return Err(Error::Incompressible(Incompressible::OutOfOutput));
                }
                if out_pos == out_size {
                    // Output switch: only the top slot changes.
                    drop(out_map);
                    tot_out += out_size;
                    max_out -= out_size;
                    out_size = alloc_compr_folio(&mem, out, args.out_order, out.len() + max_out)?.min(max_out);
                    out_base = out.len() - out.folios().last().map_or(0, |f| f.size());
                    out_pos = 0;
                    if in_pos >= len {
                        tot_in += in_pos;
                        break 'input;
                    }
                    if in_pos == cur_len {
                        // v4 checks the output switch first: the new output page is mapped at
                        // once, then the input switch must unmap it (LIFO) and map it again
                        // above the next input page.
                        drop(above.map_mut(out, out_base, out_size)?);
                        remap_out = true;
                        tot_in += cur_len;
                        start += cur_len;
                        len -= cur_len;
                        continue 'input;
                    }
                    continue 'out;
                }
                if in_pos >= len {
                    tot_in += in_pos;
                    break 'input;
                }
                if in_pos == cur_len {
                    // Input switch with the output page half full: LIFO forces unmapping the
                    // output first, then the input; the output page is mapped again afterwards.
                    tot_in += cur_len;
                    start += cur_len;
                    len -= cur_len;
                    remap_out = true;
                    continue 'input;
                }
                if win_pos == win {
                    // The strategy mapped less than the rest of the folio: map the next piece.
                    continue 'out;
                }
            }
        }
    }
    // End of stream: the output page is mapped alone.
    let mut frame = ctx.frame();
    loop {
        let remaining = {
            let mut out_map = frame.map_mut(out, out_base + out_pos, out_size - out_pos)?;
            let dst: &mut [u8] = &mut out_map;
            let mut ob = OutBuffer::around(dst);
            let r = ws.cctx.end_stream(&mut ob).map_err(lib_err)?;
            out_pos += ob.pos();
            r
        };
        if remaining == 0 {
            tot_out += out_pos;
            break;
        }
        if out_pos >= max_out {
            return Err(Error::Incompressible(Incompressible::OutOfOutput));
        }
        if out_pos < out_size {
            continue; // the strategy mapped only part of the page
        }
        tot_out += out_size;
        max_out -= out_size;
        out_size = alloc_compr_folio(&mem, out, args.out_order, out.len() + max_out)?.min(max_out);
        out_base = out.len() - out.folios().last().map_or(0, |f| f.size());
        out_pos = 0;
    }
    if tot_out >= tot_in {
        return Err(Error::Incompressible(Incompressible::NotSmaller));
    }
    Ok(CompressResult { total_in: tot_in, total_out: tot_out })
}
