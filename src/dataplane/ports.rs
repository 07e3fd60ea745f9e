//! Ports: the one place that opens devices (mem, pcap, tap, af_packet and,
//! with the `dpdk` feature, DPDK ports), hands their queues to workers,
//! reads their counters, and keeps device-side steering (the AF_PACKET
//! cBPF fanout program, DPDK flow rules, RSS-aware local ports) in step
//! with each snapshot.
//!
//! Rules: a device is described by a [`PortSetup`] that the layer above
//! builds from its configuration (this module knows no configuration file);
//! software drivers all carry [`HeapBuf`] and can share a worker through
//! [`SoftQueue`], DPDK ports carry mbufs and cannot be mixed with them.
//! [`Ports`] owns the opened devices (and the DPDK EAL, dropped last) for
//! the life of the data plane; the runtime calls [`Ports::apply_steering`]
//! with every snapshot once every worker runs it. Control threads only:
//! nothing here is on a worker's path except [`SoftQueue`]'s dispatch.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::dataplane::driver::af_packet::{AfPacketDriver, AfPacketOptions, AfPacketQueue};
use crate::dataplane::driver::heapbuf::HeapBuf;
use crate::dataplane::driver::mem::{MemDriver, MemQueue};
use crate::dataplane::driver::pcap::{read_capture, PcapDriver, PcapQueue};
use crate::dataplane::driver::tap::{TapDriver, TapQueue};
use crate::dataplane::driver::{Burst, Driver, DriverError, PortCaps, PortQueue, PortStats};
use crate::dataplane::runtime::{DataplaneHandle, Runtime, RuntimeError};
use crate::dataplane::snapshot::Snapshot;
use crate::dataplane::worker::WorkerConfig;
use crate::steer::rss::RssConfig;

/// MTU of a port whose setup gives none (software drivers).
pub const DEFAULT_MTU: u16 = 1500;

/// What device a port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// In-memory generator cycling `frames` on every queue (benchmarks).
    Mem {
        /// Frames each queue receives, in a loop (none: an idle port).
        frames: Option<PathBuf>,
        /// The port's MAC.
        mac: [u8; 6],
    },
    /// A capture file in, a capture file out.
    Pcap {
        /// Capture to read.
        rx: Option<PathBuf>,
        /// Capture to write.
        tx: Option<PathBuf>,
        /// The port's MAC.
        mac: [u8; 6],
    },
    /// A TAP interface (`/dev/net/tun`, one fd per queue).
    Tap {
        /// Interface name.
        ifname: String,
        /// The director's MAC on it (`None`: derived by the driver).
        mac: Option<[u8; 6]>,
    },
    /// An existing interface through AF_PACKET rings.
    AfPacket {
        /// Interface name.
        ifname: String,
        /// Ring sizes, TX mode, fanout group, MAC.
        options: AfPacketOptions,
    },
    /// A DPDK port (device name, PCI address or port id).
    Dpdk {
        /// The device.
        device: String,
    },
}

/// One port to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSetup {
    /// The port's name (routes and logs refer to it).
    pub name: String,
    /// IP MTU (`None`: the driver's default).
    pub mtu: Option<u16>,
    /// The device.
    pub device: Device,
}

impl PortSetup {
    /// Whether the port needs the DPDK EAL.
    pub fn is_dpdk(&self) -> bool {
        matches!(self.device, Device::Dpdk { .. })
    }
}

