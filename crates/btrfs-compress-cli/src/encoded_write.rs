//! `btrfs-compress encoded-write`: our compressed extents stored on a mounted btrfs as they are
//! (a send stream with ENCODED_WRITE commands, applied by `btrfs receive`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::common::{io_fail, parse_spec, read_bounded, write_atomic, Fail, MapOpts};

#[derive(Args)]
pub struct EncodedWriteCmd {
    /// Algorithm and level: zlib[:1..9], lzo, zstd[:-15..15].
    #[arg(short = 'a', long = "alg", value_parser = parse_spec)]
    pub alg: btrfs_compress::CompressSpec,
    #[command(flatten)]
    pub map: MapOpts,
    /// Replace FILE if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Do not touch any filesystem: write the send stream to this file instead (apply it later
    /// with `btrfs receive -f STREAM DIR`; FILE is then only the name inside the stream).
    #[arg(long, value_name = "STREAM")]
    pub send_stream: Option<PathBuf>,
    /// Input file.
    pub input: PathBuf,
    /// File to create on a mounted btrfs.
    pub file: PathBuf,
}

/// The filesystem type of the mount holding `p` (from /proc/self/mountinfo).
fn fs_type(p: &Path) -> Option<String> {
    let p = fs::canonicalize(p).ok()?;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let mnt = f.get(4)?.replace("\\040", " ");
        let dash = f.iter().position(|x| *x == "-")?;
        let ty = f.get(dash + 1)?.to_string();
        if p.starts_with(&mnt) && best.as_ref().is_none_or(|(l, _)| mnt.len() >= *l) {
            best = Some((mnt.len(), ty));
        }
    }
    best.map(|b| b.1)
}

fn run_tool(cmd: &mut std::process::Command, input: Option<&[u8]>) -> Result<(), Fail> {
    use std::process::Stdio;
    let name = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Fail { code: 1, msg: format!("cannot run {name}: {e}") })?;
    let write_err = match (input, child.stdin.take()) {
        (Some(data), Some(mut stdin)) => stdin.write_all(data).err(),
        _ => None,
    };
    let out = child.wait_with_output().map_err(|e| Fail { code: 1, msg: format!("{name}: {e}") })?;
    if let (Some(e), true) = (write_err, out.status.success()) {
        return Err(Fail { code: 1, msg: format!("{name}: {e}") });
    }
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Fail { code: 1, msg: format!("{name} failed: {}", err.trim()) });
    }
    Ok(())
}

/// Run `encoded-write`.
pub fn run(c: EncodedWriteCmd) -> Result<(), Fail> {
    let spec = c.alg;
    crate::common::note_clamp(&spec);
    let dir = c.file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let name = c
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Fail { code: 1, msg: format!("{} is not a file name", c.file.display()) })?;
    if let Some(out) = &c.send_stream {
        let data = read_bounded(&c.input, 4 << 30)?;
        let sub = format!("btrfs-compress-{}", std::process::id());
        let (stream, plan) =
            btrfs_send::encoded_write_stream(&bytes::Bytes::from(data), spec, &c.map.options(), &sub, &name, [7; 16])?;
        write_atomic(out, stream.bytes(), c.force, &c.input)?;
        let enc = plan.iter().filter(|p| matches!(p, btrfs_send::Planned::Encoded { .. })).count();
        eprintln!("{}: send stream for {sub}/{name}: {enc} encoded extents, {} plain", out.display(), plan.len() - enc);
        return Ok(());
    }
    match fs_type(&dir) {
        Some(t) if t == "btrfs" => {}
        Some(t) => return Err(Fail { code: 1, msg: format!("{} is on {t}, not btrfs", dir.display()) }),
        None => return Err(Fail { code: 1, msg: format!("cannot find the filesystem of {}", dir.display()) }),
    }
    if !c.force && fs::symlink_metadata(&c.file).is_ok() {
        return Err(Fail { code: 1, msg: format!("{} exists (use --force to replace it)", c.file.display()) });
    }
    let data = read_bounded(&c.input, 4 << 30)?;
    let opts = c.map.options();
    let sub = format!(".btrfs-compress-recv-{}", std::process::id());
    let subdir = dir.join(&sub);
    if fs::symlink_metadata(&subdir).is_ok() {
        return Err(Fail { code: 1, msg: format!("{} exists", subdir.display()) });
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&(t as u64).to_le_bytes());
    uuid[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    let (stream, plan) = btrfs_send::encoded_write_stream(&bytes::Bytes::from(data), spec, &opts, &sub, &name, uuid)?;
    if let Some(p) = std::env::var_os("BTRFS_COMPRESS_SAVE_STREAM") {
        // For debugging: keep the send stream (`btrfs receive --dump -f FILE` shows it).
        fs::write(&p, stream.bytes()).map_err(|e| io_fail("cannot write", Path::new(&p), e))?;
    }
    // `btrfs receive` stores each ENCODED_WRITE with BTRFS_IOC_ENCODED_WRITE; the file is then
    // reflinked into place (the extents are shared, not rewritten) and the subvolume removed.
    let result = (|| {
        run_tool(std::process::Command::new("btrfs").args(["receive", "-e"]).arg(&dir), Some(stream.bytes()))?;
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let r =
            run_tool(std::process::Command::new("cp").arg("--reflink=always").arg(subdir.join(&name)).arg(&tmp), None)
                .and_then(|()| {
                    if let Ok(m) = fs::metadata(&c.input) {
                        let _ = fs::set_permissions(&tmp, m.permissions());
                    }
                    fs::rename(&tmp, &c.file).map_err(|e| io_fail("cannot write", &c.file, e))
                });
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    })();
    if fs::symlink_metadata(&subdir).is_ok() {
        let _ = run_tool(
            std::process::Command::new("btrfs").args(["property", "set", "-ts"]).arg(&subdir).args(["ro", "false"]),
            None,
        );
        let _ = run_tool(std::process::Command::new("btrfs").args(["subvolume", "delete"]).arg(&subdir), None);
    }
    result?;
    let enc = plan.iter().filter(|p| matches!(p, btrfs_send::Planned::Encoded { .. })).count();
    eprintln!("{}: {} extents written encoded ({spec}), {} plain", c.file.display(), enc, plan.len() - enc);
    Ok(())
}
