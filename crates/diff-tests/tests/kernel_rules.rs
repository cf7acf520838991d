//! The kernel's rules on crafted inputs: E2BIG verdicts, the "save a sector" rule, levels,
//! the heuristic, corrupt-data classes and buf2page offsets.

use btrfs_compress::{
    compress_extent, compress_extent_raw, compress_inline, decompress_extent, decompress_extent_full,
    decompress_inline, parse_compress_option, CompressType, CorruptKind, Error, Options,
};
use btrfs_compression::heuristic::{verdict_for_sample, Verdict};
use btrfs_compression::{btrfs_compress_set_level, compression_saves_sector};
use diff_tests::{make, specs, Shape};

#[test]
fn random_data_is_e2big_for_every_codec() {
    let data = make(Shape::Random, 131072, 1);
    for spec in specs() {
        let e = compress_extent_raw(&data, spec, &Options::default()).unwrap_err();
        assert!(matches!(e, Error::Incompressible(_)), "{spec}: {e:?}");
        assert_eq!(e.errno(), 7, "E2BIG");
    }
}

#[test]
fn early_bail_gives_up_on_a_random_head_even_if_the_rest_compresses() {
    // 20 KiB random, then text: the whole extent would compress, but lzo.c gives up once more
    // than two sectors went in and the output is larger than the input. zstd.c checks the same
    // rule, but libzstd holds the input until a block is complete, so its output never runs ahead
    // and the extent is kept. zlib.c's verdict depends on the deflate library: zlib-rs keeps the
    // expansion in its pending buffer while each output page fills (total_out never passes
    // total_in), so here the extent is kept as well.
    let mut data = make(Shape::Random, 20480, 2);
    data.extend(make(Shape::Text, 131072 - 20480, 3));
    for spec in specs() {
        let r = compress_extent_raw(&data, spec, &Options::default());
        match spec.alg {
            CompressType::Zstd => {
                let ext = r.unwrap_or_else(|e| panic!("{spec}: {e}"));
                assert!(ext.data.len() < data.len());
            }
            CompressType::Zlib => {
                let ext = r.unwrap_or_else(|e| panic!("{spec}: {e}"));
                let back =
                    decompress_extent(spec.alg, &ext.data, data.len(), 0, data.len(), &Options::default()).unwrap();
                assert!(back == data[..]);
            }
            _ => assert!(matches!(r, Err(Error::Incompressible(_))), "{spec}: {:?}", r.map(|e| e.data.len())),
        }
    }
}

#[test]
fn save_a_sector_rule() {
    assert!(compression_saves_sector(131072, 126976, 4096));
    assert!(!compression_saves_sector(131072, 126977, 4096));
    assert!(!compression_saves_sector(4096, 10, 4096), "a single sector can never save one");
    assert!(compression_saves_sector(8192, 4096, 4096));
    assert!(!compression_saves_sector(5000, 4097, 4096));
    // Nearly incompressible data: the codec may succeed but the caller's rule refuses it.
    let mut data = make(Shape::Random, 131072, 4);
    for b in data.iter_mut().step_by(40) {
        *b = 0;
    }
    let spec = parse_compress_option("zstd:1").unwrap();
    if let Ok(raw) = compress_extent_raw(&data, spec, &Options::default()) {
        let kept = compress_extent(&data, spec, &Options::default());
        assert_eq!(kept.is_ok(), compression_saves_sector(131072, raw.data.len(), 4096));
    }
}

#[test]
fn small_input_is_never_a_regular_extent_but_can_be_inline() {
    let data = make(Shape::Text, 3000, 5);
    let spec = parse_compress_option("zstd:3").unwrap();
    assert!(matches!(compress_extent(&data, spec, &Options::default()), Err(Error::Incompressible(_))));
    let inl = compress_inline(&data, spec, 2048, &Options::default()).unwrap();
    assert!(inl.data.len() < 2048);
    let back = decompress_inline(CompressType::Zstd, &inl.data, data.len(), &Options::default()).unwrap();
    assert_eq!(&back[..], &data[..]);
}

