//! The DPDK driver against real DPDK virtual devices (`--no-huge
//! --no-pci --no-shconf`): receive from `net_pcap` and `net_ring`, transmit
//! into `net_pcap` (checked in the written capture) and `net_ring`/
//! `net_null`, mbuf headroom operations, device counters, RSS set-up on a
//! two-queue `net_null`, worker registration, and `rte_flow` FULLNAT rules
//! on `net_tap`.
//!
//! DPDK's EAL starts once per process, so everything that needs it is one
//! test function, in stages.
#![cfg(feature = "dpdk")]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rvs::dataplane::driver::dpdk::{register_worker_thread, DpdkDriver, Eal, FlowSteering, Mbuf};
use rvs::dataplane::driver::pcap::{read_capture, write_capture};
use rvs::dataplane::driver::{Burst, Driver, PacketBuf, PortQueue, Steering, BURST_SIZE};
use rvs::steer::LportMatch;

/// An Ethernet/IPv4/UDP frame of `len` bytes whose bytes tell `seq` apart.
fn udp_frame(seq: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(42)];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (f.len() - 14) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, seq]);
    f[30..34].copy_from_slice(&[10, 0, 1, 1]);
    f[34..36].copy_from_slice(&(1000 + seq as u16).to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = seq.wrapping_mul(31).wrapping_add(i as u8);
    }
    f
}

