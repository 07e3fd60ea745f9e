//! Each checker against real local listeners on 127.0.0.1 (no root, no
//! namespaces): keepalived's meaning of "alive" (reference §1.7). Every
//! listener is a thread of this test, bounded in time; nothing leaves
//! loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rvs::health::checker::{Check, Outcome};
use rvs::health::conf::CheckConf;

/// The first checker of a YAML list, for the server at `rs`.
fn check(yaml: &str, rs: SocketAddr, timeout: Duration) -> Check {
    let confs: Vec<CheckConf> = serde_yaml_ng::from_str(yaml).expect("checker yaml");
    Check::new(&confs[0], rs, timeout).expect("valid checker")
}

fn run(check: &Check) -> Outcome {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(check.run())
}

/// A port on 127.0.0.1 with nothing listening (bound, then closed).
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Serves `reply` to each of `n` connections (after reading the request).
fn http_server(reply: &'static [u8], n: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = l.accept() else { return };
            s.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut buf = [0u8; 1024];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => req.extend_from_slice(&buf[..k]),
                }
            }
            let _ = s.write_all(reply);
        }
    });
    addr
}

#[test]
fn tcp_check_is_up_when_the_connect_completes() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = check(
        "- TCP_CHECK: {}\n",
        l.local_addr().expect("addr"),
        Duration::from_secs(1),
    );
    let out = run(&c);
    assert!(out.ok, "{out:?}");
}

#[test]
fn tcp_check_fails_at_once_on_a_refused_connection() {
    let c = check("- TCP_CHECK: {}\n", closed_port(), Duration::from_secs(5));
    let started = Instant::now();
    let out = run(&c);
    assert_eq!(out, Outcome::fail("connection refused"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "RST is immediate"
    );
}

#[test]
fn tcp_check_fails_after_connect_timeout_when_syns_go_unanswered() {
    // A listener that never accepts, with its accept queue full: the
    // kernel drops further SYNs, so the connect hangs like a black hole.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on a socket this test owns; it only changes the
    // backlog of an already listening socket.
    let rc = unsafe { libc::listen(l.as_raw_fd(), 0) };
    assert_eq!(rc, 0);
    let addr = l.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    let c = check("- TCP_CHECK: {}\n", addr, Duration::from_millis(400));
    let started = Instant::now();
    let out = run(&c);
    let took = started.elapsed();
    assert_eq!(out, Outcome::fail("connect timeout"));
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn http_get_passes_on_200_and_fails_on_503() {
    let ok = http_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1);
    let busy = http_server(b"HTTP/1.1 503 Service Unavailable\r\n\r\nbusy", 1);
    let yaml = "- HTTP_GET: {url: [{path: /health, status_code: [200]}]}\n";
    assert_eq!(
        run(&check(yaml, ok, Duration::from_secs(2))),
        Outcome::pass("status 200")
    );
    assert_eq!(
        run(&check(yaml, busy, Duration::from_secs(2))),
        Outcome::fail("status 503")
    );
}

#[test]
fn http_get_fails_on_a_digest_mismatch_and_passes_on_a_match() {
    // md5("hello\n") = b1946ac92492d2347c6235b4d2611184
    let body: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nhello\n";
    let server = http_server(body, 2);
    let good = "- HTTP_GET: {url: [{path: /, digest: b1946ac92492d2347c6235b4d2611184}]}\n";
    let bad = "- HTTP_GET: {url: [{path: /, digest: 0123456789abcdef0123456789abcdef}]}\n";
    assert!(run(&check(good, server, Duration::from_secs(2))).ok);
    let out = run(&check(bad, server, Duration::from_secs(2)));
    assert_eq!(
        out,
        Outcome::fail("digest b1946ac92492d2347c6235b4d2611184")
    );
}

#[test]
fn http_get_checks_every_url_in_turn() {
    let server = http_server(b"HTTP/1.0 200 OK\r\n\r\nx", 2);
    let yaml = "- HTTP_GET: {url: [{path: /a}, {path: /b, status_code: [\"300-399\"]}]}\n";
    assert_eq!(
        run(&check(yaml, server, Duration::from_secs(2))),
        Outcome::fail("status 200")
    );
}

#[test]
fn http_get_fails_on_an_empty_reply_and_on_a_silent_server() {
    let empty = http_server(b"", 1);
    let yaml = "- HTTP_GET: {url: [{path: /}]}\n";
    assert_eq!(
        run(&check(yaml, empty, Duration::from_secs(2))),
        Outcome::fail("empty reply")
    );
    // Accepts, never answers: the read times out after connect_timeout.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let holder = thread::spawn(move || {
        l.accept().map(|(s, _)| {
            thread::sleep(Duration::from_millis(800));
            drop(s);
        })
    });
    let out = run(&check(yaml, addr, Duration::from_millis(300)));
    assert_eq!(out, Outcome::fail("read timeout"));
    let _ = holder.join();
}

