//! docs — man pages and shell completions from the programs' clap
//! definitions (what the Debian package ships; see `examples/gen_docs.rs`
//! and `lbpktgen --generate-docs`).
//!
//! Owns the layout of the generated tree: `DIR/man/NAME.SECTION`
//! (clap_mangen) and `DIR/completions/{bash/NAME,zsh/_NAME,fish/NAME.fish}`
//! (clap_complete). Nothing here runs in `lbd`.

use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// Why a page or completion could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", .path.display())]
pub struct DocsError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> DocsError + '_ {
    move |source| DocsError {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `DIR/man/NAME.SECTION` and the bash, zsh and fish completions of
/// `cmd` under `DIR/completions`; returns the man page's path.
pub fn write(cmd: Command, section: &str, dir: &Path) -> Result<PathBuf, DocsError> {
    let name = cmd.get_name().to_string();
    let man = dir.join("man");
    std::fs::create_dir_all(&man).map_err(at(&man))?;
    let page = man.join(format!("{name}.{section}"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section(section)
        .manual("rvs")
        .source(format!("rvs {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .map_err(at(&page))?;
    std::fs::write(&page, out).map_err(at(&page))?;
    let mut cmd = cmd;
    for (shell, sub) in [
        (Shell::Bash, "bash"),
        (Shell::Zsh, "zsh"),
        (Shell::Fish, "fish"),
    ] {
        let out = dir.join("completions").join(sub);
        std::fs::create_dir_all(&out).map_err(at(&out))?;
        clap_complete::generate_to(shell, &mut cmd, &name, &out).map_err(at(&out))?;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_gets_a_man_page_and_three_completions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cmd = Command::new("demo")
            .about("a demo")
            .arg(clap::Arg::new("flag").long("flag").help("a flag"));
        let page = write(cmd, "8", dir.path()).expect("write");
        let text = std::fs::read_to_string(&page).expect("page");
        assert!(text.contains(".TH demo 8"), "{text}");
        assert!(text.contains("\\-\\-flag"), "{text}");
        for f in ["bash/demo.bash", "zsh/_demo", "fish/demo.fish"] {
            assert!(dir.path().join("completions").join(f).exists(), "{f}");
        }
    }
}
