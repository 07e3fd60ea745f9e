//! A DPDK ethdev port as an rvs [`Driver`], and its per-worker
//! [`DpdkQueue`]s.
//!
//! [`DpdkDriver::open`] configures one RX and one TX queue per worker, RSS
//! with the symmetric Toeplitz key when the device hashes (and more than
//! one queue), the MTU, promiscuous and all-multicast mode, starts the
//! port and reads its MAC and link. Queues are handed to workers with
//! [`Driver::take_queues`]; each does `rx_burst`/`tx_burst` through a
//! preallocated pointer array, so the hot path neither allocates nor locks.
//!
//! Rules: a port is opened at most once per process; it is stopped and
//! closed (`rte_eth_dev_stop`/`rte_eth_dev_close`) when the driver and all
//! its queues are gone. Queue `i` is worker `i`'s; DPDK queues are not
//! thread-safe, so each queue is used by one thread at a time (it is
//! `Send`, not `Sync`).

use std::ffi::{c_int, CStr, CString};
use std::fmt;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::eal::{dpdk_error, Eal, EalShared, MempoolPtr};
use super::flow::InstalledFlow;
use super::mbuf::Mbuf;
use super::sys;
use crate::dataplane::driver::{
    Burst, Driver, DriverError, PortCaps, PortQueue, PortStats, Steering, BURST_SIZE,
};
use crate::steer::rss::{symmetric_rss_key, RssConfig};
use crate::sys::prefetch_line;

/// RX descriptors asked for per queue (the device may adjust).
pub const RX_DESCRIPTORS: u16 = 1024;
/// TX descriptors asked for per queue (the device may adjust).
pub const TX_DESCRIPTORS: u16 = 1024;
/// Bytes of Ethernet framing around the IP MTU a buffer must hold
/// (header, one VLAN tag, CRC).
const L2_OVERHEAD: u32 = 14 + 4 + 4;

/// A DPDK ethdev port id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

/// A queue index on a port (queue `i` belongs to worker `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u16);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue {}", self.0)
    }
}

/// Link state as the device reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Whether the link is up.
    pub up: bool,
    /// Speed in Mb/s (0 when unknown).
    pub speed_mbps: u32,
    /// Whether it runs full duplex.
    pub full_duplex: bool,
}

/// What the device told about itself at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The PMD's name (`net_null`, `net_pcap`, `net_ice`, …).
    pub driver_name: String,
    /// Most RX queues it has.
    pub max_rx_queues: u16,
    /// Most TX queues it has.
    pub max_tx_queues: u16,
    /// Flow types it can hash for RSS (`RTE_ETH_RSS_*` bits; 0: no RSS).
    pub flow_type_rss_offloads: u64,
    /// Its RSS key length in bytes (0 if it does not say).
    pub hash_key_size: u8,
    /// Its redirection-table size (0 if none).
    pub reta_size: u16,
    /// Whether it offers IPv4 + TCP + UDP checksum offload on transmit.
    pub tx_csum_offered: bool,
    /// RX/TX descriptors per queue in force.
    pub rx_descriptors: u16,
    /// TX descriptors per queue in force.
    pub tx_descriptors: u16,
}

/// The open port, shared by the driver and its queues; closes the port
/// when the last of them goes.
pub(crate) struct PortShared {
    pub(crate) port: PortId,
    pub(crate) flows: Mutex<Vec<InstalledFlow>>,
    /// Set once `rte_eth_dev_configure` succeeded: only then is the port
    /// stopped and closed on drop (a refused open leaves it usable).
    configured: AtomicBool,
    eal: Arc<EalShared>,
}

impl Drop for PortShared {
    fn drop(&mut self) {
        if let Ok(flows) = self.flows.get_mut() {
            for f in flows.drain(..) {
                // Best effort: the close below removes rules anyway.
                let _ = f.destroy(self.port);
            }
        }
        if self.configured.load(Ordering::Acquire) {
            // SAFETY: the port was configured by `open`; no queue is in use
            // any more (every queue holds this Arc). Closing releases a
            // virtual device: it cannot be opened again in this process
            // unless probed anew (`Eal::attach_vdev`).
            unsafe {
                sys::rte_eth_dev_stop(self.port.0);
                sys::rte_eth_dev_close(self.port.0);
            }
        }
        self.eal.release_port(self.port.0);
    }
}

