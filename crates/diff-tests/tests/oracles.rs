//! Independent oracles in both directions: our extents decoded by the system zlib (Python's
//! zlib module), the zstd command (Debian's libzstd) and the `lzo` crate; extents made by those
//! libraries decoded by ours. An oracle that is not installed prints SKIPPED with the reason.

use btrfs_compress::{compress_extent_raw, decompress_extent, parse_compress_option, Options, Strategy};
use diff_tests::{
    assert_same, lzo_oracle_decode, lzo_oracle_encode, make, system_zlib_compress, system_zlib_decompress, zstd_cli,
    Shape,
};

fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for shape in Shape::ALL {
        for len in [1usize, 777, 4096, 65536 + 123, 131072] {
            v.push((format!("{shape:?}/{len}"), make(shape, len, len as u64 + 17)));
        }
    }
    v
}

fn opts() -> [Options; 2] {
    [Options::default(), Options { strategy: Strategy::KmapLocal, ..Options::default() }]
}

#[test]
fn system_zlib_reads_our_zlib_extents() {
    if system_zlib_decompress(b"").is_none() {
        println!("SKIPPED: python3 with zlib is not installed");
        return;
    }
    for level in [1, 3, 9] {
        let spec = parse_compress_option(&format!("zlib:{level}")).unwrap();
        for (name, data) in inputs() {
            let Ok(ext) = compress_extent_raw(&data, spec, &opts()[1]) else { continue };
            let back = system_zlib_decompress(&ext.data).unwrap().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_same(&back, &data, &format!("zlib:{level} {name}"));
        }
    }
}

#[test]
fn we_read_system_zlib_streams() {
    for level in [1, 6, 9] {
        for (name, data) in inputs() {
            let Some(c) = system_zlib_compress(&data, level) else {
                println!("SKIPPED: python3 with zlib is not installed");
                return;
            };
            let c = c.unwrap();
            if c.len() > 131072 {
                continue; // not a valid btrfs extent
            }
            for o in opts() {
                let back = decompress_extent(btrfs_compress::CompressType::Zlib, &c, data.len(), 0, data.len(), &o)
                    .unwrap_or_else(|e| panic!("zlib {level} {name}: {e}"));
                assert_same(&back, &data, &format!("system zlib {level} {name}"));
            }
        }
    }
}

#[test]
fn zstd_command_reads_our_frames_and_we_read_its_frames() {
    if zstd_cli(&["--version"], b"").is_none() {
        println!("SKIPPED: the zstd command is not installed");
        return;
    }
    for level in [-5, 1, 3, 15] {
        let spec = parse_compress_option(&format!("zstd:{level}")).unwrap();
        for (name, data) in inputs() {
            if let Ok(ext) = compress_extent_raw(&data, spec, &opts()[1]) {
                let back = zstd_cli(&["-d", "-q", "-c"], &ext.data).unwrap().unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_same(&back, &data, &format!("zstd:{level} {name} by zstd -d"));
            }
        }
    }
    for args in [&["-q", "-c", "-1"][..], &["-q", "-c", "-19", "--no-check"], &["-q", "-c", "-3", "--check"]] {
        for (name, data) in inputs() {
            // Tell zstd the size, as a file would: the frame then declares its content size.
            let size = format!("--stream-size={}", data.len());
            let mut a = args.to_vec();
            a.push(&size);
            let c = zstd_cli(&a, &data).unwrap().unwrap();
            if c.len() > 131072 {
                continue;
            }
            for o in opts() {
                let back = decompress_extent(btrfs_compress::CompressType::Zstd, &c, data.len(), 0, data.len(), &o)
                    .unwrap_or_else(|e| panic!("zstd {args:?} {name}: {e}"));
                assert_same(&back, &data, &format!("zstd {args:?} {name}"));
            }
        }
    }
}

#[test]
fn lzo_crate_reads_our_extents_and_we_read_lzokay_framed_extents() {
    let spec = parse_compress_option("lzo").unwrap();
    for (name, data) in inputs() {
        if let Ok(ext) = compress_extent_raw(&data, spec, &opts()[1]) {
            let back = lzo_oracle_decode(&ext.data, 4096).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_same(&back, &data, &format!("lzo {name} by the lzo crate"));
        }
        let theirs = lzo_oracle_encode(&data, 4096);
        if theirs.len() > 131072 {
            continue;
        }
        for o in opts() {
            let back = decompress_extent(btrfs_compress::CompressType::Lzo, &theirs, data.len(), 0, data.len(), &o)
                .unwrap_or_else(|e| panic!("lzokay-framed {name}: {e}"));
            assert_same(&back, &data, &format!("lzokay-framed {name}"));
        }
    }
}

#[test]
fn zstd_frame_without_content_size_and_large_window_is_refused_like_the_kernel() {
    if zstd_cli(&["--version"], b"").is_none() {
        println!("SKIPPED: the zstd command is not installed");
        return;
    }
    let data = make(Shape::Text, 131072, 5);
    // From a pipe without --stream-size: no content size, window 2^19.
    let c = zstd_cli(&["-q", "-c", "-1"], &data).unwrap().unwrap();
    let err = decompress_extent(btrfs_compress::CompressType::Zstd, &c, data.len(), 0, data.len(), &Options::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            btrfs_compress::Error::Corrupt(btrfs_compress::CorruptKind::ZstdWindowTooLarge { window: 524288 })
        ),
        "{err:?}"
    );
    assert_eq!(err.errno(), 5);
}