/// Why ports could not be opened or started.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A device would not open.
    #[error("ports[{index}] ({name}): cannot open: {source}")]
    Open {
        /// Position in the setup list.
        index: usize,
        /// Port name.
        name: String,
        /// What the driver said.
        #[source]
        source: DriverError,
    },
    /// DPDK and software ports in one data plane.
    #[error("port {0}: dpdk ports cannot be mixed with software drivers")]
    Mixed(String),
    /// A DPDK port in a build without DPDK.
    #[error("port {0}: driver dpdk: built without dpdk support (rebuild with --features dpdk)")]
    NoDpdk(String),
    /// The EAL would not start.
    #[error("cannot start the DPDK EAL: {0}")]
    Eal(#[source] DriverError),
    /// A device gave the wrong number of queues.
    #[error("port {name}: the device gave {got} queues for {workers} workers")]
    Queues {
        /// Port name.
        name: String,
        /// Queues handed out.
        got: usize,
        /// Workers.
        workers: u16,
    },
    /// Handing out queues failed.
    #[error("port {name}: {source}")]
    TakeQueues {
        /// Port name.
        name: String,
        /// What the driver said.
        #[source]
        source: DriverError,
    },
    /// The workers did not start.
    #[error("cannot start the workers: {0}")]
    Runtime(#[from] RuntimeError),
}

/// A queue of any software driver (they all use [`HeapBuf`]), so that one
/// worker can own queues of different drivers. Variants are not boxed: a
/// queue is moved once into its worker and stays there, and a box would
/// cost a pointer chase on every burst.
#[allow(clippy::large_enum_variant)]
pub enum SoftQueue {
    /// In-memory generator.
    Mem(MemQueue),
    /// Capture file.
    Pcap(PcapQueue),
    /// TAP.
    Tap(TapQueue),
    /// AF_PACKET.
    AfPacket(AfPacketQueue),
}

/// Run `$body` with `$q` bound to the concrete queue inside a [`SoftQueue`].
macro_rules! with_soft_queue {
    ($any:expr, $q:ident => $body:expr) => {
        match $any {
            SoftQueue::Mem($q) => $body,
            SoftQueue::Pcap($q) => $body,
            SoftQueue::Tap($q) => $body,
            SoftQueue::AfPacket($q) => $body,
        }
    };
}

impl PortQueue for SoftQueue {
    type Buf = HeapBuf;

    #[inline]
    fn rx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        with_soft_queue!(self, q => q.rx_burst(burst))
    }

    #[inline]
    fn tx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        with_soft_queue!(self, q => q.tx_burst(burst))
    }

    #[inline]
    fn alloc(&mut self) -> Option<HeapBuf> {
        with_soft_queue!(self, q => q.alloc())
    }

    fn rx_exhausted(&self) -> bool {
        with_soft_queue!(self, q => q.rx_exhausted())
    }
}

/// An opened device.
pub enum Port {
    /// In-memory generator.
    Mem(Box<MemDriver>),
    /// Capture files.
    Pcap(Box<PcapDriver>),
    /// TAP.
    Tap(Box<TapDriver>),
    /// AF_PACKET.
    AfPacket(Box<AfPacketDriver>),
    /// DPDK.
    #[cfg(feature = "dpdk")]
    Dpdk(Box<crate::dataplane::driver::dpdk::DpdkDriver>),
}

/// The queues of one port, by kind of buffer.
pub enum PortQueues {
    /// Software queues ([`HeapBuf`]).
    Soft(Vec<SoftQueue>),
    /// DPDK queues (mbufs).
    #[cfg(feature = "dpdk")]
    Dpdk(Vec<crate::dataplane::driver::dpdk::DpdkQueue>),
}

/// The DPDK environment a DPDK port is opened in (empty without the
/// `dpdk` feature).
#[derive(Default)]
pub struct DpdkEnv {
    #[cfg(feature = "dpdk")]
    eal: Option<crate::dataplane::driver::dpdk::Eal>,
}

impl DpdkEnv {
    /// Starts the EAL with `args` (no program name).
    #[cfg(feature = "dpdk")]
    pub fn init(args: &[String]) -> Result<DpdkEnv, PortError> {
        let eal = crate::dataplane::driver::dpdk::Eal::init(args).map_err(PortError::Eal)?;
        Ok(DpdkEnv { eal: Some(eal) })
    }

    /// Without the `dpdk` feature there is no EAL to start.
    #[cfg(not(feature = "dpdk"))]
    pub fn init(_args: &[String]) -> Result<DpdkEnv, PortError> {
        Err(PortError::NoDpdk("(EAL)".into()))
    }
}

