//! health::conf — the health-check configuration as YAML gives it
//! (`services[].dests[].checks`, plus the per-service and per-real-server
//! keywords), with keepalived's keyword names and defaults so that the
//! keepalived.conf reader maps onto it one to one, and its resolution into
//! the fully specified values a checker runs with.
//!
//! Rules:
//! * A leaf: serde types and pure functions over them; nothing here does
//!   I/O or knows the control plane.
//! * keepalived's inheritance: a checker's timing keyword overrides the real
//!   server's, which overrides the virtual service's, which overrides the
//!   checker type's default (`check_data.c`, `queue_checker()`): `delay_loop`
//!   60 s, `connect_timeout` 5 s, `retry` 1 (DNS 3, MISC 0),
//!   `delay_before_retry` 1 s (HTTP_GET/SSL_GET 3 s, DNS = `delay_loop`),
//!   `warmup` = `delay_loop`, `misc_timeout` = `delay_loop`.
//! * `nb_get_retry` is honoured only inside HTTP_GET/SSL_GET (as keepalived);
//!   in any other checker it is refused here (keepalived ignores it there
//!   with a warning, so honouring it would change detection times).
//! * A keyword that does not belong to the checker type is refused with a
//!   message naming both (keepalived's "unknown keyword"), never ignored.
//! * Times are seconds, integer or decimal (keepalived's timer syntax).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// keepalived's `delay_loop` default.
pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
/// keepalived's `connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A duration in seconds (integer or decimal), as keepalived's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Secs(pub Duration);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secs, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds (e.g. 1 or 0.5)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secs, E> {
                Ok(Secs(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                u64::try_from(v)
                    .map(|v| Secs(Duration::from_secs(v)))
                    .map_err(|_| E::custom(format!("{v} seconds is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secs, E> {
                Duration::try_from_secs_f64(v)
                    .map(Secs)
                    .map_err(|_| E::custom(format!("{v} is not a number of seconds")))
            }
        }
        d.deserialize_any(V)
    }
}

/// The checker types rvs runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// `TCP_CHECK`: a TCP connect.
    Tcp,
    /// `HTTP_GET`: HTTP/1.0 GET of each `url`.
    Http,
    /// `SSL_GET`: the same over TLS.
    Ssl,
    /// `MISC_CHECK`: a script's exit status.
    Misc,
    /// `UDP_CHECK`: a UDP datagram, no ICMP error back.
    Udp,
    /// `DNS_CHECK`: a DNS query answered with RCODE 0.
    Dns,
}

impl CheckKind {
    /// keepalived's keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            CheckKind::Tcp => "TCP_CHECK",
            CheckKind::Http => "HTTP_GET",
            CheckKind::Ssl => "SSL_GET",
            CheckKind::Misc => "MISC_CHECK",
            CheckKind::Udp => "UDP_CHECK",
            CheckKind::Dns => "DNS_CHECK",
        }
    }

    /// keepalived's default `retry` for this checker type.
    pub fn default_retry(self) -> u32 {
        match self {
            CheckKind::Dns => 3,
            CheckKind::Misc => 0,
            _ => 1,
        }
    }

    /// keepalived's default `delay_before_retry` (DNS: `delay_loop`).
    pub fn default_delay_before_retry(self, delay_loop: Duration) -> Duration {
        match self {
            CheckKind::Http | CheckKind::Ssl => Duration::from_secs(3),
            CheckKind::Dns => delay_loop,
            _ => Duration::from_secs(1),
        }
    }
}

/// One `url { path digest status_code }` of HTTP_GET/SSL_GET.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlConf {
    /// Request path (default `/`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Accepted status codes and ranges, e.g. `[200, "300-399"]` (default
    /// 200-299).
    #[serde(default)]
    pub status_code: Vec<StatusCode>,
    /// MD5 of the body, 32 hex digits (`genhash`).
    #[serde(default)]
    pub digest: Option<String>,
}

fn default_path() -> String {
    "/".to_string()
}

