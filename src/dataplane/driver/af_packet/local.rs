//! The director's own TCP/UDP kept off the workers (issue 11, requirement
//! 4): on a port with a kernel interface, a dedicated AF_PACKET socket
//! ([`KernelSocket`], outside the workers' fanout group) takes the frames
//! the kernel must get and no worker needs, and every worker socket drops
//! exactly those, so a flood to the DIP never costs a worker a frame.
//!
//! Which frames: [`local_program`] over one [`LocalSet`] builds both
//! socket filters (`SO_ATTACH_FILTER`), the kernel socket's and its
//! complement for the workers, so they cannot disagree. The kernel socket
//! takes an untagged IPv4/IPv6 TCP or UDP frame to the port's MAC whose
//! destination is in the set (the port's own addresses that are neither a
//! VIP nor a FULLNAT local address; IPv6 link-local too) and that is not
//! a fragment and, for IPv6, has no extension header. Everything else
//! (ARP, ND, ICMP, multicast and broadcast, VRRP, sync, VIP and local
//! address traffic, fragments, VLAN-tagged frames) stays with the workers
//! exactly as before. Both sides drop what the host itself sends
//! (`PACKET_OUTGOING`).
//!
//! Linux runs a fanout member's filter after the fanout chose that member
//! (`packet_rcv_fanout` → `tpacket_rcv` → `run_filter`), so a frame a
//! worker's filter refuses is dropped for the group, not handed to another
//! member (`tests/kernel_path_steer.rs` checks it with two workers).
//!
//! Rules: programs are built and attached on control threads only
//! ([`super::AfPacketDriver::steer_kernel`], from the snapshot hook);
//! the kernel socket is read by the kernel-path thread
//! (`dataplane::kernel`), never by a worker.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::cbpf::{
    ancillary, Asm, BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_JGE, BPF_JSET, BPF_K, BPF_LD,
    BPF_LEN, BPF_RET, BPF_W,
};
use super::socket::{
    attach_filter, bind_ll, packet_socket, set_nonblocking, PACKET_OUTGOING, TP_STATUS_CSUMNOTREADY,
};

/// `SOL_PACKET`, `PACKET_AUXDATA` (`<linux/if_packet.h>`).
const SOL_PACKET: libc::c_int = 263;
const PACKET_AUXDATA: libc::c_int = 8;

/// The addresses whose TCP/UDP the kernel socket takes on one port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalSet {
    /// The director's MAC on the port (frames to other MACs stay with the
    /// workers, which drop them).
    pub mac: [u8; 6],
    /// The addresses (the port's own, minus VIPs and local addresses).
    pub addrs: Vec<IpAddr>,
    /// IPv6 link-local destinations (`fe80::/10`) too.
    pub link_local: bool,
}

impl LocalSet {
    /// Nothing: the kernel socket takes no frame, the workers every frame.
    pub fn none() -> LocalSet {
        LocalSet::default()
    }

    /// What both `self` and `other` send to the kernel socket.
    pub fn intersect(&self, other: &LocalSet) -> LocalSet {
        if self.mac != other.mac {
            return LocalSet::none();
        }
        LocalSet {
            mac: self.mac,
            addrs: self
                .addrs
                .iter()
                .filter(|a| other.addrs.contains(a))
                .copied()
                .collect(),
            link_local: self.link_local && other.link_local,
        }
    }

    /// Whether the kernel socket takes nothing.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty() && !self.link_local
    }
}

/// Which socket a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The kernel-path socket: keeps exactly the set's frames.
    Kernel,
    /// A worker's socket: keeps everything else.
    Workers,
}

