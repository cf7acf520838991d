//! `btrfs-compress completions SHELL` and `btrfs-compress man DIR`: shell completions
//! (clap_complete) and man pages (clap_mangen) generated from the command line's own definition,
//! so they never drift from `--help`.

use std::path::PathBuf;

use clap::{Args, CommandFactory};

use crate::common::{io_fail, Fail};
use crate::Cli;

#[derive(Args)]
pub struct CompletionsCmd {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManCmd {
    /// Directory for btrfs-compress.1 and one page per subcommand (btrfs-compress-SUB.1).
    pub dir: PathBuf,
}

/// Print the completion script.
pub fn completions(c: CompletionsCmd) -> Result<(), Fail> {
    let mut cmd = Cli::command();
    clap_complete::generate(c.shell, &mut cmd, "btrfs-compress", &mut std::io::stdout());
    Ok(())
}

/// Write the man pages.
pub fn man(c: ManCmd) -> Result<(), Fail> {
    std::fs::create_dir_all(&c.dir).map_err(|e| io_fail("cannot create", &c.dir, e))?;
    let cmd = Cli::command();
    let write = |name: String, page: clap::Command| -> Result<(), Fail> {
        let path = c.dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf).map_err(|e| io_fail("cannot render", &path, e))?;
        std::fs::write(&path, buf).map_err(|e| io_fail("cannot write", &path, e))
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("btrfs-compress-{}", sub.get_name());
        write(name.clone(), sub.clone().name(name))?;
    }
    write("btrfs-compress".into(), cmd)?;
    eprintln!("man pages written to {}", c.dir.display());
    Ok(())
}