impl Port {
    /// Opens `setup` with `queues` queues (one per worker or thread).
    /// `index` only names the port in errors.
    pub fn open(
        index: usize,
        setup: &PortSetup,
        queues: u16,
        dpdk: &DpdkEnv,
    ) -> Result<Port, PortError> {
        let open_err = |source| PortError::Open {
            index,
            name: setup.name.clone(),
            source,
        };
        let mtu = setup.mtu.unwrap_or(DEFAULT_MTU);
        Ok(match &setup.device {
            Device::Mem { frames, mac } => {
                let frames = match frames {
                    Some(path) => read_capture(path).map_err(open_err)?,
                    None => Vec::new(),
                };
                let qs = (0..queues)
                    .map(|_| MemQueue::generator(frames.clone()))
                    .collect();
                Port::Mem(Box::new(MemDriver::new(&setup.name, *mac, mtu, qs)))
            }
            Device::Pcap { rx, tx, mac } => Port::Pcap(Box::new(
                PcapDriver::open(&setup.name, *mac, mtu, rx.as_deref(), tx.as_deref())
                    .map_err(open_err)?,
            )),
            Device::Tap { ifname, mac } => Port::Tap(Box::new(
                TapDriver::open_with_mac(ifname, queues, mtu, *mac).map_err(open_err)?,
            )),
            Device::AfPacket { ifname, options } => Port::AfPacket(Box::new(
                AfPacketDriver::open(ifname, queues, options.clone()).map_err(open_err)?,
            )),
            Device::Dpdk { device } => Self::open_dpdk(index, setup, device, queues, dpdk)?,
        })
    }

    #[cfg(feature = "dpdk")]
    fn open_dpdk(
        index: usize,
        setup: &PortSetup,
        device: &str,
        queues: u16,
        dpdk: &DpdkEnv,
    ) -> Result<Port, PortError> {
        let open_err = |source| PortError::Open {
            index,
            name: setup.name.clone(),
            source,
        };
        let eal = dpdk.eal.as_ref().ok_or_else(|| {
            open_err(DriverError::Config(
                "the DPDK EAL is not running (internal)".into(),
            ))
        })?;
        let d = crate::dataplane::driver::dpdk::DpdkDriver::open(eal, device, queues, setup.mtu)
            .map_err(|e| PortError::Open {
                index,
                name: format!("{}: {device}", setup.name),
                source: e,
            })?;
        Ok(Port::Dpdk(Box::new(d)))
    }

    #[cfg(not(feature = "dpdk"))]
    fn open_dpdk(
        _index: usize,
        setup: &PortSetup,
        _device: &str,
        _queues: u16,
        _dpdk: &DpdkEnv,
    ) -> Result<Port, PortError> {
        Err(PortError::NoDpdk(setup.name.clone()))
    }

    /// What the port is and can do.
    pub fn caps(&self) -> &PortCaps {
        match self {
            Port::Mem(d) => d.caps(),
            Port::Pcap(d) => d.caps(),
            Port::Tap(d) => d.caps(),
            Port::AfPacket(d) => d.caps(),
            #[cfg(feature = "dpdk")]
            Port::Dpdk(d) => d.caps(),
        }
    }

    /// Device counters.
    pub fn stats(&self) -> PortStats {
        match self {
            Port::Mem(d) => d.stats(),
            Port::Pcap(d) => d.stats(),
            Port::Tap(d) => d.stats(),
            Port::AfPacket(d) => d.stats(),
            #[cfg(feature = "dpdk")]
            Port::Dpdk(d) => d.stats(),
        }
    }

    /// Whether this is a DPDK port.
    pub fn is_dpdk(&self) -> bool {
        match self {
            #[cfg(feature = "dpdk")]
            Port::Dpdk(_) => true,
            _ => false,
        }
    }

    /// The MAC of the port's natural peer, if it has one (the kernel side
    /// of a TAP).
    pub fn peer_mac(&self) -> Option<[u8; 6]> {
        match self {
            Port::Tap(d) => Some(d.kernel_mac()),
            _ => None,
        }
    }

    /// The RSS key and table of a DPDK port that spreads by RSS and
    /// confirmed its table (queue i = worker i), for RSS-aware FULLNAT
    /// local ports.
    pub fn rss(&self) -> Option<Arc<RssConfig>> {
        match self {
            #[cfg(feature = "dpdk")]
            Port::Dpdk(d) if d.caps().steering == crate::dataplane::driver::Steering::Rss => d
                .rss()
                .filter(|r| r.reta_confirmed)
                .map(|r| Arc::new(r.clone())),
            _ => None,
        }
    }