/// A DPDK port opened for rvs.
pub struct DpdkDriver {
    shared: Arc<PortShared>,
    caps: PortCaps,
    info: DeviceInfo,
    rss: Option<RssConfig>,
    pool: MempoolPtr,
    socket: c_int,
    queues_taken: bool,
}

impl fmt::Debug for DpdkDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpdkDriver")
            .field("port", &self.shared.port)
            .field("caps", &self.caps)
            .field("info", &self.info)
            .field("rss", &self.rss)
            .field("socket", &self.socket)
            .finish()
    }
}

impl DpdkDriver {
    /// Open a port by device name (`"net_null0"`, `"0000:03:00.0"`) or by
    /// decimal port id, with `queues` RX and TX queues (one per worker) and
    /// IP MTU `mtu` (device default, usually 1500, when `None`), and start
    /// it.
    pub fn open(
        eal: &Eal,
        name_or_port: &str,
        queues: u16,
        mtu: Option<u16>,
    ) -> Result<DpdkDriver, DriverError> {
        let port = resolve_port(name_or_port)?;
        if queues == 0 {
            return Err(DriverError::Config(format!(
                "dpdk: {name_or_port}: at least one queue is needed"
            )));
        }
        let shared_eal = Arc::clone(eal.shared());
        if !shared_eal.claim_port(port.0)? {
            return Err(DriverError::Config(format!(
                "dpdk: {name_or_port} ({port}) is already open"
            )));
        }
        // From here on the port is ours: PortShared releases the claim on
        // every exit path, and stops and closes the device once configured.
        let shared = Arc::new(PortShared {
            port,
            flows: Mutex::new(Vec::new()),
            configured: AtomicBool::new(false),
            eal: shared_eal,
        });
        Self::configure(eal, shared, name_or_port, queues, mtu)
    }

