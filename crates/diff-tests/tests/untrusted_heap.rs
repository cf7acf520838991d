//! Peak heap of every image command on crafted images (issue 24: "peak RSS of any command on any
//! image at most 256 MiB whatever the image claims"), measured with a counting allocator as the
//! corruption suite measures it: the inline extent bombs (4 GiB and 2^40 claimed by a 700-byte
//! extent), a name with '/', a read claiming 2^40 bytes, and a `.zst` image whose data runs past
//! its device. One test, so that no other test's allocations are counted.

use std::sync::atomic::AtomicBool;

use btrfs_image::open_bytes;
use diff_tests::crafted;
use peak_alloc::PeakAlloc;

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

const BOUND: usize = 256 << 20;

/// Peak heap above what was live before, while `f` runs.
fn peak(f: impl FnOnce()) -> usize {
    let before = PEAK.current_usage();
    PEAK.reset_peak_usage();
    f();
    PEAK.peak_usage().saturating_sub(before)
}

/// inspect, verify, usage and extract of `raw`; each one's peak heap.
fn every_command(raw: &[u8]) -> [(&'static str, usize); 4] {
    let shared = std::sync::Arc::new(raw.to_vec());
    let open = || btrfs_image::open_shared(std::sync::Arc::clone(&shared)).expect("opens");
    let d = tempfile::tempdir().unwrap();
    [
        ("inspect", peak(|| drop(btrfs_restore::inspect(&open()).map(|i| i.files().count())))),
        ("verify", peak(|| drop(btrfs_restore::verify(&open(), &btrfs_restore::read_options())))),
        ("usage", peak(|| drop(btrfs_restore::usage(&open(), &[])))),
        (
            "extract",
            peak(|| {
                let opts = btrfs_restore::ExtractOptions::default();
                drop(btrfs_restore::extract(&open(), &d.path().join("out"), &opts, &AtomicBool::new(false), &|_, _| {}))
            }),
        ),
    ]
}

#[test]
fn no_crafted_image_takes_more_than_256_mib_of_heap() {
    let cases = [
        ("inline bomb 2^32", crafted::inline_bomb(1 << 32).0),
        ("inline bomb 2^40", crafted::inline_bomb(1 << 40).0),
        ("bad name", crafted::bad_name()),
    ];
    for (what, raw) in &cases {
        for (cmd, bytes) in every_command(raw) {
            eprintln!("{what}: {cmd}: {} KiB peak heap", bytes >> 10);
            assert!(bytes < BOUND, "{what}: {cmd} took {bytes} bytes");
        }
    }
    // A read the image cannot justify, and a .zst bomb.
    let img = open_bytes(crafted::base()).unwrap();
    let bytes = peak(|| assert!(img.read_logical(0x100_0000, 1 << 40).is_err()));
    assert!(bytes < BOUND, "read of 2^40: {bytes}");
    let mut data = crafted::base();
    data.extend(std::iter::repeat_n(0x5a_u8, 64 << 20));
    let mut z = vec![0u8; zstd_safe::compress_bound(data.len())];
    let n = zstd_safe::compress(&mut z[..], &data, 1).unwrap();
    drop(data);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bomb.img.zst");
    std::fs::write(&p, &z[..n]).unwrap();
    drop(z);
    let bytes = peak(|| assert!(btrfs_image::open_image(&p).is_err()));
    eprintln!(".zst bomb: {} KiB peak heap", bytes >> 10);
    assert!(bytes < BOUND, ".zst bomb: {bytes}");
}
