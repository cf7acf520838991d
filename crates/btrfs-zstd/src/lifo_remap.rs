//! The zstd compression loop of v1-v4 of the 2022 kmap_local conversion (not merged): it
//! kmaps the output page too, so LIFO forces re-maps; kept to count them.
use crate::*;
use btrfs_compression::{Incompressible, OutCursor};

/// The zstd loop of Fabio De Francesco's 2022 kmap_local conversion, v1-v4 (11-16 Jun 2022;
/// v4 was briefly in for-next, never merged):
/// input mapped first (lower slot), output mapped above it with kmap_local as well. An output
/// switch only replaces the top slot, but an input switch while the output page is half full must
/// unmap the output, unmap the input, map the next input and map the same output page again;
/// those re-maps are counted as [`highmem::MapCounters::forced_remaps`]. Produces the same bytes
/// as [`Zstd::compress_folios`](crate::Zstd).
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

    let (mut start, mut len, mut tot_in) = (args.start, args.len, 0usize);
    let mut cur = OutCursor::new(&mem, out, args.out_order, args.max_out)?;
    let max_out = cur.max_out();
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
            let (at, room) = cur.position();
            let mut out_map = above.map_mut(cur.folios(), at, room)?;
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
                let tot_out = at + win_pos;
                give_up(tot_in + in_pos, tot_out, tot_out >= max_out)?;
                if win_pos == room {
                    // Output switch: only the top slot changes.
                    drop(out_map);
                    cur.advance(win_pos);
                    cur.next_folio()?;
                    if in_pos >= len {
                        tot_in += in_pos;
                        break 'input;
                    }
                    if in_pos == cur_len {
                        // v4 checks the output switch first: the new output page is mapped at
                        // once, then the input switch must unmap it (LIFO) and map it again
                        // above the next input page.
                        let (at, room) = cur.position();
                        drop(above.map_mut(cur.folios(), at, room)?);
                        remap_out = true;
                        tot_in += cur_len;
                        start += cur_len;
                        len -= cur_len;
                        continue 'input;
                    }
                    continue 'out;
                }
                if in_pos >= len {
                    drop(out_map);
                    cur.advance(win_pos);
                    tot_in += in_pos;
                    break 'input;
                }
                if in_pos == cur_len {
                    // Input switch with the output page half full: LIFO forces unmapping the
                    // output first, then the input; the output page is mapped again afterwards.
                    drop(out_map);
                    cur.advance(win_pos);
                    tot_in += cur_len;
                    start += cur_len;
                    len -= cur_len;
                    remap_out = true;
                    continue 'input;
                }
                if win_pos == win {
                    // The strategy mapped less than the rest of the folio: map the next piece.
                    drop(out_map);
                    cur.advance(win_pos);
                    continue 'out;
                }
            }
        }
    }
    end_stream_mapped(ws, ctx, &mut cur)?;
    let tot_out = cur.tot_out();
    if tot_out >= tot_in {
        return Err(Error::Incompressible(Incompressible::NotSmaller));
    }
    Ok(CompressResult { total_in: tot_in, total_out: tot_out })
}

/// The end of the stream in the 2022 loop: `zstd_end_stream()` into the output page mapped
/// alone, adding output folios as needed.
fn end_stream_mapped(ws: &mut Workspace, ctx: &mut MapCtx, cur: &mut OutCursor<'_>) -> Result<()> {
    let mut frame = ctx.frame();
    loop {
        let remaining = {
            let (at, room) = cur.position();
            let mut out_map = frame.map_mut(cur.folios(), at, room)?;
            let dst: &mut [u8] = &mut out_map;
            let mut ob = OutBuffer::around(dst);
            let r = ws.cctx.end_stream(&mut ob).map_err(lib_err)?;
            let n = ob.pos();
            drop(out_map);
            cur.advance(n);
            r
        };
        if end_stream_done(cur, remaining)? {
            return Ok(());
        }
    }
}
