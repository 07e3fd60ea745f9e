//! health::checker — one check of one real server, as an async function on
//! the health thread's runtime (thousands of checks share one thread).
//!
//! What "alive" means per checker is keepalived's (reference §1.7):
//! * `TCP_CHECK`: a connect completes within `connect_timeout` (then closed);
//!   RST/ICMP is an immediate failure, silence a timeout.
//! * `HTTP_GET`/`SSL_GET` ([`http`]): for each `url` in turn, `GET path
//!   HTTP/1.0` with keepalived's headers, read to EOF (`connect_timeout` per
//!   I/O); the status must be in `status_code` (default 200-299) and the MD5
//!   of the body equal `digest` when set. SSL_GET does not verify the
//!   server's certificate, as keepalived (it checks the service, not its
//!   identity): any certificate is accepted, the handshake signature is
//!   still verified.
//! * `MISC_CHECK` ([`misc`]): the script's exit status (0 up, 1 down,
//!   `misc_dynamic` 2..=255 up with weight `code − 2`), killed at
//!   `misc_timeout` (a failure); it never blocks the thread.
//! * `UDP_CHECK`, `DNS_CHECK` ([`udp`]).
//!
//! Checks leave from the director's own addresses: `bindto`/`bind_port`
//! when set, else whatever source the director's kernel picks (with a
//! `kernel_if`, the port's address through the kernel path).

pub mod http;
pub mod misc;
pub mod udp;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::health::conf::{self, CheckConf, CheckKind, HealthConfError, StatusCode};

/// What a check does, resolved from its configuration.
#[derive(Debug, Clone)]
pub enum Probe {
    /// TCP connect.
    Tcp,
    /// HTTP GET of each URL (over TLS when `tls`).
    Http {
        /// SSL_GET.
        tls: bool,
        /// The URLs, all of which must pass.
        urls: Vec<Url>,
        /// `Host:` header value.
        host: String,
    },
    /// A script.
    Misc {
        /// Program and arguments.
        argv: Vec<String>,
        /// `misc_dynamic`.
        dynamic: bool,
    },
    /// A UDP datagram.
    Udp {
        /// Payload (`None`: random).
        payload: Option<Vec<u8>>,
        /// A reply is required.
        require_reply: bool,
        /// Reply length bounds.
        reply_len: (usize, usize),
    },
    /// A DNS query.
    Dns {
        /// Query type number.
        qtype: u16,
        /// Query name.
        name: String,
    },
}

/// One URL of an HTTP check.
#[derive(Debug, Clone)]
pub struct Url {
    /// Path.
    pub path: String,
    /// Accepted status ranges (empty: 200-299).
    pub status: Vec<StatusCode>,
    /// Expected MD5 of the body, lower-case hex.
    pub digest: Option<String>,
}

/// One resolved check.
#[derive(Debug, Clone)]
pub struct Check {
    /// The checker type.
    pub kind: CheckKind,
    /// Where it connects.
    pub connect: SocketAddr,
    /// Source address and port (`bindto`, `bind_port`).
    pub bind: Option<SocketAddr>,
    /// Time limit of the connection and each I/O (MISC: the script's).
    pub timeout: Duration,
    /// What it does.
    pub probe: Probe,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Passed.
    pub ok: bool,
    /// Why, in a few words (`connection refused`, `status 503`, ...).
    pub reason: String,
    /// A `misc_dynamic` weight.
    pub weight: Option<u32>,
}

impl Outcome {
    /// A pass.
    pub fn pass(reason: impl Into<String>) -> Outcome {
        Outcome {
            ok: true,
            reason: reason.into(),
            weight: None,
        }
    }

    /// A failure.
    pub fn fail(reason: impl Into<String>) -> Outcome {
        Outcome {
            ok: false,
            reason: reason.into(),
            weight: None,
        }
    }
}

