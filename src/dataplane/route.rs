//! Routing table: connected networks (from the director's addresses on each
//! port) and static routes with a next hop. Longest prefix wins.
//!
//! Rules: built by the control plane into the snapshot; the worker only
//! reads. Lookup is a linear scan over prefixes sorted longest first —
//! director tables are small (tens of entries); it is done once per new
//! connection and cached in the connection's path, not per packet.

use std::net::IpAddr;

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub prefix: IpAddr,
    /// Prefix length.
    pub len: u8,
    /// Egress port index.
    pub port: u16,
    /// Next hop; `None` = connected (the destination itself is the next hop).
    pub via: Option<IpAddr>,
}

/// Where to send a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Egress port index.
    pub port: u16,
    /// Address whose MAC the frame goes to.
    pub addr: IpAddr,
}

/// Errors building the table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// Prefix length too long for the family.
    #[error("prefix length {len} too long for {prefix}")]
    BadPrefix {
        /// The network.
        prefix: IpAddr,
        /// The length.
        len: u8,
    },
    /// Next hop of another family than the network.
    #[error("next hop {via} is not of the same family as {prefix}")]
    FamilyMismatch {
        /// The network.
        prefix: IpAddr,
        /// The next hop.
        via: IpAddr,
    },
}

/// The table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// Whether `addr` lies in `prefix/len` (families must match).
pub fn in_prefix(addr: &IpAddr, prefix: &IpAddr, len: u8) -> bool {
    match (addr, prefix) {
        (IpAddr::V4(a), IpAddr::V4(p)) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32))
            };
            u32::from(*a) & m == u32::from(*p) & m
        }
        (IpAddr::V6(a), IpAddr::V6(p)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len.min(128))
            };
            u128::from(*a) & m == u128::from(*p) & m
        }
        _ => false,
    }
}

impl RouteTable {
    /// Build from routes; longest prefixes first.
    pub fn new(mut routes: Vec<Route>) -> Result<Self, RouteError> {
        for r in &routes {
            let max = if r.prefix.is_ipv4() { 32 } else { 128 };
            if r.len > max {
                return Err(RouteError::BadPrefix {
                    prefix: r.prefix,
                    len: r.len,
                });
            }
            if let Some(v) = r.via {
                if v.is_ipv4() != r.prefix.is_ipv4() {
                    return Err(RouteError::FamilyMismatch {
                        prefix: r.prefix,
                        via: v,
                    });
                }
            }
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.len));
        Ok(RouteTable { routes })
    }

    /// The routes, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Where to send a packet for `dst`.
    pub fn lookup(&self, dst: &IpAddr) -> Option<NextHop> {
        self.routes
            .iter()
            .find(|r| in_prefix(dst, &r.prefix, r.len))
            .map(|r| NextHop {
                port: r.port,
                addr: r.via.unwrap_or(*dst),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn longest_prefix_wins_and_connected_uses_destination() {
        let t = RouteTable::new(vec![
            Route {
                prefix: ip("0.0.0.0"),
                len: 0,
                port: 0,
                via: Some(ip("10.0.0.254")),
            },
            Route {
                prefix: ip("192.168.10.0"),
                len: 24,
                port: 1,
                via: None,
            },
        ])
        .expect("valid");
        assert_eq!(
            t.lookup(&ip("192.168.10.7")),
            Some(NextHop {
                port: 1,
                addr: ip("192.168.10.7")
            })
        );
        assert_eq!(
            t.lookup(&ip("8.8.8.8")),
            Some(NextHop {
                port: 0,
                addr: ip("10.0.0.254")
            })
        );
        assert_eq!(t.lookup(&ip("2001:db8::1")), None, "no IPv6 route");
    }

    #[test]
    fn bad_prefix_and_mixed_family_are_errors() {
        assert!(RouteTable::new(vec![Route {
            prefix: ip("10.0.0.0"),
            len: 33,
            port: 0,
            via: None
        }])
        .is_err());
        assert!(RouteTable::new(vec![Route {
            prefix: ip("10.0.0.0"),
            len: 8,
            port: 0,
            via: Some(ip("fe80::1"))
        }])
        .is_err());
    }
}