    fn configure(
        eal: &Eal,
        shared: Arc<PortShared>,
        name: &str,
        queues: u16,
        mtu: Option<u16>,
    ) -> Result<DpdkDriver, DriverError> {
        let port = shared.port;
        let p = port.0;
        let mut dev_info = sys::rte_eth_dev_info::default();
        // SAFETY: `p` is a valid port id; dev_info is a valid out-pointer.
        let ret = unsafe { sys::rte_eth_dev_info_get(p, &mut dev_info) };
        if ret != 0 {
            return Err(dpdk_error(format!("rte_eth_dev_info_get({name})"), ret));
        }
        let driver_name = if dev_info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name is a NUL-terminated static string of the PMD.
            unsafe { CStr::from_ptr(dev_info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        if queues > dev_info.max_rx_queues || queues > dev_info.max_tx_queues {
            return Err(DriverError::Config(format!(
                "dpdk: {name} ({driver_name}) has at most {} RX / {} TX queues, {queues} asked",
                dev_info.max_rx_queues, dev_info.max_tx_queues
            )));
        }
        let pool_cfg = eal.pool_config();
        if let Some(m) = mtu {
            if m < dev_info.min_mtu || m > dev_info.max_mtu {
                return Err(DriverError::Config(format!(
                    "dpdk: {name}: MTU {m} outside the device's {}..={}",
                    dev_info.min_mtu, dev_info.max_mtu
                )));
            }
            let need = sys::RTE_PKTMBUF_HEADROOM + m as u32 + L2_OVERHEAD;
            if need > pool_cfg.data_room as u32 {
                return Err(DriverError::Config(format!(
                    "dpdk: {name}: MTU {m} needs {need}-byte buffers, the pools have {} \
                     (raise PoolConfig::data_room)",
                    pool_cfg.data_room
                )));
            }
        }

        // SAFETY: plain function of the port id.
        let socket = unsafe { sys::rte_eth_dev_socket_id(p) };
        let pool = shared.eal.pool_for_socket(socket)?;
        let socket = if socket < 0 { 0 } else { socket };

        // RSS: whenever the device hashes IP/TCP/UDP (for the mbuf hash even
        // with one queue); steering by it only with several queues.
        // SAFETY: the shim returns constants.
        let wanted_hf = unsafe { sys::rvs_eth_rss_ip_tcp_udp() };
        let rss_hf = wanted_hf & dev_info.flow_type_rss_offloads;
        let key_len = match dev_info.hash_key_size {
            0 => 40,
            n => n as usize,
        };
        let mut key = symmetric_rss_key(key_len);
        let mut conf = sys::rte_eth_conf::default();
        if rss_hf != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
            conf.rx_adv_conf.rss_conf.rss_key_len = key_len as u8;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            // SAFETY: the shim returns a constant.
            let rss_hash_offload = unsafe { sys::rvs_eth_rx_offload_rss_hash() };
            if dev_info.rx_offload_capa & rss_hash_offload != 0 {
                conf.rxmode.offloads |= rss_hash_offload;
            }
        }
        if let Some(m) = mtu {
            conf.rxmode.mtu = m as u32;
        }
        // SAFETY: the shim returns a constant.
        let csum = unsafe { sys::rvs_eth_tx_offload_l3l4_csum() };
        let tx_csum_offered = dev_info.tx_offload_capa & csum == csum;

        // SAFETY: valid port; `conf` (and the key it points to) live across
        // the call, which copies them.
        let ret = unsafe { sys::rte_eth_dev_configure(p, queues, queues, &conf) };
        if ret != 0 {
            return Err(dpdk_error(
                format!("rte_eth_dev_configure({name}, {queues} queues)"),
                ret,
            ));
        }
        shared.configured.store(true, Ordering::Release);
        let (mut nb_rxd, mut nb_txd) = (RX_DESCRIPTORS, TX_DESCRIPTORS);
        // SAFETY: valid port and out-pointers.
        let ret = unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(p, &mut nb_rxd, &mut nb_txd) };
        if ret != 0 {
            return Err(dpdk_error(
                format!("rte_eth_dev_adjust_nb_rx_tx_desc({name})"),
                ret,
            ));
        }
        for q in 0..queues {
            // SAFETY: valid port, queue below the configured count, default
            // rxconf (NULL), a live pool.
            let ret = unsafe {
                sys::rte_eth_rx_queue_setup(
                    p,
                    q,
                    nb_rxd,
                    socket as u32,
                    ptr::null(),
                    pool.0.as_ptr(),
                )
            };
            if ret != 0 {
                return Err(dpdk_error(
                    format!("rte_eth_rx_queue_setup({name}, {q})"),
                    ret,
                ));
            }
            // SAFETY: as above, default txconf.
            let ret =
                unsafe { sys::rte_eth_tx_queue_setup(p, q, nb_txd, socket as u32, ptr::null()) };
            if ret != 0 {
                return Err(dpdk_error(
                    format!("rte_eth_tx_queue_setup({name}, {q})"),
                    ret,
                ));
            }
        }
        // Promiscuous: a director receives for VIPs whatever MAC they were
        // sent to. Not every PMD has it (ENOTSUP is fine).
        // SAFETY: valid port.
        let ret = unsafe { sys::rte_eth_promiscuous_enable(p) };
        if ret != 0 && ret != -libc::ENOTSUP {
            return Err(dpdk_error(
                format!("rte_eth_promiscuous_enable({name})"),
                ret,
            ));
        }
        // All-multicast: VRRP adverts (224.0.0.18 / ff02::12, issue #13)
        // and IPv6 neighbour discovery arrive on multicast MACs; a PMD
        // without promiscuous mode (or a VF whose promiscuous mode the PF
        // filters) may still deliver them this way. ENOTSUP is fine.
        // SAFETY: valid port.
        let ret = unsafe { sys::rte_eth_allmulticast_enable(p) };
        if ret != 0 && ret != -libc::ENOTSUP {
            return Err(dpdk_error(
                format!("rte_eth_allmulticast_enable({name})"),
                ret,
            ));
        }
        // SAFETY: configured port with all queues set up.
        let ret = unsafe { sys::rte_eth_dev_start(p) };
        if ret != 0 {
            return Err(dpdk_error(format!("rte_eth_dev_start({name})"), ret));
        }

        let rss = if rss_hf != 0 {
            Some(program_reta(p, queues, dev_info.reta_size, key, rss_hf))
        } else {
            None
        };

        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { sys::rte_eth_macaddr_get(p, &mut mac) };
        if ret != 0 {
            return Err(dpdk_error(format!("rte_eth_macaddr_get({name})"), ret));
        }
        let mut cur_mtu = 0u16;
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { sys::rte_eth_dev_get_mtu(p, &mut cur_mtu) };
        if ret != 0 {
            cur_mtu = mtu.unwrap_or(sys::RTE_ETHER_MTU as u16);
        }
        let steering = if queues > 1 && rss.is_some() {
            Steering::Rss
        } else {
            Steering::None
        };
        let caps = PortCaps {
            name: name.to_owned(),
            mac: mac.addr_bytes,
            mtu: cur_mtu,
            queues,
            // The device may offer it, but PacketBuf has no way to ask for
            // it per packet (mbuf ol_flags, l2_len/l3_len), so the worker
            // must compute checksums itself: see DeviceInfo::tx_csum_offered.
            tx_csum_offload: false,
            steering,
        };
        let info = DeviceInfo {
            driver_name,
            max_rx_queues: dev_info.max_rx_queues,
            max_tx_queues: dev_info.max_tx_queues,
            flow_type_rss_offloads: dev_info.flow_type_rss_offloads,
            hash_key_size: dev_info.hash_key_size,
            reta_size: dev_info.reta_size,
            tx_csum_offered,
            rx_descriptors: nb_rxd,
            tx_descriptors: nb_txd,
        };
        Ok(DpdkDriver {
            shared,
            caps,
            info,
            rss,
            pool,
            socket,
            queues_taken: false,
        })
    }

