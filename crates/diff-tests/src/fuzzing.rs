//! The fuzz targets' bodies, shared with the tests that replay the committed corpora: every
//! input must give a result or a typed error, never a panic, a hang or an unbounded allocation.

use btrfs_compress::{
    compress_extent_raw, decompress_extent, decompress_extent_full, decompress_inline, parse_compress_option, Backend,
    CompressType, Options, Strategy,
};

const ALGS: [CompressType; 3] = [CompressType::Zlib, CompressType::Lzo, CompressType::Zstd];

/// Options chosen by two bytes of the input.
fn options(a: u8, b: u8) -> Options {
    let page_size = [4096usize, 16384, 65536][(b as usize >> 1) % 3];
    let max_order = (131072 / page_size).trailing_zeros();
    let order = u32::from(a >> 4) % (max_order + 1);
    Options {
        strategy: Strategy::ALL[a as usize % Strategy::ALL.len()],
        // The emulated highmem backend costs system calls per mapping: use it for one input in 8.
        backend: if b & 0x70 == 0x70 { Backend::EmulatedHighmem } else { Backend::Heap },
        page_size,
        folio_order: order,
        out_order: order,
        decompress_loop: btrfs_compress::LoopVariant::in_place(b & 1 == 1),
        ..Options::default()
    }
}

/// Decompress arbitrary bytes as a regular or inline extent of any codec, with options, sizes
/// and offsets taken from the first 8 bytes.
pub fn decompress_any(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let alg = ALGS[data[0] as usize % 3];
    let o = options(data[1], data[2]);
    let ram = 1 + (u32::from(data[3]) | u32::from(data[4]) << 8 | u32::from(data[5] & 1) << 16) as usize % 131072;
    let off = (u16::from_le_bytes([data[6], data[7]]) as usize * 2) % ram;
    let body = &data[8..];
    if data[5] & 0x80 != 0 {
        let ram = 1 + ram % 4096;
        if let Ok(out) = decompress_inline(alg, body, ram, &o) {
            assert_eq!(out.len(), ram);
        }
    } else {
        let num = ram - off;
        if let Ok(d) = decompress_extent_full(alg, body, ram, off, num, &o) {
            assert_eq!(d.data.len(), num);
            assert!(d.stream_bytes <= num);
        }
    }
}

/// Compress the input with a codec, level and options from its first 3 bytes, then decompress
/// and compare; the bytes must also equal the direct-map reference.
pub fn roundtrip(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    const SPECS: [&str; 8] = ["zlib:1", "zlib:3", "zlib:9", "lzo", "zstd:-5", "zstd:1", "zstd:3", "zstd:9"];
    let spec = parse_compress_option(SPECS[data[0] as usize % SPECS.len()]).expect("valid");
    let mut o = options(data[1], data[2]);
    o.compress_loop = btrfs_compress::LoopVariant::lifo_remap(data[2] & 2 != 0);
    let body = &data[3..data.len().min(3 + 131072)];
    let reference = Options { page_size: o.page_size, ..Options::default() };
    match (compress_extent_raw(body, spec, &o), compress_extent_raw(body, spec, &reference)) {
        (Ok(a), Ok(b)) => {
            assert!(a.data == b.data, "{spec} {o:?}: strategy changed the bytes");
            let back = decompress_extent(spec.alg, &a.data, body.len(), 0, body.len(), &o).expect("reads back");
            assert!(back == body, "{spec} {o:?}: round trip differs");
        }
        (Err(a), Err(b)) => assert_eq!(a.errno(), b.errno()),
        (a, b) => panic!("{spec} {o:?}: {a:?} vs reference {b:?}"),
    }
}

/// The lzo framing parser alone (regular and inline paths) on arbitrary bytes.
pub fn lzo_framing(data: &[u8]) {
    let o = Options::default();
    let ram = 131072;
    let _ = decompress_extent(CompressType::Lzo, &data[..data.len().min(131072)], ram, 0, ram, &o);
    if !data.is_empty() {
        let _ = decompress_inline(CompressType::Lzo, &data[..data.len().min(131072)], 4096, &o);
    }
}

/// A real image (fixtures/csum/crc32c.img.zst) and its metadata regions: the superblock and the
/// chunk, root and first fs tree blocks.
struct Target {
    image: std::sync::Arc<Vec<u8>>,
    regions: Vec<(usize, usize)>,
}

fn target() -> &'static std::sync::Mutex<Target> {
    static T: std::sync::OnceLock<std::sync::Mutex<Target>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let raw = crate::read_zst(&crate::repo_root().join("fixtures/csum/crc32c.img.zst"));
        let img = btrfs_image::open_bytes(raw.clone()).expect("fixture image");
        let mut regions = vec![(65536, 4096)];
        for logical in [img.sb.chunk_root, img.sb.root] {
            if let Ok(p) = img.chunks.mirror(logical, 0) {
                regions.push((p.offset as usize, img.sb.nodesize as usize));
            }
        }
        std::sync::Mutex::new(Target { image: std::sync::Arc::new(raw), regions })
    })
}

