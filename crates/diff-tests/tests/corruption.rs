//! Damaged kernel extents: bit flips, truncation, extension and header tampering of every
//! fixture extent give a typed error or the right output, never a panic; memory stays bounded.

use btrfs_compress::{decompress_extent_full, decompress_inline, CompressType, Error, Options, Strategy};
use diff_tests::Rng;
use peak_alloc::PeakAlloc;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Mutex;

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

/// Workspace allowance on top of twice ram_bytes: a zstd decompression context with a 128 KiB
/// window, zlib's inflate state and window, lzo's two sector buffers, and the result vectors.
const WORKSPACE_ALLOWANCE: usize = 1 << 20;

struct Ext {
    name: String,
    alg: CompressType,
    raw: Vec<u8>,
    want: Vec<u8>,
    inline: bool,
    ram: usize,
    off: usize,
    len: usize,
}

fn extents() -> Vec<Ext> {
    let mut v = Vec::new();
    for f in diff_tests::fixtures() {
        for e in f.extents {
            v.push(Ext {
                name: format!("{} {} {}/{} @{}", f.dir.display(), e.option, e.dir, e.file, e.file_offset),
                alg: e.alg,
                want: f.plain[&e.file][e.file_offset..e.file_offset + e.len].to_vec(),
                raw: e.raw,
                inline: e.inline,
                ram: e.unencoded_len,
                off: e.unencoded_offset,
                len: e.len,
            });
        }
    }
    assert!(!v.is_empty());
    v
}

/// The peak counter is process-wide: the tests of this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    /// (codec, options) pairs this thread has already run once: the first run allocates the
    /// thread's mapping context, the shared frame arena and the workspaces, which are not per
    /// extent.
    static WARM: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

fn decode(e: &Ext, data: &[u8], o: &Options) -> Result<Vec<u8>, Error> {
    if e.inline {
        decompress_inline(e.alg, data, e.len, o).map(|b| b.to_vec())
    } else {
        decompress_extent_full(e.alg, data, e.ram, e.off, e.len, o).map(|d| d.data.to_vec())
    }
}

/// Decode `data` as `e` would be; check the outcome is an error of the right classes or the
/// right length, and that memory stayed bounded.
fn check(e: &Ext, data: &[u8], o: &Options, what: &str) -> Result<Vec<u8>, Error> {
    let key = format!("{:?} {} {o:?}", e.alg, e.inline);
    if WARM.with(|w| w.borrow_mut().insert(key)) {
        let _ = decode(e, &e.raw, o);
    }
    let before = PEAK.current_usage();
    PEAK.reset_peak_usage();
    let r = decode(e, data, o);
    let peak = PEAK.peak_usage().saturating_sub(before);
    assert!(
        peak <= 2 * e.ram.max(4096) + WORKSPACE_ALLOWANCE,
        "{} {what}: peak {peak} bytes for ram_bytes {}",
        e.name,
        e.ram
    );
    match &r {
        Ok(out) => assert_eq!(out.len(), e.len, "{} {what}", e.name),
        Err(err) => assert!(
            matches!(err, Error::Corrupt(_) | Error::InvalidArgument(_)) && [5, 22, 117].contains(&err.errno()),
            "{} {what}: unexpected error {err:?}",
            e.name
        ),
    }
    r
}

#[test]
fn intact_extents_decode_within_the_memory_bound() {
    let _serial = serial();
    for e in extents() {
        let got = check(&e, &e.raw, &Options::default(), "intact").unwrap();
        assert!(got == e.want, "{}", e.name);
    }
}