    /// The DPDK port id.
    pub fn port_id(&self) -> PortId {
        self.shared.port
    }

    /// The NUMA socket of the port (and of its buffer pool).
    pub fn socket_id(&self) -> i32 {
        self.socket
    }

    /// What the device told about itself.
    pub fn device_info(&self) -> &DeviceInfo {
        &self.info
    }

    /// RSS as configured (key, hashed fields, redirection table), if the
    /// device hashes.
    pub fn rss(&self) -> Option<&RssConfig> {
        self.rss.as_ref()
    }

    /// Link state now (`rte_eth_link_get_nowait`).
    pub fn link(&self) -> Result<LinkStatus, DriverError> {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { sys::rte_eth_link_get_nowait(self.shared.port.0, &mut link) };
        if ret != 0 {
            return Err(dpdk_error(
                format!("rte_eth_link_get_nowait({})", self.caps.name),
                ret,
            ));
        }
        Ok(LinkStatus {
            up: link.link_status() as u32 == sys::RTE_ETH_LINK_UP,
            speed_mbps: link.link_speed,
            full_duplex: link.link_duplex() as u32 == sys::RTE_ETH_LINK_FULL_DUPLEX,
        })
    }

    /// Zero the device counters.
    pub fn reset_stats(&self) -> Result<(), DriverError> {
        // SAFETY: valid port.
        let ret = unsafe { sys::rte_eth_stats_reset(self.shared.port.0) };
        if ret != 0 {
            return Err(dpdk_error(
                format!("rte_eth_stats_reset({})", self.caps.name),
                ret,
            ));
        }
        Ok(())
    }

    /// A buffer from this port's pool (for the control thread; workers use
    /// [`PortQueue::alloc`]).
    pub fn alloc(&self) -> Option<Mbuf> {
        alloc_from(self.pool)
    }

    pub(crate) fn shared(&self) -> &Arc<PortShared> {
        &self.shared
    }
}

impl Driver for DpdkDriver {
    type Queue = DpdkQueue;

    fn caps(&self) -> &PortCaps {
        &self.caps
    }

    fn take_queues(&mut self) -> Result<Vec<DpdkQueue>, DriverError> {
        if self.queues_taken {
            return Err(DriverError::QueuesTaken);
        }
        self.queues_taken = true;
        Ok((0..self.caps.queues)
            .map(|q| DpdkQueue {
                port: self.shared.port,
                queue: QueueId(q),
                pool: self.pool,
                pkts: [ptr::null_mut(); BURST_SIZE],
                rx_multiseg_dropped: 0,
                _shared: Arc::clone(&self.shared),
            })
            .collect())
    }

    fn stats(&self) -> PortStats {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { sys::rte_eth_stats_get(self.shared.port.0, &mut s) };
        if ret != 0 {
            return PortStats::default();
        }
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
            link_gone: false,
        }
    }
}

/// One worker's RX/TX queue pair on a DPDK port.
pub struct DpdkQueue {
    port: PortId,
    queue: QueueId,
    pool: MempoolPtr,
    /// Scratch array for rx_burst (no allocation per burst).
    pkts: [*mut sys::rte_mbuf; BURST_SIZE],
    rx_multiseg_dropped: u64,
    _shared: Arc<PortShared>,
}

