//! Shared helpers of the differential tests: deterministic data shapes, the option matrix,
//! independent oracles (system zlib through Python, the zstd command, the `lzo` crate) and the
//! kernel fixture loader.
#![forbid(unsafe_code)]

pub mod crafted;
pub mod fuzzing;
pub mod kernel_view;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use btrfs_compress::{Backend, CompressSpec, CompressType, LzoBackend, Options, Strategy};

/// Data shapes of the round-trip matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// All zero bytes.
    Zeros,
    /// Word-like text.
    Text,
    /// Uniformly random bytes.
    Random,
    /// Text, random and zero runs interleaved.
    Mixed,
}

impl Shape {
    /// All shapes.
    pub const ALL: [Shape; 4] = [Shape::Zeros, Shape::Text, Shape::Random, Shape::Mixed];
}

/// The deterministic PRNG of the lab corpus (xorshift64*), shared by the tests.
pub use btrfs_lab::corpus::Rng;

const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "was", "that", "for", "on", "are", "with", "extent", "btrfs", "folio",
    "page", "kmap", "compress", "zstd", "zlib", "lzo", "sector", "inode", "mapping", "range",
];

/// `len` bytes of `shape` from `seed`.
pub fn make(shape: Shape, len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(len + 16);
    match shape {
        Shape::Zeros => v.resize(len, 0),
        Shape::Random => {
            while v.len() < len {
                v.extend_from_slice(&r.next_u64().to_le_bytes());
            }
        }
        Shape::Text => {
            while v.len() < len {
                let w = WORDS[(r.next_u64() % WORDS.len() as u64) as usize];
                v.extend_from_slice(w.as_bytes());
                v.push(if r.next_u64() % 11 == 0 { b'\n' } else { b' ' });
            }
        }
        Shape::Mixed => {
            while v.len() < len {
                let n = 512 + (r.next_u64() % 6000) as usize;
                let kind = r.next_u64() % 3;
                let seed2 = r.next_u64();
                let part = match kind {
                    0 => make(Shape::Text, n, seed2),
                    1 => make(Shape::Random, n / 4, seed2),
                    _ => vec![0; n],
                };
                v.extend_from_slice(&part);
            }
        }
    }
    v.truncate(len);
    v
}

/// Algorithms and levels the matrix covers.
pub fn specs() -> Vec<CompressSpec> {
    ["zlib:1", "zlib:3", "zlib:9", "lzo", "zstd:-5", "zstd:1", "zstd:3", "zstd:9", "zstd:15"]
        .iter()
        .map(|s| btrfs_compress::parse_compress_option(s).expect("valid spec"))
        .collect()
}

/// Every (strategy, backend, page size, folio order) combination.
pub fn all_options() -> Vec<Options> {
    let mut v = Vec::new();
    for backend in Backend::ALL {
        for page_size in [4096usize, 16384, 65536] {
            let max_order = (131072 / page_size).trailing_zeros();
            for folio_order in [0, max_order] {
                for strategy in Strategy::ALL {
                    v.push(Options {
                        strategy,
                        backend,
                        page_size,
                        folio_order,
                        out_order: folio_order,
                        ..Options::default()
                    });
                }
            }
        }
    }
    v
}

/// Options with the loop variants where they apply: zstd's v1-v4 compress loop, in-place
/// decompression for zstd and zlib, the lzokay encoder for lzo.
pub fn variant(o: Options, spec: CompressSpec, alt: bool) -> Options {
    let mut o = o;
    if alt {
        match spec.alg {
            CompressType::Zstd => {
                o.compress_loop = btrfs_compress::LoopVariant::LifoRemap2022;
                o.decompress_loop = btrfs_compress::LoopVariant::InPlace;
            }
            CompressType::Lzo => o.lzo_backend = LzoBackend::Lzokay,
            CompressType::Zlib => o.decompress_loop = btrfs_compress::LoopVariant::InPlace,
            CompressType::None => {}
        }
    }
    o
}

/// Inflate a zlib stream with the system zlib (Python's `zlib` module). `None` when Python is
/// missing.
pub fn system_zlib_decompress(data: &[u8]) -> Option<Result<Vec<u8>, String>> {
    pipe("python3", &["-c", "import sys,zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))"], data)
}