/// A status code or an inclusive range `"200-299"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode(pub u16, pub u16);

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StatusCode, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StatusCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status code (100-999) or a range like \"200-299\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusCode, E> {
                match u16::try_from(v) {
                    Ok(c) if (100..=999).contains(&c) => Ok(StatusCode(c, c)),
                    _ => Err(E::custom(format!("status code {v} outside 100-999"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusCode, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("status code {v} outside 100-999"))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusCode, E> {
                let bad = || E::custom(format!("bad status code range {v:?}"));
                let (lo, hi) = match v.split_once('-') {
                    Some((a, b)) => (a.trim(), b.trim()),
                    None => (v.trim(), v.trim()),
                };
                let lo: u16 = lo.parse().map_err(|_| bad())?;
                let hi: u16 = hi.parse().map_err(|_| bad())?;
                if !(100..=999).contains(&lo) || !(100..=999).contains(&hi) || lo > hi {
                    return Err(bad());
                }
                Ok(StatusCode(lo, hi))
            }
        }
        d.deserialize_any(V)
    }
}

/// The body of one checker (`- TCP_CHECK: {...}`): every keyword any
/// checker type knows; [`CheckConf::validate`] refuses those the type does
/// not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// Address to check (default: the real server's).
    #[serde(default)]
    pub connect_ip: Option<IpAddr>,
    /// Port to check (default: the real server's).
    #[serde(default)]
    pub connect_port: Option<u16>,
    /// Source address (the director's own).
    #[serde(default)]
    pub bindto: Option<IpAddr>,
    /// Source port.
    #[serde(default)]
    pub bind_port: Option<u16>,
    /// Timeout of the connection and of each I/O.
    #[serde(default)]
    pub connect_timeout: Option<Secs>,
    /// Retries before down.
    #[serde(default)]
    pub retry: Option<u32>,
    /// HTTP_GET/SSL_GET only: legacy alias of `retry`.
    #[serde(default)]
    pub nb_get_retry: Option<u32>,
    /// Pause before a retry.
    #[serde(default)]
    pub delay_before_retry: Option<Secs>,
    /// Upper bound of the random delay of the first check.
    #[serde(default)]
    pub warmup: Option<Secs>,
    /// Pause between checks.
    #[serde(default)]
    pub delay_loop: Option<Secs>,
    /// HTTP_GET/SSL_GET: the URLs, all of which must pass.
    #[serde(default)]
    pub url: Vec<UrlConf>,
    /// HTTP_GET/SSL_GET: `Host:` header (default `ip:port`).
    #[serde(default)]
    pub virtualhost: Option<String>,
    /// MISC_CHECK: the command line (split at spaces, `"` quoting).
    #[serde(default)]
    pub misc_path: Option<String>,
    /// MISC_CHECK: the script's time limit (default `delay_loop`).
    #[serde(default)]
    pub misc_timeout: Option<Secs>,
    /// MISC_CHECK: exit 2..=255 sets the weight to `code - 2`.
    #[serde(default)]
    pub misc_dynamic: bool,
    /// UDP_CHECK: payload in hex (default: random bytes).
    #[serde(default)]
    pub payload: Option<String>,
    /// UDP_CHECK: a reply is required (a timeout is then a failure).
    #[serde(default)]
    pub require_reply: bool,
    /// UDP_CHECK: shortest acceptable reply (default 0).
    #[serde(default)]
    pub min_reply_length: Option<usize>,
    /// UDP_CHECK: longest acceptable reply (default 255).
    #[serde(default)]
    pub max_reply_length: Option<usize>,
    /// DNS_CHECK: query type (default SOA).
    #[serde(default, rename = "type")]
    pub dns_type: Option<String>,
    /// DNS_CHECK: query name (default `.`).
    #[serde(default)]
    pub name: Option<String>,
}

/// One checker: `- TCP_CHECK: {connect_timeout: 1}` (a map of one entry,
/// keyed by keepalived's checker keyword).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckConf {
    /// `TCP_CHECK`.
    Tcp(CheckBody),
    /// `HTTP_GET`.
    Http(CheckBody),
    /// `SSL_GET`.
    Ssl(CheckBody),
    /// `MISC_CHECK`.
    Misc(CheckBody),
    /// `UDP_CHECK`.
    Udp(CheckBody),
    /// `DNS_CHECK`.
    Dns(CheckBody),
}

/// The checker keywords, as map keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
enum CheckKey {
    #[serde(rename = "TCP_CHECK")]
    Tcp,
    #[serde(rename = "HTTP_GET")]
    Http,
    #[serde(rename = "SSL_GET")]
    Ssl,
    #[serde(rename = "MISC_CHECK")]
    Misc,
    #[serde(rename = "UDP_CHECK")]
    Udp,
    #[serde(rename = "DNS_CHECK")]
    Dns,
}

