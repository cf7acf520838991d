//! The running kernel's zlib extents at all nine levels (fixtures/zlib-sweep-*/, captured by
//! tools/live-zlib-sweep.py: text, binary, mixed, runs and barely compressible data from 4 KiB to
//! 256 KiB files): our compressor, with the kernel deflate of that kernel's era, writes every one
//! of them byte for byte (the manifest keeps each extent's sha256).

use btrfs_compress::{compress_extent_raw, compress_inline, parse_compress_option, Options, ZlibBackend};
use diff_tests::{read_zst, repo_root};

fn hex(b: &[u8]) -> String {
    diff_tests::sha256_hex(b)
}

#[test]
fn every_zlib_extent_of_the_sweep_is_identical() {
    let root = repo_root().join("fixtures");
    let mut checked = 0;
    for dir in std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()) {
        if !dir.file_name().unwrap().to_string_lossy().starts_with("zlib-sweep-") {
            continue;
        }
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let kernel = m["kernel"].as_str().unwrap();
        let mut v = kernel.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse::<u32>().ok());
        let backend = ZlibBackend::kernel_of(v.next().unwrap(), v.next().unwrap());
        let o = Options { zlib_backend: backend, ..Options::default() };
        let mut failed = Vec::new();
        for e in m["extents"].as_array().unwrap() {
            if e["compression"] != "zlib" {
                continue;
            }
            let name = e["file"].as_str().unwrap();
            let plain = read_zst(&dir.join("plain").join(format!("{name}.zst")));
            let off = e["file_offset"].as_u64().unwrap() as usize;
            let len = e["len"].as_u64().unwrap() as usize;
            let enc_len = e["encoded_len"].as_u64().unwrap() as usize;
            let spec = parse_compress_option(e["option"].as_str().unwrap()).unwrap();
            let data = &plain[off..off + len];
            let inline = off == 0 && len == plain.len() && len <= 4096 && enc_len < 4096;
            let ours = if inline { compress_inline(data, spec, 2048, &o) } else { compress_extent_raw(data, spec, &o) };
            let mut got = ours.map(|x| x.data.to_vec()).unwrap_or_default();
            if got.len() < enc_len {
                got.resize(enc_len, 0); // regular extents are read back sector-padded
            }
            if hex(&got) != e["sha256"].as_str().unwrap() {
                failed.push(format!("{} {name} @{off} len {len}", e["option"]));
            }
            checked += 1;
        }
        assert!(failed.is_empty(), "{kernel}: {} of the zlib extents differ: {failed:?}", failed.len());
    }
    assert!(checked >= 300, "only {checked} zlib extents in fixtures/zlib-sweep-*");
}