/// The socket filter of `side` for `set` (data from the Ethernet header;
/// returns the bytes to keep, 0 = drop).
pub fn local_program(set: &LocalSet, side: Side) -> Vec<libc::sock_filter> {
    let (take, leave) = match side {
        Side::Kernel => (u32::MAX, 0),
        Side::Workers => (0, u32::MAX),
    };
    let mut a = Asm::default();
    let (kernel, other, outgoing) = (a.label(), a.label(), a.label());
    let (v4, v6, l4_4, l4_6) = (a.label(), a.label(), a.label(), a.label());
    a.op(BPF_LD | BPF_W | BPF_ABS, ancillary(libc::SKF_AD_PKTTYPE));
    a.jeq(PACKET_OUTGOING as u32, Some(outgoing), None);
    if set.is_empty() {
        a.ja(other);
    }
    a.op(
        BPF_LD | BPF_W | BPF_ABS,
        ancillary(libc::SKF_AD_VLAN_TAG_PRESENT),
    );
    a.jeq(0, None, Some(other));
    // Our MAC, untagged IPv4 / IPv6.
    let mac = set.mac;
    a.op(BPF_LD | BPF_W | BPF_LEN, 0);
    a.jump(BPF_JGE, 14, None, Some(other));
    a.op(BPF_LD | BPF_W | BPF_ABS, 0);
    a.jeq(
        u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]),
        None,
        Some(other),
    );
    a.op(BPF_LD | BPF_H | BPF_ABS, 4);
    a.jeq(
        u32::from(u16::from_be_bytes([mac[4], mac[5]])),
        None,
        Some(other),
    );
    a.op(BPF_LD | BPF_H | BPF_ABS, 12);
    a.jeq(0x0800, Some(v4), None);
    a.jeq(0x86dd, Some(v6), Some(other));

    // IPv4: TCP/UDP, not a fragment, destination in the set.
    a.place(v4);
    a.op(BPF_LD | BPF_W | BPF_LEN, 0);
    a.jump(BPF_JGE, 14 + 20, None, Some(other));
    a.op(BPF_LD | BPF_B | BPF_ABS, 14 + 9);
    a.jeq(6, Some(l4_4), None);
    a.jeq(17, None, Some(other));
    a.place(l4_4);
    a.op(BPF_LD | BPF_H | BPF_ABS, 14 + 6);
    a.jump(BPF_JSET, 0x3fff, Some(other), None); // MF or an offset
    a.op(BPF_LD | BPF_W | BPF_ABS, 14 + 16);
    for addr in &set.addrs {
        if let IpAddr::V4(v) = addr {
            a.jeq(u32::from(*v), Some(kernel), None);
        }
    }
    a.ja(other);

    // IPv6: TCP/UDP right after the fixed header, destination in the set.
    a.place(v6);
    a.op(BPF_LD | BPF_W | BPF_LEN, 0);
    a.jump(BPF_JGE, 14 + 40, None, Some(other));
    a.op(BPF_LD | BPF_B | BPF_ABS, 14 + 6);
    a.jeq(6, Some(l4_6), None);
    a.jeq(17, None, Some(other));
    a.place(l4_6);
    for addr in &set.addrs {
        if let IpAddr::V6(v) = addr {
            let next = a.label();
            for (i, w) in v.octets().chunks_exact(4).enumerate() {
                a.op(BPF_LD | BPF_W | BPF_ABS, 14 + 24 + 4 * i as u32);
                a.jeq(
                    u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                    None,
                    Some(next),
                );
            }
            a.ja(kernel);
            a.place(next);
        }
    }
    if set.link_local {
        a.op(BPF_LD | BPF_W | BPF_ABS, 14 + 24);
        a.op(BPF_ALU | BPF_AND | BPF_K, 0xffc0_0000);
        a.jeq(0xfe80_0000, Some(kernel), None);
    }
    a.ja(other);

    a.place(kernel);
    a.op(BPF_RET | BPF_K, take);
    a.place(other);
    a.op(BPF_RET | BPF_K, leave);
    a.place(outgoing);
    a.op(BPF_RET | BPF_K, 0);
    a.finish()
}

/// The kernel path's own receive socket on a port's interface: not in any
/// fanout group, non-blocking, taking nothing until
/// [`KernelSocket::set_filter`] (so until the first snapshot the workers
/// take every frame, as without it).
pub struct KernelSocket {
    fd: OwnedFd,
}

