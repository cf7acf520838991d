//! The mapping strategy, memory backend and folio order never change the bytes a codec produces,
//! and every combination reads back what it wrote. (The page size may: zlib.c feeds deflate one
//! page per `Z_SYNC_FLUSH`, so a 16K-page kernel writes other zlib bytes than a 4K-page one;
//! each page size is compared with its own reference.)

use btrfs_compress::{compress_extent_raw, decompress_extent, Error, Options, Strategy};
use diff_tests::{all_options, assert_same, make, specs, variant, Shape};

fn cases() -> Vec<(Shape, usize)> {
    vec![
        (Shape::Text, 131072),
        (Shape::Mixed, 131072),
        (Shape::Text, 100_000),
        (Shape::Mixed, 3000),
        (Shape::Zeros, 131072),
        (Shape::Random, 131072),
    ]
}

#[test]
fn strategies_produce_identical_bytes_and_round_trip() {
    let opts = all_options();
    let mut checked = 0;
    for spec in specs() {
        for (shape, len) in cases() {
            let data = make(shape, len, len as u64 ^ 0x5eed);
            let refs: Vec<_> = [4096, 16384, 65536]
                .iter()
                .map(|&page_size| {
                    (page_size, compress_extent_raw(&data, spec, &Options { page_size, ..Options::default() }))
                })
                .collect();
            if spec.alg != btrfs_compress::CompressType::Zlib {
                for (ps, r) in &refs[1..] {
                    match (&refs[0].1, r) {
                        (Ok(a), Ok(b)) => assert_same(&a.data, &b.data, &format!("{spec} page size {ps}")),
                        (Err(_), Err(_)) => {}
                        (a, b) => panic!("{spec} {shape:?} {len}: 4K {a:?} vs {ps}: {b:?}"),
                    }
                }
            }
            for o in &opts {
                let reference = &refs.iter().find(|(ps, _)| *ps == o.page_size).expect("page size").1;
                for alt in [false, true] {
                    let o = variant(*o, spec, alt);
                    let got = compress_extent_raw(&data, spec, &o);
                    match (reference, &got) {
                        (Ok(r), Ok(g)) => {
                            if !(alt && o.lzo_backend != Default::default()) {
                                assert_same(&r.data, &g.data, &format!("{spec} {shape:?} {len} {o:?}"));
                                assert_eq!(r.total_in, g.total_in);
                            }
                            let back = decompress_extent(spec.alg, &g.data, len, 0, len, &o)
                                .unwrap_or_else(|e| panic!("{spec} {shape:?} {len} {o:?}: {e}"));
                            assert!(back == data[..], "{spec} {shape:?} {len} {o:?}: round trip differs");
                            assert_eq!(g.counters.lifo_violations, 0);
                        }
                        (Err(Error::Incompressible(_)), Err(Error::Incompressible(_))) => {}
                        (Err(Error::Incompressible(_)), Ok(_)) | (Ok(_), Err(Error::Incompressible(_)))
                            if o.lzo_backend != Default::default() => {}
                        (r, g) => panic!("{spec} {shape:?} {len} {o:?}: reference {r:?} vs {g:?}"),
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 5000, "matrix ran {checked} cases");
}

#[test]
fn zstd_lifo_variant_pays_forced_remaps_only_with_kmap_local() {
    let spec = btrfs_compress::parse_compress_option("zstd:3").unwrap();
    let data = make(Shape::Text, 131072, 9);
    let base = Options { strategy: Strategy::KmapLocal, ..Options::default() };
    let merged = compress_extent_raw(&data, spec, &base).unwrap();
    let lifo = compress_extent_raw(
        &data,
        spec,
        &Options { compress_loop: btrfs_compress::LoopVariant::LifoRemap2022, ..base },
    )
    .unwrap();
    assert_same(&merged.data, &lifo.data, "zstd:3 lifo");
    assert_eq!(merged.counters.forced_remaps, 0);
    // 32 input pages: every input switch but the ones that coincide with an output switch forces a
    // re-map of the half-filled output page.
    assert!(lifo.counters.forced_remaps >= 20, "{:?}", lifo.counters);
    assert!(lifo.counters.forced_remaps <= 31, "{:?}", lifo.counters);
    assert_eq!(merged.counters.maps, 32, "one kmap_local per input page");
    assert_eq!(lifo.counters.max_depth, 2, "input below output");
    let out_pages = lifo.data.len().div_ceil(4096) as u64;
    assert!(lifo.counters.maps >= 32 + out_pages + lifo.counters.forced_remaps, "{:?}", lifo.counters);
    assert_eq!(lifo.counters.maps, lifo.counters.unmaps);
}

#[test]
fn range_mapping_writes_the_same_bytes_without_slots_on_64_bit() {
    // On 64-bit, kmap_local_range() is the direct map of the contiguous run: one input mapping
    // per extent and no slot (the bound by free slots under HIGHMEM is highmem's
    // `a_range_pays_per_page_and_the_direct_map_has_no_highmem`).
    let data = make(Shape::Text, 131072, 3);
    for spec in specs() {
        let per_page = Options { strategy: Strategy::KmapLocal, ..Options::default() };
        let range = Options { strategy: Strategy::Range, folio_order: 5, out_order: 5, ..Options::default() };
        let a = compress_extent_raw(&data, spec, &per_page).unwrap();
        let b = compress_extent_raw(&data, spec, &range).unwrap();
        assert_same(&a.data, &b.data, &format!("{spec}"));
        assert_eq!(b.counters.forced_remaps, 0);
        assert_eq!(b.counters.max_depth, 0, "{spec}: no slot on 64-bit: {:?}", b.counters);
        assert!(b.counters.map_calls < a.counters.map_calls, "{spec}: {:?} vs {:?}", b.counters, a.counters);
        if spec.alg != btrfs_compress::CompressType::Lzo {
            assert_eq!(b.counters.map_calls, 1, "{spec}: one run of 128 KiB: {:?}", b.counters);
            assert_eq!(a.counters.maps, 32, "{spec}");
        }
    }
}
