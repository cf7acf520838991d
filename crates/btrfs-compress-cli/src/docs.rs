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

/// The EXIT STATUS section of every page (what README says).
const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success (verify: REPAIRABLE copies are listed, the data is good).
.TP
\fB1\fR
Failure: bad or corrupt input, a damaged image, entries skipped for damaged metadata (after the
report of the rest), a file that exists without \-\-force, I/O; one line on standard error per
problem.
.TP
\fB2\fR
(compress) The kernel's rules would not compress the input (\-E2BIG, or it would not save a sector).
.TP
\fB64\fR
Bad command line.
.TP
\fB130\fR, \fB143\fR
(extract) Interrupted by SIGINT or SIGTERM; temporary files removed.
.TP
\fB141\fR
Standard output closed by its reader (as the default SIGPIPE action).
"#;

/// One page: NAME as `btrfs-compress-SUB` (what `man` looks up), SYNOPSIS as the command is typed
/// (`btrfs-compress SUB ...`), the options, and EXIT STATUS.
fn page(sub: Option<&clap::Command>, cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let (name, typed) = match sub {
        Some(s) => {
            (format!("btrfs-compress-{}", s.get_name()), s.clone().name(format!("btrfs-compress {}", s.get_name())))
        }
        None => ("btrfs-compress".to_string(), cmd.clone()),
    };
    let about = typed.get_about().map(|a| a.to_string()).unwrap_or_default();
    let man = clap_mangen::Man::new(typed).title(name.clone());
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    buf.extend_from_slice(format!(".SH NAME\n{name} \\- {about}\n").as_bytes());
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    man.render_options_section(&mut buf)?;
    if sub.is_none() {
        man.render_subcommands_section(&mut buf)?;
    }
    buf.extend_from_slice(EXIT_STATUS.as_bytes());
    if cmd.get_version().is_some() {
        buf.extend_from_slice(format!(".SH VERSION\nv{}\n", cmd.get_version().unwrap_or_default()).as_bytes());
    }
    Ok(buf)
}

/// Write the man pages.
pub fn man(c: ManCmd) -> Result<(), Fail> {
    std::fs::create_dir_all(&c.dir).map_err(|e| io_fail("cannot create", &c.dir, e))?;
    let cmd = Cli::command();
    let write = |name: String, buf: std::io::Result<Vec<u8>>| -> Result<(), Fail> {
        let path = c.dir.join(format!("{name}.1"));
        let buf = buf.map_err(|e| io_fail("cannot render", &path, e))?;
        std::fs::write(&path, buf).map_err(|e| io_fail("cannot write", &path, e))
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write(format!("btrfs-compress-{}", sub.get_name()), page(Some(sub), &cmd))?;
    }
    write("btrfs-compress".into(), page(None, &cmd))?;
    eprintln!("man pages written to {}", c.dir.display());
    Ok(())
}
