//! Prebuilt frames and the flow space: every packet lbpktgen sends is a
//! template (built once with [`PacketBuilder`]) copied into a pool buffer
//! and patched in place — source address and port of its flow, IPv4
//! identification, TCP sequence/acknowledgment/flags, the payload
//! signature — with both checksums computed from a precomputed partial sum
//! of the constant bytes plus the few words that change.
//!
//! Rules: templates hold every varying field as zero, so their partial sums
//! are sums of the constant part; every varying field sits at an even
//! offset of its checksummed range (asserted when the template is made).
//! [`FrameTemplate::write`] neither allocates nor fails.

use std::net::Ipv4Addr;

use rvs::wire::checksum::{combine, fold, pseudo_header_v4, sum};
use rvs::wire::{ip_proto, EthernetAddress, PacketBuilder, TcpFlags};

use crate::signature::{self, Signature, SEQ_OFFSET, SIGNATURE_LEN, TIME_OFFSET};

/// Shortest frame lbpktgen sends (without FCS); shorter templates are
/// padded with zero bytes after the IP packet.
pub const MIN_FRAME: usize = 60;
/// Ethernet + IPv4 header bytes in front of the transport header.
pub const L4_OFFSET: usize = 14 + 20;
/// UDP header length.
pub const UDP_HEADER: usize = 8;
/// TCP header length without options.
pub const TCP_HEADER: usize = 20;

/// The set of client (source) endpoints: flow `f` uses source address
/// `base_ip + f % ips` and source port `base_port + f / ips`, so the
/// addresses vary fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSpace {
    base_ip: u32,
    ips: u32,
    base_port: u16,
    flows: u32,
}

impl FlowSpace {
    /// `flows` flows from `ips` addresses starting at `base_ip` (`None`:
    /// as few as the port range allows) and ports from `base_port` up.
    pub fn new(
        base_ip: Ipv4Addr,
        ips: Option<u32>,
        base_port: u16,
        flows: u32,
    ) -> Result<FlowSpace, String> {
        if flows == 0 {
            return Err("--flows must be at least 1".into());
        }
        if base_port == 0 {
            return Err("--src-port must be at least 1".into());
        }
        let ports_per_ip = 65536 - u32::from(base_port);
        let ips = match ips {
            Some(0) => return Err("--src-ips must be at least 1".into()),
            Some(k) if k > flows => {
                return Err(format!("--src-ips {k} is more than --flows {flows}"))
            }
            Some(k) => k,
            None => flows.div_ceil(ports_per_ip),
        };
        if u64::from(flows) > u64::from(ips) * u64::from(ports_per_ip) {
            return Err(format!(
                "{flows} flows do not fit {ips} source address(es) × {ports_per_ip} ports from {base_port}"
            ));
        }
        let base = u32::from(base_ip);
        if base.checked_add(ips - 1).is_none() {
            return Err(format!(
                "{ips} source addresses from {base_ip} run past 255.255.255.255"
            ));
        }
        Ok(FlowSpace {
            base_ip: base,
            ips,
            base_port,
            flows,
        })
    }

    /// Number of flows.
    pub fn flows(&self) -> u32 {
        self.flows
    }

    /// Number of source addresses.
    pub fn ips(&self) -> u32 {
        self.ips
    }

    /// Source address and port of flow `flow` (taken modulo the flow count).
    #[inline]
    pub fn tuple(&self, flow: u32) -> (u32, u16) {
        let f = flow % self.flows;
        (
            self.base_ip + f % self.ips,
            self.base_port + (f / self.ips) as u16,
        )
    }

    /// The flow whose source is `ip:port`, if any.
    #[inline]
    pub fn flow_of(&self, ip: u32, port: u16) -> Option<u32> {
        let i = ip.checked_sub(self.base_ip)?;
        let p = port.checked_sub(self.base_port)?;
        if i >= self.ips {
            return None;
        }
        let f = u32::from(p) * self.ips + i;
        (f < self.flows).then_some(f)
    }

    /// Whether `ip` is one of the source addresses (the ARP responder
    /// answers for these).
    #[inline]
    pub fn has_ip(&self, ip: u32) -> bool {
        ip.wrapping_sub(self.base_ip) < self.ips
    }
}

/// The transport of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP, with an MSS option when given (SYNs).
    Tcp {
        /// MSS option value.
        mss: Option<u16>,
    },
}