#[test]
fn bit_flips_truncation_and_extension() {
    let _serial = serial();
    let mut rng = Rng::new(77);
    let opts = [
        Options::default(),
        Options { strategy: Strategy::KmapLocal, ..Options::default() },
        Options {
            strategy: Strategy::Range,
            folio_order: 5,
            out_order: 5,
            decompress_loop: btrfs_compress::LoopVariant::InPlace,
            ..Options::default()
        },
    ];
    let mut errors = 0;
    let mut cases = 0;
    for e in extents() {
        for (k, o) in opts.iter().enumerate() {
            // Bit flips anywhere (header included).
            for _ in 0..6 {
                let mut d = e.raw.clone();
                let i = (rng.next_u64() as usize) % d.len();
                d[i] ^= 1 << (rng.next_u64() % 8);
                errors += check(&e, &d, o, &format!("flip at {i} opts {k}")).is_err() as usize;
                cases += 1;
            }
            // Truncation.
            for cut in [1usize, 4, 9, e.raw.len() / 3, e.raw.len() / 2, e.raw.len().saturating_sub(1)] {
                if cut == 0 || cut >= e.raw.len() {
                    continue;
                }
                errors += check(&e, &e.raw[..cut], o, &format!("cut to {cut} opts {k}")).is_err() as usize;
                cases += 1;
            }
            // Extension with garbage (up to the 128 KiB limit).
            let mut d = e.raw.clone();
            d.extend((0..4096).map(|_| rng.next_u64() as u8));
            d.truncate(131072);
            let _ = check(&e, &d, o, &format!("extended opts {k}"));
            cases += 1;
        }
    }
    assert!(cases > 1000, "{cases} cases");
    assert!(errors > cases / 10, "damage must mostly be detected: {errors} errors in {cases} cases");
}

fn le32(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn header_tampering_gives_the_kernel_error_classes() {
    let _serial = serial();
    for e in extents() {
        let o = Options::default();
        match e.alg {
            CompressType::Lzo => {
                // Total length past the extent, and far too small: -EUCLEAN.
                for total in [e.raw.len() as u32 + 4096, 5, 0, u32::MAX] {
                    let mut d = e.raw.clone();
                    le32(&mut d, 0, total);
                    let err = check(&e, &d, &o, &format!("lzo total {total}")).unwrap_err();
                    assert_eq!(err.errno(), 117, "{} total {total}: {err:?}", e.name);
                }
                // First segment length huge, or zero: -EIO/-EUCLEAN, never a panic.
                for seg in [u32::MAX, 1 << 20, 4420, 0] {
                    let mut d = e.raw.clone();
                    le32(&mut d, 4, seg);
                    let r = check(&e, &d, &o, &format!("lzo seg {seg}"));
                    if seg >= 4420 {
                        assert!(r.is_err(), "{} seg {seg}", e.name);
                    }
                }
            }
            CompressType::Zstd => {
                // A window over 128 KiB without a content size: refused like the kernel.
                let mut d = e.raw.clone();
                let fhd = d[4];
                if fhd & 0x20 == 0 {
                    d[5] = 0x48; // window descriptor: 2^19
                    if fhd >> 6 == 0 {
                        let err = check(&e, &d, &o, "zstd window 512K").unwrap_err();
                        assert_eq!(err.errno(), 5, "{}: {err:?}", e.name);
                    }
                }
                // Bad magic.
                let mut d = e.raw.clone();
                d[0] ^= 0xff;
                assert!(check(&e, &d, &o, "zstd magic").is_err(), "{}", e.name);
            }
            CompressType::Zlib => {
                // Header check fails (method 7): inflated with the wrapper, which refuses it.
                let mut d = e.raw.clone();
                d[0] = (d[0] & 0xf0) | 7;
                assert!(check(&e, &d, &o, "zlib method").is_err(), "{}", e.name);
                // Window over 32 KiB (CINFO 8) with a valid check value.
                let mut d = e.raw.clone();
                d[0] = 0x88;
                let b1 = (0u16..256).find(|b| ((0x88u16 << 8) | b) % 31 == 0 && b & 0x20 == 0).unwrap();
                d[1] = b1 as u8;
                assert!(check(&e, &d, &o, "zlib window").is_err(), "{}", e.name);
            }
            CompressType::None => {}
        }
    }
}
