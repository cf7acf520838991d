//! The lab's deterministic in-memory corpus and the reader for `--corpus DIR`.

use std::path::Path;

use bytes::Bytes;

use btrfs_compress::BTRFS_MAX_UNCOMPRESSED;

/// Kinds of data in the built-in corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Prose-like text with a Zipf-ish vocabulary.
    Text,
    /// Structured binary records (tables of small integers, offsets, padding).
    Binary,
    /// Text, binary, zero and random runs interleaved.
    Mixed,
    /// Uniformly random bytes.
    Incompressible,
}

impl Kind {
    /// All kinds in corpus order.
    pub const ALL: [Kind; 4] = [Kind::Text, Kind::Binary, Kind::Mixed, Kind::Incompressible];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Binary => "binary",
            Kind::Mixed => "mixed",
            Kind::Incompressible => "incompressible",
        }
    }
}

/// xorshift64*: small, fast and the same everywhere.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ra", "to", "su", "vi", "an", "el", "or", "is", "un", "pe", "da", "qu", "th", "ex", "ing",
    "ion", "ent", "al", "st", "re", "co", "de",
];

fn vocabulary(r: &mut Rng) -> Vec<String> {
    (0..2000)
        .map(|_| {
            let n = 1 + r.below(4) as usize;
            (0..n).map(|_| SYLLABLES[r.below(SYLLABLES.len() as u64) as usize]).collect()
        })
        .collect()
}

/// `len` bytes of `kind` from `seed`.
pub fn generate(kind: Kind, len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ kind as u64);
    let mut v = Vec::with_capacity(len + 64);
    match kind {
        Kind::Text => {
            let vocab = vocabulary(&mut r);
            let mut col = 0;
            while v.len() < len {
                // Zipf-like: small indices far more often.
                let a = r.below(vocab.len() as u64);
                let i = (a * r.below(vocab.len() as u64) / vocab.len() as u64) as usize;
                let w = vocab[i].as_bytes();
                v.extend_from_slice(w);
                col += w.len() + 1;
                if col > 72 {
                    v.push(b'\n');
                    col = 0;
                } else {
                    v.push(if r.below(17) == 0 { b',' } else { b' ' });
                }
            }
        }
        Kind::Binary => {
            let mut off = 0u32;
            while v.len() < len {
                let id = (v.len() / 32) as u32;
                off = off.wrapping_add(r.below(700) as u32);
                v.extend_from_slice(&id.to_le_bytes());
                v.extend_from_slice(&off.to_le_bytes());
                v.extend_from_slice(&((r.below(16) as u16) << 4).to_le_bytes());
                v.extend_from_slice(&[0u8; 6]);
                v.extend_from_slice(&(r.next_u64() as u32 & 0x00ff_00ff).to_le_bytes());
                v.extend_from_slice(&[0x7f, 0x45, 0x4c, 0x46, 0, 0, 0, 0, 1, 0, 0, 0]);
            }
        }
        Kind::Mixed => {
            while v.len() < len {
                let n = 1024 + r.below(16384) as usize;
                let seed2 = r.next_u64();
                match r.below(4) {
                    0 => v.extend(generate(Kind::Text, n, seed2)),
                    1 => v.extend(generate(Kind::Binary, n, seed2)),
                    2 => v.extend(std::iter::repeat_n(0u8, n)),
                    _ => v.extend(generate(Kind::Incompressible, n / 2, seed2)),
                }
            }
        }
        Kind::Incompressible => {
            while v.len() < len {
                v.extend_from_slice(&r.next_u64().to_le_bytes());
            }
        }
    }
    v.truncate(len);
    v
}

/// One 128 KiB (or shorter) extent of the corpus.
#[derive(Clone, Debug)]
pub struct Piece {
    /// What it is.
    pub kind: String,
    /// The data.
    pub data: Bytes,
}