/// Deflate with the system zlib at `level` (Python's `zlib` module).
pub fn system_zlib_compress(data: &[u8], level: i32) -> Option<Result<Vec<u8>, String>> {
    let code = format!("import sys,zlib; sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read(), {level}))");
    pipe("python3", &["-c", &code], data)
}

/// Run the `zstd` command with `args` on `data`. `None` when it is not installed.
pub fn zstd_cli(args: &[&str], data: &[u8]) -> Option<Result<Vec<u8>, String>> {
    pipe("zstd", args, data)
}

fn pipe(cmd: &str, args: &[&str], input: &[u8]) -> Option<Result<Vec<u8>, String>> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take().expect("piped");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    if out.status.success() {
        Some(Ok(out.stdout))
    } else {
        Some(Err(String::from_utf8_lossy(&out.stderr).into_owned()))
    }
}

/// Decode a btrfs lzo extent with the independent `lzo` crate, following the framing rules
/// from the format description (not our decoder's code).
pub fn lzo_oracle_decode(data: &[u8], sectorsize: usize) -> Result<Vec<u8>, String> {
    let rd = |o: usize| -> Result<usize, String> {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| format!("header at {o} past the end"))
    };
    let total = rd(0)?;
    if total > data.len() {
        return Err(format!("total {total} > {}", data.len()));
    }
    let mut pos = 4;
    let mut out = Vec::new();
    while pos < total {
        let left = sectorsize - pos % sectorsize;
        if left < 4 {
            pos += left;
            continue;
        }
        let n = rd(pos)?;
        pos += 4;
        let seg = data.get(pos..pos + n).ok_or("segment past the end")?;
        let d = lzo::decompress(seg, sectorsize).map_err(|e| format!("{e:?}"))?;
        out.extend_from_slice(&d);
        pos += n;
    }
    Ok(out)
}

/// Frame `data` as a btrfs lzo extent with the independent lzokay-native encoder, per the
/// format description.
pub fn lzo_oracle_encode(data: &[u8], sectorsize: usize) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    for chunk in data.chunks(sectorsize) {
        let c = lzokay_native::compress(chunk).expect("lzokay compress");
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(&c);
        let left = sectorsize - out.len() % sectorsize;
        if left < 4 && left != sectorsize {
            out.resize(out.len() + left, 0);
        }
    }
    let total = out.len() as u32;
    out[..4].copy_from_slice(&total.to_le_bytes());
    out
}

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixture directory whose name starts with `prefix` (the first in name order), e.g.
/// `fixture_dir("log-replay-")`; a missing one is a test failure naming the tool that writes it.
pub fn fixture_dir(prefix: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("fixtures"))
        .expect("fixtures/")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .collect();
    dirs.sort();
    dirs.into_iter().next().unwrap_or_else(|| panic!("no fixtures/{prefix}*/ (see the tools/ that writes it)"))
}

/// Decompress a `.zst` file written by the zstd tool (no window limit).
pub fn read_zst(path: &Path) -> Vec<u8> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut dctx = zstd_safe::DCtx::create();
    let size = zstd_safe::get_frame_content_size(&data).ok().flatten().unwrap_or(1 << 20) as usize;
    let mut out = vec![0u8; size];
    let n = dctx.decompress(&mut out[..], &data).unwrap_or_else(|e| panic!("{}: zstd error {e}", path.display()));
    out.truncate(n);
    out
}

/// The sha256 of `data` in lowercase hex, as the fixture manifests record it.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Write `raw` to a new sparse file at `path`: 64 KiB blocks of zeros are left as holes, so an
/// image of hundreds of MiB costs only its data on disk.
pub fn write_sparse(raw: &[u8], path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (k, b) in raw.chunks(65536).enumerate() {
        if b.iter().any(|&x| x != 0) {
            f.write_all_at(b, (k * 65536) as u64).expect("write");
        }
    }
    f.set_len(raw.len() as u64).expect("size");
}

/// Assert two byte strings are equal, reporting the first difference instead of both strings.
#[track_caller]
pub fn assert_same(a: &[u8], b: &[u8], what: &str) {
    if a != b {
        let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        panic!("{what}: bytes differ (lengths {} and {}, first difference at {at})", a.len(), b.len());
    }
}

