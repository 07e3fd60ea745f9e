//! keepalived::lexer — keepalived.conf's lexical layer (keepalived 2.2.7
//! `lib/parser.c`): files and includes, comments, conditional lines,
//! parameters, quoting, and the split of lines into words and braces.
//!
//! What it owns, in the order a line goes through it:
//! 1. `#` and `!` start a comment anywhere outside quotes; `\#` and `\!`
//!    stand for the characters themselves.
//! 2. `@ID rest` keeps `rest` only if ID is the config id (keepalived
//!    `-i`, default the short host name); `@^ID rest` only if it is not.
//! 3. `$NAME=value` defines a parameter (nothing substituted until use);
//!    `$NAME= \` starts a multi-line definition whose lines end in `\`.
//!    Other lines get `$NAME` (followed by white space or the line's end)
//!    and `${NAME}` replaced, recursively; undefined names stay as they
//!    are. A line that is just a multi-line parameter becomes its lines.
//!    `${_PWD}`, `${_INSTANCE}` and `${_HASH}` are predefined. A `\` at the
//!    end of any other line is an ordinary character, as in keepalived
//!    2.2.7 (it has no general line continuation).
//! 4. Words are split at white space; `{` and `}` outside quotes are
//!    tokens of their own. `"..."` and `'...'` make one word, with C escapes
//!    (`\n`, `\t`, `\r`, `\\`, `\"`, `\'`, `\xHH`, `\nnn`).
//! 5. `include GLOB` (and the strict `includer`, `includem`, `includew`,
//!    `includeb`, `includea`) reads the matching files in sorted order at
//!    that point, relative to the including file's directory, with brace
//!    expansion (`{a,b}`). A file that is already being read is an include
//!    loop: refused.
//!
//! Rules: every produced line carries its file and line; nothing here
//! panics on any input; limits (include depth, parameter recursion,
//! expanded lines) bound the work on hostile input.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diag::{Diags, Loc, Severity};

/// Deepest include nesting.
pub const MAX_INCLUDE_DEPTH: usize = 32;
/// Deepest parameter substitution.
pub const MAX_PARAM_DEPTH: usize = 32;
/// Most logical lines one reading produces (bounds parameter expansion).
pub const MAX_LINES: usize = 1_000_000;
/// Most alternatives one brace expansion produces.
pub const MAX_BRACE_EXPANSION: usize = 1024;

/// A token of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A word (quotes removed, escapes applied).
    Word(String),
    /// `{`.
    Open,
    /// `}`.
    Close,
}

/// One logical line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Where it was read (for lines from a parameter: where it was used).
    pub loc: Loc,
    /// Its tokens (never empty).
    pub tokens: Vec<Token>,
}

/// The reader's settings.
#[derive(Debug, Clone)]
pub struct LexOptions {
    /// keepalived's config id (`-i`), compared with `@ID` lines.
    pub config_id: String,
    /// Whether `include` lines are followed (false: each is fatal; for
    /// reading untrusted text, e.g. fuzzing).
    pub includes: bool,
}

impl Default for LexOptions {
    fn default() -> Self {
        LexOptions {
            config_id: default_config_id(),
            includes: true,
        }
    }
}

/// keepalived's default config id: the host name up to its first dot.
pub fn default_config_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| h.trim().split('.').next().map(str::to_string))
        .unwrap_or_default()
}

/// A parameter's value: one line, or the lines of a multi-line definition.
#[derive(Debug, Clone)]
enum Param {
    Line(String),
    Lines(Vec<String>),
}

struct Lexer<'a> {
    opts: &'a LexOptions,
    diags: &'a mut Diags,
    params: HashMap<String, Param>,
    /// Canonical paths of the files being read (include loop detection).
    reading: Vec<PathBuf>,
    lines: Vec<Line>,
}

/// Reads `path` and everything it includes into logical lines. A main file
/// that cannot be read is a fatal diagnostic and gives no lines.
pub fn read(path: &Path, opts: &LexOptions, diags: &mut Diags) -> Vec<Line> {
    let mut lexer = Lexer::new(opts, diags);
    let regular = std::fs::metadata(path).map(|m| m.is_file());
    match regular.and_then(|is_file| {
        if is_file {
            std::fs::read(path)
        } else {
            Err(std::io::Error::other("not a regular file"))
        }
    }) {
        Ok(bytes) => lexer.file(path, &bytes),
        Err(e) => lexer.diags.0.push(super::diag::Diag {
            severity: Severity::Fatal,
            loc: None,
            message: format!("cannot read configuration file {}: {e}", path.display()),
            keepalived_line: false,
        }),
    }
    lexer.lines
}

