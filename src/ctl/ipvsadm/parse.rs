//! ctl::ipvsadm::parse — ipvsadm 1.31 command lines into [`Command`]s.
//!
//! Owns the option grammar and every check ipvsadm makes before it talks to
//! the kernel, in ipvsadm's order and with its wording:
//! 1. popt scanning: the first option must be a command; later options are
//!    checked one by one (value ranges, "multiple '%s' options specified");
//! 2. `--set`'s three values, then "unexpected argument";
//! 3. `-b` scheduler flags against the scheduler (default wlc);
//! 4. the `commands_v_options` matrix ('+' compulsory, 'x' illegal, '1'
//!    mutually exclusive), extended with rvs's columns and commands;
//! 5. per-command checks (zero port, one-packet scheduling, address family,
//!    tunnel options, list conflicts).
//!
//! This is a hand-written popt emulation on purpose: clap cannot express
//! ipvsadm's grammar faithfully — the first option must be the command,
//! short options cluster (`-Ln`, `-Lnc`, `-At`), `-p` takes an OPTIONAL value
//! (the next word, unless it starts with '-'), `-o` is `--ops` or takes an
//! output format depending on the command, `--set` takes three positional
//! values, and long options are never abbreviated.
//!
//! Parsing never resolves names and never panics on any input.

use crate::sync::conf::{SyncConf, SyncRole};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Command, ListCommand, ListOptions, ListWhat, OutputFormat};
use crate::conntrack::{Fwd, Proto};
use crate::ctl::protocol::{
    DestSpec, LaddrSpec, Netmask, Request, ServiceKey, ServiceSpec, Timeouts, TunType,
};

/// ipvsadm's `MAX_TIMEOUT`: 31 days, the largest `-p` and `--set` value.
pub const MAX_TIMEOUT: u32 = 86400 * 31;

/// Persistence timeout used when `-p` has no value (`IPVS_SVC_PERSISTENT_TIMEOUT`).
pub const DEFAULT_PERSISTENT_TIMEOUT: u32 = 300;

/// Longest port (interface) name accepted by `-F` (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Why a command line was rejected. `Display` is the message lbctl prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No command, or the first option is not a command (ipvsadm's
    /// `tryhelp_exit`, exit status 255).
    #[error("Try `lbctl -h' or 'lbctl --help' for more information.")]
    TryHelp,
    /// popt rejected an option word (unknown option, missing or unwanted
    /// argument); exit status 255.
    #[error("{option}: {reason}")]
    Popt {
        /// The offending word as typed.
        option: String,
        /// popt's reason text.
        reason: &'static str,
    },
    /// ipvsadm's `fail(2, ...)`: a bad value or an illegal combination.
    #[error("{0}")]
    Fail(String),
    /// A valid ipvsadm option that rvs cannot honour; exit status 2.
    #[error("{0}")]
    Refused(String),
}

impl ParseError {
    /// The exit status ipvsadm uses for this kind of error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ParseError::TryHelp | ParseError::Popt { .. } => 255,
            ParseError::Fail(_) | ParseError::Refused(_) => 2,
        }
    }
}

/// A bad line in `-R` input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct RestoreError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong with it.
    pub error: ParseError,
}

fn fail(message: impl Into<String>) -> ParseError {
    ParseError::Fail(message.into())
}

/// ipvsadm's commands (`CMD_*`), then rvs's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
    AddLaddr,
    DelLaddr,
    GetLaddr,
    PortStats,
    DataplaneStats,
    Vrrp,
    Health,
}

const N_CMDS: usize = 21;

/// ipvsadm's `cmdnames`, then DPVS's and rvs's.
const CMD_NAMES: [&str; N_CMDS] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
    "add-laddr",
    "del-laddr",
    "get-laddr",
    "port-stats",
    "dataplane-stats",
    "vrrp",
    "health",
];

/// ipvsadm's option columns (`OPTC_*`), then rvs's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Mcast,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    SyncId,
    Exact,
    OnePacket,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    Laddr,
    Ifname,
    Output,
}

const N_OPTS: usize = 37;

/// ipvsadm's `optnames`, then DPVS's ("local-address", "ifname") and rvs's.
const OPT_NAMES: [&str; N_OPTS] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
    "local-address",
    "ifname",
    "output",
];

/// ipvsadm 1.31's `commands_v_options`, one string per command, one
/// character per option column: '+' compulsory, 'x' illegal, '1' exclusive,
/// ' ' optional. The first 34 columns are ipvsadm's verbatim; the last three
/// are rvs's (laddr, ifname, output). Rows after `ZERO` are DPVS's laddr
/// commands (ifname optional in rvs) and rvs's `--port-stats` and
/// `--dataplane-stats` (`--exact` and `-o` allowed).
///
/// Columns:
/// `-n -c svc -s -p -M -r fwd -w -x -y mc tot dmn st rt thr pc srt sid ex ops pe -b grp port ttl size tinf type tprt nocs csum remc | laddr ifname output`
const COMMANDS_V_OPTIONS: [&[u8; N_OPTS]; N_CMDS] = [
    /* ADD      */ b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxxxx",
    /* EDIT     */ b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxxxxx",
    /* DEL      */ b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* FLUSH    */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* LIST     */ b" 11xxxxxxxxx11       xxxxxxx xxxxxxx ",
    /* ADDSRV   */ b"xx+xxx+    xxxxxxxxxxxxxxxxxx     xxx",
    /* DELSRV   */ b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* EDITSRV  */ b"xx+xxx+    xxxxxxxxxxxxxxxxxx     xxx",
    /* TIMEOUT  */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* STARTD   */ b"xxxxxxxxxxx xxxxxxx xxxx    xxxxxxxxx",
    /* STOPD    */ b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxxxxx",
    /* RESTORE  */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* SAVE     */ b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* ZERO     */ b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* ADDLADDR */ b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx+ x",
    /* DELLADDR */ b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx+ x",
    /* GETLADDR */ b" x xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ",
    /* PORTSTAT */ b"xxxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxxx ",
    /* DPSTATS  */ b"xxxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxxx ",
    /* VRRP     */ b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ",
    /* HEALTH   */ b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ",
];

/// Every option spelling lbctl knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Cmd(Cmd),
    Help,
    Version,
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masq,
    Ipip,
    Gatewaying,
    FullNat,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Synproxy,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    Laddr,
    Ifname,
    Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    None,
    Required,
    Optional,
}

struct OptSpec {
    long: Option<&'static str>,
    short: Option<char>,
    arity: Arity,
    tok: Tok,
}