    /// The queues, in order (called once).
    pub fn take_queues(&mut self) -> Result<PortQueues, DriverError> {
        Ok(match self {
            Port::Mem(d) => {
                PortQueues::Soft(d.take_queues()?.into_iter().map(SoftQueue::Mem).collect())
            }
            Port::Pcap(d) => {
                PortQueues::Soft(d.take_queues()?.into_iter().map(SoftQueue::Pcap).collect())
            }
            Port::Tap(d) => {
                PortQueues::Soft(d.take_queues()?.into_iter().map(SoftQueue::Tap).collect())
            }
            Port::AfPacket(d) => PortQueues::Soft(
                d.take_queues()?
                    .into_iter()
                    .map(SoftQueue::AfPacket)
                    .collect(),
            ),
            #[cfg(feature = "dpdk")]
            Port::Dpdk(d) => PortQueues::Dpdk(d.take_queues()?),
        })
    }

    /// Device-side steering for `snap`: the AF_PACKET fanout program, DPDK
    /// flow rules for FULLNAT replies. Failures are logged (the software
    /// ring still delivers every packet to its owner).
    fn apply_steering(&self, index: u16, snap: &Snapshot) {
        match self {
            Port::AfPacket(a) => {
                if let Err(e) = a.set_steering(&snap.steer) {
                    eprintln!(
                        "lbd: port {}: cannot install the steering program: {e}",
                        a.caps().name
                    );
                }
                // The director's own TCP/UDP: the kernel path's socket
                // (when opened) takes it, the workers never see it.
                let set = crate::dataplane::driver::af_packet::LocalSet {
                    mac: snap.port(index).map_or(a.caps().mac, |p| p.mac.0),
                    addrs: crate::dataplane::kernel::kernel_addrs(snap, index),
                    link_local: true,
                };
                if let Err(e) = a.steer_kernel(&set) {
                    eprintln!(
                        "lbd: port {}: kernel-path steering not updated: {e}",
                        a.caps().name
                    );
                }
            }
            #[cfg(feature = "dpdk")]
            Port::Dpdk(d) => steer_dpdk_flows(d, snap),
            _ => {}
        }
    }
}

/// Where the device takes flow rules, steer FULLNAT replies to the worker
/// owning their local port (`lport % workers`, for a power-of-two worker
/// count) with one rule per local address, protocol and worker, as DPVS's
/// sa_pool does; rebuilt whenever the set of local addresses may have
/// changed. A device that refuses them keeps RSS-aware local-port choice
/// and the software ring (reported once).
#[cfg(feature = "dpdk")]
fn steer_dpdk_flows(d: &crate::dataplane::driver::dpdk::DpdkDriver, snap: &Snapshot) {
    use crate::dataplane::driver::dpdk::flow::FlowSteering;
    use crate::steer::LportMatch;
    use std::sync::atomic::{AtomicBool, Ordering};
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let Some(parts) = LportMatch::owner_partition(snap.workers).filter(|_| snap.workers > 1) else {
        return;
    };
    let mut lips: Vec<std::net::IpAddr> = snap
        .services
        .iter()
        .flat_map(|s| s.laddrs.iter().copied())
        .collect();
    lips.sort();
    lips.dedup();
    if lips.is_empty() {
        let _ = d.remove_fullnat_rules();
        return;
    }
    match d.install_fullnat_rules(&lips, &parts) {
        Ok(FlowSteering::Installed { rules }) => eprintln!(
            "lbd: port {}: {rules} flow rules steer FULLNAT replies to their workers",
            d.caps().name
        ),
        Ok(FlowSteering::Rejected { reason }) => {
            if !REPORTED.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "lbd: port {}: flow rules refused ({reason}); FULLNAT replies use RSS-aware local ports and the software ring",
                    d.caps().name
                );
            }
        }
        Err(e) => eprintln!("lbd: port {}: flow rules: {e}", d.caps().name),
    }
}