/// Reads a text as if it were the file `name` (tests, and files already
/// in memory). Includes are relative to `name`'s directory.
pub fn read_text(name: &Path, text: &str, opts: &LexOptions, diags: &mut Diags) -> Vec<Line> {
    let mut lexer = Lexer::new(opts, diags);
    lexer.file(name, text.as_bytes());
    lexer.lines
}

impl<'a> Lexer<'a> {
    fn new(opts: &'a LexOptions, diags: &'a mut Diags) -> Lexer<'a> {
        Lexer {
            opts,
            diags,
            params: HashMap::new(),
            reading: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn file(&mut self, path: &Path, bytes: &[u8]) {
        let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.reading.push(canon);
        let file = Arc::new(path.to_path_buf());
        let text = String::from_utf8_lossy(bytes);
        // Each line with how many multi-line parameters it came through.
        let mut queue: VecDeque<(String, Loc, usize)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let loc = Loc {
                    file: file.clone(),
                    line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                };
                (l.to_string(), loc, 0)
            })
            .collect();
        let pwd = path
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        self.params.insert(
            "_PWD".to_string(),
            Param::Line(if pwd.is_empty() { ".".into() } else { pwd }),
        );
        while let Some((raw, loc, expanded)) = queue.pop_front() {
            if self.lines.len() >= MAX_LINES {
                self.diags.push(
                    Severity::Fatal,
                    &loc,
                    format!("more than {MAX_LINES} lines after parameter expansion"),
                );
                break;
            }
            let text = decomment(&raw);
            let Some(text) = self.conditional(text.trim()) else {
                continue;
            };
            if text.is_empty() {
                continue;
            }
            if let Some((name, value)) = param_definition(text) {
                if value.trim() == "\\" {
                    let mut body = Vec::new();
                    while let Some((next, _, _)) = queue.pop_front() {
                        let next = decomment(&next);
                        let t = next.trim_end();
                        match t.strip_suffix('\\') {
                            Some(part) => body.push(part.trim_end().to_string()),
                            None => {
                                body.push(t.to_string());
                                break;
                            }
                        }
                    }
                    self.params.insert(name, Param::Lines(body));
                } else {
                    self.params.insert(name, Param::Line(value.to_string()));
                }
                continue;
            }
            // A line that is only a multi-line parameter becomes its lines
            // (which may name one again: bounded like `substitute`).
            if let Some((name, Param::Lines(body))) =
                whole_param(text).and_then(|n| Some((n, self.params.get(n)?)))
            {
                if expanded >= MAX_PARAM_DEPTH {
                    self.diags.push(
                        Severity::Fatal,
                        &loc,
                        format!("parameter ${name} is substituted more than {MAX_PARAM_DEPTH} levels deep (it refers to itself)"),
                    );
                    // Its copies still queued would each say so again.
                    break;
                }
                for l in body.iter().rev() {
                    queue.push_front((l.clone(), loc.clone(), expanded + 1));
                }
                continue;
            }
            let text = match self.substitute(text, 0) {
                Ok(t) => t,
                Err(name) => {
                    self.diags.push(
                        Severity::Fatal,
                        &loc,
                        format!("parameter ${name} is substituted more than {MAX_PARAM_DEPTH} levels deep (it refers to itself)"),
                    );
                    continue;
                }
            };
            // `$IF_MAIN=@main` then `$IF_MAIN priority 240`.
            let Some(text) = self.conditional(text.trim()) else {
                continue;
            };
            // `include PATTERN`: the rest of the line is the pattern (its
            // braces are brace expansion, not blocks).
            let (first, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
            if let Some(kind) = IncludeKind::from_keyword(first) {
                self.include(kind, &unquote_pattern(rest.trim()), &loc, path);
                continue;
            }
            let tokens = match tokenize(text) {
                Ok(t) => t,
                Err(msg) => {
                    self.diags.push(Severity::Fatal, &loc, msg);
                    continue;
                }
            };
            if tokens.is_empty() {
                continue;
            }
            self.lines.push(Line { loc, tokens });
        }
        self.reading.pop();
        if let Some(parent) = self.reading.last() {
            // Back in the including file: `${_PWD}` is its directory again.
            let dir = parent.parent().map(|p| p.display().to_string());
            if let Some(dir) = dir {
                self.params.insert("_PWD".to_string(), Param::Line(dir));
            }
        }
    }