impl<'de> Deserialize<'de> for CheckConf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CheckConf, D::Error> {
        let map = std::collections::BTreeMap::<CheckKey, CheckBody>::deserialize(d)?;
        let mut entries = map.into_iter();
        let (Some((key, body)), None) = (entries.next(), entries.next()) else {
            return Err(de::Error::custom(
                "a checker is a map of exactly one entry, e.g. `- TCP_CHECK: {connect_timeout: 1}`",
            ));
        };
        Ok(match key {
            CheckKey::Tcp => CheckConf::Tcp(body),
            CheckKey::Http => CheckConf::Http(body),
            CheckKey::Ssl => CheckConf::Ssl(body),
            CheckKey::Misc => CheckConf::Misc(body),
            CheckKey::Udp => CheckConf::Udp(body),
            CheckKey::Dns => CheckConf::Dns(body),
        })
    }
}

/// Why a health configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthConfError {
    /// A keyword that the checker type does not have.
    #[error("{keyword} is not a {checker} keyword")]
    NotAKeyword {
        /// The keyword.
        keyword: &'static str,
        /// The checker type.
        checker: &'static str,
    },
    /// A missing required keyword.
    #[error("{checker} needs {keyword}")]
    Missing {
        /// The keyword.
        keyword: &'static str,
        /// The checker type.
        checker: &'static str,
    },
    /// A bad value.
    #[error("{0}")]
    Invalid(String),
}

/// DNS query types keepalived's DNS_CHECK knows, with their numbers.
pub const DNS_TYPES: [(&str, u16); 7] = [
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
];

impl CheckConf {
    /// The checker type.
    pub fn kind(&self) -> CheckKind {
        match self {
            CheckConf::Tcp(_) => CheckKind::Tcp,
            CheckConf::Http(_) => CheckKind::Http,
            CheckConf::Ssl(_) => CheckKind::Ssl,
            CheckConf::Misc(_) => CheckKind::Misc,
            CheckConf::Udp(_) => CheckKind::Udp,
            CheckConf::Dns(_) => CheckKind::Dns,
        }
    }

    /// The keywords.
    pub fn body(&self) -> &CheckBody {
        match self {
            CheckConf::Tcp(b)
            | CheckConf::Http(b)
            | CheckConf::Ssl(b)
            | CheckConf::Misc(b)
            | CheckConf::Udp(b)
            | CheckConf::Dns(b) => b,
        }
    }

    /// Refuses keywords the checker type does not have, missing required
    /// ones and bad values.
    pub fn validate(&self) -> Result<(), HealthConfError> {
        let kind = self.kind();
        let b = self.body();
        let checker = kind.keyword();
        let http = matches!(kind, CheckKind::Http | CheckKind::Ssl);
        let present: [(&'static str, bool, bool); 17] = [
            // (keyword, given, allowed for this type)
            (
                "connect_ip",
                b.connect_ip.is_some(),
                kind != CheckKind::Misc,
            ),
            (
                "connect_port",
                b.connect_port.is_some(),
                kind != CheckKind::Misc,
            ),
            ("bindto", b.bindto.is_some(), kind != CheckKind::Misc),
            ("bind_port", b.bind_port.is_some(), kind != CheckKind::Misc),
            (
                "connect_timeout",
                b.connect_timeout.is_some(),
                kind != CheckKind::Misc,
            ),
            ("nb_get_retry", b.nb_get_retry.is_some(), http),
            ("url", !b.url.is_empty(), http),
            ("virtualhost", b.virtualhost.is_some(), http),
            ("misc_path", b.misc_path.is_some(), kind == CheckKind::Misc),
            (
                "misc_timeout",
                b.misc_timeout.is_some(),
                kind == CheckKind::Misc,
            ),
            ("misc_dynamic", b.misc_dynamic, kind == CheckKind::Misc),
            ("payload", b.payload.is_some(), kind == CheckKind::Udp),
            ("require_reply", b.require_reply, kind == CheckKind::Udp),
            (
                "min_reply_length",
                b.min_reply_length.is_some(),
                kind == CheckKind::Udp,
            ),
            (
                "max_reply_length",
                b.max_reply_length.is_some(),
                kind == CheckKind::Udp,
            ),
            ("type", b.dns_type.is_some(), kind == CheckKind::Dns),
            ("name", b.name.is_some(), kind == CheckKind::Dns),
        ];
        if let Some((keyword, _, _)) = present.iter().find(|(_, given, ok)| *given && !*ok) {
            return Err(HealthConfError::NotAKeyword { keyword, checker });
        }
        if http && b.url.is_empty() {
            return Err(HealthConfError::Missing {
                keyword: "url",
                checker,
            });
        }
        if kind == CheckKind::Misc && b.misc_path.as_deref().map_or(true, str::is_empty) {
            return Err(HealthConfError::Missing {
                keyword: "misc_path",
                checker,
            });
        }
        for url in &b.url {
            if !url.path.starts_with('/') {
                return Err(HealthConfError::Invalid(format!(
                    "url path {:?} does not start with /",
                    url.path
                )));
            }
            if let Some(d) = &url.digest {
                if d.len() != 32 || !d.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(HealthConfError::Invalid(format!(
                        "digest {d:?} is not an MD5 sum (32 hex digits)"
                    )));
                }
            }
        }
        if let Some(p) = &b.payload {
            parse_hex(p)?;
        }
        if let Some(t) = &b.dns_type {
            dns_type_number(t)?;
        }
        if let (Some(lo), Some(hi)) = (b.min_reply_length, b.max_reply_length) {
            if lo > hi {
                return Err(HealthConfError::Invalid(format!(
                    "min_reply_length {lo} is above max_reply_length {hi}"
                )));
            }
        }
        Ok(())
    }
}

