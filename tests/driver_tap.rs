//! The TAP driver against the real kernel: each test creates its own network
//! namespace (`rvs-t-<pid>-<n>-tap`), opens a TAP inside it (from a helper thread
//! that entered the namespace), and exchanges bounded traffic with the
//! kernel side of the TAP. Everything is removed by Drop guards, also when a
//! test fails. Needs root (CI runs as root); elsewhere the tests print why
//! they skip.

use rvs::dataplane::driver::heapbuf::HeapBuf;
use rvs::dataplane::driver::tap::{TapDriver, TapQueue};
use rvs::dataplane::driver::{Burst, Driver, DriverError, PacketBuf, PortQueue, Steering};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

mod support;
use support::netns::Netns;
use support::process::poll_until;

/// `02:00:...` as `ip` prints and takes it.
fn mac_str(m: [u8; 6]) -> String {
    rvs::wire::EthernetAddress(m).to_string()
}

/// True when the test may run: root (or, outside CI, a printed skip).
fn can_run(test: &str) -> bool {
    support::needs_root(test, &["ip"])
}

// ---------------------------------------------------------------------------
// Frames, built byte by byte.

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for c in chunks {
        for w in c.chunks(2) {
            sum += u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn arp_request(src_mac: [u8; 6], src_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&src_ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip);
    f
}

#[allow(clippy::too_many_arguments)]
fn udp4_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len() as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = Vec::new();
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let pseudo = [&src[..], &dst[..], &[0, 17], &udp_len.to_be_bytes()[..]].concat();
    let c = checksum(&[&pseudo, &udp]);
    udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// Poll every queue until `want` frames matching `pick` arrived or the
/// deadline passed; returns them with the queue they came from.
fn collect(
    queues: &mut [TapQueue],
    pick: impl Fn(&[u8]) -> bool,
    want: usize,
    timeout: Duration,
) -> Vec<(u16, Vec<u8>)> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut burst = Burst::<HeapBuf>::new();
    while got.len() < want && Instant::now() < deadline {
        let mut idle = true;
        for q in queues.iter_mut() {
            if q.rx_burst(&mut burst) > 0 {
                idle = false;
            }
            for b in burst.drain() {
                if pick(b.data()) {
                    got.push((q.index(), b.data().to_vec()));
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

fn send(q: &mut TapQueue, frame: &[u8]) {
    let mut burst = Burst::new();
    assert!(burst.push(HeapBuf::from_slice(frame)).is_ok());
    assert_eq!(q.tx_burst(&mut burst), 1, "TAP took the frame");
    assert!(burst.is_empty());
}

/// A TAP named `rvtap0` with `queues` queues in a fresh namespace, the
/// kernel side at 198.18.0.1/24.
fn tap_in_netns(queues: u16) -> (Netns, TapDriver) {
    let ns = Netns::new("tap");
    let drv = ns
        .run(move || TapDriver::open("rvtap0", queues, 1500))
        .expect("open TAP");
    ns.ip(&["addr", "add", "198.18.0.1/24", "dev", "rvtap0"]);
    (ns, drv)
}

const DIRECTOR_IP: [u8; 4] = [198, 18, 0, 2];
const KERNEL_IP: [u8; 4] = [198, 18, 0, 1];

// ---------------------------------------------------------------------------

#[test]
fn tap_open_creates_the_interface_up_with_mtu_and_its_own_director_mac() {
    if !can_run("tap_open_creates_the_interface_up_with_mtu_and_its_own_director_mac") {
        return;
    }
    let ns = Netns::new("tap");
    let drv = ns
        .run(|| TapDriver::open("rvtap0", 2, 1400))
        .expect("open TAP");
    let link = ns.ip(&["-o", "link", "show", "dev", "rvtap0"]);
    assert!(link.contains("mtu 1400"), "{link}");
    assert!(link.contains(",UP") || link.contains("<UP"), "{link}");
    assert!(link.contains(&mac_str(drv.kernel_mac())), "{link}");
    let caps = drv.caps();
    assert_eq!(
        (caps.name.as_str(), caps.mtu, caps.queues),
        ("rvtap0", 1400, 2)
    );
    assert_eq!(caps.steering, Steering::None);
    assert_ne!(
        caps.mac,
        drv.kernel_mac(),
        "the director is the kernel's peer"
    );
    assert_eq!(caps.mac[0] & 0x03, 0x02, "locally administered unicast");
}

#[test]
fn tap_disappears_when_driver_and_queues_are_dropped() {
    if !can_run("tap_disappears_when_driver_and_queues_are_dropped") {
        return;
    }
    let ns = Netns::new("tap");
    let mut drv = ns
        .run(|| TapDriver::open("rvtap0", 2, 1500))
        .expect("open TAP");
    let queues = drv.take_queues().expect("queues");
    assert!(matches!(drv.take_queues(), Err(DriverError::QueuesTaken)));
    assert_eq!(queues.len(), 2);
    drop(drv);
    assert!(ns.link_exists("rvtap0"), "queues still hold the device");
    drop(queues);
    let gone = poll_until(Duration::from_secs(3), Duration::from_millis(10), || {
        (!ns.link_exists("rvtap0")).then_some(())
    });
    assert!(gone.is_some(), "not persistent: gone with its fds");
}

#[test]
fn tap_arp_request_from_the_driver_gets_the_kernels_reply() {
    if !can_run("tap_arp_request_from_the_driver_gets_the_kernels_reply") {
        return;
    }
    let (_ns, mut drv) = tap_in_netns(2);
    let my_mac = drv.caps().mac;
    let kernel_mac = drv.kernel_mac();
    let mut queues = drv.take_queues().expect("queues");
    let is_reply = |f: &[u8]| {
        f.len() >= 42
            && f[12..14] == [0x08, 0x06]
            && f[20..22] == [0, 2]
            && f[28..32] == KERNEL_IP
            && f[38..42] == DIRECTOR_IP
    };
    let mut replies = Vec::new();
    // The request leaves from queue 1: any queue may transmit.
    for _ in 0..5 {
        send(&mut queues[1], &arp_request(my_mac, DIRECTOR_IP, KERNEL_IP));
        replies = collect(&mut queues, is_reply, 1, Duration::from_millis(400));
        if !replies.is_empty() {
            break;
        }
    }
    let (_, reply) = replies
        .first()
        .expect("the kernel answered the ARP request");
    assert_eq!(&reply[0..6], &my_mac, "addressed to the director's MAC");
    assert_eq!(
        &reply[6..12],
        &kernel_mac,
        "from the kernel side of the TAP"
    );
    assert_eq!(&reply[22..28], &kernel_mac, "sender hardware address");
    let st = drv.stats();
    assert!(st.opackets >= 1 && st.ipackets >= 1, "{st:?}");
    assert_eq!((st.ierrors, st.oerrors), (0, 0));
}

#[test]
fn tap_udp_flows_both_ways_between_driver_and_kernel() {
    if !can_run("tap_udp_flows_both_ways_between_driver_and_kernel") {
        return;
    }
    let (ns, mut drv) = tap_in_netns(2);
    let my_mac = drv.caps().mac;
    let kernel_mac = drv.kernel_mac();
    ns.ip(&[
        "neigh",
        "add",
        "198.18.0.2",
        "lladdr",
        &mac_str(my_mac),
        "dev",
        "rvtap0",
    ]);
    let sock = ns
        .run(|| UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::from(KERNEL_IP), 7000)))
        .expect("bind in namespace");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut queues = drv.take_queues().expect("queues");

    // Kernel → driver: 20 datagrams from several source ports.
    const N: usize = 20;
    for i in 0..N {
        let msg = format!("to-director {i}");
        sock.send_to(
            msg.as_bytes(),
            SocketAddrV4::new(Ipv4Addr::from(DIRECTOR_IP), 9000),
        )
        .expect("send");
    }
    let is_ours =
        |f: &[u8]| f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[36..38] == [0x23, 0x28];
    let got = collect(&mut queues, is_ours, N, Duration::from_secs(3));
    assert_eq!(got.len(), N, "every datagram reached a queue");
    let mut payloads: Vec<String> = got
        .iter()
        .map(|(_, f)| String::from_utf8_lossy(&f[42..]).into_owned())
        .collect();
    payloads.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("to-director {i}")).collect();
    want.sort();
    assert_eq!(payloads, want);
    for (_, f) in &got {
        assert_eq!(&f[0..6], &my_mac);
        assert_eq!(&f[6..12], &kernel_mac);
    }

    // Driver → kernel: 20 frames, alternating queues.
    for i in 0..N {
        let msg = format!("from-director {i}");
        let f = udp4_frame(
            kernel_mac,
            my_mac,
            DIRECTOR_IP,
            9000,
            KERNEL_IP,
            7000,
            msg.as_bytes(),
        );
        send(&mut queues[i % 2], &f);
    }
    let mut buf = [0u8; 256];
    let mut heard = Vec::new();
    while heard.len() < N {
        let (n, from) = sock.recv_from(&mut buf).expect("datagram from the driver");
        assert_eq!(from, "198.18.0.2:9000".parse().expect("addr"));
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let want: Vec<String> = (0..N).map(|i| format!("from-director {i}")).collect();
    heard.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(heard, want_sorted);
    let st = drv.stats();
    assert!(st.ipackets >= N as u64 && st.opackets == N as u64, "{st:?}");
}

#[test]
fn tap_rx_on_an_idle_queue_returns_nothing_without_blocking() {
    if !can_run("tap_rx_on_an_idle_queue_returns_nothing_without_blocking") {
        return;
    }
    let ns = Netns::new("tap");
    // Link down after open: the kernel sends nothing at all.
    let mut drv = ns
        .run(|| TapDriver::open("rvtap0", 1, 1500))
        .expect("open TAP");
    ns.ip(&["link", "set", "rvtap0", "down"]);
    let mut q = drv.take_queues().expect("queues").remove(0);
    // What the kernel queued while the link was up (IPv6 neighbour
    // discovery, MLD) may still be waiting: take it first.
    let mut burst = Burst::new();
    for _ in 0..100 {
        q.rx_burst(&mut burst);
        burst.clear();
    }
    let t = Instant::now();
    for _ in 0..1000 {
        assert_eq!(q.rx_burst(&mut burst), 0);
    }
    assert!(t.elapsed() < Duration::from_secs(1), "non-blocking");
    // Writing to a TAP whose link is down fails: the frame stays in the
    // burst and is counted as an error.
    let mut burst = Burst::new();
    assert!(burst.push(HeapBuf::from_slice(&[0u8; 60])).is_ok());
    assert_eq!(q.tx_burst(&mut burst), 0);
    assert_eq!(burst.len(), 1);
    assert_eq!(drv.stats().oerrors, 1);
}
