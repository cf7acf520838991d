//! Streams of the kernel deflate inflate to their input (checked with a small inflater of our
//! own in the test: the crate has no dependencies; diff-tests inflates them with flate2 too),
//! at every level and era, whatever the chunking; and a stream never depends on what the same
//! `Deflate` compressed before.

use kernel_deflate::{adler32, compress_to_vec, Deflate, Flush, KernelEra, Status};

/// A deterministic mix of text-like, binary and run data.
fn sample(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let words: [&[u8]; 6] = [b"extent ", b"folio ", b"kmap_local ", b"btrfs ", b"\n", b"compress "];
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 5 {
            0 | 1 => v.extend_from_slice(words[(x >> 8) as usize % words.len()]),
            2 => v.extend(std::iter::repeat_n((x >> 16) as u8, (x >> 24) as usize % 40)),
            _ => v.extend_from_slice(&(x >> 3).to_le_bytes()),
        }
    }
    v.truncate(n);
    v
}

/// The btrfs loop's call pattern: input in `chunk`-byte pieces with Z_SYNC_FLUSH, output one
/// 4 KiB page at a time, then Z_FINISH.
fn btrfs_loop(d: &mut Deflate, data: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len() * 2 + 4096];
    let mut in_end = 0;
    while (d.total_in() as usize) < data.len() {
        let t = d.total_in() as usize;
        if t == in_end {
            in_end = (t + chunk).min(data.len());
        }
        let o = d.total_out() as usize;
        let page_end = (o / 4096 + 1) * 4096;
        d.compress(&data[t..in_end], &mut out[o..page_end], Flush::SyncFlush).unwrap();
    }
    loop {
        let o = d.total_out() as usize;
        let page_end = (o / 4096 + 1) * 4096;
        if d.compress(&[], &mut out[o..page_end], Flush::Finish).unwrap() == Status::StreamEnd {
            break;
        }
    }
    out.truncate(d.total_out() as usize);
    out
}

/// A minimal RFC 1951 inflater (for the test only): returns the data, or None if invalid.
fn inflate(z: &[u8]) -> Option<Vec<u8>> {
    struct Bits<'a> {
        b: &'a [u8],
        pos: usize,
    }
    impl Bits<'_> {
        fn bit(&mut self) -> Option<u32> {
            let byte = *self.b.get(self.pos / 8)?;
            let v = (byte >> (self.pos % 8)) & 1;
            self.pos += 1;
            Some(v as u32)
        }
        fn bits(&mut self, n: u32) -> Option<u32> {
            let mut v = 0;
            for i in 0..n {
                v |= self.bit()? << i;
            }
            Some(v)
        }
    }
    fn decode(br: &mut Bits<'_>, lens: &[u8]) -> Option<usize> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= br.bit()? as i32;
            let count = lens.iter().filter(|&&l| l as usize == len).count() as i32;
            if code - count < first {
                let k = index + (code - first);
                let mut syms: Vec<usize> = (0..lens.len()).filter(|&s| lens[s] as usize == len).collect();
                syms.sort();
                return syms.get(k as usize - index as usize).copied();
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        None
    }
    const LBASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227,
        258,
    ];
    const LEXT: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
    const DBASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
        6145, 8193, 12289, 16385, 24577,
    ];
    const DEXT: [u8; 30] =
        [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
    if z.len() < 6 || (u16::from(z[0]) << 8 | u16::from(z[1])) % 31 != 0 || z[0] & 0x0f != 8 {
        return None;
    }
    let mut br = Bits { b: &z[2..], pos: 0 };
    let mut out: Vec<u8> = Vec::new();
    loop {
        let last = br.bit()?;
        let kind = br.bits(2)?;
        if kind == 0 {
            br.pos = br.pos.next_multiple_of(8);
            let len = br.bits(16)? as usize;
            let nlen = br.bits(16)? as usize;
            if len != !nlen & 0xffff {
                return None;
            }
            for _ in 0..len {
                out.push(br.bits(8)? as u8);
            }
        } else {
            let (ll, dl) = if kind == 1 {
                let mut l = vec![8u8; 288];
                l[144..256].fill(9);
                l[256..280].fill(7);
                (l, vec![5u8; 30])
            } else if kind == 2 {
                let hlit = br.bits(5)? as usize + 257;
                let hdist = br.bits(5)? as usize + 1;
                let hclen = br.bits(4)? as usize + 4;
                const ORD: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
                let mut cl = [0u8; 19];
                for &o in ORD.iter().take(hclen) {
                    cl[o] = br.bits(3)? as u8;
                }
                let mut lens = Vec::new();
                while lens.len() < hlit + hdist {
                    match decode(&mut br, &cl)? {
                        s @ 0..=15 => lens.push(s as u8),
                        16 => {
                            let p = *lens.last()?;
                            for _ in 0..3 + br.bits(2)? {
                                lens.push(p);
                            }
                        }
                        17 => lens.extend(std::iter::repeat_n(0, 3 + br.bits(3)? as usize)),
                        _ => lens.extend(std::iter::repeat_n(0, 11 + br.bits(7)? as usize)),
                    }
                }
                if lens.len() != hlit + hdist {
                    return None;
                }
                (lens[..hlit].to_vec(), lens[hlit..].to_vec())
            } else {
                return None;
            };
            loop {
                let s = decode(&mut br, &ll)?;
                match s {
                    0..=255 => out.push(s as u8),
                    256 => break,
                    _ => {
                        let i = s - 257;
                        let len = LBASE.get(i)? + br.bits(u32::from(LEXT[i]))? as u16;
                        let ds = decode(&mut br, &dl)?;
                        let dist = *DBASE.get(ds)? as usize + br.bits(u32::from(DEXT[ds]))? as usize;
                        if dist > out.len() {
                            return None;
                        }
                        for _ in 0..len {
                            out.push(out[out.len() - dist]);
                        }
                    }
                }
            }
        }
        if last == 1 {
            break;
        }
    }
    let at = 2 + br.pos.div_ceil(8);
    let want = u32::from_be_bytes(z.get(at..at + 4)?.try_into().ok()?);
    (want == adler32(1, &out)).then_some(out)
}