/// Damage the metadata of a real image as the input says (region, then (position, xor) pairs;
/// optionally with a valid superblock checksum so parsing goes deeper), open it, walk every tree
/// and list every file and extent. Must never panic.
pub fn image_metadata(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    if data[1] & 4 != 0 {
        return image_metadata_multi(data);
    }
    let mut t = target().lock().unwrap_or_else(|e| e.into_inner());
    let (start, len) = t.regions[data[0] as usize % t.regions.len()];
    let patches: Vec<(usize, u8)> = data[2..]
        .chunks_exact(3)
        .take(32)
        .map(|c| (start + (u16::from_le_bytes([c[0], c[1]]) as usize % len), c[2]))
        .collect();
    let fix = data[1] & 1 == 1;
    let saved_csum: [u8; 4];
    let mut saved_block_csum: Option<[u8; 4]> = None;
    {
        let b = std::sync::Arc::get_mut(&mut t.image).expect("image not shared");
        saved_csum = b[65536..65540].try_into().expect("4 bytes");
        for &(p, x) in &patches {
            b[p] ^= x;
        }
        if fix {
            let c = crc32c::crc32c(&b[65536 + 32..65536 + 4096]);
            b[65536..65540].copy_from_slice(&c.to_le_bytes());
        }
        if data[1] & 2 != 0 && start != 65536 {
            // Also make the damaged tree block's checksum valid, so the item parsing behind it runs.
            saved_block_csum = Some(b[start..start + 4].try_into().expect("4 bytes"));
            let c = crc32c::crc32c(&b[start + 32..start + len]);
            b[start..start + 4].copy_from_slice(&c.to_le_bytes());
        }
    }
    if let Ok(img) = btrfs_image::open_shared(t.image.clone()) {
        if let Ok(files) = btrfs_restore::inspect(&img) {
            files.files().for_each(drop);
        }
    }
    let b = std::sync::Arc::get_mut(&mut t.image).expect("image not shared");
    if let Some(c) = saved_block_csum {
        b[start..start + 4].copy_from_slice(&c);
    }
    for &(p, x) in patches.iter().rev() {
        b[p] ^= x;
    }
    b[65536..65540].copy_from_slice(&saved_csum);
}

/// The RAID5 filesystem of the multi-device fixture (three devices written by the kernel),
/// inflated once into sparse files, and its metadata regions: each device's superblock (its
/// sys_chunk_array holds RAID5 chunk items with three stripes), and the data stripes of the
/// chunk tree's and root tree's blocks.
struct MultiTarget {
    _dir: tempfile::TempDir,
    paths: Vec<std::path::PathBuf>,
    regions: Vec<(usize, u64, usize)>,
}

fn multi_target() -> &'static std::sync::Mutex<MultiTarget> {
    static T: std::sync::OnceLock<std::sync::Mutex<MultiTarget>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let fx = crate::fixture_dir("multi-device-").join("raid5");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut paths = Vec::new();
        for i in 1..=3 {
            let p = dir.path().join(format!("dev{i}.img"));
            crate::write_sparse(&crate::read_zst(&fx.join(format!("dev{i}.img.zst"))), &p);
            paths.push(p);
        }
        let refs: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();
        let img = btrfs_image::open_devices(&refs, btrfs_image::OpenOptions::default()).expect("RAID5 fixture");
        let mut regions: Vec<(usize, u64, usize)> = (0..3).map(|i| (i, 65536, 4096)).collect();
        for logical in [img.sb.chunk_root, img.sb.root] {
            if let Ok(s) = img.chunks.mirror(logical, 0) {
                regions.push(((s.devid - 1) as usize, s.offset, img.sb.nodesize as usize));
            }
        }
        std::sync::Mutex::new(MultiTarget { _dir: dir, paths, regions })
    })
}

