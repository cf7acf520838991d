//! Property tests of the kernel deflate through the btrfs zlib loop: for random data, levels
//! 1-9, both eras of `flush_pending()` and both input feeds (per page, per folio as 7.x), the
//! extent inflates to the input with flate2 and with the system zlib (Adler-32 checked), and
//! compressing it again, after the workspace has compressed other data, gives the same bytes.

use btrfs_compress::{compress_extent_raw, parse_compress_option, Error, InputChunk, KernelEra, Options, ZlibBackend};
use diff_tests::{make, system_zlib_decompress, Shape};
use proptest::prelude::*;
use std::io::Read;

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn kernel_deflate_extents_inflate_with_flate2_and_the_system_zlib(
        shape_i in 0usize..4,
        len in prop_oneof![1usize..=64, 1usize..=131072, Just(131072)],
        seed in any::<u64>(),
        level in 1i32..=9,
        old_era in any::<bool>(),
        folio_input in any::<bool>(),
    ) {
        let shape = [Shape::Zeros, Shape::Text, Shape::Random, Shape::Mixed][shape_i];
        let data = make(shape, len, seed);
        let era = if old_era { KernelEra::Before6_3 } else { KernelEra::Since6_3 };
        let o = Options {
            zlib_backend: ZlibBackend::Kernel(era),
            input_chunk: if folio_input { InputChunk::Folio } else { InputChunk::Page },
            folio_order: if folio_input { 4 } else { 0 },
            ..Options::default()
        };
        let spec = parse_compress_option(&format!("zlib:{level}")).unwrap();
        match compress_extent_raw(&data, spec, &o) {
            Ok(ext) => {
                let mut back = Vec::new();
                flate2::read::ZlibDecoder::new(&ext.data[..]).read_to_end(&mut back).unwrap();
                prop_assert!(back == data, "flate2: {spec} {era:?} len {len}");
                if let Some(sys) = system_zlib_decompress(&ext.data) {
                    prop_assert!(sys.unwrap() == data, "system zlib: {spec} {era:?} len {len}");
                }
                // The same input again (the workspace has compressed other data since).
                let again = compress_extent_raw(&data, spec, &o).unwrap();
                prop_assert!(again.data == ext.data);
            }
            Err(Error::Incompressible(_)) => {}
            Err(e) => prop_assert!(false, "{spec}: {e}"),
        }
    }
}
