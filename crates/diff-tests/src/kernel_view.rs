//! What the kernel showed of a mounted filesystem (tools/fixture_lib.py `describe()`: per path
//! its kind, mode, owner, times, size, sha256, link target, rdev and xattrs) against a tree
//! that `extract` wrote.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::{Map, Value};

/// Whether this process runs as root (owners and device nodes can be restored).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The bytes of a hex string (the manifests key paths by the hex of their bytes).
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The manifest's name of a file type.
pub fn kind(ft: std::fs::FileType) -> &'static str {
    match () {
        _ if ft.is_symlink() => "symlink",
        _ if ft.is_dir() => "dir",
        _ if ft.is_file() => "file",
        _ if ft.is_fifo() => "fifo",
        _ if ft.is_socket() => "socket",
        _ if ft.is_char_device() => "chardev",
        _ if ft.is_block_device() => "blockdev",
        _ => "other",
    }
}

/// The xattrs of `p` (not followed): name -> hex of the value.
pub fn xattrs(p: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut buf).unwrap_or(0);
    for name in buf[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut v = vec![0u8; 65536];
        if let Ok(k) = rustix::fs::lgetxattr(p, OsStr::from_bytes(name), &mut v) {
            let hex: String = v[..k].iter().map(|b| format!("{b:02x}")).collect();
            out.insert(String::from_utf8_lossy(name).into_owned(), hex);
        }
    }
    out
}

/// Compare the extracted tree at `dest` with a manifest's entries (those `keep` selects; as
/// tools/fixture_lib.py's `describe()` records them);
/// the mismatches, one line each.
/// What the destination refused is not a mismatch when extract reported it (`warnings`):
/// owners, and xattrs by name.
pub fn compare(
    dest: &Path,
    entries: &Map<String, Value>,
    keep: impl Fn(&[u8]) -> bool,
    warnings: &[String],
) -> (usize, Vec<String>) {
    let root = is_root() && !warnings.iter().any(|w| w.contains("owners not restored"));
    let reported = |name: &str| warnings.iter().any(|w| w.contains(&format!("xattrs {name} not restored")));
    let mut bad = Vec::new();
    let mut checked = 0;
    // Link counts as the kernel showed them, among the entries compared.
    let mut links: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for (hex, e) in entries {
        if keep(&unhex(hex)) && e["kind"] == "file" {
            *links.entry((e["dev"].as_u64().unwrap(), e["ino"].as_u64().unwrap())).or_default() += 1;
        }
    }
    // Every stat before any read: reading a file moves its atime (and its hard links').
    let stats: BTreeMap<&String, std::io::Result<std::fs::Metadata>> =
        entries.keys().map(|hex| (hex, std::fs::symlink_metadata(dest.join(OsStr::from_bytes(&unhex(hex)))))).collect();
    for (hex, e) in entries {
        let rel = unhex(hex);
        if !keep(&rel) {
            continue;
        }
        let p = dest.join(OsStr::from_bytes(&rel));
        let what = e["path"].as_str().unwrap();
        let Ok(md) = &stats[hex] else {
            bad.push(format!("{what}: missing"));
            continue;
        };
        checked += 1;
        let mut check = |field: &str, want: &Value, got: Value| {
            if *want != got {
                bad.push(format!("{what}: {field} {want} != {got}"));
            }
        };
        let k = kind(md.file_type());
        check("kind", &e["kind"], k.into());
        if k != e["kind"] {
            continue;
        }
        if k != "symlink" {
            check("mode", &e["mode"], (md.mode() & 0o7777).into());
        }
        if root {
            check("uid", &e["uid"], md.uid().into());
            check("gid", &e["gid"], md.gid().into());
        }
        check("mtime_ns", &e["mtime_ns"], (md.mtime() * 1_000_000_000 + md.mtime_nsec()).into());
        check("atime_ns", &e["atime_ns"], (md.atime() * 1_000_000_000 + md.atime_nsec()).into());
        match k {
            "file" => {
                check("size", &e["size"], md.len().into());
                let want_links = links[&(e["dev"].as_u64().unwrap(), e["ino"].as_u64().unwrap())];
                check("nlink", &want_links.into(), md.nlink().into());
                let sha = crate::sha256_hex(&std::fs::read(&p).unwrap());
                check("sha256", &e["sha256"], sha.into());
            }
            "symlink" => {
                let t: String =
                    std::fs::read_link(&p).unwrap().as_os_str().as_bytes().iter().map(|b| format!("{b:02x}")).collect();
                check("target", &e["target"], t.into());
            }
            "chardev" | "blockdev" => {
                let r = md.rdev();
                let got = serde_json::json!([libc_major(r), libc_minor(r)]);
                check("rdev", &e["rdev"], got);
            }
            _ => {}
        }
        let got = xattrs(&p);
        for (name, value) in e["xattrs"].as_object().unwrap() {
            if reported(name) {
                continue;
            }
            match got.get(name) {
                Some(v) if v == value.as_str().unwrap() => {}
                Some(_) => bad.push(format!("{what}: xattr {name} differs")),
                None => bad.push(format!("{what}: xattr {name} missing")),
            }
        }
    }
    (checked, bad)
}

fn libc_major(d: u64) -> u64 {
    ((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff)
}

fn libc_minor(d: u64) -> u64 {
    ((d >> 12) & 0xffff_ff00) | (d & 0xff)
}

/// Whether path `p` is `dir` or beneath it.
pub fn under(p: &[u8], dir: &str) -> bool {
    p == dir.as_bytes() || (p.starts_with(dir.as_bytes()) && p.get(dir.len()) == Some(&b'/'))
}