const fn spec(long: &'static str, short: char, arity: Arity, tok: Tok) -> OptSpec {
    OptSpec {
        long: if long.is_empty() { None } else { Some(long) },
        short: if short == '\0' { None } else { Some(short) },
        arity,
        tok,
    }
}

/// ipvsadm 1.31's popt table plus DPVS's laddr options and rvs's extensions.
const OPTION_TABLE: &[OptSpec] = &[
    spec("add-service", 'A', Arity::None, Tok::Cmd(Cmd::Add)),
    spec("edit-service", 'E', Arity::None, Tok::Cmd(Cmd::Edit)),
    spec("delete-service", 'D', Arity::None, Tok::Cmd(Cmd::Del)),
    spec("clear", 'C', Arity::None, Tok::Cmd(Cmd::Flush)),
    spec("list", 'L', Arity::None, Tok::Cmd(Cmd::List)),
    spec("", 'l', Arity::None, Tok::Cmd(Cmd::List)),
    spec("zero", 'Z', Arity::None, Tok::Cmd(Cmd::Zero)),
    spec("add-server", 'a', Arity::None, Tok::Cmd(Cmd::AddDest)),
    spec("edit-server", 'e', Arity::None, Tok::Cmd(Cmd::EditDest)),
    spec("delete-server", 'd', Arity::None, Tok::Cmd(Cmd::DelDest)),
    spec("set", '\0', Arity::None, Tok::Cmd(Cmd::Timeout)),
    spec("help", 'h', Arity::None, Tok::Help),
    spec("version", 'v', Arity::None, Tok::Version),
    spec("restore", 'R', Arity::None, Tok::Cmd(Cmd::Restore)),
    spec("save", 'S', Arity::None, Tok::Cmd(Cmd::Save)),
    spec(
        "start-daemon",
        '\0',
        Arity::Required,
        Tok::Cmd(Cmd::StartDaemon),
    ),
    spec(
        "stop-daemon",
        '\0',
        Arity::Required,
        Tok::Cmd(Cmd::StopDaemon),
    ),
    spec("add-laddr", 'P', Arity::None, Tok::Cmd(Cmd::AddLaddr)),
    spec("del-laddr", 'Q', Arity::None, Tok::Cmd(Cmd::DelLaddr)),
    spec("get-laddr", 'G', Arity::None, Tok::Cmd(Cmd::GetLaddr)),
    spec("port-stats", '\0', Arity::None, Tok::Cmd(Cmd::PortStats)),
    spec(
        "dataplane-stats",
        '\0',
        Arity::None,
        Tok::Cmd(Cmd::DataplaneStats),
    ),
    spec("vrrp", '\0', Arity::None, Tok::Cmd(Cmd::Vrrp)),
    spec("health", '\0', Arity::None, Tok::Cmd(Cmd::Health)),
    spec("tcp-service", 't', Arity::Required, Tok::Tcp),
    spec("udp-service", 'u', Arity::Required, Tok::Udp),
    spec("sctp-service", '\0', Arity::Required, Tok::Sctp),
    spec("fwmark-service", 'f', Arity::Required, Tok::Fwmark),
    spec("scheduler", 's', Arity::Required, Tok::Scheduler),
    spec("persistent", 'p', Arity::Optional, Tok::Persistent),
    spec("netmask", 'M', Arity::Required, Tok::Netmask),
    spec("real-server", 'r', Arity::Required, Tok::RealServer),
    spec("masquerading", 'm', Arity::None, Tok::Masq),
    spec("ipip", 'i', Arity::None, Tok::Ipip),
    spec("gatewaying", 'g', Arity::None, Tok::Gatewaying),
    spec("fullnat", '\0', Arity::None, Tok::FullNat),
    spec("weight", 'w', Arity::Required, Tok::Weight),
    spec("u-threshold", 'x', Arity::Required, Tok::UThreshold),
    spec("l-threshold", 'y', Arity::Required, Tok::LThreshold),
    spec("numeric", 'n', Arity::None, Tok::Numeric),
    spec("connection", 'c', Arity::None, Tok::Connection),
    spec(
        "mcast-interface",
        '\0',
        Arity::Required,
        Tok::McastInterface,
    ),
    spec("syncid", '\0', Arity::Required, Tok::SyncId),
    spec("timeout", '\0', Arity::None, Tok::Timeout),
    spec("daemon", '\0', Arity::None, Tok::Daemon),
    spec("stats", '\0', Arity::None, Tok::Stats),
    spec("rate", '\0', Arity::None, Tok::Rate),
    spec("thresholds", '\0', Arity::None, Tok::Thresholds),
    spec("persistent-conn", '\0', Arity::None, Tok::PersistentConn),
    spec("nosort", '\0', Arity::None, Tok::NoSort),
    spec("sort", '\0', Arity::None, Tok::Sort),
    spec("synproxy", '\0', Arity::None, Tok::Synproxy),
    spec("exact", 'X', Arity::None, Tok::Exact),
    spec("ipv6", '6', Arity::None, Tok::Ipv6),
    spec("ops", 'o', Arity::None, Tok::Ops),
    spec("pe", '\0', Arity::Required, Tok::Pe),
    spec("sched-flags", 'b', Arity::Required, Tok::SchedFlags),
    spec("mcast-group", '\0', Arity::Required, Tok::McastGroup),
    spec("mcast-port", '\0', Arity::Required, Tok::McastPort),
    spec("mcast-ttl", '\0', Arity::Required, Tok::McastTtl),
    spec("sync-maxlen", '\0', Arity::Required, Tok::SyncMaxlen),
    spec("tun-info", '\0', Arity::None, Tok::TunInfo),
    spec("tun-type", '\0', Arity::Required, Tok::TunType),
    spec("tun-port", '\0', Arity::Required, Tok::TunPort),
    spec("tun-nocsum", '\0', Arity::None, Tok::TunNocsum),
    spec("tun-csum", '\0', Arity::None, Tok::TunCsum),
    spec("tun-remcsum", '\0', Arity::None, Tok::TunRemcsum),
    spec("laddr", 'z', Arity::Required, Tok::Laddr),
    spec("ifname", 'F', Arity::Required, Tok::Ifname),
    spec("output", '\0', Arity::Required, Tok::Output),
];

/// Which command language a command line is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// lbctl's: ipvsadm 1.31 plus rvs's extensions.
    #[default]
    Lbctl,
    /// ipvsadm 1.31's alone (lbctl invoked as `ipvsadm`): rvs's options
    /// are unknown options, as they are to ipvsadm, and `-o` is always
    /// `--ops`.
    Ipvsadm,
}

