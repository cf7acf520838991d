//! Streams of the kernel deflate inflate to their input (flate2, Adler-32 checked) at every
//! level and era, whatever the chunking; a stream never depends on what the same `Deflate`
//! compressed before. (diff-tests checks random data through the btrfs loop against the system
//! zlib as well.)

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

/// Inflate with flate2 (zlib-rs), Adler-32 checked: the data, or None if the stream is invalid.
fn inflate(z: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(z).read_to_end(&mut out).ok()?;
    Some(out)
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

#[test]
fn adler32_equals_the_byte_by_byte_definition() {
    for (len, seed) in [(0usize, 1u64), (1, 2), (15, 3), (16, 4), (5551, 5), (5552, 6), (5553, 7), (100_000, 8)] {
        let data = sample(len, seed);
        let (mut a, mut b) = (1u32, 0u32);
        for &x in &data {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(adler32(1, &data), (b << 16) | a, "len {len}");
    }
    assert_eq!(adler32(1, &[0xff; 100_000]), {
        let (mut a, mut b) = (1u32, 0u32);
        for _ in 0..100_000 {
            a = (a + 255) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    });
}
