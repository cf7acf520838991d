//! `btrfs-compress inspect`: the files of an image and their extents.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;

use crate::common::{fail_if_extents_missing, img_fail, io_fail, open, Fail, ImageOpts};

#[derive(Args)]
pub struct InspectCmd {
    /// One JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the raw bytes of every compressed extent into DIR, one file each named
    /// PATH@OFFSET.ALG (slashes in PATH become underscores).
    #[arg(long, value_name = "DIR")]
    pub dump_extents: Option<PathBuf>,
    #[command(flatten)]
    pub image_opts: ImageOpts,
    /// The image (raw or zstd-compressed).
    pub image: PathBuf,
}

/// A file's part of a dump's name: its path escaped, slashes as underscores; a path too long for
/// a file name (past 200 bytes) as its last 150 bytes after its tree and inode, which are unique.
fn dump_name(path: &[u8], e: &btrfs_image::DirEntry) -> String {
    let flat = path.escape_ascii().to_string().replace('/', "_");
    if flat.len() <= 200 {
        return flat;
    }
    let tail = flat.as_bytes()[flat.len() - 150..].to_vec();
    format!("{}-{}-{}", e.tree, e.ino, String::from_utf8_lossy(&tail))
}

/// Run `inspect`.
pub fn run(c: InspectCmd) -> Result<(), Fail> {
    let img = open(&c.image, &c.image_opts)?;
    let files = btrfs_restore::inspect(&img).map_err(|e| img_fail(&c.image, e))?;
    if let Some(dir) = &c.dump_extents {
        fs::create_dir_all(dir).map_err(|e| io_fail("cannot create", dir, e))?;
        // index.tsv: per dumped extent what `decompress` needs, and the command that decodes it
        // to the file's bytes.
        let mut index = String::from("extent\tcodec\tram_bytes\toffset\tnum_bytes\tinline\tcommand\n");
        let mut paths = files.walk.paths();
        while let Some((i, path)) = paths.next_ref() {
            let entry = files.walk.get(i);
            if entry.kind != btrfs_image::FileKind::Regular {
                continue;
            }
            let tree = img.fs_tree(entry.tree).map_err(|e| img_fail(&c.image, e))?;
            let size = img.inode(&tree, entry.ino).map_err(|e| img_fail(&c.image, e))?.size;
            for e in img.file_extents(&tree, entry.ino).map_err(|e| img_fail(&c.image, e))? {
                let Some(alg) = btrfs_compress::CompressType::from_code(e.compression)
                    .filter(|&a| a != btrfs_compress::CompressType::None)
                else {
                    continue;
                };
                let raw = match &e.kind {
                    btrfs_image::ExtentKind::Inline { data } => data.clone(),
                    _ => img
                        .read_logical(e.disk_bytenr, e.disk_num_bytes as usize)
                        .map_err(|err| img_fail(&c.image, err))?,
                };
                let name = format!("{}@{}.{}", dump_name(path, entry), e.file_offset, alg.name());
                fs::write(dir.join(&name), raw).map_err(|err| io_fail("cannot write", &dir.join(&name), err))?;
                let inline = matches!(e.kind, btrfs_image::ExtentKind::Inline { .. });
                // The file's bytes of the extent: num_bytes, cut at the end of the file.
                let num = e.num_bytes.min(size.saturating_sub(e.file_offset));
                let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
                // The image's sector size, where it is not decompress's default.
                let ss = match img.sb.sectorsize {
                    4096 => String::new(),
                    s => format!(" --sectorsize {s}"),
                };
                let cmd = if inline {
                    format!(
                        "btrfs-compress decompress -a {}{ss} --inline --ram-bytes {} {} {}",
                        alg.name(),
                        e.ram_bytes,
                        q(&name),
                        q(&format!("{name}.out"))
                    )
                } else {
                    format!(
                        "btrfs-compress decompress -a {}{ss} --ram-bytes {} --offset {} --num-bytes {num} {} {}",
                        alg.name(),
                        e.ram_bytes,
                        e.offset,
                        q(&name),
                        q(&format!("{name}.out"))
                    )
                };
                index += &format!("{name}\t{}\t{}\t{}\t{num}\t{inline}\t{cmd}\n", alg.name(), e.ram_bytes, e.offset);
            }
        }
        let p = dir.join("index.tsv");
        fs::write(&p, index).map_err(|err| io_fail("cannot write", &p, err))?;
    }
    let mut out = io::stdout().lock();
    let w = |e: io::Error| Fail { code: 1, msg: format!("cannot write output: {e}") };
    if c.json {
        serde_json::to_writer_pretty(&mut out, &files).map_err(|e| Fail { code: 1, msg: e.to_string() })?;
        writeln!(out).map_err(w)?;
        return fail_if_extents_missing(&img, &c.image);
    }
    writeln!(
        out,
        "label {:?}, {} B sectors, {} B nodes, csum {}, {} chunks",
        img.sb.label,
        img.sb.sectorsize,
        img.sb.nodesize,
        img.sb.csum_type.name(),
        img.chunks.len()
    )
    .map_err(w)?;
    for f in files.files() {
        let extra = match (&f.target, &f.subvolume) {
            (Some(t), _) => format!(" -> {t}"),
            (_, Some(s)) => format!(
                " id {} generation {}{}{}",
                f.tree,
                s.generation,
                if s.snapshot { " snapshot" } else { "" },
                if s.readonly { " readonly" } else { "" }
            ),
            _ => String::new(),
        };
        writeln!(
            out,
            "{} {} size {} mode {:o} {}:{} (tree {} inode {}){extra}",
            f.kind,
            f.path,
            f.size,
            f.mode & 0o7777,
            f.uid,
            f.gid,
            f.tree,
            f.ino
        )
        .map_err(w)?;
        for e in &f.extents {
            writeln!(
                out,
                "    @{:<8} {:<8} {:<4} disk {:#x}+{} ram {} offset {} num {}",
                e.file_offset,
                e.kind,
                e.compression,
                e.disk_bytenr,
                e.disk_num_bytes,
                e.ram_bytes,
                e.offset,
                e.num_bytes
            )
            .map_err(w)?;
        }
    }
    fail_if_extents_missing(&img, &c.image)
}
