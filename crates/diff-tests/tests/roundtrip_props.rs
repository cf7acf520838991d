//! Property tests: round trips over algorithms x levels x strategies x backends x page sizes x
//! folio orders x data shapes, lengths 1 B to 128 KiB, and equality with the direct-map bytes.

use btrfs_compress::{compress_extent_raw, decompress_extent, Backend, Error, Options, Strategy as MapStrategy};
use diff_tests::{make, specs, Shape};
use proptest::prelude::*;

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![Just(Shape::Zeros), Just(Shape::Text), Just(Shape::Random), Just(Shape::Mixed)]
}

fn len() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..=64, 1usize..=131072, (1usize..=32).prop_map(|s| s * 4096), Just(131072),]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn round_trip_and_strategy_invariance(
        shape in shape(),
        len in len(),
        seed in any::<u64>(),
        spec_i in 0usize..9,
        strat_i in 0usize..6,
        backend_i in 0usize..2,
        ps_i in 0usize..3,
        big_folio in any::<bool>(),
        variant in any::<bool>(),
    ) {
        let spec = specs()[spec_i];
        let page_size = [4096usize, 16384, 65536][ps_i];
        let order = if big_folio { (131072 / page_size).trailing_zeros() } else { 0 };
        let data = make(shape, len, seed);
        let base = Options { page_size, ..Options::default() };
        let o = Options {
            strategy: MapStrategy::ALL[strat_i],
            backend: Backend::ALL[backend_i],
            folio_order: order,
            out_order: order,
            compress_loop: btrfs_compress::LoopVariant::lifo_remap(variant),
            decompress_loop: btrfs_compress::LoopVariant::in_place(variant),
            ..base
        };
        let reference = compress_extent_raw(&data, spec, &base);
        let got = compress_extent_raw(&data, spec, &o);
        match (reference, got) {
            (Ok(r), Ok(g)) => {
                prop_assert!(r.data == g.data, "{} {:?}: bytes differ ({} vs {})", spec, o, r.data.len(), g.data.len());
                let back = decompress_extent(spec.alg, &g.data, len, 0, len, &o).unwrap();
                prop_assert!(back == data[..]);
                // A partial read of the same extent.
                let off = (seed as usize) % len;
                let n = (len - off).min(1 + (seed as usize >> 20) % 9000);
                let part = decompress_extent(spec.alg, &g.data, len, off, n, &o).unwrap();
                prop_assert!(part == data[off..off + n]);
            }
            (Err(Error::Incompressible(_)), Err(Error::Incompressible(_))) => {}
            (r, g) => prop_assert!(false, "{} {:?}: {:?} vs {:?}", spec, o, r, g),
        }
    }
}