#[test]
fn streams_inflate_to_their_input_at_every_level_era_and_chunking() {
    let mut n = 0;
    for (len, seed) in [(1usize, 1u64), (300, 2), (4096, 3), (5000, 4), (65536, 5), (131072, 6), (131072, 7)] {
        let data = sample(len, seed);
        for level in 1..=9 {
            for era in [KernelEra::Before6_3, KernelEra::Since6_3] {
                for chunk in [4096, 65536] {
                    let mut d = Deflate::new(level, era).unwrap();
                    let z = btrfs_loop(&mut d, &data, chunk);
                    assert_eq!(
                        inflate(&z).as_deref(),
                        Some(&data[..]),
                        "len {len} level {level} {era:?} chunk {chunk}"
                    );
                    n += 1;
                }
            }
            let z = compress_to_vec(&data, level, KernelEra::default()).unwrap();
            assert_eq!(inflate(&z).as_deref(), Some(&data[..]), "one call, len {len} level {level}");
        }
    }
    assert_eq!(n, 7 * 9 * 2 * 2);
}

#[test]
fn output_does_not_depend_on_what_the_stream_compressed_before() {
    let a = sample(131072, 11);
    let b = sample(131072, 12);
    for level in [1, 3, 6, 9] {
        let fresh = btrfs_loop(&mut Deflate::new(level, KernelEra::default()).unwrap(), &b, 4096);
        let mut d = Deflate::new(level, KernelEra::default()).unwrap();
        let _ = btrfs_loop(&mut d, &a, 4096);
        d.reset(level).unwrap();
        assert_eq!(btrfs_loop(&mut d, &b, 4096), fresh, "level {level}");
    }
}

#[test]
fn the_header_carries_the_kernels_level_bits_and_bad_levels_are_refused() {
    let flg: Vec<u8> = (1..=9).map(|l| compress_to_vec(b"abc", l, KernelEra::default()).unwrap()[1]).collect();
    assert_eq!(flg, [0x01, 0x01, 0x5e, 0x5e, 0x9c, 0x9c, 0xda, 0xda, 0xda]);
    assert!(Deflate::new(0, KernelEra::default()).is_err());
    assert!(Deflate::new(10, KernelEra::default()).is_err());
}

#[test]
fn a_sync_flush_ends_with_the_empty_stored_block_and_finish_without_room_is_resumed() {
    let data = sample(10000, 21);
    let mut d = Deflate::new(3, KernelEra::default()).unwrap();
    let mut out = vec![0u8; 20000];
    d.compress(&data, &mut out, Flush::SyncFlush).unwrap();
    let n = d.total_out() as usize;
    assert_eq!(&out[n - 4..n], &[0, 0, 0xff, 0xff]);
    // Z_FINISH one byte of room at a time still ends the stream correctly.
    let mut st = Status::Ok;
    while st != Status::StreamEnd {
        let o = d.total_out() as usize;
        st = d.compress(&[], &mut out[o..o + 1], Flush::Finish).unwrap();
    }
    out.truncate(d.total_out() as usize);
    assert_eq!(inflate(&out).as_deref(), Some(&data[..]));
    assert_eq!(d.compress(&[], &mut [], Flush::Finish).unwrap(), Status::BufError);
}
