//! `btrfs-compress`: compress and decompress btrfs extents with the kernel's page loops, compare
//! the page-mapping strategies (`bench`), read btrfs images (`inspect`, `extract`, `verify`), and
//! estimate what each compression mount option would store (`estimate`). One module per
//! subcommand.
//!
//! Exit status: 0 success; 1 failure (bad input, corrupt data, I/O); 2 the kernel's rules would
//! not compress the input (`-E2BIG` or not saving a sector); 64 bad command line.
#![forbid(unsafe_code)]

mod common;
mod compress;
mod corpus;
mod decompress;
mod docs;
mod encoded_write;
mod estimate;
mod extract;
mod inspect;
mod usage;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::common::Fail;

#[derive(Parser)]
#[command(
    name = "btrfs-compress",
    version,
    about = "btrfs's compression paths in userspace: kernel-exact extents and the page-mapping lab"
)]
/// The command line (also the source of the man pages and completions).
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compress IN (at most 128 KiB) into OUT as one btrfs extent (exact bytes, unpadded).
    Compress(compress::CompressCmd),
    /// Decompress an extent (sector padding allowed) into OUT, `--ram-bytes` long.
    Decompress(decompress::DecompressCmd),
    /// Compare the mapping strategies over the codecs (the README's main job).
    Bench(btrfs_lab::BenchArgs),
    /// List the files of a btrfs image (raw or .zst) and their extents.
    Inspect(inspect::InspectCmd),
    /// Restore the tree of a btrfs image under DEST, like `btrfs restore -S -m -x`: files,
    /// links, special files, owners, modes, times, xattrs; data checksums checked.
    Extract(extract::ExtractCmd),
    /// compsize's report (disk, uncompressed and referenced bytes per compression type) from
    /// an image, without mounting it.
    Usage(usage::UsageCmd),
    /// Decode every compressed extent and check every data checksum of an image.
    Verify(verify::VerifyCmd),
    /// Compress IN with our codecs and store it as FILE on a mounted btrfs as the compressed
    /// extents we made (BTRFS_IOC_ENCODED_WRITE, through `btrfs receive`).
    EncodedWrite(encoded_write::EncodedWriteCmd),
    /// Write the files of the kernel kmap trace (tools/qemu-kmap-trace.py) into DIR.
    Corpus(corpus::CorpusCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs::CompletionsCmd),
    /// Write man pages (btrfs-compress.1 and one per subcommand) into DIR.
    Man(docs::ManCmd),
    /// What each compression mount option would store for files, as the kernel would write
    /// them (compsize's report per option), without a btrfs filesystem.
    Estimate(estimate::EstimateArgs),
}

/// A closed standard output (`verify img | head -1`) ends the command as the default SIGPIPE
/// action would (exit 141, nothing printed): Rust ignores SIGPIPE, so `println!` panics on EPIPE
/// instead; that panic is caught here (no `unsafe` to restore the signal's default).
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(64),
            };
        }
    };
    let r = match cli.cmd {
        Cmd::Compress(c) => compress::run(c),
        Cmd::Decompress(d) => decompress::run(d),
        Cmd::Bench(b) => btrfs_lab::run(b).map_err(|(code, msg)| Fail { code, msg }),
        Cmd::Inspect(c) => inspect::run(c),
        Cmd::Extract(c) => extract::run(c),
        Cmd::Verify(c) => verify::run(c),
        Cmd::Usage(c) => usage::run(c),
        Cmd::Completions(c) => docs::completions(c),
        Cmd::Man(c) => docs::man(c),
        Cmd::EncodedWrite(c) => encoded_write::run(c),
        Cmd::Corpus(c) => corpus::run(c),
        Cmd::Estimate(e) => estimate::run(e),
    };
    let skipped = common::SKIPPED.load(std::sync::atomic::Ordering::Relaxed);
    match r {
        Ok(()) if skipped > 0 => {
            eprintln!("btrfs-compress: {skipped} entries skipped: the report above lacks them");
            ExitCode::from(1)
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("btrfs-compress: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