/// The number of a DNS query type name (keepalived's list).
pub fn dns_type_number(name: &str) -> Result<u16, HealthConfError> {
    DNS_TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            HealthConfError::Invalid(format!(
                "DNS_CHECK type {name:?} is not one of A NS CNAME SOA MX TXT AAAA"
            ))
        })
}

/// Bytes from hex digits (`payload`).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, HealthConfError> {
    let bad = || HealthConfError::Invalid(format!("{text:?} is not hex bytes"));
    let digits: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return Err(bad());
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// Timing keywords a virtual service or real server gives its checkers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inherited {
    /// `delay_loop`.
    pub delay_loop: Option<Secs>,
    /// `connect_timeout`.
    pub connect_timeout: Option<Secs>,
    /// `retry`.
    pub retry: Option<u32>,
    /// `delay_before_retry`.
    pub delay_before_retry: Option<Secs>,
    /// `warmup`.
    pub warmup: Option<Secs>,
}

impl Inherited {
    /// `self` where set, else `outer`.
    pub fn over(self, outer: Inherited) -> Inherited {
        Inherited {
            delay_loop: self.delay_loop.or(outer.delay_loop),
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
            retry: self.retry.or(outer.retry),
            delay_before_retry: self.delay_before_retry.or(outer.delay_before_retry),
            warmup: self.warmup.or(outer.warmup),
        }
    }
}

/// A checker's effective timing, every value resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Pause between checks, counted from the end of the previous one.
    pub delay_loop: Duration,
    /// Limit of the connection and of each I/O (MISC: `misc_timeout`).
    pub connect_timeout: Duration,
    /// Retries before down: `retry + 1` failures in a row take it down.
    pub retry: u32,
    /// Pause before a retry.
    pub delay_before_retry: Duration,
    /// The first check comes `1 s + random(0..warmup)` after start.
    pub warmup: Duration,
}