/// [`image_metadata`] on a RAID5 filesystem of three devices: damage one device's superblock or
/// the data stripe of a tree block (optionally with valid checksums, so that chunk items with
/// damaged stripe counts, device ids, stripe lengths and offsets are parsed and mapped, and tree
/// blocks rebuilt from parity), open the three, walk, verify, and put the bytes back.
pub fn image_metadata_multi(data: &[u8]) {
    use std::os::unix::fs::FileExt;
    if data.len() < 4 {
        return;
    }
    let t = multi_target().lock().unwrap_or_else(|e| e.into_inner());
    let (dev, start, len) = t.regions[data[0] as usize % t.regions.len()];
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&t.paths[dev]).expect("device file");
    let mut block = vec![0u8; len];
    f.read_exact_at(&mut block, start).expect("read");
    let saved = block.clone();
    for c in data[2..].chunks_exact(3).take(32) {
        block[u16::from_le_bytes([c[0], c[1]]) as usize % len] ^= c[2];
    }
    if data[1] & 1 != 0 || (data[1] & 2 != 0 && start != 65536) {
        // A valid checksum (crc32c over what follows the 32-byte checksum field).
        let end = if start == 65536 { 4096 } else { len };
        let c = crc32c::crc32c(&block[32..end]);
        block[..4].copy_from_slice(&c.to_le_bytes());
    }
    f.write_all_at(&block, start).expect("write");
    let refs: Vec<&std::path::Path> = t.paths.iter().map(|p| p.as_path()).collect();
    if let Ok(img) = btrfs_image::open_devices(&refs, btrfs_image::OpenOptions::default()) {
        if let Ok(files) = btrfs_restore::inspect(&img) {
            files.files().for_each(drop);
        }
        let _ = btrfs_restore::verify(&img, &btrfs_restore::read_options());
    }
    f.write_all_at(&saved, start).expect("restore");
}

/// A directory chain 3,000 levels deep written by the kernel (fixtures/deep-tree-*/chain-3000,
/// `tools/deep-tree-fixture.py 3000`), inflated once into a sparse file, and its fs tree's blocks
/// (found by their headers: this filesystem's fsid, owner 5, mapped where they lie).
struct DeepTarget {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    blocks: Vec<u64>,
    nodesize: usize,
}

fn deep_target() -> &'static std::sync::Mutex<DeepTarget> {
    static T: std::sync::OnceLock<std::sync::Mutex<DeepTarget>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let raw = crate::read_zst(&crate::fixture_dir("deep-tree-").join("chain-3000.img.zst"));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chain.img");
        crate::write_sparse(&raw, &path);
        let img = btrfs_image::open_bytes(raw.clone()).expect("deep fixture");
        let nodesize = img.sb.nodesize as usize;
        let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let blocks = raw
            .chunks_exact(nodesize)
            .enumerate()
            .filter(|(k, b)| {
                let at = (k * nodesize) as u64;
                (b[32..48] == img.sb.fsid || b[32..48] == img.sb.metadata_uuid)
                    && u64_at(b, 88) == btrfs_image::BTRFS_FS_TREE_OBJECTID
                    && img.chunks.mirror(u64_at(b, 48), 0).is_ok_and(|m| m.offset == at)
            })
            .map(|(k, _)| (k * nodesize) as u64)
            .collect();
        std::sync::Mutex::new(DeepTarget { _dir: dir, path, blocks, nodesize })
    })
}

/// How many fs tree blocks [`image_metadata_deep`] damages (the test checks it found them).
pub fn deep_tree_blocks() -> usize {
    deep_target().lock().unwrap_or_else(|e| e.into_inner()).blocks.len()
}

/// [`image_metadata`] on a directory chain 3,000 levels deep: damage one of its fs tree blocks
/// (with a valid checksum when asked, so that damaged dir items, inode refs and keys deep in the
/// chain are parsed), then walk, inspect, count and verify; put the bytes back. Must never
/// panic, and the walk of what is left stays within the chain's size.
pub fn image_metadata_deep(data: &[u8]) {
    use std::os::unix::fs::FileExt;
    if data.len() < 4 {
        return;
    }
    let t = deep_target().lock().unwrap_or_else(|e| e.into_inner());
    let Some(&start) = t.blocks.get(data[0] as usize % t.blocks.len().max(1)) else { return };
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&t.path).expect("image file");
    let mut block = vec![0u8; t.nodesize];
    f.read_exact_at(&mut block, start).expect("read");
    let saved = block.clone();
    for c in data[2..].chunks_exact(3).take(32) {
        block[32 + u16::from_le_bytes([c[0], c[1]]) as usize % (t.nodesize - 32)] ^= c[2];
    }
    if data[1] & 1 != 0 {
        let c = crc32c::crc32c(&block[32..]);
        block[..4].copy_from_slice(&c.to_le_bytes());
    }
    f.write_all_at(&block, start).expect("write");
    if let Ok(img) = btrfs_image::open_image(&t.path) {
        if let Ok(files) = btrfs_restore::inspect(&img) {
            assert!(files.walk.len() < 4000, "the walk found more than the chain holds");
            files.files().for_each(drop);
        }
        let _ = btrfs_restore::usage(&img, &[]);
        let _ = btrfs_restore::verify(&img, &btrfs_restore::read_options());
    }
    f.write_all_at(&saved, start).expect("restore");
}

/// A real image (fixtures/csum/crc32c.img.zst, 128 MiB) compressed as a zstd frame; the same
/// with both superblocks (64 KiB, 64 MiB) damaged; and a frame of 16 MiB of non-zero bytes to
/// append past the device.
struct ZstTarget {
    frame: Vec<u8>,
    bad_superblocks: Vec<u8>,
    bomb: Vec<u8>,
}

