//! `usage`: compsize's report from the image alone (no mount, no root), counting as compsize
//! 1.5 does on the mounted filesystem: every path to a regular file is a file (hard links
//! count once per name), an inline extent counts its data and its ram_bytes, a regular or
//! prealloc extent counts its disk and uncompressed bytes once per `disk_bytenr` and its
//! referenced bytes (num_bytes) once per reference; holes count nothing.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use btrfs_compress::usage::{Usage, PREALLOC};
use btrfs_image::{ExtentKind, FileKind, Image};

use crate::paths::{at_or_under, trim_slashes};
use crate::ImageError;

/// compsize's counters over the regular files at or under `paths` (all when empty).
pub fn usage(img: &Image, paths: &[OsString]) -> Result<Usage, ImageError> {
    let entries = img.walk_files()?;
    let mut u = Usage::default();
    let mut seen = HashSet::new();
    let mut matched = vec![false; paths.len()];
    for e in entries.iter().filter(|e| e.kind == FileKind::Regular) {
        if !paths.is_empty() {
            let p = e.path.as_bytes();
            let hit = paths.iter().position(|f| at_or_under(p, f.as_bytes()));
            match hit {
                Some(i) => matched[i] = true,
                None => continue,
            }
        }
        // A file whose extents fail the tree-checker's rules is skipped and said
        // (`Image::skipped`); the rest is counted.
        let extents = match img.fs_tree(e.tree).and_then(|t| img.file_extents(&t, e.ino)) {
            Ok(x) => x,
            Err(err) => {
                img.note_skipped(format!("{}: {err}", e.path_escaped()));
                continue;
            }
        };
        u.files += 1;
        for x in extents {
            let t = usize::from(x.compression);
            match &x.kind {
                ExtentKind::Inline { data } => u.inline_extent_raw(t, data.len() as u64, x.ram_bytes),
                _ if x.is_hole() => {}
                kind => {
                    let t = if *kind == ExtentKind::Prealloc { PREALLOC } else { t };
                    let first = seen.insert(x.disk_bytenr >> 12);
                    u.reference(t, x.disk_num_bytes, x.ram_bytes, x.num_bytes, first);
                }
            }
        }
    }
    if let Some(i) = matched.iter().position(|m| !m) {
        // A path with no regular file under it may still be a directory or a symlink.
        let f = trim_slashes(paths[i].as_bytes());
        if !f.is_empty() && !entries.iter().any(|e| e.path.as_bytes() == f) {
            return Err(ImageError::NoSuchPath(paths[i].as_bytes().escape_ascii().to_string()));
        }
    }
    Ok(u)
}

/// Regular and prealloc extents of the image's files whose bytes lie past the end of the image
/// file (a truncated image; see [`Image::warnings`]), each counted once.
pub fn extents_past_end(img: &Image) -> Result<u64, ImageError> {
    let mut seen = HashSet::new();
    let mut missing = 0;
    for e in img.walk_files()?.iter().filter(|e| e.kind == FileKind::Regular) {
        let tree = img.fs_tree(e.tree)?;
        for x in img.file_extents(&tree, e.ino)? {
            if matches!(x.kind, ExtentKind::Inline { .. }) || x.is_hole() || !seen.insert(x.disk_bytenr) {
                continue;
            }
            missing += u64::from(!img.present(x.disk_bytenr, x.disk_num_bytes));
        }
    }
    Ok(missing)
}
