//! compsize's accounting (`struct workspace` and `print_stats()` of compsize.c): per compression
//! type the disk, uncompressed and referenced bytes, the file and extent counts, and the report
//! compsize prints. `btrfs-estimate` fills it from a model of the write path, `btrfs-restore` from
//! an image's file extent items.

use std::fmt::Write as _;

use serde::Serialize;

use crate::CompressType;

/// compsize's counters (`struct workspace` of compsize.c): per compression type the disk
/// bytes, the uncompressed bytes (ram_bytes) and the referenced bytes, and the counts.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    /// Regular files.
    pub files: u64,
    /// Regular (not inline) extents.
    pub regular_extents: u64,
    /// References to them.
    pub refs: u64,
    /// Inline extents.
    pub inline: u64,
    /// Disk bytes by type: the on-disk compression code (0 none, 1 zlib, 2 lzo, 3 zstd), and
    /// [`PREALLOC`].
    pub disk: [u64; TYPES],
    /// Uncompressed bytes by type.
    pub uncompressed: [u64; TYPES],
    /// Referenced bytes by type.
    pub referenced: [u64; TYPES],
}

impl Usage {
    /// Add another set of counters.
    pub fn add(&mut self, o: &Usage) {
        self.files += o.files;
        self.regular_extents += o.regular_extents;
        self.refs += o.refs;
        self.inline += o.inline;
        for t in 0..TYPES {
            self.disk[t] += o.disk[t];
            self.uncompressed[t] += o.uncompressed[t];
            self.referenced[t] += o.referenced[t];
        }
    }

    /// One regular extent of `disk` bytes holding `ram` bytes, referenced once.
    pub fn regular(&mut self, t: CompressType, disk: u64, ram: u64) {
        self.reference(usize::from(t.code()), disk, ram, ram, true);
    }

    /// Part of a plain delalloc range: its bytes, and an extent where one starts (one per
    /// `BTRFS_MAX_EXTENT_SIZE`).
    pub fn plain(&mut self, bytes: u64, starts_extent: bool) {
        self.disk[0] += bytes;
        self.uncompressed[0] += bytes;
        self.referenced[0] += bytes;
        self.regular_extents += u64::from(starts_extent);
        self.refs += u64::from(starts_extent);
    }

    /// One inline extent of `data` bytes holding `ram` bytes.
    pub fn inline_extent(&mut self, t: CompressType, data: u64, ram: u64) {
        self.inline_extent_raw(usize::from(t.code()), data, ram);
    }

    /// Total disk bytes.
    pub fn disk_bytes(&self) -> u64 {
        self.disk.iter().sum()
    }

    /// Total uncompressed bytes.
    pub fn uncompressed_bytes(&self) -> u64 {
        self.uncompressed.iter().sum()
    }

    /// Total referenced bytes.
    pub fn referenced_bytes(&self) -> u64 {
        self.referenced.iter().sum()
    }

    /// The report compsize 1.5 prints (its wording and columns; `bytes` is its `-b`). Where
    /// nothing was counted compsize prints only a line on standard error: see [`Self::empty_message`].
    pub fn compsize_report(&self, bytes: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Processed {} file{}, {} regular extents ({} refs), {} inline.",
            self.files,
            if self.files > 1 { "s" } else { "" },
            self.regular_extents,
            self.refs,
            self.inline
        );
        let row = |s: &mut String, t: &str, d: u64, u: u64, r: u64| {
            let perc = (d * 100).checked_div(u).unwrap_or(0);
            let _ = writeln!(
                s,
                "{:<10} {:<8} {:<12} {:<12} {:<12}",
                t,
                format!("{perc:3}%"),
                human(d, bytes),
                human(u, bytes),
                human(r, bytes)
            );
        };
        let _ = writeln!(
            s,
            "{:<10} {:<8} {:<12} {:<12} {:<12}",
            "Type", "Perc", "Disk Usage", "Uncompressed", "Referenced"
        );
        row(&mut s, "TOTAL", self.disk_bytes(), self.uncompressed_bytes(), self.referenced_bytes());
        for (t, name) in TYPE_NAMES.iter().enumerate() {
            if self.uncompressed[t] != 0 {
                row(&mut s, name, self.disk[t], self.uncompressed[t], self.referenced[t]);
            }
        }
        s
    }

    /// compsize's message when there is nothing to report (it then exits 1), if so.
    pub fn empty_message(&self) -> Option<&'static str> {
        match (self.uncompressed_bytes(), self.files) {
            (0, 0) => Some("No files."),
            (0, _) => Some("All empty or still-delalloced files."),
            _ => None,
        }
    }

    /// One inline extent of type `t` (a compression code) holding `data` bytes for `ram`.
    pub fn inline_extent_raw(&mut self, t: usize, data: u64, ram: u64) {
        self.disk[t] += data;
        self.uncompressed[t] += ram;
        self.referenced[t] += ram;
        self.inline += 1;
    }

    /// One reference to a regular or prealloc extent, as compsize counts it: the extent's disk
    /// and uncompressed bytes the first time its `disk_bytenr` is seen (`first`), the
    /// referenced bytes and a ref every time.
    pub fn reference(&mut self, t: usize, disk: u64, ram: u64, referenced: u64, first: bool) {
        if first {
            self.disk[t] += disk;
            self.uncompressed[t] += ram;
            self.regular_extents += 1;
        }
        self.referenced[t] += referenced;
        self.refs += 1;
    }

    /// The per-type rows, TOTAL first, then each type that holds data (as compsize prints).
    pub fn types(&self) -> Vec<TypeUsage> {
        let mut v = vec![TypeUsage {
            ty: "TOTAL",
            disk_bytes: self.disk_bytes(),
            uncompressed_bytes: self.uncompressed_bytes(),
            referenced_bytes: self.referenced_bytes(),
        }];
        for (t, name) in TYPE_NAMES.iter().enumerate() {
            if self.uncompressed[t] != 0 {
                v.push(TypeUsage {
                    ty: name,
                    disk_bytes: self.disk[t],
                    uncompressed_bytes: self.uncompressed[t],
                    referenced_bytes: self.referenced[t],
                });
            }
        }
        v
    }
}

/// compsize's names of the on-disk compression codes 0 to 3.
const TYPE_NAMES: [&str; TYPES] = ["none", "zlib", "lzo", "zstd", "prealloc"];

/// Types counted: the four compression codes and prealloc.
pub const TYPES: usize = 5;
/// The type compsize files preallocated extents under (it prints them as "prealloc").
pub const PREALLOC: usize = 4;

/// One row of compsize's table (the JSON keys are part of the interface).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TypeUsage {
    /// TOTAL, none, zlib, lzo or zstd.
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// Disk bytes.
    pub disk_bytes: u64,
    /// Uncompressed bytes.
    pub uncompressed_bytes: u64,
    /// Referenced bytes.
    pub referenced_bytes: u64,
}

/// compsize's `human_bytes()`: 4 significant characters with a unit, or plain bytes.
fn human(x: u64, bytes: bool) -> String {
    if bytes {
        return x.to_string();
    }
    let units = b"BKMGTPE";
    let (mut x, mut u) = (x, 0);
    while x >= 10240 {
        u += 1;
        x >>= 10;
    }
    if x >= 1024 {
        format!(" {}.{}{}", x >> 10, x * 10 / 1024 % 10, units[u + 1] as char)
    } else {
        format!("{:4}{}", x, units[u] as char)
    }
}