impl KernelSocket {
    /// Open it on interface `ifindex`.
    pub(super) fn open(ifindex: i32) -> Result<KernelSocket, (&'static str, io::Error)> {
        let fd = packet_socket().map_err(|e| ("socket(AF_PACKET)", e))?;
        let raw = fd.as_raw_fd();
        attach_filter(raw, &local_program(&LocalSet::none(), Side::Kernel))
            .map_err(|e| ("drop-all filter", e))?;
        set_nonblocking(raw).map_err(|e| ("O_NONBLOCK", e))?;
        super::socket::setsockopt(raw, SOL_PACKET, PACKET_AUXDATA, &1 as &libc::c_int)
            .map_err(|e| ("PACKET_AUXDATA", e))?;
        // Room for a burst while the kernel-path thread sleeps (what does
        // not fit is counted by PACKET_STATISTICS, see `drops`).
        let rcvbuf: libc::c_int = 4 << 20;
        let _ = super::socket::setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf);
        bind_ll(raw, ifindex).map_err(|e| ("bind", e))?;
        Ok(KernelSocket { fd })
    }

    /// Keep exactly `set`'s frames from now on.
    pub(super) fn set_filter(&self, set: &LocalSet) -> io::Result<()> {
        attach_filter(self.fd.as_raw_fd(), &local_program(set, Side::Kernel))
    }

    /// Receive up to `batch`'s size of waiting frames with one
    /// `recvmmsg(2)`; returns how many (0: none waits). A TCP/UDP
    /// checksum the kernel left unfinished (`TP_STATUS_CSUMNOTREADY`:
    /// traffic a local sender, e.g. a veth peer, has not checksummed) is
    /// completed, as the workers' receive path does, or the kernel
    /// interface would drop the frame.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let n = batch.bufs.len();
        for i in 0..n {
            batch.iov[i] = libc::iovec {
                iov_base: batch.bufs[i].as_mut_ptr().cast(),
                iov_len: batch.bufs[i].len(),
            };
            // SAFETY: msghdr is a plain C struct; all-zero is a valid value.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut batch.iov[i];
            msg.msg_iovlen = 1;
            msg.msg_control = batch.control[i].as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&batch.control[i]) as _;
            batch.hdrs[i] = libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            };
        }
        // SAFETY: every header points at one iovec describing one of the
        // batch's buffers and at its control buffer, all live and
        // exclusively borrowed for the call, of the sizes given; the
        // kernel writes at most that much into them and `msg_len`.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                batch.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let got = r as usize;
        for i in 0..got {
            let len = batch.hdrs[i].msg_len as usize;
            batch.lens[i] = len;
            if len <= batch.bufs[i].len()
                && aux_status(&batch.hdrs[i].msg_hdr) & TP_STATUS_CSUMNOTREADY != 0
            {
                super::rx::complete_partial_checksum(&mut batch.bufs[i][..len]);
            }
        }
        Ok(got)
    }

    /// Frames the kernel dropped for this socket since the last call (its
    /// receive buffer was full).
    pub fn drops(&self) -> u64 {
        super::socket::packet_stats(self.fd.as_raw_fd()).map_or(0, |s| s.tp_drops as u64)
    }

    /// The socket, for `poll(2)`.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Buffers for [`KernelSocket::recv_batch`], allocated once.
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    iov: Vec<libc::iovec>,
    control: Vec<[u64; 8]>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside (`iovec`, `mmsghdr`) point into the
// batch's own buffers and are rewritten before every use; they are only
// dereferenced by the kernel during `recv_batch`.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `n` frames of at most `bytes` each.
    pub fn new(n: usize, bytes: usize) -> RecvBatch {
        let n = n.max(1);
        // SAFETY: iovec and mmsghdr are plain C structs; all-zero is valid.
        let (iov, hdr) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        RecvBatch {
            bufs: (0..n)
                .map(|_| vec![0u8; bytes].into_boxed_slice())
                .collect(),
            lens: vec![0; n],
            iov: vec![iov; n],
            control: vec![[0u64; 8]; n],
            hdrs: vec![hdr; n],
        }
    }

    /// Frame `i` of the last receive; `None` when it was longer than a
    /// buffer (cut: the caller drops it).
    pub fn frame(&self, i: usize) -> Option<&[u8]> {
        let len = *self.lens.get(i)?;
        self.bufs.get(i)?.get(..len)
    }
}