#[test]
fn levels_parse_and_clamp_like_the_kernel() {
    let p = |s: &str| parse_compress_option(s);
    assert_eq!(p("zlib").unwrap().level, 3);
    assert_eq!(p("zlib:0").unwrap().level, 3);
    assert_eq!(p("zlib:12").unwrap().level, 9);
    assert_eq!(p("zlib:12").unwrap().clamped_from, Some(12));
    assert_eq!(p("zlib:-3").unwrap().level, 1);
    assert_eq!(p("zstd").unwrap().level, 3);
    assert_eq!(p("zstd:-16").unwrap().level, -15);
    assert_eq!(p("zstd:16").unwrap().level, 15);
    assert_eq!(p("zstd:-5").unwrap().level, -5);
    assert_eq!(p("lzo").unwrap().level, 0);
    // 6.18 mounts compress=lzo:3 as compress=lzo (checked on the running kernel).
    assert_eq!((p("lzo:3").unwrap().level, p("lzo:3").unwrap().clamped_from), (0, Some(3)));
    assert!(matches!(p("zstd:fast"), Err(Error::InvalidArgument(_))));
    assert!(matches!(p("brotli"), Err(Error::InvalidArgument(_))));
    assert_eq!(btrfs_compress_set_level(CompressType::Zstd, 0), 3);
}

#[test]
fn heuristic_verdicts_follow_the_kernel_rules() {
    // Repeated halves.
    let mut s = make(Shape::Random, 4096, 6);
    let first = s[..2048].to_vec();
    s[2048..].copy_from_slice(&first);
    assert_eq!(verdict_for_sample(&s), Verdict::RepeatedPattern);
    // 40 distinct values.
    let s: Vec<u8> = make(Shape::Random, 8192, 7).iter().map(|b| b % 40).collect();
    assert_eq!(verdict_for_sample(&s), Verdict::SmallByteSet);
    // 100 distinct values, 90 % of the sample in 10 of them: core set small.
    let r = make(Shape::Random, 8192, 8);
    let s: Vec<u8> = r.iter().enumerate().map(|(i, b)| if i % 10 == 0 { 100 + b % 100 } else { b % 10 }).collect();
    assert_eq!(verdict_for_sample(&s), Verdict::SmallCoreSet);
    // Uniform over 256 values: core set too large.
    assert_eq!(verdict_for_sample(&make(Shape::Random, 8192, 9)), Verdict::DontCompress);
    // Text of 25 words: few distinct bytes.
    assert!(verdict_for_sample(&make(Shape::Text, 8192, 10)).compress());
}

#[test]
fn corrupt_lzo_headers_are_euclean_and_bad_segments_eio() {
    let data = make(Shape::Text, 131072, 11);
    let ext = compress_extent(&data, parse_compress_option("lzo").unwrap(), &Options::default()).unwrap();
    let o = Options::default();
    // Total length larger than the extent.
    let mut bad = ext.data.to_vec();
    let too_long = (bad.len() as u32 + 4096).to_le_bytes();
    bad[..4].copy_from_slice(&too_long);
    let e = decompress_extent(CompressType::Lzo, &bad, 131072, 0, 131072, &o).unwrap_err();
    assert!(matches!(e, Error::Corrupt(CorruptKind::LzoTotalLength { .. })), "{e:?}");
    assert_eq!(e.errno(), 117);
    // A huge segment length.
    let mut bad = ext.data.to_vec();
    bad[4..8].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    let e = decompress_extent(CompressType::Lzo, &bad, 131072, 0, 131072, &o).unwrap_err();
    assert!(matches!(e, Error::Corrupt(CorruptKind::LzoSegmentLength { .. })), "{e:?}");
    assert_eq!(e.errno(), 5);
    // Damaged payload.
    let mut bad = ext.data.to_vec();
    for b in &mut bad[8..40] {
        *b ^= 0xa5;
    }
    let e = decompress_extent(CompressType::Lzo, &bad, 131072, 0, 131072, &o);
    assert!(e.is_err() || e.unwrap() != data[..], "damage must not go unnoticed and unchanged");
}