// SAFETY: the queue is owned by one worker at a time (not Sync); DPDK
// queues may be driven from any thread as long as only one does at once;
// `pkts` holds only pointers in transit during one call; the pool is
// thread-safe (see MempoolPtr).
unsafe impl Send for DpdkQueue {}

impl fmt::Debug for DpdkQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpdkQueue")
            .field("port", &self.port)
            .field("queue", &self.queue)
            .field("rx_multiseg_dropped", &self.rx_multiseg_dropped)
            .finish()
    }
}

impl DpdkQueue {
    /// The port.
    pub fn port_id(&self) -> PortId {
        self.port
    }

    /// The queue index (= worker index).
    pub fn queue_id(&self) -> QueueId {
        self.queue
    }

    /// Multi-segment packets received and freed (rvs handles only
    /// single-segment buffers).
    pub fn rx_multiseg_dropped(&self) -> u64 {
        self.rx_multiseg_dropped
    }
}

impl PortQueue for DpdkQueue {
    type Buf = Mbuf;

    #[inline]
    fn rx_burst(&mut self, burst: &mut Burst<Mbuf>) -> usize {
        let room = burst.room().min(BURST_SIZE);
        if room == 0 {
            return 0;
        }
        // SAFETY: the port is started and this queue is only driven by us;
        // `pkts` has room for `room` pointers.
        let n = unsafe {
            sys::rvs_eth_rx_burst(
                self.port.0,
                self.queue.0,
                self.pkts.as_mut_ptr(),
                room as u16,
            )
        } as usize;
        let mut taken = 0;
        for &raw in &self.pkts[..n.min(room)] {
            // SAFETY: rx_burst returned `n` valid mbufs that are now ours.
            let Some(m) = (unsafe { Mbuf::from_raw(raw) }) else {
                continue;
            };
            // The worker parses the whole burst before it looks anything
            // up: start loading each packet's first data line now (from a
            // NIC it arrives by DMA, not in this core's cache).
            prefetch_line(m.data_ptr());
            // SAFETY: `raw` is a valid mbuf (just received).
            if unsafe { (*raw).nb_segs } != 1 {
                self.rx_multiseg_dropped += 1;
                drop(m); // rte_pktmbuf_free frees every segment
                continue;
            }
            if burst.push(m).is_ok() {
                taken += 1;
            }
        }
        taken
    }

    #[inline]
    fn tx_burst(&mut self, burst: &mut Burst<Mbuf>) -> usize {
        let n = burst.len().min(BURST_SIZE);
        if n == 0 {
            return 0;
        }
        // An `Mbuf` is a `#[repr(transparent)]` `NonNull<rte_mbuf>`, so the
        // burst's buffers already are the `rte_mbuf *` array tx_burst takes:
        // no per-packet copy.
        let pkts = burst
            .as_mut_slice()
            .as_mut_ptr()
            .cast::<*mut sys::rte_mbuf>();
        // SAFETY: the port is started and this queue is only driven by us;
        // `pkts` points at `n` valid mbufs owned by `burst` (same layout,
        // see above), which the PMD reads and does not write.
        let sent =
            unsafe { sys::rvs_eth_tx_burst(self.port.0, self.queue.0, pkts, n as u16) } as usize;
        // The device now owns the first `sent` mbufs: forget them without
        // freeing; the rest stay in the burst, in order.
        for m in burst.drain_front(sent) {
            std::mem::forget(m);
        }
        sent
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        alloc_from(self.pool)
    }
}

#[inline]
fn alloc_from(pool: MempoolPtr) -> Option<Mbuf> {
    // SAFETY: the pool is alive (held via PortShared → EalShared); a fresh
    // mbuf from rte_pktmbuf_alloc is single-segment, reset, and ours.
    unsafe { Mbuf::from_raw(sys::rvs_pktmbuf_alloc(pool.0.as_ptr())) }
}

