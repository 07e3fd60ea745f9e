//! Offline replay through the real `lbd --replay`: a multi-flow capture of
//! clients (several packets per flow, NAT and FULLNAT services with two real
//! servers each) and a capture of the real servers' answers go through
//! `lbd`, and the output captures are checked flow by flow: every packet of a
//! flow reaches the same real server, both servers get flows, and every
//! answer is mapped back to VIP:vport → CIP:cport.

mod support;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use rvs::dataplane::driver::pcap::{read_capture, write_capture};
use rvs::wire::builder::PacketBuilder;
use rvs::wire::TcpFlags;
use support::lbd::LBD;
use support::world::{v4, LbdYaml, PortYaml, EXT_MAC, INT_MAC, ROUTER_MAC, RS_MACS, STATIC_TABLES};

/// A NAT and a FULLNAT service, each with both real servers on port 8080.
const SERVICES: &str = r#"services:
  - proto: tcp
    vip: 10.0.0.1
    port: 80
    scheduler: rr
    dests:
      - {addr: 192.168.10.1, port: 8080, fwd: masq}
      - {addr: 192.168.10.2, port: 8080, fwd: masq}
  - proto: tcp
    vip: 10.0.0.4
    port: 80
    scheduler: rr
    laddrs: [192.168.10.100]
    dests:
      - {addr: 192.168.10.1, port: 8080, fwd: fullnat}
      - {addr: 192.168.10.2, port: 8080, fwd: fullnat}
"#;

/// The director on pcap ports with the world's MACs, static tables and
/// [`SERVICES`].
fn config() -> String {
    let mut yaml = LbdYaml::new(PortYaml::with_mac("pcap"), PortYaml::with_mac("pcap"));
    yaml.tables = format!("{STATIC_TABLES}{SERVICES}");
    yaml.text()
}

/// One TCP segment as seen in a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seg {
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    dst_mac: [u8; 6],
}

fn segs(path: &Path) -> Vec<Seg> {
    read_capture(path)
        .expect("capture")
        .iter()
        .map(|f| {
            let p = etherparse::SlicedPacket::from_ethernet(f).expect("independent decoder parses");
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
                panic!("IPv4")
            };
            let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else {
                panic!("TCP")
            };
            let h = ip.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            assert_eq!(
                t.checksum(),
                t.to_header()
                    .calc_checksum_ipv4(&h, t.payload())
                    .expect("csum")
            );
            let mut dst_mac = [0u8; 6];
            dst_mac.copy_from_slice(&f[..6]);
            Seg {
                src: h.source.into(),
                sport: t.source_port(),
                dst: h.destination.into(),
                dport: t.destination_port(),
                flags: f[14 + 20 + 13],
                dst_mac,
            }
        })
        .collect()
}

fn client_capture() -> Vec<Vec<u8>> {
    // 8 flows (4 per service), 3 segments each, interleaved: 24 frames.
    let mut frames = Vec::new();
    for flags in [
        TcpFlags::SYN,
        TcpFlags::ACK,
        TcpFlags(TcpFlags::ACK.0 | TcpFlags::PSH.0),
    ] {
        for (i, vip) in ["10.0.0.1", "10.0.0.4"].iter().enumerate() {
            for f in 0..4u16 {
                let client = if f % 2 == 0 {
                    "203.0.113.7"
                } else {
                    "198.51.100.9"
                };
                frames.push(
                    PacketBuilder::ethernet(ROUTER_MAC, EXT_MAC)
                        .ipv4(v4(client), v4(vip))
                        .tcp(40000 + i as u16 * 100 + f, 80)
                        .flags(flags)
                        .payload(b"GET /")
                        .build(),
                );
            }
        }
    }
    frames
}