    /// Applies `@ID` / `@^ID`: `None` drops the line.
    fn conditional<'t>(&self, text: &'t str) -> Option<&'t str> {
        let Some(rest) = text.strip_prefix('@') else {
            return Some(text);
        };
        let (id, line) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let (negate, id) = match id.strip_prefix('^') {
            Some(id) => (true, id),
            None => (false, id),
        };
        ((id == self.opts.config_id) != negate).then_some(line.trim())
    }

    /// Replaces `$NAME` and `${NAME}` recursively; `Err(name)` when the
    /// recursion does not end.
    fn substitute(&self, text: &str, depth: usize) -> Result<String, String> {
        if !text.contains('$') {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) if is_param_name(&inner[..end]) => (&inner[..end], end + 2),
                    _ => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                let followed_ok = after[end..]
                    .chars()
                    .next()
                    .map_or(true, char::is_whitespace);
                if end > 0 && followed_ok && is_param_name(&after[..end]) {
                    (&after[..end], end)
                } else {
                    ("", 0)
                }
            };
            let value = match name {
                "" => None,
                "_HASH" => Some("#".to_string()),
                "_INSTANCE" => Some(self.opts.config_id.clone()),
                n => self.params.get(n).map(|p| match p {
                    Param::Line(v) => v.clone(),
                    Param::Lines(v) => v.join(" "),
                }),
            };
            match value {
                Some(v) => {
                    if depth >= MAX_PARAM_DEPTH {
                        return Err(name.to_string());
                    }
                    out.push_str(&self.substitute(&v, depth + 1)?);
                    rest = &after[consumed..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn include(&mut self, kind: IncludeKind, pattern: &str, loc: &Loc, including: &Path) {
        if !self.opts.includes {
            self.diags.push_rvs(
                Severity::Fatal,
                loc,
                format!("{}: includes are disabled here", kind.keyword()),
            );
            return;
        }
        if pattern.is_empty() || pattern.contains(char::is_whitespace) {
            self.diags.push(
                Severity::Fatal,
                loc,
                format!(
                    "{}: expected one file name or pattern, got '{pattern}'",
                    kind.keyword()
                ),
            );
            return;
        }
        if self.reading.len() >= MAX_INCLUDE_DEPTH {
            self.diags.push(
                Severity::Fatal,
                loc,
                format!("includes nested more than {MAX_INCLUDE_DEPTH} deep"),
            );
            return;
        }
        let base = including.parent().unwrap_or(Path::new(""));
        let alternatives = match brace_expand(pattern) {
            Ok(a) => a,
            Err(msg) => {
                self.diags.push(Severity::Fatal, loc, msg);
                return;
            }
        };
        let braced = alternatives.len() > 1;
        let mut any = false;
        let mut missing = Vec::new();
        for alt in &alternatives {
            let full = if Path::new(alt).is_absolute() {
                PathBuf::from(alt)
            } else {
                base.join(alt)
            };
            let text = full.display().to_string();
            let mut files: Vec<PathBuf> = match glob::glob(&text) {
                Ok(paths) => paths
                    .filter_map(Result::ok)
                    .filter(|p| !p.is_dir())
                    .collect(),
                Err(e) => {
                    self.diags.push(
                        Severity::Fatal,
                        loc,
                        format!("{} '{pattern}': bad pattern: {e}", kind.keyword()),
                    );
                    return;
                }
            };
            files.sort();
            if files.is_empty() {
                missing.push(alt.clone());
            }
            for f in files {
                any = true;
                let canon = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
                if self.reading.contains(&canon) {
                    let chain: Vec<String> = self
                        .reading
                        .iter()
                        .map(|p| p.display().to_string())
                        .chain(std::iter::once(canon.display().to_string()))
                        .collect();
                    self.diags.push(
                        Severity::Fatal,
                        loc,
                        format!("include loop: {} ({})", f.display(), chain.join(" -> ")),
                    );
                    continue;
                }
                if !f.is_file() {
                    // A device or FIFO (`include /dev/zero`) would never end.
                    self.diags.push_rvs(
                        Severity::Fatal,
                        loc,
                        format!("{}: {} is not a regular file", kind.keyword(), f.display()),
                    );
                    continue;
                }
                match std::fs::read(&f) {
                    Ok(bytes) => self.file(&f, &bytes),
                    Err(e) => {
                        let sev = if kind.strict_readable() {
                            Severity::StrictInclude
                        } else {
                            Severity::Warning
                        };
                        self.diags.push(
                            sev,
                            loc,
                            format!(
                                "Configuration file '{}' open problem ({e}) - skipping",
                                f.display()
                            ),
                        );
                    }
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        let strict = match kind {
            IncludeKind::Match | IncludeKind::All | IncludeKind::Wildcard => true,
            IncludeKind::Brace => braced,
            IncludeKind::Plain | IncludeKind::Readable => false,
        };
        let sev = if strict {
            Severity::StrictInclude
        } else {
            Severity::Warning
        };
        let message = if !any && alternatives.len() == 1 {
            if pattern.contains(['*', '?', '[']) {
                format!("No config files matched '{pattern}'.")
            } else {
                format!("Config files missing '{pattern}'.")
            }
        } else {
            format!(
                "Some config files missing: \"{pattern}\" ({})",
                missing.join(", ")
            )
        };
        self.diags
            .push(sev, loc, format!("{}: {message}", kind.keyword()));
    }
}

/// The include keywords (man page "include").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IncludeKind {
    /// `include`: never fails.
    Plain,
    /// `includer`: every matched file must be readable.
    Readable,
    /// `includem`: the pattern must match.
    Match,
    /// `includew`: a wildcard must match.
    Wildcard,
    /// `includeb`: every brace alternative must match.
    Brace,
    /// `includea`: all of these.
    All,
}

impl IncludeKind {
    fn from_keyword(kw: &str) -> Option<IncludeKind> {
        Some(match kw {
            "include" => IncludeKind::Plain,
            "includer" => IncludeKind::Readable,
            "includem" => IncludeKind::Match,
            "includew" => IncludeKind::Wildcard,
            "includeb" => IncludeKind::Brace,
            "includea" => IncludeKind::All,
            _ => return None,
        })
    }

    fn keyword(self) -> &'static str {
        match self {
            IncludeKind::Plain => "include",
            IncludeKind::Readable => "includer",
            IncludeKind::Match => "includem",
            IncludeKind::Wildcard => "includew",
            IncludeKind::Brace => "includeb",
            IncludeKind::All => "includea",
        }
    }

    fn strict_readable(self) -> bool {
        matches!(self, IncludeKind::Readable | IncludeKind::All)
    }
}

/// An include pattern without its quotes, if it has them.
fn unquote_pattern(text: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = text.strip_prefix(q).and_then(|t| t.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    text.to_string()
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `$NAME=value` → `(NAME, value)`.
fn param_definition(text: &str) -> Option<(String, &str)> {
    let rest = text.strip_prefix('$')?;
    let (name, value) = rest.split_once('=')?;
    is_param_name(name).then(|| (name.to_string(), value))
}

/// `$NAME` or `${NAME}` alone on a line → `NAME`.
fn whole_param(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('$')?;
    let name = rest
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(rest);
    is_param_name(name).then_some(name)
}

/// Cuts a comment (`#` or `!` outside quotes); `\#` and `\!` become the
/// characters.
pub fn decomment(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\\') if matches!(chars.peek(), Some('#') | Some('!')) => {
                out.push(chars.next().unwrap_or('#'));
            }
            (None, '#') | (None, '!') => break,
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                out.push(c);
            }
            (Some(q), '\\') => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
                let _ = q;
            }
            (Some(q), _) if c == q => {
                quote = None;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Splits a line into words and braces.
pub fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    tokens.push(Token::Word(std::mem::take(&mut word)));
                    in_word = false;
                }
            }
            '{' | '}' => {
                if in_word {
                    tokens.push(Token::Word(std::mem::take(&mut word)));
                    in_word = false;
                }
                tokens.push(if c == '{' { Token::Open } else { Token::Close });
            }
            '"' | '\'' => {
                in_word = true;
                let mut closed = false;
                while let Some(q) = chars.next() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    if q == '\\' {
                        word.push(unescape(&mut chars)?);
                    } else {
                        word.push(q);
                    }
                }
                if !closed {
                    return Err(format!("unterminated {c}quoted{c} string"));
                }
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        tokens.push(Token::Word(word));
    }
    Ok(tokens)
}

