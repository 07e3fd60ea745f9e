//! health::checker::udp — UDP_CHECK and DNS_CHECK as keepalived runs them.
//!
//! * UDP_CHECK (`core/layer4.c` `udp_socket_state`): send the payload
//!   (random bytes when none); an ICMP error (a refused `recv` on the
//!   connected socket) is a failure, silence until `connect_timeout` is a
//!   success unless `require_reply`; a reply must be within
//!   `min_reply_length..=max_reply_length`.
//! * DNS_CHECK (`check_dns.c`): a query of `type` for `name` with RD=1 and a
//!   random id; up iff a reply has the same id, QR=1 and RCODE=0.

use tokio::net::UdpSocket;

use super::{io_reason, random_u64, Check, Outcome};

/// A connected UDP socket from the check's source to its target.
async fn socket(check: &Check) -> Result<UdpSocket, String> {
    let from = check
        .bind
        .unwrap_or_else(|| std::net::SocketAddr::new(super::unspecified(&check.connect.ip()), 0));
    let sock = UdpSocket::bind(from).await.map_err(|e| io_reason(&e))?;
    sock.connect(check.connect)
        .await
        .map_err(|e| io_reason(&e))?;
    Ok(sock)
}

/// UDP_CHECK.
pub async fn check_udp(
    check: &Check,
    payload: Option<&[u8]>,
    require_reply: bool,
    (min, max): (usize, usize),
) -> Outcome {
    let sock = match socket(check).await {
        Ok(s) => s,
        Err(reason) => return Outcome::fail(reason),
    };
    let random;
    let data = match payload {
        Some(p) => p,
        None => {
            random = random_u64().to_be_bytes();
            &random[..]
        }
    };
    if let Err(e) = sock.send(data).await {
        return Outcome::fail(io_reason(&e));
    }
    let mut buf = vec![0u8; max.max(min).saturating_add(1).min(65536)];
    match tokio::time::timeout(check.timeout, sock.recv(&mut buf)).await {
        Err(_) if require_reply => Outcome::fail("no reply"),
        Err(_) => Outcome::pass("no ICMP error"),
        Ok(Err(e)) => Outcome::fail(io_reason(&e)),
        Ok(Ok(n)) if n < min || n > max => {
            Outcome::fail(format!("reply of {n} bytes outside {min}-{max}"))
        }
        Ok(Ok(n)) => Outcome::pass(format!("reply of {n} bytes")),
    }
}

/// A DNS query: header (id, RD), one question.
pub fn dns_query(id: u16, qtype: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD 1, AN/NS/AR 0
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|&n| n <= 63)
            .ok_or_else(|| format!("label {label:?} longer than 63 bytes"))?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(q)
}

/// keepalived's verdict on a reply to query `id`.
pub fn dns_reply_ok(id: u16, reply: &[u8]) -> Result<(), String> {
    if reply.len() < 12 {
        return Err(format!("reply of {} bytes", reply.len()));
    }
    if u16::from_be_bytes([reply[0], reply[1]]) != id {
        return Err("reply id differs".to_string());
    }
    if reply[2] & 0x80 == 0 {
        return Err("not a response (QR=0)".to_string());
    }
    match reply[3] & 0x0f {
        0 => Ok(()),
        rcode => Err(format!("rcode {rcode}")),
    }
}

/// DNS_CHECK.
pub async fn check_dns(check: &Check, qtype: u16, name: &str) -> Outcome {
    let id = (random_u64() >> 16) as u16;
    let query = match dns_query(id, qtype, name) {
        Ok(q) => q,
        Err(reason) => return Outcome::fail(reason),
    };
    let sock = match socket(check).await {
        Ok(s) => s,
        Err(reason) => return Outcome::fail(reason),
    };
    if let Err(e) = sock.send(&query).await {
        return Outcome::fail(io_reason(&e));
    }
    let mut buf = [0u8; 1500];
    match tokio::time::timeout(check.timeout, sock.recv(&mut buf)).await {
        Err(_) => Outcome::fail("no reply"),
        Ok(Err(e)) => Outcome::fail(io_reason(&e)),
        Ok(Ok(n)) => match dns_reply_ok(id, &buf[..n]) {
            Ok(()) => Outcome::pass("rcode 0"),
            Err(reason) => Outcome::fail(reason),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_query_is_rd_with_one_question() {
        let q = dns_query(0x1234, 6, ".").unwrap();
        assert_eq!(q, [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1]);
        let q = dns_query(1, 1, "www.example.").unwrap();
        assert_eq!(&q[12..25], b"\x03www\x07example\x00");
        assert!(dns_query(1, 1, &"a".repeat(64)).is_err());
    }

    #[test]
    fn dns_reply_needs_same_id_qr_and_rcode_zero() {
        let mut r = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        assert_eq!(dns_reply_ok(0x1234, &r), Ok(()));
        assert!(dns_reply_ok(0x1235, &r).is_err());
        r[3] = 0x83; // NXDOMAIN
        assert_eq!(dns_reply_ok(0x1234, &r), Err("rcode 3".to_string()));
        r[3] = 0x80;
        r[2] = 0x01; // a query, not a response
        assert!(dns_reply_ok(0x1234, &r).is_err());
        assert!(dns_reply_ok(0x1234, &r[..5]).is_err());
    }
}
