//! `usage`: compsize's report from the image alone (no mount, no root), counting as compsize
//! 1.5 does on the mounted filesystem: every path to a regular file is a file (hard links
//! count once per name), an inline extent counts its data and its ram_bytes, a regular or
//! prealloc extent counts its disk and uncompressed bytes once per `disk_bytenr` and its
//! referenced bytes (num_bytes) once per reference; holes count nothing.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use btrfs_compress::usage::{Usage, PREALLOC};
use btrfs_image::{ExtentKind, FileKind, Image, Walk};

use crate::ImageError;

/// compsize's counters over the regular files at or under `paths` (all when empty).
pub fn usage(img: &Image, paths: &[OsString]) -> Result<Usage, ImageError> {
    let walk = img.walk_files()?;
    let chosen = chosen(&walk, paths)?;
    let mut u = Usage::default();
    let mut seen = HashSet::new();
    for (i, e) in walk.entries().iter().enumerate() {
        if e.kind != FileKind::Regular || !chosen.as_ref().is_none_or(|c| c[i]) {
            continue;
        }
        // A file whose extents fail the tree-checker's rules is skipped and said
        // (`Image::skipped`); the rest is counted.
        let extents = match img.fs_tree(e.tree).and_then(|t| img.file_extents(&t, e.ino)) {
            Ok(x) => x,
            Err(err) => {
                img.note_skipped(format!("{}: {err}", walk.display(i)));
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
    Ok(u)
}

/// The entries at or under `paths` (`None`: all, for no paths or one that names the top);
/// every path must name an entry.
fn chosen(walk: &Walk, paths: &[OsString]) -> Result<Option<Vec<bool>>, ImageError> {
    let mut chosen = vec![false; walk.len()];
    for p in paths {
        match walk.find_from(None, p.as_bytes()) {
            Ok(None) => return Ok(None),
            Ok(Some(i)) => chosen[walk.subtree(i)].fill(true),
            Err(()) => return Err(ImageError::NoSuchPath(p.as_bytes().escape_ascii().to_string())),
        }
    }
    Ok((!paths.is_empty()).then_some(chosen))
}

/// Regular and prealloc extents of the image's files whose bytes lie past the end of the image
/// file (a truncated image; see [`Image::warnings`]), each counted once.
pub fn extents_past_end(img: &Image) -> Result<u64, ImageError> {
    let mut seen = HashSet::new();
    let mut missing = 0;
    for e in img.walk_files()?.entries().iter().filter(|e| e.kind == FileKind::Regular) {
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