/// Receive until `want` packets came or 1000 polls passed.
fn rx_until<Q: PortQueue>(q: &mut Q, want: usize) -> Vec<Q::Buf> {
    let mut got = Vec::new();
    let mut burst = Burst::new();
    for _ in 0..1000 {
        q.rx_burst(&mut burst);
        got.extend(burst.drain());
        if got.len() >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    got
}

fn burst_of(bufs: Vec<Mbuf>) -> Burst<Mbuf> {
    let mut b = Burst::new();
    for m in bufs {
        assert!(b.push(m).is_ok(), "burst overflow");
    }
    b
}

#[test]
fn dpdk_driver_on_virtual_devices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx_file = dir.path().join("in.pcap");
    let tx_file = dir.path().join("out.pcap");
    let frames: Vec<Vec<u8>> = (0..6u8)
        .map(|i| udp_frame(i, [60, 64, 128, 512, 1000, 1514][i as usize]))
        .collect();
    // A 3000-byte frame arrives as a two-segment mbuf chain (the data room
    // is 2048): rvs handles single segments only, so it is freed and
    // counted.
    let mut capture = frames.clone();
    capture.push(udp_frame(7, 3000));
    write_capture(&rx_file, &capture).expect("write the receive capture");

    let args = support::world::eal_args(
        &support::world::unique("rvs_test"),
        &[
            format!(
                "net_pcap0,rx_pcap={},tx_pcap={}",
                rx_file.display(),
                tx_file.display()
            ),
            "net_ring0".to_string(),
            "net_null0".to_string(),
            "net_null1".to_string(),
        ],
    );
    let eal = Eal::init(&args).expect("EAL starts with --no-huge and vdevs");
    assert!(eal.port_count() >= 4, "ports: {}", eal.port_count());
    assert!(
        Eal::init(&args).is_err(),
        "a second EAL start in one process is refused"
    );

    // ---- bad requests change nothing ----
    let err = DpdkDriver::open(&eal, "net_nope0", 1, None).expect_err("no such port");
    assert!(err.to_string().contains("net_nope0"), "{err}");
    assert!(
        DpdkDriver::open(&eal, "net_pcap0", 0, None).is_err(),
        "zero queues"
    );
    assert!(
        DpdkDriver::open(&eal, "net_pcap0", 1000, None).is_err(),
        "too many queues"
    );
    assert!(
        DpdkDriver::open(&eal, "net_pcap0", 1, Some(9000)).is_err(),
        "MTU beyond the buffers"
    );

    // ---- net_pcap: rx from a capture, tx into a capture, unchanged ----
    {
        let mut pcap = DpdkDriver::open(&eal, "net_pcap0", 1, None).expect("open net_pcap0");
        assert_eq!(pcap.caps().queues, 1);
        assert_eq!(pcap.caps().steering, Steering::None);
        assert!(!pcap.caps().tx_csum_offload);
        assert!(
            DpdkDriver::open(&eal, "net_pcap0", 1, None).is_err(),
            "a port opens once"
        );
        let mut queues = pcap.take_queues().expect("queues");
        assert!(pcap.take_queues().is_err(), "queues are handed out once");
        let q = &mut queues[0];
        let got = rx_until(q, frames.len());
        assert_eq!(
            got.len(),
            frames.len(),
            "every single-segment frame is received"
        );
        assert!(rx_until(q, 1).is_empty(), "and nothing more");
        assert_eq!(q.rx_multiseg_dropped(), 1, "the chained frame was dropped");
        for (m, f) in got.iter().zip(&frames) {
            assert_eq!(m.data(), &f[..]);
            assert_eq!(
                m.headroom(),
                128,
                "RTE_PKTMBUF_HEADROOM in front of rx data"
            );
        }
        let mut burst = burst_of(got);
        let sent = q.tx_burst(&mut burst);
        assert_eq!(sent, frames.len());
        assert!(burst.is_empty(), "sent buffers leave the burst");
        let stats = pcap.stats();
        assert_eq!(stats.ipackets, capture.len() as u64);
        assert_eq!(stats.opackets, frames.len() as u64);
        let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
        assert_eq!(stats.ibytes, bytes + 3000);
        assert_eq!(stats.obytes, bytes);
        // Dropping the driver and its queues stops and closes the port,
        // which flushes the capture.
    }
    assert_eq!(
        read_capture(&tx_file).expect("net_pcap0's tx_pcap"),
        frames,
        "the written capture has the frames unchanged"
    );

    // ---- mbuf headroom operations, net_ring loopback, counters ----
    {
        let mut ring = DpdkDriver::open(&eal, "net_ring0", 1, None).expect("open net_ring0");
        let mut q = ring.take_queues().expect("queues").remove(0);
        let mut m = q.alloc().expect("a buffer from the pool");
        assert_eq!(m.len(), 0);
        assert_eq!(m.headroom(), 128);
        let room = m.tailroom();
        assert!(room >= 2048, "tailroom {room}");
        let payload = udp_frame(9, 100);
        m.append(payload.len())
            .expect("append")
            .copy_from_slice(&payload);
        assert_eq!(m.data(), &payload[..]);
        assert_eq!(m.tailroom(), room - payload.len());
        m.prepend(20).expect("prepend 20").fill(0xee);
        assert_eq!(m.headroom(), 108);
        assert_eq!(m.len(), payload.len() + 20);
        assert_eq!(&m.data()[..20], &[0xee; 20]);
        assert!(
            m.prepend(109).is_none(),
            "prepend past the headroom is refused"
        );
        assert_eq!(m.len(), payload.len() + 20, "and changes nothing");
        assert!(m.adj(20));
        assert_eq!(m.data(), &payload[..]);
        assert!(m.trim(4));
        assert_eq!(m.data(), &payload[..payload.len() - 4]);
        assert!(!m.adj(1000), "adj past the end is refused");
        assert!(!m.trim(1000), "trim past the end is refused");
        assert!(m.append(1 << 16).is_none());
        m.data_mut()[0] = 0x42;
        assert_eq!(m.rss_hash(), None);
        let expect = m.data().to_vec();

        let mut burst = burst_of(vec![m]);
        assert_eq!(q.tx_burst(&mut burst), 1);
        let back = rx_until(&mut q, 1);
        assert_eq!(back.len(), 1, "net_ring loops tx back to rx");
        assert_eq!(back[0].data(), &expect[..]);
        let s = ring.stats();
        // (net_ring counts packets, not bytes.)
        assert_eq!((s.ipackets, s.opackets), (1, 1));

        // A full device takes only part of a burst; the rest stays, in order.
        let mut sent_total = 0usize;
        let mut seq = 0u32;
        let leftover = loop {
            let mut burst = Burst::new();
            while !burst.is_full() {
                let mut m = q.alloc().expect("pool has buffers");
                m.append(64).expect("room").fill(0);
                m.data_mut()[..4].copy_from_slice(&seq.to_be_bytes());
                seq += 1;
                assert!(burst.push(m).is_ok());
            }
            let sent = q.tx_burst(&mut burst);
            sent_total += sent;
            if sent < BURST_SIZE {
                break (sent, burst);
            }
            assert!(sent_total < 100_000, "net_ring never filled");
        };
        let (sent, rest) = leftover;
        assert_eq!(rest.len(), BURST_SIZE - sent);
        for (i, m) in rest.as_slice().iter().enumerate() {
            let first_unsent = seq - BURST_SIZE as u32 + sent as u32;
            assert_eq!(m.data()[..4], (first_unsent + i as u32).to_be_bytes());
        }
        drop(rest);
        let mut burst = Burst::new();
        let mut drained = 0;
        while q.rx_burst(&mut burst) > 0 {
            drained += burst.len();
            burst.clear();
        }
        assert_eq!(drained, sent_total, "the ring held exactly what it took");

        // A worker thread registers with DPDK and uses the queue there.
        let worker = std::thread::spawn(move || {
            let lcore = register_worker_thread().expect("rte_thread_register");
            let again = register_worker_thread().expect("registering twice is fine");
            assert_eq!(lcore, again);
            let bufs: Vec<Mbuf> = (0..BURST_SIZE).filter_map(|_| q.alloc()).collect();
            assert_eq!(bufs.len(), BURST_SIZE);
            drop(bufs);
            lcore
        });
        let lcore = worker.join().expect("worker thread");
        assert_ne!(lcore.0, 0, "the worker got its own lcore id (0 is main)");
    }

    // ---- net_null with two queues: RSS with the symmetric key ----
    {
        let mut null = DpdkDriver::open(&eal, "net_null1", 2, Some(1500)).expect("open net_null1");
        let info = null.device_info().clone();
        assert_eq!(info.driver_name, "net_null");
        assert_eq!(null.caps().mtu, 1500);
        if info.flow_type_rss_offloads != 0 {
            assert_eq!(null.caps().steering, Steering::Rss);
            let rss = null.rss().expect("RSS configured");
            assert_eq!(rss.key[..4], [0x6d, 0x5a, 0x6d, 0x5a]);
            assert!(rss.reta.iter().all(|&q| q < 2));
            assert!(
                rss.reta.contains(&0) && rss.reta.contains(&1),
                "{:?}",
                rss.reta
            );
            let rip = IpAddr::V4(Ipv4Addr::new(192, 168, 10, 1));
            let lip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 100));
            let q0 = (1024..2048u16)
                .filter(|&lp| rss.fullnat_reply_queue(rip, 80, lip, lp) == Some(0))
                .count();
            assert!(q0 > 300 && q0 < 724, "queue 0 gets {q0} of 1024 lports");
        } else {
            assert_eq!(null.caps().steering, Steering::None);
        }
        let mut qs = null.take_queues().expect("queues");
        let mut burst = Burst::new();
        let n = qs[1].rx_burst(&mut burst);
        assert!(n > 0, "net_null always has packets to receive");
        assert_eq!(qs[1].tx_burst(&mut burst), n, "net_null takes everything");
        let s = null.stats();
        assert_eq!(s.opackets, n as u64);
        assert!(s.ipackets >= n as u64);
        assert!(null.link().expect("link").up);
    }

    // ---- net_tap: rte_flow FULLNAT rules, best effort ----
    {
        eal.attach_vdev("net_tap0,iface=rvsdpdk0")
            .expect("net_tap probes (needs root and /dev/net/tun)");
        let tap = DpdkDriver::open(&eal, "net_tap0", 2, None).expect("open net_tap0");
        let lips = [IpAddr::V4(Ipv4Addr::new(10, 0, 1, 100))];
        let shares = LportMatch::owner_partition(2).expect("two workers");
        let masked = tap
            .install_fullnat_rules(&lips, &shares)
            .expect("a well-formed request");
        println!("net_tap, lport & 0x1 per queue: {masked:?}");
        assert!(
            matches!(masked, FlowSteering::Rejected { ref reason } if !reason.is_empty()),
            "TC flower cannot mask ports, so net_tap refuses per-worker masks: {masked:?}"
        );
        let whole = [
            LportMatch { mask: 0, value: 0 },
            LportMatch {
                mask: 0xffff,
                value: 5001,
            },
        ];
        let exact = tap
            .install_fullnat_rules(&lips, &whole)
            .expect("a well-formed request");
        println!("net_tap, any port -> q0 and port 5001 -> q1: {exact:?}");
        assert!(
            tap.install_fullnat_rules(&lips, &shares[..1]).is_err(),
            "one match per queue"
        );
        tap.remove_fullnat_rules().expect("rules removed");
    }
    // Every buffer went back to the pool: none leaked, none freed twice.
    assert_eq!(eal.pool_in_use(0), Some(0), "buffers still out of the pool");
    drop(eal);
}