fn lbd(dir: &Path, replays: &[(&str, &Path)]) {
    let conf = dir.join("replay.yaml");
    std::fs::write(&conf, config()).expect("write config");
    let out = dir.join("out");
    let mut cmd = Command::new(LBD);
    cmd.arg("--config")
        .arg(&conf)
        .arg("--capture-dir")
        .arg(&out);
    for (port, file) in replays {
        cmd.arg("--replay")
            .arg(format!("{port}={}", file.display()));
    }
    let o = cmd.output().expect("run lbd");
    assert!(
        o.status.success(),
        "lbd --replay failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn replay_keeps_each_flow_on_one_real_server_and_maps_replies_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let clients = dir.path().join("clients.pcap");
    write_capture(&clients, &client_capture()).expect("write");

    // Run 1: the clients alone — learn where each flow went.
    lbd(dir.path(), &[("ext", &clients)]);
    let to_servers = segs(&dir.path().join("out/int.pcap"));
    assert_eq!(to_servers.len(), 24, "every client segment forwarded");
    let mut flow_server: HashMap<(Ipv4Addr, u16), (Ipv4Addr, Ipv4Addr, u16)> = HashMap::new();
    let client_segs: Vec<(Ipv4Addr, u16, Ipv4Addr)> = client_capture()
        .iter()
        .map(|f| {
            let p = etherparse::SlicedPacket::from_ethernet(f).expect("parses");
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
                panic!()
            };
            let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else {
                panic!()
            };
            (
                ip.header().source_addr(),
                t.source_port(),
                ip.header().destination_addr(),
            )
        })
        .collect();
    for ((cip, cport, vip), out) in client_segs.iter().zip(&to_servers) {
        assert_eq!(out.dport, 8080);
        let fullnat = *vip == v4("10.0.0.4");
        if fullnat {
            assert_eq!(
                out.src,
                v4("192.168.10.100"),
                "FULLNAT source is the local address"
            );
        } else {
            assert_eq!((out.src, out.sport), (*cip, *cport), "NAT keeps the client");
        }
        let rs_mac = if out.dst == v4("192.168.10.1") {
            RS_MACS[0].0
        } else {
            RS_MACS[1].0
        };
        assert_eq!(out.dst_mac, rs_mac, "L2 to the chosen real server");
        let seen = flow_server
            .entry((*cip, *cport))
            .or_insert((out.dst, out.src, out.sport));
        assert_eq!(
            seen.0, out.dst,
            "flow {cip}:{cport} stays on one real server"
        );
        assert_eq!(
            (seen.1, seen.2),
            (out.src, out.sport),
            "one local address and port per flow"
        );
    }
    assert_eq!(flow_server.len(), 8);
    for vip_port_base in [40000u16, 40100] {
        let servers: std::collections::HashSet<_> = flow_server
            .iter()
            .filter(|((_, p), _)| p / 100 * 100 == vip_port_base)
            .map(|(_, (rs, _, _))| *rs)
            .collect();
        assert_eq!(servers.len(), 2, "rr uses both real servers");
    }

    // Run 2: the same clients plus the real servers' answers to each flow.
    let answers: Vec<Vec<u8>> = to_servers
        .iter()
        .filter(|s| s.flags == TcpFlags::SYN.0)
        .map(|s| {
            let mac = if s.dst == v4("192.168.10.1") {
                RS_MACS[0]
            } else {
                RS_MACS[1]
            };
            PacketBuilder::ethernet(mac, INT_MAC)
                .ipv4(s.dst, s.src)
                .tcp(s.dport, s.sport)
                .flags(TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0))
                .build()
        })
        .collect();
    let servers = dir.path().join("servers.pcap");
    write_capture(&servers, &answers).expect("write");
    lbd(dir.path(), &[("ext", &clients), ("int", &servers)]);
    assert_eq!(
        segs(&dir.path().join("out/int.pcap")),
        to_servers,
        "the run is deterministic"
    );
    let to_clients = segs(&dir.path().join("out/ext.pcap"));
    assert_eq!(to_clients.len(), 8, "every answer goes back to its client");
    for s in &to_clients {
        assert_eq!(s.dst_mac, ROUTER_MAC.0, "via the router");
        let vip = if s.dport / 100 * 100 == 40000 {
            v4("10.0.0.1")
        } else {
            v4("10.0.0.4")
        };
        assert_eq!((s.src, s.sport), (vip, 80), "answer comes from VIP:vport");
        assert!(
            flow_server.contains_key(&(s.dst, s.dport)),
            "to a known client {}:{}",
            s.dst,
            s.dport
        );
    }
}