/// What a template carries after the transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Nothing.
    Empty,
    /// These bytes.
    Bytes(&'a [u8]),
    /// `len` bytes (at least [`SIGNATURE_LEN`]) starting with a signature
    /// tagged `run_tag`, the rest a counting pattern.
    Signed {
        /// Payload length.
        len: usize,
        /// The run's tag.
        run_tag: u16,
    },
}

/// The constant part of a template.
#[derive(Debug, Clone, Copy)]
pub struct TemplateParams<'a> {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Destination address (the VIP).
    pub dst_ip: Ipv4Addr,
    /// Destination port.
    pub dst_port: u16,
    /// UDP or TCP.
    pub transport: Transport,
    /// The payload.
    pub payload: Payload<'a>,
}

/// The fields patched into each packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields {
    /// Source address.
    pub src_ip: u32,
    /// Source port.
    pub src_port: u16,
    /// IPv4 identification.
    pub ident: u16,
    /// TCP sequence number (TCP templates).
    pub tcp_seq: u32,
    /// TCP acknowledgment number (TCP templates).
    pub tcp_ack: u32,
    /// TCP flags (TCP templates).
    pub tcp_flags: u8,
    /// Signature (templates with a signed payload).
    pub sig: Option<Signature>,
}

/// A prebuilt frame and the partial sums of its constant bytes.
#[derive(Debug, Clone)]
pub struct FrameTemplate {
    bytes: Vec<u8>,
    tcp: bool,
    /// Frame offset of the signature, for signed payloads.
    sig_at: Option<usize>,
    /// Partial sum of the IPv4 header (source, ident, checksum zero).
    ip_sum: u32,
    /// Partial sum of pseudo-header (source zero) and segment (varying
    /// fields and checksum zero).
    l4_sum: u32,
}

/// `a + b` as a partial sum of the 16-bit halves of `b`.
#[inline]
fn add32(acc: u32, v: u32) -> u32 {
    acc + (v >> 16) + (v & 0xffff)
}

