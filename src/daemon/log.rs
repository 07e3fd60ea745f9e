//! daemon::log — lbd's event lines on stderr, readable on a terminal and in
//! the systemd journal.
//!
//! Rules: one line per event (a message with a newline in it is folded to
//! one line), from control threads only, never from a worker. Under
//! systemd — stderr is the stream named by `$JOURNAL_STREAM` — each line
//! starts with the sd-daemon(3) level prefix (`<3>` error, `<4>` warning,
//! `<5>` notice, `<6>` info) that journald turns into the entry's priority;
//! elsewhere the line is `lbd: ` plus a level word for warnings and errors.
//! Never any ANSI colour.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

/// Severity (syslog's numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something failed.
    Error = 3,
    /// Something was refused or degraded.
    Warning = 4,
    /// A significant normal event (start, stop, reload).
    Notice = 5,
    /// Everything else.
    Info = 6,
}

/// Whether stderr is the journal stream systemd gave us.
fn to_journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let Some(named) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
            return false;
        };
        let Ok(meta) = std::fs::File::from(fd).metadata() else {
            return false;
        };
        named.to_string_lossy() == format!("{}:{}", meta.dev(), meta.ino())
    })
}

/// The line for `message` at `level` (without the newline).
pub fn format_line(level: Level, message: &str, journal: bool) -> String {
    let one_line = message.replace('\n', " / ");
    if journal {
        return format!("<{}>lbd: {one_line}", level as u8);
    }
    match level {
        Level::Error => format!("lbd: error: {one_line}"),
        Level::Warning => format!("lbd: warning: {one_line}"),
        Level::Notice | Level::Info => format!("lbd: {one_line}"),
    }
}

/// Writes one event line to stderr (errors writing it are ignored: there
/// is nowhere else to report them).
pub fn log(level: Level, message: &str) {
    let line = format_line(level, message, to_journal());
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// An error's text and its causes' texts joined by ": ", leaving out a
/// cause whose text is already said (errors that print their source), so
/// each reason appears once — how `lbd` reports an error, and the message a
/// refused reload gives (the same as `lbd --check-config`'s).
pub fn causes_once<I: IntoIterator<Item = String>>(texts: I) -> String {
    let mut out = String::new();
    for text in texts {
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_carry_the_sd_daemon_prefix_and_terminal_lines_a_word() {
        assert_eq!(format_line(Level::Info, "up", true), "<6>lbd: up");
        assert_eq!(
            format_line(Level::Error, "bad\nfile", true),
            "<3>lbd: bad / file"
        );
        assert_eq!(format_line(Level::Notice, "up", false), "lbd: up");
        assert_eq!(format_line(Level::Warning, "x", false), "lbd: warning: x");
        assert!(!format_line(Level::Error, "x", false).contains('\x1b'));
    }
}