/// Every worker's queues, one per port in port order, by kind of buffer.
pub enum WorkerQueues {
    /// No ports.
    None,
    /// Software ports.
    Soft(Vec<Vec<SoftQueue>>),
    /// DPDK ports.
    #[cfg(feature = "dpdk")]
    Dpdk(Vec<Vec<crate::dataplane::driver::dpdk::DpdkQueue>>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The opened ports of a data plane, in port order.
pub struct Ports {
    // Ports before the EAL: fields drop in order, and dropping the EAL last
    // cleans it up after the ports are closed.
    ports: Vec<Mutex<Port>>,
    names: Vec<String>,
    /// The kernel path's rings, given to the workers (`dataplane::kernel`).
    kernel: Option<Arc<crate::dataplane::kernel::KernelRings>>,
    _dpdk: DpdkEnv,
}

impl Ports {
    /// Opens every port of `setups` with one queue per worker (DPDK ports
    /// start the EAL with `eal_args` first) and returns the ports and each
    /// worker's queues.
    pub fn open(
        setups: &[PortSetup],
        workers: u16,
        eal_args: &[String],
    ) -> Result<(Ports, WorkerQueues), PortError> {
        let dpdk = if setups.iter().any(PortSetup::is_dpdk) {
            if let Some(soft) = setups.iter().find(|s| !s.is_dpdk()) {
                return Err(PortError::Mixed(soft.name.clone()));
            }
            if !cfg!(feature = "dpdk") {
                let first = setups.iter().find(|s| s.is_dpdk()).map(|s| s.name.clone());
                return Err(PortError::NoDpdk(first.unwrap_or_default()));
            }
            DpdkEnv::init(eal_args)?
        } else {
            DpdkEnv::default()
        };
        let mut ports = Vec::new();
        let mut soft: Vec<Vec<SoftQueue>> = (0..workers).map(|_| Vec::new()).collect();
        #[cfg(feature = "dpdk")]
        let mut dpdk_queues: Vec<Vec<crate::dataplane::driver::dpdk::DpdkQueue>> =
            (0..workers).map(|_| Vec::new()).collect();
        for (i, setup) in setups.iter().enumerate() {
            let mut port = Port::open(i, setup, workers, &dpdk)?;
            let queues = port.take_queues().map_err(|source| PortError::TakeQueues {
                name: setup.name.clone(),
                source,
            })?;
            match queues {
                PortQueues::Soft(qs) => deal(&setup.name, qs, &mut soft, workers)?,
                #[cfg(feature = "dpdk")]
                PortQueues::Dpdk(qs) => deal(&setup.name, qs, &mut dpdk_queues, workers)?,
            }
            ports.push(Mutex::new(port));
        }
        let queues = if setups.is_empty() {
            WorkerQueues::None
        } else if setups.iter().any(PortSetup::is_dpdk) {
            #[cfg(feature = "dpdk")]
            {
                WorkerQueues::Dpdk(dpdk_queues)
            }
            #[cfg(not(feature = "dpdk"))]
            {
                WorkerQueues::None
            }
        } else {
            WorkerQueues::Soft(soft)
        };
        Ok((
            Ports {
                ports,
                names: setups.iter().map(|s| s.name.clone()).collect(),
                kernel: None,
                _dpdk: dpdk,
            },
            queues,
        ))
    }

    /// Give the workers started on these ports the kernel path's rings.
    pub fn set_kernel(&mut self, rings: Arc<crate::dataplane::kernel::KernelRings>) {
        self.kernel = Some(rings);
    }

    /// The kernel path's rings, if any.
    pub fn kernel(&self) -> Option<Arc<crate::dataplane::kernel::KernelRings>> {
        self.kernel.clone()
    }

    /// Number of ports.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Whether there are no ports.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Each port's MAC, in port order.
    pub fn macs(&self) -> Vec<[u8; 6]> {
        self.ports.iter().map(|p| lock(p).caps().mac).collect()
    }

    /// Each port's RSS configuration where workers should choose FULLNAT
    /// local ports by it (see [`Port::rss`]), in port order.
    pub fn rss(&self) -> Vec<Option<Arc<RssConfig>>> {
        self.ports.iter().map(|p| lock(p).rss()).collect()
    }

    /// Each port's name and device counters, in port order.
    pub fn stats(&self) -> Vec<(String, PortStats)> {
        self.ports
            .iter()
            .zip(&self.names)
            .map(|(p, name)| (name.clone(), lock(p).stats()))
            .collect()
    }

    /// Keeps device-side steering in step with `snap` (called by the
    /// runtime once every worker runs `snap`'s generation).
    pub fn apply_steering(&self, snap: &Snapshot) {
        for (i, p) in self.ports.iter().enumerate() {
            lock(p).apply_steering(i as u16, snap);
        }
    }

    /// Open port `index`'s own kernel-path socket (AF_PACKET only; see
    /// `driver::af_packet::local`): from the next snapshot on, the
    /// director's own TCP/UDP on that port bypasses the workers.
    pub fn open_kernel_socket(
        &self,
        index: usize,
    ) -> Result<Arc<crate::dataplane::driver::af_packet::KernelSocket>, DriverError> {
        let port = self
            .ports
            .get(index)
            .ok_or_else(|| DriverError::Config(format!("no port {index}")))?;
        match &mut *lock(port) {
            Port::AfPacket(a) => a.open_kernel_socket(),
            _ => Err(DriverError::Config(format!(
                "port {}: kernel-path steering needs the af_packet driver",
                self.names.get(index).map_or("?", String::as_str)
            ))),
        }
    }

    /// Starts one worker per entry of `queues` on `cores`, running `snap`,
    /// with device steering applied; the ports stay open as long as the
    /// returned handle lives.
    pub fn start(
        self,
        queues: WorkerQueues,
        base: WorkerConfig,
        cores: &[Option<usize>],
        snap: Arc<Snapshot>,
    ) -> Result<Arc<dyn DataplaneHandle>, PortError> {
        let ports = Arc::new(self);
        Ok(match queues {
            WorkerQueues::None => Arc::new(crate::dataplane::runtime::NoDataplane::default()),
            WorkerQueues::Soft(qs) => Arc::new(Runtime::start_with_ports(
                qs,
                base,
                cores,
                snap,
                |_| {},
                ports,
            )?),
            #[cfg(feature = "dpdk")]
            WorkerQueues::Dpdk(qs) => Arc::new(Runtime::start_with_ports(
                qs,
                base,
                cores,
                snap,
                dpdk_worker_start,
                ports,
            )?),
        })
    }
}

#[cfg(feature = "dpdk")]
fn dpdk_worker_start(_worker: u16) {
    if let Err(e) = crate::dataplane::driver::dpdk::register_worker_thread() {
        eprintln!("lbd: worker cannot register with DPDK: {e}");
    }
}

/// Per port, the queues of each worker → per worker, its queue of each
/// port (in port order).
fn deal<Q>(name: &str, queues: Vec<Q>, out: &mut [Vec<Q>], workers: u16) -> Result<(), PortError> {
    if queues.len() != usize::from(workers) {
        return Err(PortError::Queues {
            name: name.to_string(),
            got: queues.len(),
            workers,
        });
    }
    for (w, q) in queues.into_iter().enumerate() {
        out[w].push(q);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(name: &str) -> PortSetup {
        PortSetup {
            name: name.into(),
            mtu: None,
            device: Device::Mem {
                frames: None,
                mac: [2, 0, 0, 0, 0, 1],
            },
        }
    }

    #[test]
    fn every_worker_gets_one_queue_of_every_port_in_port_order() {
        let (ports, queues) = Ports::open(&[mem("a"), mem("b")], 3, &[]).expect("open");
        assert_eq!(ports.len(), 2);
        assert_eq!(ports.macs(), vec![[2, 0, 0, 0, 0, 1]; 2]);
        let WorkerQueues::Soft(qs) = queues else {
            panic!("software ports give software queues")
        };
        assert_eq!(qs.len(), 3);
        assert!(qs.iter().all(|w| w.len() == 2));
        let stats = ports.stats();
        assert_eq!(
            stats.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn no_ports_give_no_queues() {
        let (ports, queues) = Ports::open(&[], 2, &[]).expect("open");
        assert!(ports.is_empty());
        assert!(matches!(queues, WorkerQueues::None));
    }

    #[test]
    fn dpdk_ports_do_not_mix_with_software_ports() {
        let dpdk = PortSetup {
            name: "d".into(),
            mtu: None,
            device: Device::Dpdk {
                device: "net_null0".into(),
            },
        };
        let err = Ports::open(&[mem("a"), dpdk], 1, &[])
            .err()
            .expect("mixed ports are refused");
        assert!(matches!(err, PortError::Mixed(ref n) if n == "a"), "{err}");
    }

    #[test]
    fn a_missing_capture_names_the_port() {
        let setup = PortSetup {
            name: "ext".into(),
            mtu: None,
            device: Device::Mem {
                frames: Some("/nonexistent/rvs.pcap".into()),
                mac: [2, 0, 0, 0, 0, 1],
            },
        };
        let err = Ports::open(&[mem("a"), setup], 1, &[])
            .err()
            .expect("missing file");
        assert!(
            err.to_string().starts_with("ports[1] (ext): cannot open"),
            "{err}"
        );
    }
}