/// `tp_status` of the `PACKET_AUXDATA` message `recvmsg` returned in
/// `msg` (0 when there is none).
fn aux_status(msg: &libc::msghdr) -> u32 {
    // SAFETY: `msg` came back from recvmsg with `msg_control` pointing at
    // a live buffer of `msg_controllen` bytes; CMSG_FIRSTHDR/NXTHDR stay
    // inside it and return null at its end.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !c.is_null() {
        // SAFETY: `c` is a non-null header inside the control buffer.
        let h = unsafe { &*c };
        if h.cmsg_level == SOL_PACKET && h.cmsg_type == PACKET_AUXDATA {
            // SAFETY: a PACKET_AUXDATA message carries a `struct
            // tpacket_auxdata`, whose first field is the u32 `tp_status`;
            // read unaligned from the message's data.
            return unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()) };
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        c = unsafe { libc::CMSG_NXTHDR(msg, c) };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::cbpf::{run_socket_filter, verify, SockSkb};
    use super::*;
    use crate::wire::builder::PacketBuilder;
    use crate::wire::EthernetAddress;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
    const CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const DIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
    const DIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const LIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
    const CIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const CIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

    /// The port has the DIPs, the VIP and the local address; the set is
    /// what `dataplane::kernel::kernel_addrs` leaves: the DIPs.
    fn set() -> LocalSet {
        LocalSet {
            mac: MAC,
            addrs: vec![IpAddr::V4(DIP), IpAddr::V6(DIP6)],
            link_local: true,
        }
    }

    fn eth() -> PacketBuilder {
        PacketBuilder::ethernet(EthernetAddress(CLIENT), EthernetAddress(MAC))
    }

    /// (kernel socket keeps it, a worker socket keeps it)
    fn verdicts(frame: &[u8], pkttype: u8, vlan_tagged: bool) -> (bool, bool) {
        let skb = SockSkb {
            frame,
            pkttype,
            vlan_tagged,
        };
        let k = run_socket_filter(&local_program(&set(), Side::Kernel), &skb);
        let w = run_socket_filter(&local_program(&set(), Side::Workers), &skb);
        (k != 0, w != 0)
    }

    const KERNEL_ONLY: (bool, bool) = (true, false);
    const WORKER_ONLY: (bool, bool) = (false, true);

    #[test]
    fn dip_tcp_and_udp_go_to_the_kernel_socket_only() {
        for f in [
            eth().ipv4(CIP, DIP).tcp(40000, 22).build(),
            eth()
                .ipv4(CIP, DIP)
                .udp(40000, 9)
                .payload(&[0; 1200])
                .build(),
            eth().ipv6(CIP6, DIP6).tcp(40000, 179).build(),
            eth()
                .ipv6(CIP6, "fe80::1".parse().expect("addr"))
                .udp(1, 2)
                .build(),
            // IPv4 options do not move the destination.
            eth()
                .ipv4(CIP, DIP)
                .ipv4_options(&[1, 1, 1, 1])
                .tcp(1, 2)
                .build(),
        ] {
            assert_eq!(verdicts(&f, 0, false), KERNEL_ONLY, "{f:02x?}");
        }
    }

    #[test]
    fn vip_laddr_arp_fragments_icmp_and_tagged_frames_stay_with_the_workers() {
        let arp = eth().arp_request(EthernetAddress(CLIENT), CIP, DIP).build();
        let frames = [
            ("VIP TCP", eth().ipv4(CIP, VIP).tcp(40000, 80).build()),
            ("laddr UDP", eth().ipv4(CIP, LIP).udp(53, 40000).build()),
            ("ARP for the DIP", arp),
            (
                "first fragment to the DIP",
                eth()
                    .ipv4(CIP, DIP)
                    .ipv4_fragment(0, true)
                    .udp(1, 2)
                    .payload(&[0; 64])
                    .build(),
            ),
            (
                "later fragment to the DIP",
                eth()
                    .ipv4(CIP, DIP)
                    .ipv4_fragment(64, false)
                    .udp(1, 2)
                    .build(),
            ),
            (
                "IPv6 fragment to the DIP",
                eth()
                    .ipv6(CIP6, DIP6)
                    .ipv6_fragment(0, true, 7)
                    .udp(1, 2)
                    .build(),
            ),
            (
                "ping of the DIP",
                eth().ipv4(CIP, DIP).icmpv4_echo_request(1, 1).build(),
            ),
            (
                "DIP TCP to another MAC",
                PacketBuilder::ethernet(
                    EthernetAddress(CLIENT),
                    EthernetAddress([2, 9, 9, 9, 9, 9]),
                )
                .ipv4(CIP, DIP)
                .tcp(1, 2)
                .build(),
            ),
            (
                "DIP UDP broadcast",
                PacketBuilder::ethernet(EthernetAddress(CLIENT), EthernetAddress([0xff; 6]))
                    .ipv4(CIP, DIP)
                    .udp(1, 2)
                    .build(),
            ),
            (
                "VLAN tag left in the frame",
                eth().vlan(10).ipv4(CIP, DIP).tcp(1, 2).build(),
            ),
            (
                "truncated IPv4",
                eth().ipv4(CIP, DIP).tcp(1, 2).build()[..30].to_vec(),
            ),
        ];
        for (what, f) in &frames {
            assert_eq!(verdicts(f, 0, false), WORKER_ONLY, "{what}");
        }
        // A tag the kernel took out: the frame looks untagged but stays.
        let f = eth().ipv4(CIP, DIP).tcp(1, 2).build();
        assert_eq!(verdicts(&f, 0, true), WORKER_ONLY);
        // Frames the host itself sends out: neither.
        assert_eq!(verdicts(&f, PACKET_OUTGOING, false), (false, false));
    }

    #[test]
    fn an_empty_set_sends_everything_to_the_workers() {
        let none = LocalSet::none();
        let f = eth().ipv4(CIP, DIP).tcp(1, 2).build();
        let skb = SockSkb {
            frame: &f,
            pkttype: 0,
            vlan_tagged: false,
        };
        assert_eq!(
            run_socket_filter(&local_program(&none, Side::Kernel), &skb),
            0
        );
        assert_ne!(
            run_socket_filter(&local_program(&none, Side::Workers), &skb),
            0
        );
        assert!(set().intersect(&none).is_empty());
        let mut other = set();
        other.addrs.remove(0);
        assert_eq!(set().intersect(&other).addrs, vec![IpAddr::V6(DIP6)]);
    }

    #[test]
    fn the_two_programs_are_complements_and_the_kernel_accepts_them() {
        // Every frame is kept by exactly one side (bar outgoing ones): the
        // frames above with every byte of the header region perturbed.
        let base = [
            eth().ipv4(CIP, DIP).tcp(1, 2).build(),
            eth().ipv6(CIP6, DIP6).udp(1, 2).build(),
            eth().ipv4(CIP, VIP).udp(1, 2).build(),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for f in &base {
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut g = f.clone();
                let at = (x as usize >> 8) % 60.min(g.len());
                g[at] = x as u8;
                let (k, w) = verdicts(&g, (x >> 40) as u8 % 4, x & (1 << 50) != 0);
                assert!(k != w, "{g:02x?}");
            }
        }
        // SO_ATTACH_FILTER runs the kernel's classic checks; no privilege.
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "{}", io::Error::last_os_error());
        // SAFETY: fresh fd owned by nobody else.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        let mut many = set();
        for i in 0..50u32 {
            many.addrs.push(IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i)));
            many.addrs
                .push(IpAddr::V6(Ipv6Addr::from((0xfd00_u128 << 112) | i as u128)));
        }
        for s in [LocalSet::none(), set(), many] {
            for side in [Side::Kernel, Side::Workers] {
                let prog = local_program(&s, side);
                verify(&prog).expect("classic checks");
                attach_filter(fd.as_raw_fd(), &prog).expect("the kernel takes it");
            }
        }
    }
}