impl Check {
    /// Resolves `conf` for the real server `rs` (`connect_ip`/`connect_port`
    /// default to it); `timeout` from the resolved timing.
    pub fn new(
        conf: &CheckConf,
        rs: SocketAddr,
        timeout: Duration,
    ) -> Result<Check, HealthConfError> {
        conf.validate()?;
        let b = conf.body();
        let connect = SocketAddr::new(
            b.connect_ip.unwrap_or(rs.ip()),
            b.connect_port.unwrap_or(rs.port()),
        );
        let bind = match (b.bindto, b.bind_port) {
            (Some(ip), port) => Some(SocketAddr::new(ip, port.unwrap_or(0))),
            (None, Some(port)) => Some(SocketAddr::new(unspecified(&connect.ip()), port)),
            (None, None) => None,
        };
        let kind = conf.kind();
        let probe = match kind {
            CheckKind::Tcp => Probe::Tcp,
            CheckKind::Http | CheckKind::Ssl => Probe::Http {
                tls: kind == CheckKind::Ssl,
                urls: b
                    .url
                    .iter()
                    .map(|u| Url {
                        path: u.path.clone(),
                        status: u.status_code.clone(),
                        digest: u.digest.as_ref().map(|d| d.to_ascii_lowercase()),
                    })
                    .collect(),
                host: b.virtualhost.clone().unwrap_or_else(|| {
                    crate::ctl::ipvsadm::format::addr_port(&connect.ip(), connect.port())
                }),
            },
            CheckKind::Misc => Probe::Misc {
                argv: split_command(b.misc_path.as_deref().unwrap_or_default())?,
                dynamic: b.misc_dynamic,
            },
            CheckKind::Udp => Probe::Udp {
                payload: b.payload.as_deref().map(conf::parse_hex).transpose()?,
                require_reply: b.require_reply,
                reply_len: (
                    b.min_reply_length.unwrap_or(0),
                    b.max_reply_length.unwrap_or(255),
                ),
            },
            CheckKind::Dns => Probe::Dns {
                qtype: conf::dns_type_number(b.dns_type.as_deref().unwrap_or("SOA"))?,
                name: b.name.clone().unwrap_or_else(|| ".".to_string()),
            },
        };
        Ok(Check {
            kind,
            connect,
            bind,
            timeout,
            probe,
        })
    }

    /// What `lbctl --health` shows as the target.
    pub fn target(&self) -> String {
        match &self.probe {
            Probe::Misc { argv, .. } => argv.join(" "),
            _ => crate::ctl::ipvsadm::format::addr_port(&self.connect.ip(), self.connect.port()),
        }
    }

    /// Runs the check once.
    pub async fn run(&self) -> Outcome {
        match &self.probe {
            Probe::Tcp => match connect(self.connect, self.bind, self.timeout).await {
                Ok(_) => Outcome::pass("connected"),
                Err(e) => Outcome::fail(e),
            },
            Probe::Http { tls, urls, host } => http::check(self, *tls, urls, host).await,
            Probe::Misc { argv, dynamic } => misc::check(argv, *dynamic, self.timeout).await,
            Probe::Udp {
                payload,
                require_reply,
                reply_len,
            } => udp::check_udp(self, payload.as_deref(), *require_reply, *reply_len).await,
            Probe::Dns { qtype, name } => udp::check_dns(self, *qtype, name).await,
        }
    }
}

/// The unspecified address of `ip`'s family.
fn unspecified(ip: &IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// A short reason for an I/O error.
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH) => "host unreachable".to_string(),
            Some(libc::ENETUNREACH) => "network unreachable".to_string(),
            _ => e.to_string(),
        },
    }
}

/// A TCP connection to `to` from `bind` within `limit`; the error is the
/// reason.
pub async fn connect(
    to: SocketAddr,
    bind: Option<SocketAddr>,
    limit: Duration,
) -> Result<TcpStream, String> {
    let attempt = async {
        let socket = if to.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(from) = bind {
            socket.set_reuseaddr(true)?;
            socket.bind(from)?;
        }
        socket.connect(to).await
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(io_reason(&e)),
        Err(_) => Err("connect timeout".to_string()),
    }
}

/// Splits a command line at blanks, honouring `"` and `'` quoting (as
/// keepalived's `misc_path "..."`).
pub fn split_command(line: &str) -> Result<Vec<String>, HealthConfError> {
    let mut argv = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    argv.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(HealthConfError::Invalid(format!(
            "unbalanced quote in {line:?}"
        )));
    }
    if in_word {
        argv.push(word);
    }
    if argv.is_empty() {
        return Err(HealthConfError::Invalid("empty command".to_string()));
    }
    Ok(argv)
}

/// A pseudo-random number (xorshift over a clock-seeded counter): DNS ids,
/// UDP payloads, warmup spread. Not for anything secret.
pub fn random_u64() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_at_blanks_with_quotes() {
        assert_eq!(
            split_command(r#"/bin/sh -c "exit 12""#).unwrap(),
            vec!["/bin/sh", "-c", "exit 12"]
        );
        assert_eq!(
            split_command("a  'b c' \"\"").unwrap(),
            vec!["a", "b c", ""]
        );
        assert!(split_command("\"open").is_err());
        assert!(split_command("   ").is_err());
    }
}
