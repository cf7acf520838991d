//! Whole images written by real kernels (fixtures/*/image.img.zst): every file reads back as
//! the kernel's plaintext, every extent agrees with what the kernel's ENCODED_READ reported,
//! `verify` passes, and damaged images give typed errors.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use btrfs_compress::Options;
use btrfs_image::{open_image, Error, FileKind};
use btrfs_restore::{inspect, plan_file, read_options, verify, write_extents};
use diff_tests::{read_zst, repo_root};
use serde_json::Value;

fn fixtures() -> Vec<(PathBuf, Value)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(repo_root().join("fixtures")).unwrap() {
        let dir = e.unwrap().path();
        let Ok(mf) = std::fs::read(dir.join("manifest.json")) else { continue };
        let m: Value = serde_json::from_slice(&mf).unwrap();
        if m.get("image").is_some() {
            v.push((dir, m));
        }
    }
    assert!(!v.is_empty(), "no fixture images");
    v
}

/// (path in the image, plaintext name) of every file the generator wrote.
fn files_of(m: &Value) -> Vec<(String, String)> {
    let special: Vec<(String, String)> = m["special"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| (s["path"].as_str().unwrap().to_string(), s["plain"].as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut v = Vec::new();
    for (opt, state) in m["options"].as_object().unwrap() {
        if state != "ok" {
            continue;
        }
        for name in m["files"].as_object().unwrap().keys() {
            // Plaintexts of the special scenarios are not written under the option directories.
            if special
                .iter()
                .any(|(path, _)| *path == format!("special/{name}") || *path == format!("heuristic/{name}"))
            {
                continue;
            }
            v.push((format!("{}/{name}", opt.replace(':', "_")), name.clone()));
        }
    }
    v.extend(special);
    v
}

fn image_path(dir: &Path, m: &Value) -> PathBuf {
    dir.join(m["image"]["file"].as_str().unwrap())
}

/// A file's bytes through extract's writer: its plan, then every extent written into a file of
/// the planned size with `write_extents`.
fn read_back(img: &btrfs_image::Image, tree: &btrfs_image::Tree, e: &btrfs_image::DirEntry, opts: &Options) -> Vec<u8> {
    let plan = plan_file(img, tree, e).unwrap();
    let path = tempfile_path();
    let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap();
    f.set_len(plan.size).unwrap();
    write_extents(img, &plan, 0..plan.extents.len(), &f, opts, btrfs_restore::Csum::Check, &|| "test".into()).unwrap();
    let got = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    got
}

#[test]
fn every_file_reads_back_as_the_kernels_plaintext() {
    for (dir, m) in fixtures() {
        let img = open_image(&image_path(&dir, &m)).unwrap();
        let entries = img.walk_files().unwrap();
        let mut checked = 0;
        for (path, name) in files_of(&m) {
            {
                let e = entries.lookup(&path).unwrap_or_else(|| panic!("{path} not in image"));
                assert_eq!(e.kind, FileKind::Regular);
                let want = read_zst(&dir.join("plain").join(format!("{name}.zst")));
                for opts in [Options::default(), read_options()] {
                    let got = read_back(&img, &img.fs_tree(e.tree).unwrap(), e, &opts);
                    assert!(got == want, "{path}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 50, "{checked}");
        eprintln!("{}: {checked} files read back", dir.display());
    }
}

#[test]
fn extents_agree_with_the_kernels_encoded_read() {
    for (dir, m) in fixtures() {
        let img = open_image(&image_path(&dir, &m)).unwrap();
        let files: Vec<_> = inspect(&img).unwrap().files().collect();
        let mut matched = 0;
        for x in m["extents"].as_array().unwrap() {
            let d = x["dir"].as_str().map_or_else(|| x["option"].as_str().unwrap().replace(':', "_"), str::to_string);
            let path = format!("{d}/{}", x["file"].as_str().unwrap());
            let enc = x["compression"].as_str().unwrap();
            if enc == "none" {
                continue; // stored plain or a hole: ENCODED_READ reports file-level lengths
            }
            let f = files.iter().find(|f| f.path == path).unwrap();
            let off = x["file_offset"].as_u64().unwrap();
            let e = f.extents.iter().find(|e| e.file_offset == off).unwrap_or_else(|| panic!("{path} @{off}"));
            let want = match enc {
                "lzo-4k" => "lzo",
                other => other,
            };
            assert_eq!(e.compression, want, "{path} @{off}");
            assert_eq!(e.offset, x["unencoded_offset"].as_u64().unwrap(), "{path} @{off}");
            if e.kind != "inline" {
                assert_eq!(e.ram_bytes, x["unencoded_len"].as_u64().unwrap(), "{path} @{off}");
                assert_eq!(e.disk_num_bytes, x["encoded_len"].as_u64().unwrap(), "{path} @{off}");
            } else {
                assert_eq!(e.disk_num_bytes, x["encoded_len"].as_u64().unwrap(), "{path} @{off}");
            }
            matched += 1;
        }
        assert!(matched >= 60, "{matched}");
    }
}

#[test]
fn verify_decodes_every_compressed_extent_and_checks_every_checksum() {
    for (dir, m) in fixtures() {
        let img = open_image(&image_path(&dir, &m)).unwrap();
        let r = verify(&img, &read_options()).unwrap();
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        for alg in ["zlib", "lzo", "zstd"] {
            assert!(r.decoded.get(alg).copied().unwrap_or(0) > 0, "no {alg} extents decoded: {r:?}");
        }
        assert!(r.csum_sectors > 100, "{r:?}");
        assert_eq!(r.csum_sectors, img.csum_sectors().unwrap(), "every stored data checksum was checked");
    }
}

/// The first fixture image, decompressed.
fn raw_image() -> Vec<u8> {
    let (dir, m) = fixtures().remove(0);
    read_zst(&image_path(&dir, &m))
}

fn open_bytes(b: &[u8]) -> Result<btrfs_image::Image, Error> {
    btrfs_image::open_bytes(b.to_vec())
}

fn tempfile_path() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!("btrfs-image-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)))
}

const SB: usize = 65536;

fn fix_sb_csum(b: &mut [u8]) {
    let c = crc32c::crc32c(&b[SB + 32..SB + 4096]);
    b[SB..SB + 4].copy_from_slice(&c.to_le_bytes());
}

#[test]
fn damaged_images_give_typed_errors() {
    // Without the superblock's copy at 64 MiB, so that a damaged primary is refused with its own
    // error (with the copy it gives way to it: `mirrors.rs`).
    let mut good = raw_image();
    good[64 << 20..(64 << 20) + 4096].fill(0);
    assert!(open_bytes(&good).is_ok());
    // Not btrfs at all.
    assert!(matches!(open_bytes(&vec![0u8; 1 << 20]), Err(Error::NotBtrfs)));
    assert!(matches!(open_bytes(b"short"), Err(Error::NotBtrfs)));
    // Superblock bit flip.
    let mut b = good.clone();
    b[SB + 0x100] ^= 1;
    assert!(matches!(open_bytes(&b), Err(Error::BadChecksum { what: "superblock", .. })));
    // Unknown checksum type (with a valid crc32c, so the type is what is refused).
    let mut b = good.clone();
    b[SB + 196] = 9;
    fix_sb_csum(&mut b);
    assert!(matches!(open_bytes(&b), Err(Error::UnsupportedCsum(9))));
    // Two profile bits at once (DUP and RAID0) in the system chunk array.
    let mut b = good.clone();
    let ty_at = SB + 811 + 17 + 24;
    let ty = u64::from_le_bytes(b[ty_at..ty_at + 8].try_into().unwrap()) | (1 << 3);
    b[ty_at..ty_at + 8].copy_from_slice(&ty.to_le_bytes());
    fix_sb_csum(&mut b);
    assert!(matches!(open_bytes(&b), Err(Error::UnsupportedProfile { .. })), "{:?}", open_bytes(&b).err());
    // The raid-stripe-tree and extent-tree-v2 incompat bits: refused, naming the feature.
    for (bit, name) in [(1u64 << 14, "raid-stripe-tree"), (1 << 13, "extent-tree-v2")] {
        let mut b = good.clone();
        let f = u64::from_le_bytes(b[SB + 188..SB + 196].try_into().unwrap()) | bit;
        b[SB + 188..SB + 196].copy_from_slice(&f.to_le_bytes());
        fix_sb_csum(&mut b);
        let e = open_bytes(&b).expect_err("refused");
        assert!(matches!(e, Error::UnsupportedFeature(_)) && e.to_string().contains(name), "{e}");
    }
    // Chunk root pointing nowhere.
    let mut b = good.clone();
    b[SB + 88..SB + 96].copy_from_slice(&0x7fff_ffff_0000u64.to_le_bytes());
    fix_sb_csum(&mut b);
    assert!(matches!(open_bytes(&b), Err(Error::Unmapped(_))));
    // A damaged tree block: flip a byte of the root tree's first block. Metadata is DUP here:
    // one copy damaged is read from the other (said in repairs), both is a checksum error.
    let img = open_bytes(&good).unwrap();
    let phys = img.chunks.mirror(img.sb.root, 0).unwrap().offset as usize;
    let mut b = good.clone();
    b[phys + 200] ^= 0x40;
    assert!(open_bytes(&b).is_ok_and(|i| !i.repairs().is_empty()));
    if img.chunks.copies(img.sb.root) == 2 {
        let second = img.chunks.mirror(img.sb.root, 1).unwrap().offset as usize;
        b[second + 200] ^= 0x40;
    }
    assert!(matches!(open_bytes(&b), Err(Error::BadChecksum { what: "tree block", .. })));
    // Truncated image: the chunk tree lies past the end.
    let cut = &good[..phys.min(good.len()) / 2];
    assert!(open_bytes(cut).is_err());
    // A truncated .zst image.
    let (dir, m) = fixtures().remove(0);
    let z = std::fs::read(image_path(&dir, &m)).unwrap();
    let p = tempfile_path();
    std::fs::write(&p, &z[..z.len() / 2]).unwrap();
    assert!(matches!(open_image(&p), Err(Error::Corrupt(_))));
    let _ = std::fs::remove_file(&p);
}

#[test]
fn random_damage_to_metadata_never_panics() {
    let mut shared = std::sync::Arc::new(raw_image());
    let img = btrfs_image::open_shared(shared.clone()).unwrap();
    let mut rng = diff_tests::Rng::new(4242);
    let root_phys = img.chunks.mirror(img.sb.root, 0).unwrap().offset as usize;
    let chunk_phys = img.chunks.mirror(img.sb.chunk_root, 0).unwrap().offset as usize;
    drop(img);
    for i in 0..150 {
        let base = [SB, root_phys, chunk_phys][i % 3];
        let flips: Vec<(usize, u8)> = (0..1 + rng.next_u64() % 4)
            .map(|_| (base + (rng.next_u64() as usize % 16384), 1u8 << (rng.next_u64() % 8)))
            .collect();
        let b = std::sync::Arc::get_mut(&mut shared).expect("no image holds the buffer");
        let saved_csum: [u8; 4] = b[SB..SB + 4].try_into().unwrap();
        for &(at, bit) in &flips {
            b[at] ^= bit;
        }
        if base == SB {
            fix_sb_csum(b); // get past the superblock check to the parsing behind it
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Ok(img) = btrfs_image::open_shared(shared.clone()) {
                if let Ok(files) = inspect(&img) {
                    files.files().for_each(drop);
                }
                if i % 10 == 0 {
                    let _ = verify(&img, &Options::default());
                }
            }
        }));
        assert!(r.is_ok(), "panic reading a damaged image (case {i})");
        let b = std::sync::Arc::get_mut(&mut shared).expect("no image holds the buffer");
        for &(at, bit) in &flips {
            b[at] ^= bit;
        }
        b[SB..SB + 4].copy_from_slice(&saved_csum);
    }
}

#[test]
fn all_four_checksum_types_are_verified() {
    let dir = repo_root().join("fixtures/csum");
    let m: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    for (file, csum) in m["images"].as_object().unwrap() {
        let img = open_image(&dir.join(file)).unwrap();
        assert_eq!(img.sb.csum_type.name(), csum.as_str().unwrap(), "{file}");
        let r = verify(&img, &read_options()).unwrap();
        assert!(r.failures.is_empty() && r.csum_sectors > 0 && r.decoded["zstd"] > 0, "{file}: {r:?}");
        let w = img.walk_files().unwrap();
        for (i, path) in w.paths() {
            let e = w.get(i);
            let path = path.as_bytes().escape_ascii().to_string();
            let got = read_back(&img, &img.fs_tree(e.tree).unwrap(), e, &Options::default());
            let want = &m["files"][&path];
            assert_eq!(got.len() as u64, want["size"].as_u64().unwrap(), "{file} {path}");
            let sha: String = diff_tests::sha256_hex(&got);
            assert_eq!(sha, want["sha256"].as_str().unwrap(), "{file} {path}");
        }
    }
}

#[test]
fn a_damaged_data_sector_fails_verify_and_names_the_file() {
    let (dir, m) = fixtures().remove(0);
    let raw = read_zst(&image_path(&dir, &m));
    let img = btrfs_image::open_bytes(raw.clone()).unwrap();
    // The first regular compressed extent of zstd_3/text-128k.
    let e = *img.walk_files().unwrap().lookup("zstd_3/text-128k").unwrap();
    let fe = img.file_extents(&img.fs_tree(e.tree).unwrap(), e.ino).unwrap().remove(0);
    let phys = img.chunks.mirror(fe.disk_bytenr, 0).unwrap().offset as usize;
    drop(img);
    let mut b = raw;
    b[phys + 100] ^= 0x10;
    let img = btrfs_image::open_bytes(b).unwrap();
    let r = verify(&img, &Options::default()).unwrap();
    assert!(
        r.failures.iter().any(|f| f.contains("zstd_3/text-128k") && f.contains("checksum mismatch")),
        "{:?}",
        r.failures
    );
}

#[test]
fn a_damaged_csum_item_is_reported_not_panicked() {
    let (dir, m) = fixtures().remove(0);
    let raw = read_zst(&image_path(&dir, &m));
    let img = btrfs_image::open_bytes(raw.clone()).unwrap();
    let (csum_root, level) = img.tree_root(7).expect("csum tree");
    assert_eq!(level, 0, "small image: the csum tree is one leaf");
    let ns = img.sb.nodesize as usize;
    let phys = img.chunks.mirror(csum_root, 0).unwrap().offset as usize;
    drop(img);
    let mut b = raw;
    // Flip the last bytes of the leaf (item data grows from the end), then re-checksum the block
    // so the damage reaches the csum items rather than the block check.
    for i in 1..=16 {
        b[phys + ns - i] ^= 0x5a;
    }
    let c = crc32c::crc32c(&b[phys + 32..phys + ns]);
    b[phys..phys + 4].copy_from_slice(&c.to_le_bytes());
    let img = btrfs_image::open_bytes(b).unwrap();
    let r = verify(&img, &Options::default()).unwrap();
    assert!(r.failures.iter().any(|f| f.contains("checksum mismatch")), "{:?}", r.failures);
}

/// The inline extent bomb of issue 24: an uncompressed inline extent of a few bytes whose item
/// and inode claim 4 GiB. The kernel's tree-checker rejects the leaf ("invalid ram_bytes for
/// uncompressed inline extent"); here every command gets a typed error for that file and nothing
/// sizes a buffer by the claim.
#[test]
fn an_inline_extent_claiming_more_than_it_holds_is_refused() {
    let (raw, path) = diff_tests::crafted::inline_bomb(1 << 32);
    let img = open_bytes(&raw).unwrap();
    let entry = *img.walk_files().unwrap().lookup(path.as_bytes()).unwrap();
    let tree = img.fs_tree(entry.tree).unwrap();
    let e = img.file_extents(&tree, entry.ino).expect_err("refused");
    assert!(e.to_string().contains("ram_bytes of an uncompressed inline extent"), "{e}");
    let d = tempfile::tempdir().unwrap();
    let r = btrfs_restore::extract(
        &img,
        &d.path().join("out"),
        &btrfs_restore::ExtractOptions::default(),
        &std::sync::atomic::AtomicBool::new(false),
        &|_, _| {},
    );
    match r {
        Ok(r) => assert!(r.errors.iter().any(|m| m.contains("ram_bytes")), "{:?}", r.errors),
        Err(e) => assert!(e.to_string().contains("ram_bytes"), "{e}"),
    }
    let big = std::fs::metadata(d.path().join("out").join(&path));
    assert!(big.is_err(), "no 4 GiB file written");
    match btrfs_restore::verify(&img, &btrfs_restore::read_options()) {
        Err(e) => assert!(e.to_string().contains("ram_bytes"), "{e}"),
        Ok(v) => assert!(v.failures.iter().any(|f| f.contains("ram_bytes")), "{:?}", v.failures),
    }
}

/// A regular extent whose disk_num_bytes claims 2^63 (issue 24: capacity overflow in verify):
/// a typed error, no allocation sized by the claim.
#[test]
fn an_extent_claiming_2_to_the_63_bytes_is_refused() {
    let img = open_bytes(&read_zst(&repo_root().join("fixtures/csum/crc32c.img.zst"))).unwrap();
    let e = img.read_logical(0x100_0000, 1 << 40).expect_err("refused");
    assert!(e.to_string().contains("128 MiB"), "{e}");
    let e = img.read_logical(u64::MAX - 4096, 8192).expect_err("refused");
    assert!(matches!(e, Error::Unmapped(_)), "{e}");
}

/// A `.zst` image that inflates past the device its superblock describes (issue 24's bomb: 1.5
/// MB that filled $TMPDIR with 4 GiB): refused once the data passes the device's end; zeros past
/// it (a copy of a larger block device) are skipped, not written.
#[test]
fn a_zst_image_never_inflates_past_its_device() {
    let raw = read_zst(&repo_root().join("fixtures/csum/crc32c.img.zst"));
    let d = tempfile::tempdir().unwrap();
    let zst = |name: &str, data: &[u8]| {
        let mut out = vec![0u8; zstd_safe::compress_bound(data.len())];
        let n = zstd_safe::compress(&mut out[..], data, 3).unwrap();
        let p = d.path().join(name);
        std::fs::write(&p, &out[..n]).unwrap();
        p
    };
    let mut zeros = raw.clone();
    zeros.resize(raw.len() + (8 << 20), 0);
    let img = open_image(&zst("zeros.img.zst", &zeros)).unwrap();
    assert!(img.walk_files().is_ok());
    let mut data = raw.clone();
    data.extend(std::iter::repeat_n(0x5a_u8, 8 << 20));
    let e = open_image(&zst("data.img.zst", &data)).expect_err("refused");
    assert!(e.to_string().contains("past the") && e.to_string().contains("device"), "{e}");
    // A damaged superblock does not lift the bound: with the primary damaged the copy at 64 MiB
    // gives the device's size; with both damaged, inflating stops at 64 MiB (before, the bound
    // was 1 TiB: 8 MiB of data past the device inflated whole, and so would 1 TiB).
    for (copies, what) in [(&[65536usize][..], "past the"), (&[65536, 64 << 20][..], "no valid superblock")] {
        let mut bad = data.clone();
        copies.iter().for_each(|&at| bad[at + 256] ^= 0xff);
        let e = open_image(&zst("bad-sb.img.zst", &bad)).expect_err("refused");
        assert!(e.to_string().contains(what), "{e}");
    }
}

/// One entry whose name cannot be one (issue 24: a bad name anywhere refused the whole image):
/// the walk skips it, says so, and everything else is read and extracted.
#[test]
fn a_bad_name_skips_that_entry_and_the_rest_is_read() {
    let before: Vec<String> = open_bytes(&diff_tests::crafted::base())
        .unwrap()
        .walk_files()
        .unwrap()
        .paths()
        .map(|(_, p)| p.as_bytes().escape_ascii().to_string())
        .collect();
    let raw = diff_tests::crafted::bad_name();
    let img = open_bytes(&raw).unwrap();
    let after: Vec<String> =
        img.walk_files().unwrap().paths().map(|(_, p)| p.as_bytes().escape_ascii().to_string()).collect();
    let lost: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
    assert!(!lost.is_empty() && lost.iter().all(|p| p.ends_with("top-file")), "{lost:?}");
    assert_eq!(after.len(), before.len() - lost.len());
    let s = img.skipped();
    assert!(!s.is_empty() && s.iter().all(|l| l.contains("bad file name") && l.contains("top/file")), "{s:?}");
    let d = tempfile::tempdir().unwrap();
    let r = btrfs_restore::extract(
        &img,
        d.path(),
        &btrfs_restore::ExtractOptions::default(),
        &std::sync::atomic::AtomicBool::new(false),
        &|_, _| {},
    )
    .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(d.path().join("sv1/file").is_file());
}