impl FrameTemplate {
    /// Build the template for `p`.
    pub fn new(p: &TemplateParams<'_>) -> FrameTemplate {
        let payload: Vec<u8> = match p.payload {
            Payload::Empty => Vec::new(),
            Payload::Bytes(b) => b.to_vec(),
            Payload::Signed { len, run_tag } => {
                let mut v: Vec<u8> = (0..len).map(|i| i as u8).collect();
                signature::encode(&mut v, run_tag, Signature { seq: 0, tx_ns: 0 });
                v
            }
        };
        let b = PacketBuilder::ethernet(EthernetAddress(p.src_mac), EthernetAddress(p.dst_mac))
            .ipv4(Ipv4Addr::UNSPECIFIED, p.dst_ip)
            .ttl(64)
            .ident(0);
        let (b, l4_header, proto) = match p.transport {
            Transport::Udp => (b.udp(0, p.dst_port), UDP_HEADER, ip_proto::UDP),
            Transport::Tcp { mss } => {
                let b = b
                    .tcp(0, p.dst_port)
                    .flags(TcpFlags::empty())
                    .seq(0)
                    .ack(0)
                    .window(65535);
                let b = match mss {
                    Some(m) => b.mss(m),
                    None => b,
                };
                let opts = if mss.is_some() { 4 } else { 0 };
                (b, TCP_HEADER + opts, ip_proto::TCP)
            }
        };
        let mut bytes = b.payload(&payload).pad_to(MIN_FRAME).build();
        let l4_len = l4_header + payload.len();
        let csum_at = L4_OFFSET + if proto == ip_proto::UDP { 6 } else { 16 };
        bytes[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        bytes[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let ip_sum = sum(&bytes[14..L4_OFFSET]);
        let l4_sum = combine(
            pseudo_header_v4(&Ipv4Addr::UNSPECIFIED, &p.dst_ip, proto, l4_len as u32),
            sum(&bytes[L4_OFFSET..L4_OFFSET + l4_len]),
        );
        let sig_at = matches!(p.payload, Payload::Signed { len, .. } if len >= SIGNATURE_LEN)
            .then_some(L4_OFFSET + l4_header);
        // Every patched word must be word-aligned in the segment.
        if let Some(at) = sig_at {
            assert_eq!((at - L4_OFFSET) % 2, 0, "signature must be word-aligned");
        }
        FrameTemplate {
            bytes,
            tcp: proto == ip_proto::TCP,
            sig_at,
            ip_sum,
            l4_sum,
        }
    }

    /// Frame length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the frame carries a signature.
    #[cfg(test)]
    pub fn is_signed(&self) -> bool {
        self.sig_at.is_some()
    }

    /// Copy the template into `out` (exactly [`len`](Self::len) bytes) and
    /// patch in `f`, with correct IPv4 and TCP/UDP checksums.
    #[inline]
    pub fn write(&self, out: &mut [u8], f: &Fields) {
        out.copy_from_slice(&self.bytes);
        let ip = &mut out[14..L4_OFFSET];
        ip[4..6].copy_from_slice(&f.ident.to_be_bytes());
        ip[12..16].copy_from_slice(&f.src_ip.to_be_bytes());
        let ip_acc = add32(self.ip_sum, f.src_ip) + u32::from(f.ident);
        ip[10..12].copy_from_slice(&(!fold(ip_acc)).to_be_bytes());

        let mut acc = add32(self.l4_sum, f.src_ip) + u32::from(f.src_port);
        out[L4_OFFSET..L4_OFFSET + 2].copy_from_slice(&f.src_port.to_be_bytes());
        if self.tcp {
            let t = &mut out[L4_OFFSET..];
            t[4..8].copy_from_slice(&f.tcp_seq.to_be_bytes());
            t[8..12].copy_from_slice(&f.tcp_ack.to_be_bytes());
            t[13] = f.tcp_flags;
            acc = add32(add32(acc, f.tcp_seq), f.tcp_ack) + u32::from(f.tcp_flags);
        }
        if let (Some(at), Some(sig)) = (self.sig_at, f.sig) {
            out[at + SEQ_OFFSET..at + SEQ_OFFSET + 4].copy_from_slice(&sig.seq.to_be_bytes());
            out[at + TIME_OFFSET..at + TIME_OFFSET + 4].copy_from_slice(&sig.tx_ns.to_be_bytes());
            acc = add32(add32(acc, sig.seq), sig.tx_ns);
        }
        let mut c = !fold(acc);
        let at = if self.tcp {
            L4_OFFSET + 16
        } else {
            if c == 0 {
                c = 0xffff;
            }
            L4_OFFSET + 6
        };
        out[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs::wire::{Ipv4Packet, TcpPacket, UdpPacket};
    use std::net::IpAddr;

    const SMAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const DMAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

    fn vip() -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 1, 1)
    }

    fn params(transport: Transport, payload: Payload<'_>) -> TemplateParams<'_> {
        TemplateParams {
            src_mac: SMAC,
            dst_mac: DMAC,
            dst_ip: vip(),
            dst_port: 9000,
            transport,
            payload,
        }
    }

    #[test]
    fn flow_space_varies_addresses_first_and_inverts() {
        let fs = FlowSpace::new(Ipv4Addr::new(10, 0, 0, 1), Some(3), 1024, 10).expect("fits");
        assert_eq!(fs.tuple(0), (u32::from(Ipv4Addr::new(10, 0, 0, 1)), 1024));
        assert_eq!(fs.tuple(2), (u32::from(Ipv4Addr::new(10, 0, 0, 3)), 1024));
        assert_eq!(fs.tuple(3), (u32::from(Ipv4Addr::new(10, 0, 0, 1)), 1025));
        assert_eq!(fs.tuple(13), fs.tuple(3), "taken modulo the flow count");
        for f in 0..10 {
            let (ip, port) = fs.tuple(f);
            assert_eq!(fs.flow_of(ip, port), Some(f));
        }
        // 10 flows over 3 addresses: port 1027 exists only for flow 9.
        let base = u32::from(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(fs.flow_of(base + 1, 1027), None);
        assert_eq!(fs.flow_of(base + 3, 1024), None);
        assert_eq!(fs.flow_of(base, 1023), None);
        assert!(fs.has_ip(base + 2) && !fs.has_ip(base + 3) && !fs.has_ip(base - 1));
    }

    #[test]
    fn flow_space_takes_enough_addresses_by_default_and_refuses_overflow() {
        let fs = FlowSpace::new(Ipv4Addr::new(10, 0, 0, 1), None, 1024, 200_000).expect("fits");
        assert_eq!(fs.ips(), 4, "64512 ports per address");
        assert!(FlowSpace::new(Ipv4Addr::new(10, 0, 0, 1), Some(1), 1024, 70_000).is_err());
        assert!(FlowSpace::new(Ipv4Addr::new(10, 0, 0, 1), Some(5), 1024, 4).is_err());
        assert!(FlowSpace::new(Ipv4Addr::new(255, 255, 255, 255), Some(2), 1024, 2).is_err());
        assert!(FlowSpace::new(Ipv4Addr::new(10, 0, 0, 1), None, 1024, 0).is_err());
    }

    #[test]
    fn patched_udp_frames_equal_builder_frames() {
        let t = FrameTemplate::new(&params(
            Transport::Udp,
            Payload::Signed {
                len: 64 - L4_OFFSET - UDP_HEADER,
                run_tag: 0xbeef,
            },
        ));
        assert_eq!(t.len(), 64);
        assert!(t.is_signed());
        let src = Ipv4Addr::new(198, 18, 0, 7);
        for (seq, tx_ns) in [(0u32, 0u32), (1, 12345), (0xffff_ffff, 0xffff_ffff)] {
            let f = Fields {
                src_ip: u32::from(src),
                src_port: 40000,
                ident: seq as u16,
                sig: Some(Signature { seq, tx_ns }),
                ..Fields::default()
            };
            let mut out = vec![0u8; t.len()];
            t.write(&mut out, &f);
            let mut payload: Vec<u8> = (0..22).map(|i| i as u8).collect();
            signature::encode(&mut payload, 0xbeef, Signature { seq, tx_ns });
            let want = PacketBuilder::ethernet(EthernetAddress(SMAC), EthernetAddress(DMAC))
                .ipv4(src, vip())
                .ident(seq as u16)
                .udp(40000, 9000)
                .payload(&payload)
                .build();
            assert_eq!(out, want, "seq {seq}");
        }
    }

    #[test]
    fn patched_tcp_frames_have_valid_checksums() {
        let req = b"GET / HTTP/1.0\r\n\r\n";
        for (transport, payload) in [
            (Transport::Tcp { mss: Some(1460) }, Payload::Empty),
            (Transport::Tcp { mss: None }, Payload::Bytes(req)),
            (
                Transport::Tcp { mss: None },
                Payload::Signed {
                    len: 1514 - L4_OFFSET - TCP_HEADER,
                    run_tag: 3,
                },
            ),
        ] {
            let t = FrameTemplate::new(&params(transport, payload));
            let src = Ipv4Addr::new(198, 18, 0, 9);
            let f = Fields {
                src_ip: u32::from(src),
                src_port: 1024,
                ident: 77,
                tcp_seq: 0xdead_beef,
                tcp_ack: 0x0102_0304,
                tcp_flags: (TcpFlags::ACK.bits() | TcpFlags::PSH.bits()),
                sig: Some(Signature { seq: 5, tx_ns: 6 }),
            };
            let mut out = vec![0u8; t.len()];
            t.write(&mut out, &f);
            assert!(out.len() >= MIN_FRAME);
            let ip = Ipv4Packet::new_checked(&out[14..]).expect("ipv4");
            assert!(ip.verify_checksum());
            assert_eq!(ip.src_addr(), src);
            let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
            assert!(tcp.verify_checksum(&IpAddr::V4(src), &IpAddr::V4(vip())));
            assert_eq!(tcp.seq_number(), 0xdead_beef);
            assert_eq!(tcp.ack_number(), 0x0102_0304);
            assert!(tcp.ack() && tcp.psh() && !tcp.syn());
            if let Transport::Tcp { mss: Some(m) } = transport {
                assert_eq!(tcp.mss(), Some(m));
            }
            if let Payload::Bytes(b) = payload {
                assert_eq!(tcp.payload(), b);
            }
            if let Payload::Signed { run_tag, .. } = payload {
                assert_eq!(
                    signature::decode(tcp.payload(), run_tag),
                    Some(Signature { seq: 5, tx_ns: 6 })
                );
            }
        }
    }

    #[test]
    fn udp_checksum_zero_is_sent_as_all_ones() {
        let t = FrameTemplate::new(&params(Transport::Udp, Payload::Bytes(&[0u8; 2])));
        // Find a source port whose checksum comes out as zero.
        let src = u32::from(Ipv4Addr::new(198, 18, 0, 1));
        let mut hit = false;
        for port in 1..=u16::MAX {
            let mut out = vec![0u8; t.len()];
            t.write(
                &mut out,
                &Fields {
                    src_ip: src,
                    src_port: port,
                    ..Fields::default()
                },
            );
            let udp = UdpPacket::new_checked(&out[L4_OFFSET..L4_OFFSET + 10]).expect("udp");
            assert_ne!(udp.checksum(), 0, "port {port}");
            if udp.checksum() == 0xffff {
                hit = true;
                assert!(udp.verify_checksum(&IpAddr::V4(Ipv4Addr::from(src)), &IpAddr::V4(vip())));
            }
        }
        assert!(hit, "some port yields the all-ones checksum");
    }
}
