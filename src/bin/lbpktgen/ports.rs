//! Ports: parsing `--port`/`--rx-port` specifications, opening the devices
//! (TAP, AF_PACKET, DPDK with the `dpdk` feature) through
//! `rvs::dataplane::ports` as `lbd` does, handing their queues to the
//! generic thread loops, and resolving the destination MAC by ARP.
//!
//! Rules: a device is opened once, with one queue per thread that uses it
//! (a port that is both the TX and an RX port gets two: queue 0 for the TX
//! thread, queue 1 for its RX thread). The queue enum [`AnyQueue`] is
//! matched once, when a thread is spawned; the loops themselves are
//! monomorphic.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rvs::dataplane::driver::af_packet::AfPacketOptions;
use rvs::dataplane::driver::{Burst, PacketBuf, PortQueue};
use rvs::dataplane::ports::{Device, DpdkEnv, Port, PortQueues, PortSetup, SoftQueue};
use rvs::wire::{ArpOperation, EthernetAddress, PacketBuilder};

use crate::engine::{rx_thread, tx_thread, RxJob, RxReport, TxJob, TxReport};
use crate::sink::{parse_frame, Parsed};

/// MTU lbpktgen gives the TAP devices it opens (frames up to 1514 bytes).
const TAP_MTU: u16 = 1500;
/// AF_PACKET receive ring per queue: 512 blocks of 64 KiB (32 MiB). The
/// kernel retires a block when it is full or after 1 ms, so at low rates
/// every block holds one millisecond: a sink thread descheduled for up to
/// ~0.5 s (a busy shared machine) loses nothing; at high rates the ring
/// holds ~0.3 s of 64-byte frames at 1 Mpps.
const AF_PACKET_BLOCK_SIZE: u32 = 1 << 16;
const AF_PACKET_BLOCKS: u32 = 512;

/// A port on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// `tap:NAME`
    Tap(String),
    /// `af_packet:IFNAME`
    AfPacket(String),
    /// `dpdk:DEVICE` (a device name such as `net_tap0`, a PCI address, or a
    /// port id)
    Dpdk(String),
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<PortSpec, String> {
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            format!("port {s:?}: expected tap:NAME, af_packet:IFNAME or dpdk:DEVICE")
        })?;
        if name.is_empty() {
            return Err(format!("port {s:?}: the name after {kind:?} is empty"));
        }
        match kind {
            "tap" => Ok(PortSpec::Tap(name.into())),
            "af_packet" | "afpacket" => Ok(PortSpec::AfPacket(name.into())),
            "dpdk" => Ok(PortSpec::Dpdk(name.into())),
            _ => Err(format!(
                "port {s:?}: unknown driver {kind:?} (tap, af_packet or dpdk)"
            )),
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Tap(n) => write!(f, "tap:{n}"),
            PortSpec::AfPacket(n) => write!(f, "af_packet:{n}"),
            PortSpec::Dpdk(n) => write!(f, "dpdk:{n}"),
        }
    }
}

impl PortSpec {
    /// Whether the port needs the DPDK EAL.
    pub fn is_dpdk(&self) -> bool {
        matches!(self, PortSpec::Dpdk(_))
    }
}

/// The DPDK environment, when a DPDK port is used.
#[derive(Default)]
pub struct DpdkContext(DpdkEnv);

impl DpdkContext {
    /// Start the EAL with `eal_args` (split at whitespace) if `needed`.
    pub fn init(needed: bool, eal_args: Option<&str>) -> anyhow::Result<DpdkContext> {
        if !needed {
            return Ok(DpdkContext::default());
        }
        if !cfg!(feature = "dpdk") {
            bail!(
                "dpdk ports need lbpktgen built with the `dpdk` feature \
                 (cargo build --release --features dpdk --bin lbpktgen)"
            );
        }
        let Some(args) = eal_args else {
            bail!(
                "dpdk ports need --eal-args, e.g. \"--no-huge --no-pci --no-shconf -m 512 -l 0 --vdev=net_tap0,iface=pg0\""
            );
        };
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        Ok(DpdkContext(DpdkEnv::init(&args)?))
    }
}

impl PortSpec {
    /// What `dataplane::ports` opens for this port.
    fn setup(&self) -> PortSetup {
        let (name, mtu, device) = match self {
            PortSpec::Tap(name) => (
                name,
                Some(TAP_MTU),
                Device::Tap {
                    ifname: name.clone(),
                    mac: None,
                },
            ),
            PortSpec::AfPacket(name) => (
                name,
                None,
                Device::AfPacket {
                    ifname: name.clone(),
                    options: AfPacketOptions {
                        block_size: AF_PACKET_BLOCK_SIZE,
                        block_count: AF_PACKET_BLOCKS,
                        ..AfPacketOptions::default()
                    },
                },
            ),
            PortSpec::Dpdk(name) => (
                name,
                None,
                Device::Dpdk {
                    device: name.clone(),
                },
            ),
        };
        PortSetup {
            name: name.clone(),
            mtu,
            device,
        }
    }
}