#[test]
fn ssl_get_accepts_a_self_signed_certificate_and_judges_the_status() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("self-signed certificate");
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.key_pair.serialize_der(),
    ));
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config"),
    );
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let server = thread::spawn(move || {
        for reply in [
            &b"HTTP/1.0 200 OK\r\n\r\nsecure"[..],
            b"HTTP/1.0 503 Busy\r\n\r\n",
        ] {
            let Ok((tcp, _)) = l.accept() else { return };
            tcp.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let conn = rustls::ServerConnection::new(config.clone()).expect("conn");
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buf = [0u8; 1024];
            let _ = tls.read(&mut buf);
            let _ = tls.write_all(reply);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    let yaml = "- SSL_GET: {url: [{path: /}], virtualhost: localhost}\n";
    assert_eq!(
        run(&check(yaml, addr, Duration::from_secs(2))),
        Outcome::pass("status 200")
    );
    assert_eq!(
        run(&check(yaml, addr, Duration::from_secs(2))),
        Outcome::fail("status 503")
    );
    server.join().expect("tls server");
}

#[test]
fn misc_check_exit_0_is_up_1_is_down_and_12_is_weight_10_with_misc_dynamic() {
    let rs: SocketAddr = "127.0.0.1:80".parse().expect("addr");
    let misc = |code: u8, dynamic: bool| {
        let yaml = format!(
            "- MISC_CHECK: {{misc_path: \"/bin/sh -c 'exit {code}'\", misc_dynamic: {dynamic}}}\n"
        );
        run(&check(&yaml, rs, Duration::from_secs(5)))
    };
    let up = misc(0, true);
    assert!(up.ok && up.weight.is_none(), "{up:?}");
    assert!(!misc(1, true).ok);
    let weighted = misc(12, true);
    assert!(weighted.ok, "{weighted:?}");
    assert_eq!(weighted.weight, Some(10));
    assert!(!misc(12, false).ok, "without misc_dynamic 12 is a failure");
}

#[test]
fn misc_check_is_killed_at_misc_timeout_and_fails() {
    let rs: SocketAddr = "127.0.0.1:80".parse().expect("addr");
    let c = check(
        "- MISC_CHECK: {misc_path: \"/bin/sleep 5\", misc_timeout: 0.3}\n",
        rs,
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let out = run(&c);
    assert_eq!(out, Outcome::fail("timed out, killed"));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn udp_check_fails_on_icmp_port_unreachable_and_passes_on_silence() {
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr")
    };
    let yaml = "- UDP_CHECK: {}\n";
    let out = run(&check(yaml, closed, Duration::from_millis(500)));
    assert_eq!(out, Outcome::fail("connection refused"));
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let out = run(&check(
        yaml,
        silent.local_addr().expect("addr"),
        Duration::from_millis(300),
    ));
    assert!(out.ok, "{out:?}");
    let strict = "- UDP_CHECK: {require_reply: true, payload: \"6869\"}\n";
    let out = run(&check(
        strict,
        silent.local_addr().expect("addr"),
        Duration::from_millis(300),
    ));
    assert_eq!(out, Outcome::fail("no reply"));
    let mut buf = [0u8; 16];
    let (n, _) = silent.recv_from(&mut buf).expect("payload arrived");
    assert!(n > 0);
}

#[test]
fn udp_check_with_require_reply_passes_on_an_echo() {
    let echo = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = echo.local_addr().expect("addr");
    echo.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let t = thread::spawn(move || {
        let mut buf = [0u8; 64];
        if let Ok((n, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], from);
        }
    });
    let yaml = "- UDP_CHECK: {require_reply: true, payload: \"68656c6c6f\", min_reply_length: 5}\n";
    assert_eq!(
        run(&check(yaml, addr, Duration::from_secs(1))),
        Outcome::pass("reply of 5 bytes")
    );
    t.join().expect("echo");
}

/// Answers one DNS query with `rcode`, echoing its id and question.
fn dns_server(rcode: u8) -> (SocketAddr, thread::JoinHandle<Vec<u8>>) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let addr = s.local_addr().expect("addr");
    let t = thread::spawn(move || {
        let mut buf = [0u8; 512];
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            return Vec::new();
        };
        let query = buf[..n].to_vec();
        let mut reply = query.clone();
        reply[2] = 0x81; // QR, RD
        reply[3] = 0x80 | rcode; // RA, rcode
        let _ = s.send_to(&reply, from);
        query
    });
    (addr, t)
}