/// One extent of a kernel fixture: what the kernel's ENCODED_READ reported, with the raw bytes
/// read back from the fixture image by our reader and checked against the kernel's sha256.
#[derive(Clone, Debug)]
pub struct FixtureExtent {
    /// The compress option it was written under (`zstd:3`, `special:zstd:3`, `heuristic:zstd`).
    pub option: String,
    /// Directory in the image.
    pub dir: String,
    /// File name (also the plaintext's name).
    pub file: String,
    /// Codec.
    pub alg: CompressType,
    /// The extent's bytes on disk (inline: the item's data).
    pub raw: Vec<u8>,
    /// File offset.
    pub file_offset: usize,
    /// Bytes of file it covers.
    pub len: usize,
    /// Decompressed size of the whole extent.
    pub unencoded_len: usize,
    /// Offset of the file range into the decompressed extent.
    pub unencoded_offset: usize,
    /// Stored inline.
    pub inline: bool,
}

/// A kernel fixture directory: manifest, plaintexts and compressed extents.
pub struct Fixture {
    /// Its directory.
    pub dir: PathBuf,
    /// The manifest.
    pub manifest: serde_json::Value,
    /// Plaintext by file name.
    pub plain: std::collections::HashMap<String, Vec<u8>>,
    /// Every compressed extent.
    pub extents: Vec<FixtureExtent>,
}

/// Load every fixture under fixtures/ that has an image.
pub fn fixtures() -> Vec<Fixture> {
    let root = repo_root().join("fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(mf) = std::fs::read(dir.join("manifest.json")) else { continue };
        let manifest: serde_json::Value = serde_json::from_slice(&mf).expect("manifest json");
        let Some(image) = manifest["image"]["file"].as_str() else { continue };
        let mut plain = std::collections::HashMap::new();
        for name in manifest["files"].as_object().expect("files").keys() {
            plain.insert(name.clone(), read_zst(&dir.join("plain").join(format!("{name}.zst"))));
        }
        let img = btrfs_image::open_image(&dir.join(image)).expect("fixture image opens");
        let entries = img.walk_files().expect("walk");
        let mut trees = std::collections::HashMap::new();
        let mut extents = Vec::new();
        for x in manifest["extents"].as_array().expect("extents") {
            let alg = match x["compression"].as_str().expect("compression") {
                "zlib" => CompressType::Zlib,
                "zstd" => CompressType::Zstd,
                "lzo-4k" => CompressType::Lzo,
                _ => continue,
            };
            let s = |k: &str| x[k].as_str().expect(k).to_string();
            let n = |k: &str| x[k].as_u64().expect(k) as usize;
            let (d, file) = (s("dir"), s("file"));
            let path = format!("{d}/{file}");
            let entry = entries.lookup(&path).unwrap_or_else(|| panic!("{path} not in image"));
            let tree = trees.entry(entry.tree).or_insert_with(|| img.fs_tree(entry.tree).expect("fs tree"));
            let fe = img
                .file_extents(tree, entry.ino)
                .expect("extents")
                .into_iter()
                .find(|e| e.file_offset as usize == n("file_offset"))
                .unwrap_or_else(|| panic!("{path} has no extent at {}", n("file_offset")));
            let (raw, inline) = match &fe.kind {
                btrfs_image::ExtentKind::Inline { data } => (data.clone(), true),
                _ => (img.read_logical(fe.disk_bytenr, fe.disk_num_bytes as usize).expect("extent bytes"), false),
            };
            let sha: String = sha256_hex(&raw);
            assert_eq!(
                sha,
                s("sha256"),
                "{}: {path} @{}: our reader's bytes differ from ENCODED_READ's",
                dir.display(),
                n("file_offset")
            );
            extents.push(FixtureExtent {
                option: s("option"),
                dir: d,
                file,
                alg,
                raw,
                file_offset: n("file_offset"),
                len: n("len"),
                unencoded_len: n("unencoded_len"),
                unencoded_offset: n("unencoded_offset"),
                inline,
            });
        }
        out.push(Fixture { dir, manifest, plain, extents });
    }
    assert!(!out.is_empty(), "no kernel fixtures under {}", root.display());
    out
}