/// Options and commands ipvsadm 1.31 does not have.
fn rvs_only(tok: Tok) -> bool {
    matches!(
        tok,
        Tok::Cmd(
            Cmd::AddLaddr
                | Cmd::DelLaddr
                | Cmd::GetLaddr
                | Cmd::PortStats
                | Cmd::DataplaneStats
                | Cmd::Vrrp
                | Cmd::Health
        ) | Tok::FullNat
            | Tok::Laddr
            | Tok::Ifname
            | Tok::Output
    )
}

impl Dialect {
    /// Whether this dialect has option `spec`.
    fn has(self, spec: &OptSpec) -> bool {
        self == Dialect::Lbctl || !rvs_only(spec.tok)
    }
}

/// One option occurrence from the scanner.
struct Event {
    tok: Tok,
    arg: Option<String>,
    /// The option as typed (for popt-style messages).
    word: String,
}

/// popt-like scanner over argv (without the program name). Non-option words
/// are collected as positional arguments wherever they appear; `--` ends
/// option processing.
struct Scanner {
    args: Vec<String>,
    next: usize,
    /// Inside a short-option cluster: (word index, byte offset of next char).
    cluster: Option<(usize, usize)>,
    options_done: bool,
    positionals: Vec<String>,
    dialect: Dialect,
}

impl Scanner {
    fn new(args: Vec<String>, dialect: Dialect) -> Scanner {
        Scanner {
            args,
            next: 0,
            cluster: None,
            options_done: false,
            positionals: Vec::new(),
            dialect,
        }
    }

    /// Takes the next word as a required argument (popt takes it even if it
    /// starts with '-').
    fn take_required(&mut self, word: &str) -> Result<String, ParseError> {
        match self.args.get(self.next) {
            Some(value) => {
                self.next += 1;
                Ok(value.clone())
            }
            None => Err(ParseError::Popt {
                option: word.to_string(),
                reason: "missing argument",
            }),
        }
    }

    /// Takes the next word as an optional argument unless it is an option.
    fn take_optional(&mut self) -> Option<String> {
        if self.options_done {
            return None;
        }
        match self.args.get(self.next) {
            Some(value) if !value.starts_with('-') => {
                self.next += 1;
                Some(value.clone())
            }
            _ => None,
        }
    }

    /// Next option. `o_takes_format`: `-o` is the output format (list
    /// commands) rather than `--ops`.
    fn next_option(&mut self, o_takes_format: bool) -> Result<Option<Event>, ParseError> {
        loop {
            if let Some((index, offset)) = self.cluster {
                let word = self.args[index].clone();
                let Some(c) = word[offset..].chars().next() else {
                    self.cluster = None;
                    continue;
                };
                let after = offset + c.len_utf8();
                let spec = OPTION_TABLE
                    .iter()
                    .find(|s| s.short == Some(c) && self.dialect.has(s))
                    .ok_or_else(|| ParseError::Popt {
                        option: word.clone(),
                        reason: "unknown option",
                    })?;
                let (tok, arity) = resolve(spec, true, o_takes_format);
                let typed = format!("-{c}");
                let inline = word[after..].strip_prefix('=').unwrap_or(&word[after..]);
                let arg = match arity {
                    Arity::None => {
                        self.cluster = (after < word.len()).then_some((index, after));
                        None
                    }
                    Arity::Required => {
                        self.cluster = None;
                        if inline.is_empty() {
                            Some(self.take_required(&typed)?)
                        } else {
                            Some(inline.to_string())
                        }
                    }
                    Arity::Optional => {
                        self.cluster = None;
                        if inline.is_empty() {
                            self.take_optional()
                        } else {
                            Some(inline.to_string())
                        }
                    }
                };
                return Ok(Some(Event {
                    tok,
                    arg,
                    word: typed,
                }));
            }

            let Some(word) = self.args.get(self.next).cloned() else {
                return Ok(None);
            };
            self.next += 1;
            if self.options_done || word == "-" || !word.starts_with('-') {
                self.positionals.push(word);
                continue;
            }
            if word == "--" {
                self.options_done = true;
                continue;
            }
            if let Some(long) = word.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((name, value)) => (name, Some(value.to_string())),
                    None => (long, None),
                };
                let spec = OPTION_TABLE
                    .iter()
                    .find(|s| s.long == Some(name) && self.dialect.has(s))
                    .ok_or_else(|| ParseError::Popt {
                        option: format!("--{name}"),
                        reason: "unknown option",
                    })?;
                let (tok, arity) = resolve(spec, false, o_takes_format);
                let typed = format!("--{name}");
                let arg = match (arity, inline) {
                    (Arity::None, Some(_)) => {
                        return Err(ParseError::Popt {
                            option: typed,
                            reason: "option does not take an argument",
                        })
                    }
                    (Arity::None, None) => None,
                    (_, Some(value)) => Some(value),
                    (Arity::Required, None) => Some(self.take_required(&typed)?),
                    (Arity::Optional, None) => self.take_optional(),
                };
                return Ok(Some(Event {
                    tok,
                    arg,
                    word: typed,
                }));
            }
            self.cluster = Some((self.next - 1, 1));
        }
    }
}

/// `-o` is `--ops` except with the listing commands, where it takes a format.
fn resolve(spec: &OptSpec, short: bool, o_takes_format: bool) -> (Tok, Arity) {
    if short && spec.tok == Tok::Ops && o_takes_format {
        (Tok::Output, Arity::Required)
    } else {
        (spec.tok, spec.arity)
    }
}

/// ipvsadm's `string_to_number`: a decimal integer within `min..=max`.
fn string_to_number(text: &str, min: i64, max: i64) -> Option<i64> {
    text.parse::<i64>().ok().filter(|n| (min..=max).contains(n))
}

/// ipvsadm's `parse_timeout`: `-p` and `--set` values.
fn parse_timeout(text: &str, min: u32, max: u32) -> Result<u32, ParseError> {
    string_to_number(text, i64::from(min), i64::from(max))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| fail(format!("invalid timeout value `{text}' specified")))
}

/// Parses a bounded number or fails with ipvsadm's "illegal %s specified".
fn parse_number(text: &str, min: i64, max: i64, what: &str) -> Result<u32, ParseError> {
    string_to_number(text, min, max)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| fail(format!("illegal {what} specified")))
}

