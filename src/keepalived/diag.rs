//! keepalived::diag — the diagnostics of the keepalived.conf reader, the
//! way `keepalived -t` (2.2.7) reports them, and its exit codes.
//!
//! Rules:
//! * Every diagnostic names the file and line it concerns (only a file
//!   that cannot be read at all has no line).
//! * The severity decides the exit code of `lbd --check-config
//!   --keepalived` (keepalived's `-t` codes, reference §1.1) and whether
//!   `lbd --keepalived` starts: it starts on what keepalived would run with
//!   (warnings, and errors keepalived logs and ignores), and refuses what
//!   rvs refuses (several keywords on one line, unbalanced braces, include
//!   loops, strict includes that match nothing, values rvs cannot carry).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a diagnostic or a configuration item comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Loc {
    /// The file, as it was named (the command line, or the include
    /// pattern joined to the including file's directory).
    pub file: Arc<PathBuf>,
    /// 1-based line number.
    pub line: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// `keepalived -t`'s code when the configuration cannot run (also lbd's
/// for a `--config` YAML it cannot use with `--keepalived`).
pub const EXIT_CANNOT_RUN: u8 = 4;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// keepalived logs it and applies a default (exit 0).
    Warning,
    /// Script security: keepalived 2.2.7's `-t` exits 6 but still runs.
    Security,
    /// keepalived logs it and ignores the line (exit 5); rvs does the same.
    Error,
    /// A strict include (`includem`, `includew`, `includeb`, `includea`,
    /// `includer`) that failed: exit 6; rvs does not start.
    StrictInclude,
    /// keepalived cannot run, or rvs refuses what keepalived would
    /// silently misread (exit 4); rvs does not start.
    Fatal,
}

impl Severity {
    /// The word printed before the message.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Security => "security",
            Severity::Error => "error",
            Severity::StrictInclude => "error",
            Severity::Fatal => "fatal",
        }
    }
}

/// One diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    /// How bad.
    pub severity: Severity,
    /// Where (`None` only for a file that could not be opened).
    pub loc: Option<Loc>,
    /// What, in keepalived's words where keepalived has some.
    pub message: String,
    /// Whether keepalived 2.2.7's `-t` reports this line too (false for
    /// what only rvs says, and for keepalived messages without a line).
    pub keepalived_line: bool,
}

impl Diag {
    /// A diagnostic at `loc`.
    pub fn at(severity: Severity, loc: &Loc, message: impl Into<String>) -> Diag {
        Diag {
            severity,
            loc: Some(loc.clone()),
            message: message.into(),
            keepalived_line: true,
        }
    }

    /// The same, marked as not reported at this line by keepalived.
    pub fn rvs_only(mut self) -> Diag {
        self.keepalived_line = false;
        self
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loc {
            Some(loc) => write!(f, "{loc}: {}: {}", self.severity.name(), self.message),
            None => write!(f, "{}: {}", self.severity.name(), self.message),
        }
    }
}

/// The diagnostics of one reading, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diags(pub Vec<Diag>);

impl Diags {
    /// Adds one that keepalived reports at the same line.
    pub fn push(&mut self, severity: Severity, loc: &Loc, message: impl Into<String>) {
        self.0.push(Diag::at(severity, loc, message));
    }

    /// Adds one that keepalived does not report at this line.
    pub fn push_rvs(&mut self, severity: Severity, loc: &Loc, message: impl Into<String>) {
        self.0.push(Diag::at(severity, loc, message).rvs_only());
    }

    /// The lines keepalived would name, as `(file name, line)`.
    pub fn keepalived_lines(&self) -> std::collections::BTreeSet<(String, u32)> {
        self.0
            .iter()
            .filter(|d| d.keepalived_line)
            .filter_map(|d| d.loc.as_ref())
            .map(|l| {
                let name = l.file.file_name().map(|n| n.to_string_lossy().into_owned());
                (name.unwrap_or_default(), l.line)
            })
            .collect()
    }

    /// `keepalived -t`'s exit code for these diagnostics: 0 clean (warnings
    /// only), 4 cannot run, 5 errors that are ignored, 6 a strict include
    /// failed or scripts would run without script security.
    pub fn exit_code(&self) -> u8 {
        let worst = |s: Severity| self.0.iter().any(|d| d.severity == s);
        if worst(Severity::Fatal) {
            EXIT_CANNOT_RUN
        } else if worst(Severity::StrictInclude) || worst(Severity::Security) {
            6
        } else if worst(Severity::Error) {
            5
        } else {
            0
        }
    }

    /// Whether `lbd --keepalived` starts: nothing fatal, no failed strict
    /// include.
    pub fn can_start(&self) -> bool {
        !self
            .0
            .iter()
            .any(|d| matches!(d.severity, Severity::Fatal | Severity::StrictInclude))
    }

    /// The diagnostics at `severity` or worse.
    pub fn at_least(&self, severity: Severity) -> impl Iterator<Item = &Diag> {
        self.0.iter().filter(move |d| d.severity >= severity)
    }
}

impl fmt::Display for Diags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}