#[test]
fn zlib_and_zstd_damage_is_eio() {
    let data = make(Shape::Text, 131072, 12);
    for spec in ["zlib:3", "zstd:3"] {
        let spec = parse_compress_option(spec).unwrap();
        let ext = compress_extent(&data, spec, &Options::default()).unwrap();
        for decompress_in_place in [false, true] {
            let o = Options {
                decompress_loop: btrfs_compress::LoopVariant::in_place(decompress_in_place),
                ..Options::default()
            };
            // Truncated stream.
            let cut = &ext.data[..ext.data.len() / 2];
            match decompress_extent_full(spec.alg, cut, 131072, 0, 131072, &o) {
                Err(e) => assert_eq!(e.errno(), 5, "{spec}: {e:?}"),
                // zstd: a short stream is not an error in the kernel; the rest is zero-filled.
                Ok(d) => {
                    assert_eq!(spec.alg, CompressType::Zstd);
                    assert!(d.stream_bytes < 131072);
                    assert!(d.data[d.stream_bytes..].iter().all(|&b| b == 0));
                }
            }
            // Garbage.
            let junk = make(Shape::Random, 8192, 13);
            let e = decompress_extent(spec.alg, &junk, 131072, 0, 131072, &o).unwrap_err();
            assert_eq!(e.errno(), 5, "{spec} in place {decompress_in_place}: {e:?}");
        }
    }
}

#[test]
fn buf2page_honours_offset_and_num_bytes() {
    let data = make(Shape::Mixed, 131072, 14);
    for spec in specs() {
        let Ok(ext) = compress_extent(&data, spec, &Options::default()) else { continue };
        for (off, n) in [(0, 131072), (4096, 8192), (65536 + 100, 1000), (131071, 1), (12345, 131072 - 12345)] {
            for decompress_in_place in [false, true] {
                let o = Options {
                    decompress_loop: btrfs_compress::LoopVariant::in_place(decompress_in_place),
                    ..Options::default()
                };
                let got = decompress_extent(spec.alg, &ext.data, 131072, off, n, &o).unwrap();
                assert_eq!(&got[..], &data[off..off + n], "{spec} {off}+{n} in place {decompress_in_place}");
            }
        }
        // Sector padding as read from disk is accepted.
        let mut padded = ext.data.to_vec();
        padded.resize(padded.len().next_multiple_of(4096), 0);
        let got = decompress_extent(spec.alg, &padded, 131072, 0, 131072, &Options::default()).unwrap();
        assert_eq!(&got[..], &data[..]);
    }
}

#[test]
fn bad_lengths_are_invalid_arguments() {
    let o = Options::default();
    let spec = parse_compress_option("zstd").unwrap();
    assert!(matches!(compress_extent(&[], spec, &o), Err(Error::InvalidArgument(_))));
    assert!(matches!(compress_extent(&vec![0; 131073], spec, &o), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        decompress_extent(CompressType::Zstd, &[1, 2, 3], 1 << 30, 0, 1, &o),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        decompress_extent(CompressType::Zstd, &[1, 2, 3], 4096, 4000, 200, &o),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        decompress_extent(CompressType::Zstd, &vec![0; 131073], 4096, 0, 4096, &o),
        Err(Error::InvalidArgument(_))
    ));
}
#[test]
fn same_input_gives_same_bytes_whatever_ran_before() {
    // Workspaces are reused between extents; their history must not leak into the output.
    for spec in specs() {
        let data = make(Shape::Text, 131072, 13300401188359444872);
        let first = compress_extent_raw(&data, spec, &Options::default()).unwrap();
        for i in 0..6u64 {
            let other = make(Shape::Mixed, 1000 + i as usize * 20000, i);
            let _ = compress_extent_raw(&other, spec, &Options::default());
            let again = compress_extent_raw(&data, spec, &Options::default()).unwrap();
            assert!(first.data == again.data, "{spec}: output depends on what ran before (iteration {i})");
        }
    }
}