fn zst_target() -> &'static ZstTarget {
    static T: std::sync::OnceLock<ZstTarget> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let z = |data: &[u8]| {
            let mut out = vec![0u8; zstd_safe::compress_bound(data.len())];
            let n = zstd_safe::compress(&mut out[..], data, 1).expect("compress");
            out.truncate(n);
            out
        };
        let mut raw = crate::read_zst(&crate::repo_root().join("fixtures/csum/crc32c.img.zst"));
        let frame = z(&raw);
        for at in [65536usize, 64 << 20] {
            raw[at + 256] ^= 0xff;
        }
        ZstTarget { frame, bad_superblocks: z(&raw), bomb: z(&vec![0x5a; 16 << 20]) }
    })
}

/// A `.zst` image damaged as the input says: its frame header or any byte patched, the frame cut,
/// or frames of non-zero data appended past the device (the image's superblocks intact, or both
/// damaged); then opened and walked. Must never panic; data past the device the superblock
/// declares, or past 64 MiB without a valid superblock, must be refused (never inflated).
pub fn image_zst(data: &[u8]) {
    use std::io::Write;
    if data.len() < 6 {
        return;
    }
    let t = zst_target();
    let mut z = if data[1] & 1 != 0 { t.bad_superblocks.clone() } else { t.frame.clone() };
    let mode = data[0] % 4;
    match mode {
        0 | 1 => {
            let span = if mode == 0 { 24.min(z.len()) } else { z.len() };
            for c in data[2..].chunks_exact(3).take(16) {
                let at = usize::from(u16::from_le_bytes([c[0], c[1]])) * 97 % span;
                z[at] ^= c[2];
            }
        }
        2 => z.truncate(u32::from_le_bytes([data[2], data[3], data[4], data[5]]) as usize % z.len()),
        _ => (0..=data[2] % 8).for_each(|_| z.extend_from_slice(&t.bomb)),
    }
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(&z).expect("write");
    match btrfs_image::open_image(f.path()) {
        Ok(img) => {
            assert!(mode != 3, "data past the device was inflated");
            if let Ok(files) = btrfs_restore::inspect(&img) {
                files.files().for_each(drop);
            }
        }
        Err(e) if mode == 3 => {
            let m = e.to_string();
            assert!(m.contains("past the") || m.contains("no valid superblock"), "{m}");
        }
        Err(_) => {}
    }
}

/// The kernel deflate on arbitrary data, level, era, input chunking and output room: the
/// stream must inflate (flate2, Adler-32 checked) to the data, whatever the sizes the caller
/// offers, and the state machine must finish without an error.
pub fn kernel_deflate(data: &[u8]) {
    use kernel_deflate::{Deflate, Flush, KernelEra, Status};
    use std::io::Read;
    if data.len() < 4 {
        return;
    }
    let level = 1 + i32::from(data[0] % 9);
    let era = if data[1] & 1 == 0 { KernelEra::Before6_3 } else { KernelEra::Since6_3 };
    let chunk = 1 + (usize::from(data[1] >> 1) << 9); // 1 B to 64 KiB of input per call
    let room = 1 + usize::from(data[2]) * 16; // 1 to 4081 B of output per call
    let flush = if data[3] & 1 == 0 { Flush::SyncFlush } else { Flush::NoFlush };
    let body = &data[4..data.len().min(4 + 262_144)];
    let mut d = Deflate::new(level, era).expect("valid level");
    let mut out = vec![0u8; body.len() + body.len() / 8 + 1024];
    let mut calls = 0usize;
    while (d.total_in() as usize) < body.len() {
        let (i, o) = (d.total_in() as usize, d.total_out() as usize);
        if o + room > out.len() {
            out.resize(out.len() * 2 + room, 0);
        }
        let st = d.compress(&body[i..(i + chunk).min(body.len())], &mut out[o..o + room], flush).expect("deflate");
        assert!(st != Status::StreamEnd, "stream ended before Z_FINISH");
        calls += 1;
        assert!(calls < 10_000_000, "no progress");
    }
    loop {
        let o = d.total_out() as usize;
        if o + room > out.len() {
            out.resize(out.len() * 2 + room, 0);
        }
        if d.compress(&[], &mut out[o..o + room], Flush::Finish).expect("finish") == Status::StreamEnd {
            break;
        }
        calls += 1;
        assert!(calls < 10_000_000, "Z_FINISH makes no progress");
    }
    out.truncate(d.total_out() as usize);
    let mut back = Vec::new();
    flate2::read::ZlibDecoder::new(&out[..]).read_to_end(&mut back).expect("our stream inflates");
    assert!(back == body, "level {level} {era:?} chunk {chunk} room {room}: round trip differs");
}
