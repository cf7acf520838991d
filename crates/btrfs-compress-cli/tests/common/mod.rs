//! What the tests that ask the running kernel share: running a command, and the check that
//! they can run here (root, the tools, loop devices) with the reason when they cannot.

use std::path::Path;
use std::process::Command;

/// Run `cmd` with `args`; its standard output, or an error with its standard error.
pub fn sh(cmd: &str, args: &[&str]) -> Result<String, String> {
    let o = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!("{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr).trim()))
    }
}

fn which(t: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {t}")]).output().is_ok_and(|o| o.status.success())
}

/// Why a loop-mount test cannot run here (not root, a missing tool, no loop devices), if so.
pub fn cannot_loop_mount(tools: &[&str]) -> Option<String> {
    if Command::new("id").arg("-u").output().map(|o| o.stdout != b"0\n").unwrap_or(true) {
        return Some("not root".into());
    }
    if let Some(t) = tools.iter().find(|t| !which(t)) {
        return Some(format!("{t} is not installed"));
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no loop devices".into());
    }
    None
}