/// Note appended to address errors: lbctl does not resolve names.
const NUMERIC_ONLY: &str = " (lbctl accepts numeric addresses and ports only)";

/// ipvsadm's `parse_service`: `addr[:port]`, `[v6addr]:port`, or a bare IPv6
/// address. Returns the address and the port if one was given. Host and
/// service names are not resolved.
fn parse_service(text: &str) -> Option<(IpAddr, Option<u16>)> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port_of = |port: &str| string_to_number(port, 0, 65535).and_then(|n| u16::try_from(n).ok());
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        let addr = inner.parse::<Ipv6Addr>().ok()?;
        return Some((IpAddr::V6(addr), Some(port_of(port)?)));
    }
    if let Ok(addr) = text.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(addr), None));
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((IpAddr::V4(host.parse().ok()?), Some(port_of(port)?))),
        None => Some((IpAddr::V4(text.parse().ok()?), None)),
    }
}

/// A local address for `-z`: a plain IPv4/IPv6 address, or `[v6]`.
fn parse_laddr(text: &str) -> Option<IpAddr> {
    if let Some(inner) = text.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    text.parse::<IpAddr>().ok()
}

/// ipvsadm's `parse_sched_flags`, returning canonical flag names in bit order.
fn parse_sched_flags(scheduler: &str, text: &str) -> Result<Vec<String>, ParseError> {
    let mut bits = [false; 3];
    let mut any = false;
    for flag in text.split(',').filter(|f| !f.is_empty()) {
        any = true;
        let (bit, needs) = match flag {
            "flag-1" => (0, None),
            "flag-2" => (1, None),
            "flag-3" => (2, None),
            "sh-fallback" => (0, Some("sh")),
            "sh-port" => (1, Some("sh")),
            "mh-fallback" => (0, Some("mh")),
            "mh-port" => (1, Some("mh")),
            _ => return Err(fail(format!("invalid scheduler flag `{flag}'"))),
        };
        if needs.is_some_and(|needed| needed != scheduler) {
            return Err(fail(format!("incompatible scheduler flag `{flag}'")));
        }
        bits[bit] = true;
    }
    if !any {
        return Err(fail(format!("invalid scheduler flag `{text}'")));
    }
    let names: [&str; 3] = match scheduler {
        "sh" => ["sh-fallback", "sh-port", "flag-3"],
        "mh" => ["mh-fallback", "mh-port", "flag-3"],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    Ok(names
        .iter()
        .zip(bits)
        .filter(|(_, set)| *set)
        .map(|(name, _)| name.to_string())
        .collect())
}

/// Everything collected from the options of one command line.
struct Collected {
    options: u64,
    proto: Proto,
    service: Option<(IpAddr, Option<u16>)>,
    scheduler: Option<String>,
    persistent: Option<u32>,
    netmask: Option<String>,
    server: Option<(IpAddr, Option<u16>)>,
    fwd: Fwd,
    weight: u32,
    u_threshold: u32,
    l_threshold: u32,
    ops: bool,
    synproxy: bool,
    sched_flags: Option<String>,
    laddr: Option<IpAddr>,
    ifname: Option<String>,
    output: OutputFormat,
    /// `--start-daemon` settings (role set from the command's argument).
    sync: SyncConf,
}

impl Collected {
    fn new() -> Collected {
        Collected {
            options: 0,
            proto: Proto::Tcp,
            service: None,
            scheduler: None,
            persistent: None,
            netmask: None,
            server: None,
            fwd: Fwd::Dr,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            ops: false,
            synproxy: false,
            sched_flags: None,
            laddr: None,
            ifname: None,
            output: OutputFormat::Text,
            sync: SyncConf::new(SyncRole::Master),
        }
    }

    fn has(&self, opt: Opt) -> bool {
        self.options & (1u64 << opt as u32) != 0
    }

    /// ipvsadm's `set_option`.
    fn set(&mut self, opt: Opt) -> Result<(), ParseError> {
        if self.has(opt) {
            return Err(fail(format!(
                "multiple '{}' options specified",
                OPT_NAMES[opt as usize]
            )));
        }
        self.options |= 1u64 << opt as u32;
        Ok(())
    }

    fn service_key(&self) -> Option<ServiceKey> {
        self.service.map(|(addr, port)| ServiceKey {
            proto: self.proto,
            addr,
            port: port.unwrap_or(0),
        })
    }
}

/// Reads the value of an option that [`OPTION_TABLE`] marks as taking one.
fn value(event: &Event) -> Result<&str, ParseError> {
    event.arg.as_deref().ok_or_else(|| ParseError::Popt {
        option: event.word.clone(),
        reason: "missing argument",
    })
}

/// ipvsadm's `--start-daemon`/`--stop-daemon` state argument.
fn daemon_role(arg: Option<&str>) -> Result<SyncRole, ParseError> {
    match arg {
        Some("master") => Ok(SyncRole::Master),
        Some("backup") => Ok(SyncRole::Backup),
        _ => Err(fail("illegal start-daemon parameter specified")),
    }
}

/// Applies one non-command option (ipvsadm's `parse_options` loop body).
fn apply_option(c: &mut Collected, event: &Event) -> Result<(), ParseError> {
    match event.tok {
        Tok::Cmd(_) | Tok::Help | Tok::Version => {
            return Err(fail(format!("invalid option `{}'", event.word)));
        }
        Tok::Tcp | Tok::Udp => {
            c.set(Opt::Service)?;
            c.proto = if event.tok == Tok::Tcp { Proto::Tcp } else { Proto::Udp };
            let parsed = parse_service(value(event)?).ok_or_else(|| {
                fail(format!(
                    "illegal virtual server address[:port] specified{NUMERIC_ONLY}"
                ))
            })?;
            c.service = Some(parsed);
        }
        Tok::Sctp => {
            return Err(ParseError::Refused(
                "--sctp-service: SCTP virtual services are not supported by rvs".to_string(),
            ))
        }
        Tok::Fwmark => {
            return Err(ParseError::Refused(format!(
                "{}: firewall-mark services are not supported by rvs (a kernel-bypass data plane sees no netfilter marks)",
                event.word
            )))
        }
        Tok::Scheduler => {
            c.set(Opt::Scheduler)?;
            c.scheduler = Some(value(event)?.to_string());
        }
        Tok::Persistent => {
            c.set(Opt::Persistent)?;
            c.persistent = Some(match event.arg.as_deref() {
                Some(text) => parse_timeout(text, 1, MAX_TIMEOUT)?,
                None => DEFAULT_PERSISTENT_TIMEOUT,
            });
        }
        Tok::Netmask => {
            c.set(Opt::Netmask)?;
            c.netmask = Some(value(event)?.to_string());
        }
        Tok::RealServer => {
            c.set(Opt::Server)?;
            let parsed = parse_service(value(event)?).ok_or_else(|| {
                fail(format!(
                    "illegal real server address[:port] specified{NUMERIC_ONLY}"
                ))
            })?;
            c.server = Some(parsed);
        }
        Tok::Masq | Tok::Ipip | Tok::Gatewaying | Tok::FullNat => {
            c.set(Opt::Forward)?;
            c.fwd = match event.tok {
                Tok::Masq => Fwd::Nat,
                Tok::Ipip => Fwd::Tun,
                Tok::FullNat => Fwd::FullNat,
                _ => Fwd::Dr,
            };
        }
        Tok::Weight => {
            c.set(Opt::Weight)?;
            c.weight = parse_number(value(event)?, 0, 65535, "weight")?;
        }
        Tok::UThreshold => {
            c.set(Opt::UThreshold)?;
            c.u_threshold = parse_number(value(event)?, 0, i64::from(i32::MAX), "u_threshold")?;
        }
        Tok::LThreshold => {
            c.set(Opt::LThreshold)?;
            c.l_threshold = parse_number(value(event)?, 0, i64::from(i32::MAX), "l_threshold")?;
        }
        Tok::Numeric => c.set(Opt::Numeric)?,
        Tok::Connection => c.set(Opt::Connection)?,
        Tok::McastInterface => {
            c.set(Opt::Mcast)?;
            c.sync.interface = Some(value(event)?.to_string());
        }
        Tok::SyncId => {
            c.set(Opt::SyncId)?;
            c.sync.syncid = parse_number(value(event)?, 0, 255, "syncid")? as u8;
        }
        Tok::Timeout => c.set(Opt::Timeout)?,
        Tok::Daemon => c.set(Opt::Daemon)?,
        Tok::Stats => c.set(Opt::Stats)?,
        Tok::Rate => c.set(Opt::Rate)?,
        Tok::Thresholds => c.set(Opt::Thresholds)?,
        Tok::PersistentConn => c.set(Opt::PersistentConn)?,
        Tok::NoSort => c.set(Opt::NoSort)?,
        Tok::Sort => {} // the default; a no-op kept for compatibility
        Tok::Synproxy => c.synproxy = true,
        Tok::Exact => c.set(Opt::Exact)?,
        Tok::Ipv6 => return Err(fail("-6 used before -f")),
        Tok::Ops => {
            c.set(Opt::OnePacket)?;
            c.ops = true;
        }
        Tok::Pe => {
            c.set(Opt::Pe)?;
            let engine = value(event)?;
            if engine != "none" {
                return Err(ParseError::Refused(format!(
                    "--pe {engine}: persistence engines are not supported by rvs"
                )));
            }
        }
        Tok::SchedFlags => {
            c.set(Opt::SchedFlags)?;
            c.sched_flags = Some(value(event)?.to_string());
        }
        Tok::McastGroup => {
            c.set(Opt::McastGroup)?;
            let text = value(event)?;
            let ok = match text.parse::<IpAddr>() {
                Ok(addr) => addr.is_multicast() && text.contains(':') == addr.is_ipv6(),
                Err(_) => false,
            };
            if !ok {
                let family = if text.contains(':') { "IPv6" } else { "IPv4" };
                return Err(fail(format!("invalid {family} mcast-group `{text}'")));
            }
            match text.parse::<IpAddr>() {
                Ok(IpAddr::V4(g)) => c.sync.group = g,
                _ => {
                    return Err(ParseError::Refused(format!(
                        "--mcast-group {text}: IPv6 sync groups are not supported by rvs"
                    )))
                }
            }
        }
        Tok::McastPort => {
            c.set(Opt::McastPort)?;
            c.sync.port = parse_number(value(event)?, 1, 65535, "mcast-port")? as u16;
        }
        Tok::McastTtl => {
            c.set(Opt::McastTtl)?;
            c.sync.ttl = parse_number(value(event)?, 1, 255, "mcast-ttl")? as u8;
        }
        Tok::SyncMaxlen => {
            c.set(Opt::SyncMaxlen)?;
            c.sync.maxlen = parse_number(value(event)?, 1, 65535 - 20 - 8, "sync-maxlen")? as u16;
        }
        Tok::TunInfo => c.set(Opt::TunInfo)?,
        Tok::TunType => {
            c.set(Opt::TunType)?;
            match value(event)? {
                "ipip" => {}
                kind @ ("gue" | "gre") => {
                    return Err(ParseError::Refused(format!(
                        "--tun-type {kind}: only ipip tunnels are supported by rvs"
                    )))
                }
                _ => return Err(fail("illegal tunnel type specified")),
            }
        }
        Tok::TunPort => {
            c.set(Opt::TunPort)?;
            parse_number(value(event)?, 1, 65535, "tunnel port")?;
        }
        Tok::TunNocsum => c.set(Opt::TunNocsum)?,
        Tok::TunCsum => c.set(Opt::TunCsum)?,
        Tok::TunRemcsum => c.set(Opt::TunRemcsum)?,
        Tok::Laddr => {
            c.set(Opt::Laddr)?;
            let addr = parse_laddr(value(event)?)
                .ok_or_else(|| fail(format!("illegal local address{NUMERIC_ONLY}")))?;
            c.laddr = Some(addr);
        }
        Tok::Ifname => {
            c.set(Opt::Ifname)?;
            let name = value(event)?;
            let valid = !name.is_empty()
                && name.len() <= MAX_IFNAME_LEN
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
            if !valid {
                return Err(fail(format!("illegal ifname `{name}' specified")));
            }
            c.ifname = Some(name.to_string());
        }
        Tok::Output => {
            c.set(Opt::Output)?;
            c.output = match value(event)? {
                "json" => OutputFormat::Json,
                "text" => OutputFormat::Text,
                other => {
                    return Err(fail(format!(
                        "illegal output format `{other}' specified (json or text)"
                    )))
                }
            };
        }
    }
    Ok(())
}

/// ipvsadm's `generic_opt_check` over [`COMMANDS_V_OPTIONS`].
fn generic_opt_check(cmd: Cmd, options: u64) -> Result<(), ParseError> {
    let row = COMMANDS_V_OPTIONS[cmd as usize];
    let cmd_name = CMD_NAMES[cmd as usize];
    let mut first_exclusive: Option<usize> = None;
    for (j, rule) in row.iter().enumerate() {
        let set = options & (1u64 << j) != 0;
        match (set, rule) {
            (false, b'+') => {
                return Err(fail(format!(
                    "You need to supply the '{}' option for the '{cmd_name}' command",
                    OPT_NAMES[j]
                )))
            }
            (true, b'x') => {
                return Err(fail(format!(
                    "Illegal '{}' option with the '{cmd_name}' command",
                    OPT_NAMES[j]
                )))
            }
            (true, b'1') => match first_exclusive {
                None => first_exclusive = Some(j),
                Some(last) => {
                    return Err(fail(format!(
                    "The option '{}' conflicts with the '{}' option in the '{cmd_name}' command",
                    OPT_NAMES[j], OPT_NAMES[last]
                )))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// Parses an lbctl command line (argv without the program name).
/// An empty command line lists the table, as ipvsadm does.
pub fn parse_args<S: AsRef<str>>(args: &[S]) -> Result<Command, ParseError> {
    parse_args_as(args, Dialect::Lbctl)
}

/// Parses a command line in `dialect` (argv without the program name).
pub fn parse_args_as<S: AsRef<str>>(args: &[S], dialect: Dialect) -> Result<Command, ParseError> {
    if args.is_empty() {
        return Ok(Command::List(ListCommand {
            what: ListWhat::All,
            options: ListOptions::default(),
        }));
    }
    let mut scanner = Scanner::new(
        args.iter().map(|a| a.as_ref().to_string()).collect(),
        dialect,
    );

    // The first option must be the command (ipvsadm: tryhelp_exit otherwise).
    let first = match scanner.next_option(false) {
        Ok(Some(event)) => event,
        Ok(None) | Err(_) => return Err(ParseError::TryHelp),
    };
    let cmd = match first.tok {
        Tok::Help => return Ok(Command::Help),
        Tok::Version => return Ok(Command::Version),
        Tok::Cmd(cmd) => cmd,
        _ => return Err(ParseError::TryHelp),
    };
    let o_takes_format = dialect == Dialect::Lbctl
        && matches!(
            cmd,
            Cmd::List
                | Cmd::GetLaddr
                | Cmd::PortStats
                | Cmd::DataplaneStats
                | Cmd::Vrrp
                | Cmd::Health
        );

    let mut c = Collected::new();
    if matches!(cmd, Cmd::StartDaemon | Cmd::StopDaemon) {
        c.sync.role = daemon_role(first.arg.as_deref())?;
    }
    while let Some(event) = scanner.next_option(o_takes_format)? {
        apply_option(&mut c, &event)?;
    }

    let mut positionals = std::mem::take(&mut scanner.positionals).into_iter();
    let mut timeouts = None;
    if cmd == Cmd::Timeout {
        match (positionals.next(), positionals.next(), positionals.next()) {
            (Some(tcp), Some(tcpfin), Some(udp)) => {
                timeouts = Some(Timeouts {
                    tcp: parse_timeout(&tcp, 0, MAX_TIMEOUT)?,
                    tcpfin: parse_timeout(&tcpfin, 0, MAX_TIMEOUT)?,
                    udp: parse_timeout(&udp, 0, MAX_TIMEOUT)?,
                });
            }
            _ => return Err(fail("--set option requires 3 timeout values")),
        }
    }
    if let Some(extra) = positionals.next() {
        return Err(fail(format!("unexpected argument {extra}")));
    }

    let scheduler = c.scheduler.clone().unwrap_or_else(|| "wlc".to_string());
    let sched_flags = match &c.sched_flags {
        Some(text) => parse_sched_flags(&scheduler, text)?,
        None => Vec::new(),
    };

    // -M is read against the service's address family (ipvsadm reads it
    // against whatever -t/-u came before it).
    let netmask = match (&c.netmask, &c.service) {
        (Some(text), Some((IpAddr::V6(_), _))) => {
            let prefix = string_to_number(text, 1, 128)
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| fail("illegal ipv6 netmask specified"))?;
            Some(Netmask::V6(prefix))
        }
        (Some(text), _) => Some(Netmask::V4(text.parse::<Ipv4Addr>().map_err(|_| {
            fail(format!(
                "illegal virtual server persistent mask specified{NUMERIC_ONLY}"
            ))
        })?)),
        (None, _) => None,
    };

    generic_opt_check(cmd, c.options)?;

    if c.synproxy && !matches!(cmd, Cmd::Add | Cmd::Edit) {
        return Err(fail("--synproxy is only for -A and -E"));
    }
    let key = c.service_key();
    // After generic_opt_check, commands whose matrix row makes the service
    // compulsory have one; this keeps that fact explicit without panicking.
    let need_key = || key.ok_or_else(|| fail("You need to supply the 'service-address' option"));

    match cmd {
        Cmd::Add | Cmd::Edit => {
            let key = need_key()?;
            if key.port == 0 && c.persistent.is_none() {
                return Err(fail("Zero port specified for non-persistent service"));
            }
            if c.ops && key.proto != Proto::Udp {
                return Err(fail(
                    "One-Packet Scheduling is only for UDP virtual services",
                ));
            }
            let mut spec = ServiceSpec::new(key);
            spec.scheduler = scheduler;
            spec.sched_flags = sched_flags;
            spec.persistent = c.persistent;
            if let Some(mask) = netmask {
                spec.netmask = mask;
            }
            if c.synproxy && key.proto != Proto::Tcp {
                return Err(fail("--synproxy is only for TCP virtual services"));
            }
            spec.ops = c.ops;
            spec.synproxy = c.synproxy;
            Ok(Command::Apply(if cmd == Cmd::Add {
                Request::AddService { service: spec }
            } else {
                Request::EditService { service: spec }
            }))
        }
        Cmd::Del => Ok(Command::Apply(Request::DeleteService {
            service: need_key()?,
        })),
        Cmd::Flush => Ok(Command::Apply(Request::Clear)),
        Cmd::Zero => Ok(Command::Apply(Request::Zero { service: key })),
        Cmd::Timeout => match timeouts {
            Some(timeouts) => Ok(Command::Apply(Request::SetTimeouts { timeouts })),
            None => Err(fail("--set option requires 3 timeout values")),
        },
        Cmd::AddDest | Cmd::EditDest | Cmd::DelDest => {
            let key = need_key()?;
            let (addr, port) = c
                .server
                .ok_or_else(|| fail("You need to supply the 'real-server' option"))?;
            // ipvsadm copies the virtual port when -r has none.
            let mut port = port.unwrap_or(key.port);
            if cmd == Cmd::DelDest {
                return Ok(Command::Apply(Request::DeleteDest {
                    service: key,
                    addr,
                    port,
                }));
            }
            // Direct routing and tunnels cannot change the port.
            if matches!(c.fwd, Fwd::Dr | Fwd::Tun) {
                port = key.port;
            }
            if addr.is_ipv4() != key.addr.is_ipv4() && c.fwd != Fwd::Tun {
                return Err(fail(
                    "Different address family is allowed only for tunneling servers",
                ));
            }
            let tunnel_opts = [
                Opt::TunType,
                Opt::TunPort,
                Opt::TunNocsum,
                Opt::TunCsum,
                Opt::TunRemcsum,
            ];
            if tunnel_opts.iter().any(|&o| c.has(o)) && c.fwd != Fwd::Tun {
                return Err(fail("Tunnel options conflict with forward method"));
            }
            // ipvsadm's tunnel_types_v_options row for ipip: every option illegal.
            for opt in [Opt::TunPort, Opt::TunNocsum, Opt::TunCsum, Opt::TunRemcsum] {
                if c.has(opt) {
                    return Err(fail(format!(
                        "Illegal '{}' option with the 'ipip' tunnel type",
                        OPT_NAMES[opt as usize]
                    )));
                }
            }
            let dest = DestSpec {
                addr,
                port,
                fwd: c.fwd,
                weight: c.weight,
                u_threshold: c.u_threshold,
                l_threshold: c.l_threshold,
                tun_type: TunType::Ipip,
            };
            Ok(Command::Apply(if cmd == Cmd::AddDest {
                Request::AddDest { service: key, dest }
            } else {
                Request::EditDest { service: key, dest }
            }))
        }
        Cmd::List => {
            let exclusive = c.has(Opt::Connection) || c.has(Opt::Timeout) || c.has(Opt::Daemon);
            let shapes = c.has(Opt::Stats) || c.has(Opt::Rate) || c.has(Opt::Thresholds);
            let timeout_like = c.has(Opt::Timeout) || c.has(Opt::Daemon);
            if (exclusive && shapes) || (timeout_like && c.has(Opt::PersistentConn)) {
                return Err(fail("options conflicts in the list command"));
            }
            let what = if c.has(Opt::Daemon) {
                ListWhat::Daemon
            } else if c.has(Opt::Connection) {
                ListWhat::Conns
            } else if let Some(key) = key {
                ListWhat::Service(key)
            } else if c.has(Opt::Timeout) {
                ListWhat::Timeouts
            } else {
                ListWhat::All
            };
            Ok(Command::List(ListCommand {
                what,
                options: list_options(&c),
            }))
        }
        Cmd::Save => Ok(Command::List(ListCommand {
            what: ListWhat::Rules,
            options: list_options(&c),
        })),
        Cmd::Restore => Ok(Command::Restore),
        Cmd::AddLaddr | Cmd::DelLaddr => {
            let laddr = LaddrSpec {
                service: need_key()?,
                addr: c
                    .laddr
                    .ok_or_else(|| fail("You need to supply the 'local-address' option"))?,
                ifname: c.ifname.clone(),
            };
            Ok(Command::Apply(if cmd == Cmd::AddLaddr {
                Request::AddLaddr { laddr }
            } else {
                Request::DeleteLaddr { laddr }
            }))
        }
        Cmd::GetLaddr => Ok(Command::List(ListCommand {
            what: ListWhat::Laddrs(key),
            options: list_options(&c),
        })),
        Cmd::PortStats => Ok(Command::List(ListCommand {
            what: ListWhat::PortStats,
            options: list_options(&c),
        })),
        Cmd::DataplaneStats => Ok(Command::List(ListCommand {
            what: ListWhat::DataplaneStats,
            options: list_options(&c),
        })),
        Cmd::Vrrp => Ok(Command::List(ListCommand {
            what: ListWhat::Vrrp,
            options: list_options(&c),
        })),
        Cmd::Health => Ok(Command::List(ListCommand {
            what: ListWhat::Health,
            options: list_options(&c),
        })),
        Cmd::StartDaemon => {
            c.sync.validate().map_err(|e| fail(e.to_string()))?;
            Ok(Command::Apply(Request::StartDaemon { daemon: c.sync }))
        }
        Cmd::StopDaemon => Ok(Command::Apply(Request::StopDaemon { role: c.sync.role })),
    }
}

fn list_options(c: &Collected) -> ListOptions {
    ListOptions {
        numeric: c.has(Opt::Numeric),
        stats: c.has(Opt::Stats),
        rate: c.has(Opt::Rate),
        thresholds: c.has(Opt::Thresholds),
        persistent_conn: c.has(Opt::PersistentConn),
        tun_info: c.has(Opt::TunInfo),
        exact: c.has(Opt::Exact),
        nosort: c.has(Opt::NoSort),
        output: c.output,
    }
}

/// Parses one line of `-R` input: whitespace-separated words, `#` starts a
/// comment, and a leading `ipvsadm` (or `lbctl`) word is dropped, as in
/// ipvsadm's `config_stream_read`. Blank and comment lines give `None`.
/// Only table-changing commands are allowed.
pub fn parse_restore_line(line: &str) -> Result<Option<Request>, ParseError> {
    parse_restore_line_as(line, Dialect::Lbctl)
}

/// [`parse_restore_line`] in `dialect`.
pub fn parse_restore_line_as(line: &str, dialect: Dialect) -> Result<Option<Request>, ParseError> {
    let mut words: Vec<&str> = line
        .split_whitespace()
        .take_while(|word| !word.starts_with('#'))
        .collect();
    if matches!(words.first(), Some(&"ipvsadm") | Some(&"lbctl")) {
        words.remove(0);
    }
    if words.is_empty() {
        return Ok(None);
    }
    match parse_args_as(&words, dialect)? {
        Command::Apply(request) => Ok(Some(request)),
        Command::Restore => Err(fail("-R is not allowed in restore input")),
        Command::List(_) | Command::Help | Command::Version => Err(fail(
            "only commands that change the table (-A -E -D -C -a -e -d -Z --set -P -Q) are allowed in restore input",
        )),
    }
}

/// Parses all of `-R`'s input; the first bad line fails the whole restore.
pub fn parse_restore(input: &str) -> Result<Vec<Request>, RestoreError> {
    parse_restore_as(input, Dialect::Lbctl)
}

/// [`parse_restore`] in `dialect`.
pub fn parse_restore_as(input: &str, dialect: Dialect) -> Result<Vec<Request>, RestoreError> {
    let mut requests = Vec::new();
    for (index, line) in input.lines().enumerate() {
        match parse_restore_line_as(line, dialect) {
            Ok(Some(request)) => requests.push(request),
            Ok(None) => {}
            Err(error) => {
                return Err(RestoreError {
                    line: index + 1,
                    error,
                })
            }
        }
    }
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_ipvsadm_rvs_options_are_unknown_options_and_o_is_ops() {
        for args in [
            &[
                "-a",
                "-t",
                "10.0.0.1:80",
                "-r",
                "192.168.10.1:80",
                "--fullnat",
            ][..],
            &["--port-stats"],
            &["--dataplane-stats"],
            &["--health"],
            &["--health", "-o", "json"],
            &["-G"],
            &["-P", "-t", "10.0.0.1:80", "-z", "192.168.10.100"],
            &["-Ln", "--output", "json"],
        ] {
            assert!(parse_args(args).is_ok(), "lbctl accepts {args:?}");
            match parse_args_as(args, Dialect::Ipvsadm) {
                Err(ParseError::Popt { reason, .. }) => assert_eq!(reason, "unknown option"),
                Err(ParseError::TryHelp) => {}
                other => panic!("ipvsadm must not accept {args:?}: {other:?}"),
            }
        }
        // `-o` after -L is --ops for ipvsadm (illegal with -L), a format for lbctl.
        assert!(parse_args(&["-Ln", "-o", "json"]).is_ok());
        assert!(parse_args_as(&["-Ln", "-o", "json"], Dialect::Ipvsadm).is_err());
        // ipvsadm's own command lines parse the same in both dialects.
        for args in [
            &["-A", "-t", "10.0.0.1:80", "-s", "wrr"][..],
            &[
                "-a",
                "-t",
                "10.0.0.1:80",
                "-r",
                "192.168.10.1",
                "-g",
                "-w",
                "1",
            ],
            &["-Ln", "--stats", "--exact"],
            &["-C"],
        ] {
            assert_eq!(
                parse_args(args).expect("lbctl"),
                parse_args_as(args, Dialect::Ipvsadm).expect("ipvsadm"),
                "{args:?}"
            );
        }
        assert!(
            parse_restore_as("-P -t 10.0.0.1:80 -z 192.168.10.100\n", Dialect::Ipvsadm).is_err()
        );
    }

    #[test]
    fn matrix_rows_keep_ipvsadm_columns_verbatim() {
        // Spot checks against ipvsadm.c 1.31's table.
        let list = COMMANDS_V_OPTIONS[Cmd::List as usize];
        assert_eq!(list[Opt::Numeric as usize], b' ');
        assert_eq!(list[Opt::Connection as usize], b'1');
        assert_eq!(list[Opt::Service as usize], b'1');
        assert_eq!(list[Opt::Timeout as usize], b'1');
        assert_eq!(list[Opt::Daemon as usize], b'1');
        assert_eq!(list[Opt::Exact as usize], b' ');
        assert_eq!(list[Opt::OnePacket as usize], b'x');
        assert_eq!(list[Opt::TunInfo as usize], b' ');
        assert_eq!(list[Opt::TunType as usize], b'x');
        let add = COMMANDS_V_OPTIONS[Cmd::Add as usize];
        for opt in [
            Opt::Scheduler,
            Opt::Persistent,
            Opt::Netmask,
            Opt::OnePacket,
            Opt::Pe,
            Opt::SchedFlags,
        ] {
            assert_eq!(add[opt as usize], b' ', "{:?}", opt);
        }
        let add_dest = COMMANDS_V_OPTIONS[Cmd::AddDest as usize];
        for opt in [
            Opt::Forward,
            Opt::Weight,
            Opt::UThreshold,
            Opt::LThreshold,
            Opt::TunType,
            Opt::TunRemcsum,
        ] {
            assert_eq!(add_dest[opt as usize], b' ', "{:?}", opt);
        }
        assert_eq!(add_dest[Opt::Server as usize], b'+');
        let start = COMMANDS_V_OPTIONS[Cmd::StartDaemon as usize];
        for opt in [
            Opt::Mcast,
            Opt::SyncId,
            Opt::McastGroup,
            Opt::McastPort,
            Opt::McastTtl,
            Opt::SyncMaxlen,
        ] {
            assert_eq!(start[opt as usize], b' ', "{:?}", opt);
        }
        assert_eq!(
            COMMANDS_V_OPTIONS[Cmd::Save as usize][Opt::Numeric as usize],
            b' '
        );
        assert_eq!(
            COMMANDS_V_OPTIONS[Cmd::Zero as usize][Opt::Service as usize],
            b' '
        );
    }

    #[test]
    fn option_names_and_table_are_consistent() {
        assert_eq!(OPT_NAMES[Opt::Output as usize], "output");
        assert_eq!(CMD_NAMES[Cmd::PortStats as usize], "port-stats");
        assert_eq!(CMD_NAMES[Cmd::DataplaneStats as usize], "dataplane-stats");
        for (i, a) in OPTION_TABLE.iter().enumerate() {
            for b in &OPTION_TABLE[i + 1..] {
                if a.long.is_some() && a.tok != b.tok {
                    assert_ne!(a.long, b.long, "duplicate long option");
                }
                if a.short.is_some() {
                    assert_ne!(a.short, b.short, "duplicate short option");
                }
            }
        }
    }

    #[test]
    fn parse_service_follows_ipvsadm() {
        let v4 = |s: &str| parse_service(s);
        assert_eq!(
            v4("10.0.0.1:80"),
            Some(("10.0.0.1".parse().unwrap(), Some(80)))
        );
        assert_eq!(v4("10.0.0.1"), Some(("10.0.0.1".parse().unwrap(), None)));
        assert_eq!(
            v4("[2001:db8::1]:443"),
            Some(("2001:db8::1".parse().unwrap(), Some(443)))
        );
        assert_eq!(
            v4("2001:db8::1"),
            Some(("2001:db8::1".parse().unwrap(), None))
        );
        assert_eq!(v4("[2001:db8::1]"), None);
        assert_eq!(v4("8080"), None);
        assert_eq!(v4("10.0.0.1:"), None);
        assert_eq!(v4("10.0.0.1:65536"), None);
        assert_eq!(v4("web.example:80"), None);
        assert_eq!(v4("10.0.0.1:http"), None);
    }
}