#[test]
fn dns_check_is_up_on_rcode_0_and_down_on_nxdomain() {
    let (ok, t) = dns_server(0);
    let out = run(&check(
        "- DNS_CHECK: {type: A, name: example.com}\n",
        ok,
        Duration::from_secs(1),
    ));
    assert!(out.ok, "{out:?}");
    let query = t.join().expect("dns");
    assert_eq!(&query[2..4], &[0x01, 0x00], "RD set");
    assert_eq!(&query[query.len() - 4..], &[0, 1, 0, 1], "type A, class IN");
    let (nx, t) = dns_server(3);
    let out = run(&check("- DNS_CHECK: {}\n", nx, Duration::from_secs(1)));
    assert_eq!(out, Outcome::fail("rcode 3"));
    let query = t.join().expect("dns");
    assert_eq!(
        &query[query.len() - 5..],
        &[0, 0, 6, 0, 1],
        "root, SOA by default"
    );
}

/// lbd's threads block SIGINT, SIGTERM and SIGHUP; scripts (MISC_CHECK,
/// notify_*) must not inherit that mask. std's `Command` resets it in the
/// child (and tokio's is built on it): this keeps that property checked.
#[test]
fn scripts_start_with_no_signal_blocked_even_from_lbd_s_masked_threads() {
    let mask = thread::spawn(|| {
        // SAFETY: a zeroed sigset_t initialised by sigemptyset; valid
        // signal numbers; the old-set pointer may be null.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGHUP);
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
                0
            );
        }
        let out = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                tokio::process::Command::new("/bin/sh")
                    .args(["-c", "grep SigBlk /proc/self/status"])
                    .output()
                    .await
            })
            .expect("sh runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
    .join()
    .expect("thread");
    assert_eq!(mask, "SigBlk:\t0000000000000000");
}

#[test]
fn connect_ip_connect_port_and_bindto_choose_where_the_check_goes_and_leaves_from() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    // The real server's own port is closed; the check goes to connect_port.
    let yaml = format!(
        "- TCP_CHECK: {{connect_ip: 127.0.0.1, connect_port: {port}, bindto: 127.0.0.2}}\n"
    );
    let c = check(&yaml, closed_port(), Duration::from_secs(1));
    let accept = thread::spawn(move || l.accept().map(|(_, peer)| peer));
    let out = run(&c);
    assert!(out.ok, "{out:?}");
    let peer = accept.join().expect("accept").expect("accepted");
    assert_eq!(peer.ip().to_string(), "127.0.0.2", "bindto is the source");
}