/// Open `spec` with `queues` queues.
pub fn open(spec: &PortSpec, queues: u16, dpdk: &DpdkContext) -> anyhow::Result<Port> {
    Ok(Port::open(0, &spec.setup(), queues, &dpdk.0)?)
}

/// One queue of any device.
pub enum AnyQueue {
    /// A software driver's queue (TAP, AF_PACKET).
    Soft(SoftQueue),
    /// DPDK queue.
    #[cfg(feature = "dpdk")]
    Dpdk(rvs::dataplane::driver::dpdk::DpdkQueue),
}

/// Run `$body` with `$q` bound to the concrete queue inside an [`AnyQueue`].
macro_rules! with_queue {
    ($any:expr, $q:ident => $body:expr) => {
        match $any {
            AnyQueue::Soft($q) => $body,
            #[cfg(feature = "dpdk")]
            AnyQueue::Dpdk($q) => $body,
        }
    };
}

/// The queues of `port`, in order.
pub fn take_queues(port: &mut Port) -> anyhow::Result<Vec<AnyQueue>> {
    Ok(match port.take_queues()? {
        PortQueues::Soft(qs) => qs.into_iter().map(AnyQueue::Soft).collect(),
        #[cfg(feature = "dpdk")]
        PortQueues::Dpdk(qs) => qs.into_iter().map(AnyQueue::Dpdk).collect(),
    })
}

/// Start the TX thread on `q`.
pub fn spawn_tx(q: AnyQueue, job: TxJob) -> anyhow::Result<JoinHandle<TxReport>> {
    let b = std::thread::Builder::new().name("lbpktgen-tx".into());
    let h = with_queue!(q, q => b.spawn(move || tx_thread(q, job)));
    h.context("cannot start the TX thread")
}

/// Start an RX thread on `q`.
pub fn spawn_rx(q: AnyQueue, job: RxJob, index: usize) -> anyhow::Result<JoinHandle<RxReport>> {
    let b = std::thread::Builder::new().name(format!("lbpktgen-rx{index}"));
    let h = with_queue!(q, q => b.spawn(move || rx_thread(q, job)));
    h.context("cannot start an RX thread")
}

/// How many ARP requests [`resolve_mac`] sends.
const ARP_TRIES: u32 = 3;
/// How long it waits for an answer to each.
const ARP_WAIT: Duration = Duration::from_millis(400);

/// Find `target`'s MAC by ARP: requests from `src_mac`/`src_ip` go out of
/// `queues[0]`, answers are looked for on every queue (a device may steer
/// them to any).
pub fn resolve_mac(
    queues: &mut [AnyQueue],
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    target: Ipv4Addr,
) -> Option<[u8; 6]> {
    let request = PacketBuilder::ethernet(EthernetAddress(src_mac), EthernetAddress::BROADCAST)
        .arp_request(EthernetAddress(src_mac), src_ip, target)
        .pad_to(60)
        .build();
    for _ in 0..ARP_TRIES {
        let first = queues.first_mut()?;
        with_queue!(first, q => send_frame(q, &request));
        let until = Instant::now() + ARP_WAIT;
        while Instant::now() < until {
            for any in queues.iter_mut() {
                if let Some(mac) = with_queue!(any, q => find_arp_reply(q, target)) {
                    return Some(mac);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    None
}

fn send_frame<Q: PortQueue>(q: &mut Q, frame: &[u8]) {
    let mut burst = Burst::new();
    if let Some(mut b) = q.alloc() {
        if let Some(d) = b.append(frame.len()) {
            d.copy_from_slice(frame);
            let _ = burst.push(b);
            let _ = q.tx_burst(&mut burst);
        }
    }
}

fn find_arp_reply<Q: PortQueue>(q: &mut Q, target: Ipv4Addr) -> Option<[u8; 6]> {
    let mut burst = Burst::new();
    q.rx_burst(&mut burst);
    let found = burst
        .as_slice()
        .iter()
        .find_map(|b| match parse_frame(b.data()) {
            Parsed::Arp(a)
                if a.operation == ArpOperation::Reply && a.source_protocol_addr == target =>
            {
                Some(a.source_hardware_addr.0)
            }
            _ => None,
        });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse_and_print_back() {
        for s in [
            "tap:pg0",
            "af_packet:veth1",
            "dpdk:net_tap0",
            "dpdk:0000:03:00.0",
        ] {
            let p: PortSpec = s.parse().expect(s);
            assert_eq!(p.to_string(), s);
        }
        assert_eq!("afpacket:x".parse(), Ok(PortSpec::AfPacket("x".into())));
        assert!("pcap:x".parse::<PortSpec>().is_err());
        assert!("tap:".parse::<PortSpec>().is_err());
        assert!("veth0".parse::<PortSpec>().is_err());
    }
}