impl CheckConf {
    /// The checker's timing: its own keywords, then `outer` (real server
    /// over virtual service), then the type's defaults.
    pub fn timing(&self, outer: Inherited) -> Timing {
        let b = self.body();
        let kind = self.kind();
        let own = Inherited {
            delay_loop: b.delay_loop,
            connect_timeout: b.connect_timeout,
            retry: b.retry.or(b.nb_get_retry),
            delay_before_retry: b.delay_before_retry,
            warmup: b.warmup,
        }
        .over(outer);
        let delay_loop = own.delay_loop.map_or(DEFAULT_DELAY_LOOP, |s| s.0);
        let connect_timeout = if kind == CheckKind::Misc {
            b.misc_timeout.map_or(delay_loop, |s| s.0)
        } else {
            own.connect_timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |s| s.0)
        };
        Timing {
            delay_loop,
            connect_timeout,
            retry: own.retry.unwrap_or(kind.default_retry()),
            delay_before_retry: own
                .delay_before_retry
                .map_or(kind.default_delay_before_retry(delay_loop), |s| s.0),
            warmup: own.warmup.map_or(delay_loop, |s| s.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(yaml: &str) -> Vec<CheckConf> {
        serde_yaml_ng::from_str(yaml).expect("yaml")
    }

    #[test]
    fn defaults_are_keepalived_defaults() {
        let c = checks("- TCP_CHECK: {}\n- HTTP_GET: {url: [{path: /}]}\n- DNS_CHECK: {}\n- MISC_CHECK: {misc_path: /bin/true}\n");
        let t: Vec<Timing> = c.iter().map(|c| c.timing(Inherited::default())).collect();
        assert_eq!(t[0].delay_loop, Duration::from_secs(60));
        assert_eq!(t[0].connect_timeout, Duration::from_secs(5));
        assert_eq!(
            (t[0].retry, t[0].delay_before_retry),
            (1, Duration::from_secs(1))
        );
        assert_eq!(t[0].warmup, Duration::from_secs(60));
        assert_eq!(
            (t[1].retry, t[1].delay_before_retry),
            (1, Duration::from_secs(3))
        );
        assert_eq!(
            (t[2].retry, t[2].delay_before_retry),
            (3, Duration::from_secs(60))
        );
        assert_eq!(
            (t[3].retry, t[3].connect_timeout),
            (0, Duration::from_secs(60))
        );
    }

    #[test]
    fn checker_keyword_overrides_real_server_over_service() {
        let c = checks("- TCP_CHECK: {connect_timeout: 0.5}\n");
        let service = Inherited {
            delay_loop: Some(Secs(Duration::from_secs(6))),
            connect_timeout: Some(Secs(Duration::from_secs(10))),
            retry: Some(3),
            ..Inherited::default()
        };
        let server = Inherited {
            retry: Some(2),
            ..Inherited::default()
        };
        let t = c[0].timing(server.over(service));
        assert_eq!(t.delay_loop, Duration::from_secs(6));
        assert_eq!(t.connect_timeout, Duration::from_millis(500));
        assert_eq!(t.retry, 2);
        assert_eq!(t.warmup, Duration::from_secs(6));
    }

    #[test]
    fn nb_get_retry_counts_in_http_get_and_is_refused_in_tcp_check() {
        let c = checks(
            "- HTTP_GET: {nb_get_retry: 3, url: [{path: /}]}\n- TCP_CHECK: {nb_get_retry: 3}\n",
        );
        assert_eq!(c[0].validate(), Ok(()));
        assert_eq!(c[0].timing(Inherited::default()).retry, 3);
        assert_eq!(
            c[1].validate().unwrap_err().to_string(),
            "nb_get_retry is not a TCP_CHECK keyword"
        );
    }

    #[test]
    fn unknown_and_misplaced_keywords_are_refused() {
        assert!(
            serde_yaml_ng::from_str::<Vec<CheckConf>>("- TCP_CHECK: {conect_timeout: 1}\n")
                .is_err()
        );
        assert!(serde_yaml_ng::from_str::<Vec<CheckConf>>("- PING_CHECK: {}\n").is_err());
        let c = checks("- TCP_CHECK: {url: [{path: /}]}\n- HTTP_GET: {}\n- MISC_CHECK: {}\n");
        assert_eq!(
            c[0].validate().unwrap_err().to_string(),
            "url is not a TCP_CHECK keyword"
        );
        assert_eq!(
            c[1].validate().unwrap_err().to_string(),
            "HTTP_GET needs url"
        );
        assert_eq!(
            c[2].validate().unwrap_err().to_string(),
            "MISC_CHECK needs misc_path"
        );
    }

    #[test]
    fn status_codes_digests_and_dns_types_are_checked() {
        let c = checks("- HTTP_GET: {url: [{path: /x, status_code: [200, \"300-399\"], digest: 9b3a0c85a887a256d6939da88aabd8cd}]}\n");
        assert_eq!(c[0].validate(), Ok(()));
        assert_eq!(
            c[0].body().url[0].status_code,
            vec![StatusCode(200, 200), StatusCode(300, 399)]
        );
        assert!(serde_yaml_ng::from_str::<Vec<CheckConf>>(
            "- HTTP_GET: {url: [{status_code: [\"399-300\"]}]}\n"
        )
        .is_err());
        let bad = checks("- HTTP_GET: {url: [{digest: abc}]}\n- DNS_CHECK: {type: PTR}\n");
        assert!(bad[0]
            .validate()
            .unwrap_err()
            .to_string()
            .contains("not an MD5"));
        assert!(bad[1].validate().unwrap_err().to_string().contains("PTR"));
    }
}