/// One C escape after a backslash inside quotes.
fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, String> {
    let Some(c) = chars.next() else {
        return Err("a quoted string ends in a backslash".to_string());
    };
    Ok(match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'a' => '\x07',
        'b' => '\x08',
        'f' => '\x0c',
        'v' => '\x0b',
        'e' => '\x1b',
        'x' => {
            let mut v = 0u32;
            let mut n = 0;
            while n < 2 {
                match chars.peek().and_then(|d| d.to_digit(16)) {
                    Some(d) => {
                        v = v * 16 + d;
                        chars.next();
                        n += 1;
                    }
                    None => break,
                }
            }
            if n == 0 {
                return Err("\\x without hex digits in a quoted string".to_string());
            }
            char::from_u32(v).unwrap_or('\u{fffd}')
        }
        '0'..='7' => {
            let mut v = c.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match chars.peek().and_then(|d| d.to_digit(8)) {
                    Some(d) => {
                        v = v * 8 + d;
                        chars.next();
                    }
                    None => break,
                }
            }
            char::from_u32(v).unwrap_or('\u{fffd}')
        }
        other => other,
    })
}

/// Expands the first `{a,b,...}` group of `pattern`, recursively.
pub fn brace_expand(pattern: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    expand_into(pattern, &mut out)?;
    Ok(out)
}

