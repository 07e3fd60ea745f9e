//! keepalived — reading an operator's keepalived.conf (keepalived 2.2.7's
//! grammar, defaults and quirks, plus the DPVS fork's words): one reader
//! for the LVS half (`virtual_server` → services and checkers) and the
//! VRRP half (`vrrp_*`).
//!
//! Pipeline: [`lexer`] (files, includes, comments, `@id`, `$PARAM`,
//! quoting, braces) → [`parse`] (keyword tree, file:line on every node) →
//! [`model`] (typed, keepalived's defaults applied) → [`to_config`] (rvs's
//! [`Config`]). Every step reports into one [`diag::Diags`], whose severity
//! gives `keepalived -t`'s exit code and whether `lbd` may start.
//!
//! Rules: no I/O but reading the configuration files; no panics on any
//! input; nothing keepalived would act on is dropped silently.

pub mod diag;
pub mod lexer;
pub mod model;
pub mod parse;
pub mod to_config;

use std::path::Path;

use crate::ctl::config::Config;
use diag::Diags;
use lexer::LexOptions;
use model::KeepalivedConf;

/// A keepalived.conf read and converted.
#[derive(Debug, Clone)]
pub struct Import {
    /// The typed file (checkers and VRRP included).
    pub conf: KeepalivedConf,
    /// Everything found, in order.
    pub diags: Diags,
    /// The rvs configuration, when nothing refuses a start.
    pub config: Option<Config>,
}

/// Reads `path` into the typed model.
pub fn load(path: &Path, opts: &LexOptions) -> (KeepalivedConf, Diags) {
    let mut diags = Diags::default();
    let lines = lexer::read(path, opts, &mut diags);
    typed(&lines, diags)
}

/// Lines → tree → model.
fn typed(lines: &[lexer::Line], mut diags: Diags) -> (KeepalivedConf, Diags) {
    let tree = parse::build(lines, &mut diags);
    let conf = model::read(&tree, &mut diags);
    (conf, diags)
}

/// Reads a text as the file `name` into the typed model.
pub fn load_text(name: &Path, text: &str, opts: &LexOptions) -> (KeepalivedConf, Diags) {
    let mut diags = Diags::default();
    let lines = lexer::read_text(name, text, opts, &mut diags);
    typed(&lines, diags)
}

/// Reads `path` and converts it onto `ports` (the `--config` YAML: ports,
/// workers, routes). Without `ports`, interface names are not checked and
/// the configuration has no ports.
pub fn import(path: &Path, opts: &LexOptions, ports: Option<Config>) -> Import {
    let (conf, mut diags) = load(path, opts);
    let check_ports = ports.is_some();
    let config = to_config::to_config(&conf, ports.unwrap_or_default(), check_ports, &mut diags);
    let config = diags.can_start().then_some(config);
    Import {
        conf,
        diags,
        config,
    }
}