/// The port id for a device name, or a decimal port id.
fn resolve_port(name_or_port: &str) -> Result<PortId, DriverError> {
    let c = CString::new(name_or_port).map_err(|_| {
        DriverError::Config(format!("dpdk: port name {name_or_port:?} contains NUL"))
    })?;
    let mut id = 0u16;
    // SAFETY: `c` is NUL-terminated; `id` a valid out-pointer.
    let ret = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    if ret == 0 {
        return Ok(PortId(id));
    }
    if let Ok(n) = name_or_port.parse::<u16>() {
        let mut buf = [0 as std::ffi::c_char; 64];
        // SAFETY: `buf` has room for a device name (RTE_ETH_NAME_MAX_LEN 64).
        if unsafe { sys::rte_eth_dev_get_name_by_port(n, buf.as_mut_ptr()) } == 0 {
            return Ok(PortId(n));
        }
    }
    let hint = match super::eal::default_pmd_dir() {
        Some(d) => format!("; is its PMD loaded? (plugins: {d}, or pass -d <dir> / --vdev=...)"),
        None => "; is its PMD loaded? (pass -d <plugin dir> / --vdev=...)".to_owned(),
    };
    Err(DriverError::Config(format!(
        "dpdk: no port named {name_or_port:?}{hint}"
    )))
}

/// Spread the redirection table over the queues (`i % queues`) and read it
/// back; fall back to assuming that default when the PMD cannot do either.
fn program_reta(port: u16, queues: u16, reta_size: u16, key: Vec<u8>, rss_hf: u64) -> RssConfig {
    // Some PMDs ignore the key given at configure: set it again if the
    // device reports another, and keep the key it really uses.
    let mut key = key;
    if let Some(dev_key) = read_rss_key(port, key.len()) {
        if dev_key != key {
            let mut rss_conf = sys::rte_eth_rss_conf {
                rss_key: key.as_mut_ptr(),
                rss_key_len: key.len() as u8,
                rss_hf,
            };
            // SAFETY: valid port; rss_key points at rss_key_len bytes,
            // which DPDK copies.
            unsafe { sys::rte_eth_dev_rss_hash_update(port, &mut rss_conf) };
            if let Some(k) = read_rss_key(port, key.len()) {
                key = k;
            }
        }
    }
    let size = reta_size as usize;
    let group = sys::RTE_ETH_RETA_GROUP_SIZE as usize;
    let assumed: Vec<u16> = (0..size.max(1))
        .map(|i| (i % queues as usize) as u16)
        .collect();
    if size == 0 {
        return RssConfig {
            key,
            hash_functions: rss_hf,
            reta: assumed,
            reta_confirmed: false,
        };
    }
    let groups = size.div_ceil(group);
    let mut conf = vec![sys::rte_eth_rss_reta_entry64::default(); groups];
    for (g, entry) in conf.iter_mut().enumerate() {
        let in_group = (size - g * group).min(group);
        entry.mask = if in_group == 64 {
            u64::MAX
        } else {
            (1u64 << in_group) - 1
        };
        for i in 0..in_group {
            entry.reta[i] = assumed[g * group + i];
        }
    }
    // SAFETY: `conf` has reta_size / 64 groups as DPDK requires.
    let updated =
        unsafe { sys::rte_eth_dev_rss_reta_update(port, conf.as_mut_ptr(), reta_size) } == 0;
    for entry in conf.iter_mut() {
        entry.reta = [0; 64];
    }
    // SAFETY: as above; the masks select every entry.
    let queried =
        unsafe { sys::rte_eth_dev_rss_reta_query(port, conf.as_mut_ptr(), reta_size) } == 0;
    let reta = if queried {
        (0..size).map(|i| conf[i / group].reta[i % group]).collect()
    } else {
        assumed
    };
    RssConfig {
        key,
        hash_functions: rss_hf,
        reta,
        reta_confirmed: updated || queried,
    }
}

/// The RSS key the device reports, if it tells.
fn read_rss_key(port: u16, len: usize) -> Option<Vec<u8>> {
    let mut key = vec![0u8; len];
    let mut rss_conf = sys::rte_eth_rss_conf {
        rss_key: key.as_mut_ptr(),
        rss_key_len: len as u8,
        rss_hf: 0,
    };
    // SAFETY: valid port; rss_key points at rss_key_len writable bytes.
    let ok = unsafe { sys::rte_eth_dev_rss_hash_conf_get(port, &mut rss_conf) } == 0;
    (ok && rss_conf.rss_key_len as usize == len && key.iter().any(|&b| b != 0)).then_some(key)
}