fn expand_into(pattern: &str, out: &mut Vec<String>) -> Result<(), String> {
    let Some(open) = pattern.find('{') else {
        out.push(pattern.to_string());
        return Ok(());
    };
    // The matching close brace, and the top-level commas inside.
    let mut depth = 0usize;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, c) in pattern[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(open + i),
            _ => {}
        }
    }
    let Some(close) = close else {
        return Err(format!("unbalanced '{{' in include pattern '{pattern}'"));
    };
    if commas.is_empty() {
        // `{x}` is not a group: keep it literally.
        out.push(pattern.to_string());
        return Ok(());
    }
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    let mut start = open + 1;
    for end in commas.into_iter().chain(std::iter::once(close)) {
        expand_into(&format!("{head}{}{tail}", &pattern[start..end]), out)?;
        if out.len() > MAX_BRACE_EXPANSION {
            return Err(format!(
                "include pattern '{pattern}' expands to more than {MAX_BRACE_EXPANSION} names"
            ));
        }
        start = end + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_end_at_hash_or_bang_outside_quotes_and_escape_with_backslash() {
        assert_eq!(decomment("a b # c"), "a b ");
        assert_eq!(decomment("a ! c"), "a ");
        assert_eq!(decomment(r#"x "a#b" !c"#), r#"x "a#b" "#);
        assert_eq!(decomment(r"x a\#b \!c"), "x a#b !c");
    }

    #[test]
    fn braces_are_tokens_and_quotes_make_one_word_with_c_escapes() {
        let t = tokenize(r#"global_defs { router_id "a b\x41\101\n" }"#).unwrap();
        assert_eq!(
            t,
            vec![
                Token::Word("global_defs".into()),
                Token::Open,
                Token::Word("router_id".into()),
                Token::Word("a bAA\n".into()),
                Token::Close
            ]
        );
        assert!(tokenize("x \"open").is_err());
    }

    #[test]
    fn brace_expansion_gives_every_alternative_in_order() {
        assert_eq!(
            brace_expand("a{1,2}b{x,y}").unwrap(),
            vec!["a1bx", "a1by", "a2bx", "a2by"]
        );
        assert_eq!(brace_expand("plain").unwrap(), vec!["plain"]);
        assert!(brace_expand("a{1,2").is_err());
    }
}