/// The built-in corpus: `mib` MiB split evenly over the four kinds, in 128 KiB extents.
pub fn builtin(mib: usize) -> Vec<Piece> {
    let per_kind = (mib << 20) / Kind::ALL.len();
    let mut out = Vec::new();
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        let data = Bytes::from(generate(kind, per_kind, 0xb7f5 + i as u64));
        for o in (0..data.len()).step_by(BTRFS_MAX_UNCOMPRESSED) {
            let end = (o + BTRFS_MAX_UNCOMPRESSED).min(data.len());
            out.push(Piece { kind: kind.name().into(), data: data.slice(o..end) });
        }
    }
    out
}

/// Files under `dir` (recursively, regular files only), cut into 128 KiB extents, at most
/// `limit` bytes in all.
pub fn from_dir(dir: &Path, limit: usize) -> std::io::Result<Vec<Piece>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                files.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    let mut total = 0;
    for f in files {
        if total >= limit {
            break;
        }
        let Ok(meta) = std::fs::metadata(&f) else { continue };
        let want = (meta.len() as usize).min(limit - total);
        let mut buf = Vec::with_capacity(want);
        use std::io::Read;
        std::fs::File::open(&f)?.take(want as u64).read_to_end(&mut buf)?;
        total += buf.len();
        let data = Bytes::from(buf);
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for o in (0..data.len()).step_by(BTRFS_MAX_UNCOMPRESSED) {
            let end = (o + BTRFS_MAX_UNCOMPRESSED).min(data.len());
            out.push(Piece { kind: name.clone(), data: data.slice(o..end) });
        }
    }
    Ok(out)
}

/// The files `tools/qemu-kmap-trace.py` writes into a real HIGHMEM kernel and reads back: one
/// per kind (several 128 KiB extents each) and a text file whose last extent ends mid-page.
/// The kmap trace fixture records their sha256, so the model runs on exactly these bytes.
pub fn trace_files() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Kind::ALL
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let len = if kind == Kind::Incompressible { 256 << 10 } else { 512 << 10 };
            (format!("{}-{}k", kind.name(), len >> 10), generate(kind, len, 0xb7f5 + i as u64))
        })
        .collect();
    out.push(("text-100000".into(), generate(Kind::Text, 100_000, 0x7a11)));
    out
}

/// The tree the estimate oracles write onto real kernels (the running one, and qemu kernels of
/// other eras through tools/qemu-estimate.py): text, binaries, random data, zeros, files from
/// 300 B to 3 MiB around the inline and extent limits, data that turns incompressible part-way
/// and the reverse, a third of the files in a subdirectory. Deterministic.
pub fn estimate_tree(dir: &Path) -> std::io::Result<()> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, n) in [300usize, 1500, 2048, 3000, 4096, 4097, 10_000, 100_000, 131_072, 131_073, 600_000, 3 << 20]
        .into_iter()
        .enumerate()
    {
        files.push((format!("text-{n}"), generate(Kind::Text, n, 10 + i as u64)));
    }
    files.push(("binary-128k".into(), generate(Kind::Binary, 131_072, 30)));
    files.push(("binary-700k".into(), generate(Kind::Binary, 700_000, 31)));
    files.push(("random-64k".into(), generate(Kind::Incompressible, 65_536, 32)));
    files.push(("random-1m".into(), generate(Kind::Incompressible, 1 << 20, 33)));
    files.push(("mixed-300k".into(), generate(Kind::Mixed, 300_000, 34)));
    files.push(("mixed-2m".into(), generate(Kind::Mixed, 2 << 20, 35)));
    files.push(("zeros-1m".into(), vec![0; 1 << 20]));
    let mut t = generate(Kind::Text, 700_000, 36);
    t.extend(generate(Kind::Incompressible, 500_000, 37));
    files.push(("text-then-random".into(), t));
    let mut r = generate(Kind::Incompressible, 200_000, 38);
    r.extend(generate(Kind::Text, 1_000_000, 39));
    files.push(("random-then-text".into(), r));
    std::fs::create_dir_all(dir.join("sub"))?;
    for (i, (n, d)) in files.iter().enumerate() {
        let p = if i % 3 == 0 { dir.join("sub").join(n) } else { dir.join(n) };
        std::fs::write(p, d)?;
    }
    Ok(())
}
