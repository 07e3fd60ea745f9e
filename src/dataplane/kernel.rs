//! The kernel path (DESIGN §9; DPVS's KNI): the director's own traffic
//! between a port and a kernel interface (`ports[].kernel_if`), a TAP that
//! `lbd` creates with the port's MAC, MTU and addresses. The director's
//! kernel lives there: ssh, BIRD, health-check sockets see it as their NIC.
//!
//! What it owns: the TAP devices (closed, so removed, when the kernel-path
//! thread ends), the frame slots, and the rings between the workers and the
//! kernel-path thread ([`KernelRings`]).
//!
//! Rules:
//! * Workers and the thread share only bounded lock-free rings
//!   (`crossbeam_queue::ArrayQueue`) of preallocated [`Frame`] slots, which
//!   two free rings recycle: *up* (worker → kernel) takes a slot from the up
//!   free ring, copies the frame into it and posts it to the worker's up
//!   ring; *down* (kernel → port) is the thread filling a slot from the TAP
//!   and posting it to one worker's down ring (chosen by the frame's
//!   addresses and ports, so one flow keeps its order); the worker copies it
//!   into one of its own port buffers, sends it through its normal transmit
//!   path and gives the slot back. No driver buffer crosses threads, so heap
//!   buffers and DPDK mbufs behave alike; the worker never allocates, locks
//!   or makes a system call for this. No free slot or a full ring: the frame
//!   is dropped and counted (`kernel_drop`), so a flood to the director's
//!   own address costs the workers one copy per frame at most and never
//!   holds up forwarding. Up and down have separate slot pools: a flood in
//!   one direction cannot starve the other.
//! * `ports[].kernel_if_pps` bounds what each port hands up: every worker
//!   keeps a token bucket per port ([`UpLimiter`], its share of the rate,
//!   50 ms of burst) on its own clock; the excess is dropped and counted
//!   as `kernel_drop` before any copy, so a flood to the DIP costs the
//!   director's kernel at most that rate.
//! * Counters (per core, `CoreCounters`): `to_kernel` and `kernel_drop`
//!   written by the worker, `from_kernel` by the worker, and
//!   `kernel_drop_path` (a worker's down ring full, a TAP write refused)
//!   and `to_kernel_path` written only by the kernel-path thread;
//!   `lbctl` shows `to_kernel` + `to_kernel_path` as `to_kernel` and
//!   `kernel_drop` + `kernel_drop_path` as `kernel_drop`.
//! * AF_PACKET ports (`ports[].kernel_if_steer`, default on): the
//!   director's own TCP/UDP never reaches a worker. A socket of the
//!   port's driver outside the fanout group takes it
//!   (`driver::af_packet::local`, whose socket filters also keep it off
//!   every worker socket); this thread reads it and writes it to the
//!   port's TAP, under the port's whole `kernel_if_pps`, counting on
//!   worker 0's `to_kernel_path` / `kernel_drop_path` (the socket's own
//!   overflow, read every 100 ms, included). [`kernel_addrs`] is the one
//!   place that says which addresses those are.
//! * The thread blocks in `poll(2)` on the TAPs for at most
//!   [`IDLE_WAIT_MS`] when a pass found nothing, so up frames wait at most
//!   that long; it stops within that time of [`KernelThread::stop`].
//!
//! What goes up, per case (decided in the worker's local-traffic stage, for
//! ports that have a kernel interface only; on steered AF_PACKET ports
//! the first case never reaches a worker unless it is a fragment):
//! * TCP/UDP to one of the port's own addresses (the DIP) or to an IPv6
//!   link-local address, unless it belongs to a virtual service or is a
//!   FULLNAT local address (those stay with the dataplane) — ssh, BGP, the
//!   replies to health checks.
//! * ICMP echo requests to the port's own addresses: the kernel answers them
//!   (its rate limits and firewall apply, and a ping of the DIP proves the
//!   path); echo requests to VIPs `lbd` keeps answering. Echo replies and
//!   other ICMP to the port's addresses go up. ICMP errors that quote a
//!   connection of the dataplane stay with it (they are relayed to that
//!   connection); errors to the port's addresses that quote none answer
//!   the kernel's own sockets (port unreachable, fragmentation needed,
//!   packet too big) and go up, so its sockets see ECONNREFUSED and learn
//!   the path MTU. With several workers the worker owning the quoted flow
//!   decides (it holds the connection): the receiving worker hands the
//!   error over by the owner function first (`steer`).
//! * Broadcast and multicast frames (VRRP, OSPF, IPv6 MLD/RA) and frames of
//!   protocols the dataplane does not handle (other ethertypes, IP protocols
//!   other than TCP/UDP/ICMP) that are for the port's MAC.
//! * ARP: replies go to both (the kernel must resolve neighbours for its own
//!   sockets, `lbd` learns them too); requests stay with `lbd`, which answers
//!   for VIPs, local addresses and the DIP itself (with the same MAC the
//!   kernel has), so the kernel never answers for a VIP. IPv6 neighbour
//!   solicitations and advertisements go to both (`lbd` answers for its
//!   addresses, the kernel for its link-local one and learns).
//!
//! Everything the kernel writes to the TAP goes down, unchanged.
//!
//! With `af_packet` ports the kernel also receives the port's frames on
//! the physical interface, and (weak host model) would answer for the DIP
//! there too. [`IngressGuard`] drops them for the kernel after AF_PACKET
//! took them: one nftables netdev table per interface (`rvs_kp_IFNAME`, an
//! ingress chain with `policy drop`), installed with the kernel interfaces
//! (`nft -f -`, replacing a stale one left by a killed `lbd`) and deleted
//! when the kernel-path thread ends; `ports[].kernel_if_guard: false`
//! leaves it to the operator.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::dataplane::counters::{bump, CoreCounters};
use crate::dataplane::driver::af_packet::{KernelSocket, RecvBatch};
use crate::dataplane::driver::tap;
use crate::dataplane::snapshot::Snapshot;

/// Frame slots for the up direction (all workers together).
pub const UP_SLOTS: usize = 1024;
/// Frame slots for the down direction.
pub const DOWN_SLOTS: usize = 1024;
/// Capacity of each worker's up and down ring, unless `workers.kernel_ring`
/// says otherwise.
pub const RING_SLOTS: usize = 512;
/// Longest wait of an idle kernel-path thread, in milliseconds.
pub const IDLE_WAIT_MS: i32 = 1;
/// Frames the thread moves per ring and per TAP in one pass.
const PASS_BUDGET: usize = 64;
/// Frames the thread reads from a port's own socket with one system call.
const STEER_BATCH: usize = 32;
/// Most kernel interfaces (ports with one).
pub const MAX_KERNEL_IFS: usize = 16;

/// Errors of the kernel path.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A bad interface name.
    #[error("bad interface name {0:?} (1..=15 printable characters, no '/', ':' or spaces)")]
    Name(String),
    /// Too many kernel interfaces.
    #[error("{0} kernel interfaces (at most {MAX_KERNEL_IFS})")]
    TooMany(usize),
    /// Creating or configuring the TAP failed.
    #[error(transparent)]
    Device(#[from] crate::dataplane::driver::DriverError),
    /// The thread could not be started.
    #[error("cannot start the kernel-path thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// `nft` is not installed.
    #[error("kernel_if on af_packet port {0}: nft not found (install nftables, or set kernel_if_guard: false and drop the port's frames for the kernel yourself)")]
    NftMissing(String),
    /// `nft` refused the ingress drop.
    #[error("kernel_if on af_packet port {ifname}: nft could not install the ingress drop: {msg}")]
    Nft {
        /// The physical interface.
        ifname: String,
        /// What `nft` said.
        msg: String,
    },
}

/// Check a Linux interface name as `kernel_if` takes it.
pub fn validate_ifname(name: &str) -> Result<(), KernelError> {
    tap::validate_ifname(name).map_err(|_| KernelError::Name(name.to_string()))
}

/// One preallocated frame slot.
pub struct Frame {
    port: u16,
    len: u16,
    buf: Box<[u8]>,
}

impl Frame {
    fn new(bytes: usize) -> Frame {
        Frame {
            port: 0,
            len: 0,
            buf: vec![0u8; bytes].into_boxed_slice(),
        }
    }

    /// The port it arrived on / leaves by.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The frame's bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// What the workers and the kernel-path thread share.
pub struct KernelRings {
    enabled: Vec<bool>,
    /// Per port: most frames per second each worker hands up (0 = no
    /// limit beyond the rings).
    rate: Vec<u64>,
    up: Vec<ArrayQueue<Frame>>,
    down: Vec<ArrayQueue<Frame>>,
    up_free: ArrayQueue<Frame>,
    down_free: ArrayQueue<Frame>,
}

impl KernelRings {
    /// Rings for `workers` workers over `ports` ports, of which those in
    /// `enabled` have a kernel interface, with slots of `slot_bytes`.
    pub fn new(workers: u16, ports: usize, enabled: &[u16], slot_bytes: usize) -> KernelRings {
        Self::with_rates(workers, ports, enabled, &[], slot_bytes, RING_SLOTS)
    }

    /// Like [`KernelRings::new`], with per-port rate limits `(port,
    /// frames per second over all workers)` and rings of `ring` frames.
    pub fn with_rates(
        workers: u16,
        ports: usize,
        enabled: &[u16],
        rates: &[(u16, u64)],
        slot_bytes: usize,
        ring: usize,
    ) -> KernelRings {
        let ring = ring.max(1);
        let n = workers.max(1) as usize;
        let up_free = ArrayQueue::new(UP_SLOTS);
        for _ in 0..UP_SLOTS {
            let _ = up_free.push(Frame::new(slot_bytes));
        }
        let down_free = ArrayQueue::new(DOWN_SLOTS);
        for _ in 0..DOWN_SLOTS {
            let _ = down_free.push(Frame::new(slot_bytes));
        }
        KernelRings {
            enabled: (0..ports).map(|p| enabled.contains(&(p as u16))).collect(),
            rate: (0..ports)
                .map(|p| {
                    rates
                        .iter()
                        .find(|r| r.0 as usize == p)
                        .map_or(0, |r| r.1.div_ceil(n as u64))
                })
                .collect(),
            up: (0..n).map(|_| ArrayQueue::new(ring)).collect(),
            down: (0..n).map(|_| ArrayQueue::new(ring)).collect(),
            up_free,
            down_free,
        }
    }

    /// Whether `port` has a kernel interface.
    #[inline]
    pub fn enabled(&self, port: u16) -> bool {
        self.enabled.get(port as usize).copied().unwrap_or(false)
    }

    /// Port `port`'s limit in frames per second per worker (0: none).
    #[inline]
    pub fn rate(&self, port: u16) -> u64 {
        self.rate.get(port as usize).copied().unwrap_or(0)
    }

    /// Worker `worker` hands a copy of `frame` (received on `port`) up;
    /// `false` when it was dropped (no free slot, ring full, too long).
    #[inline]
    pub fn push_up(&self, worker: u16, port: u16, frame: &[u8]) -> bool {
        let Some(ring) = self.up.get(worker as usize) else {
            return false;
        };
        // A full ring refuses the frame before any slot is taken or copied
        // (the flood case: as cheap as a `kernel_if_pps` drop).
        if ring.is_full() {
            return false;
        }
        let Some(mut f) = self.up_free.pop() else {
            return false;
        };
        if frame.len() > f.buf.len() {
            let _ = self.up_free.push(f);
            return false;
        }
        f.buf[..frame.len()].copy_from_slice(frame);
        f.len = frame.len() as u16;
        f.port = port;
        match ring.push(f) {
            Ok(()) => true,
            Err(f) => {
                let _ = self.up_free.push(f);
                false
            }
        }
    }

    /// The next frame worker `worker` handed up (the kernel-path thread's
    /// side; give the slot back with [`KernelRings::recycle_up`]).
    #[inline]
    pub fn pop_up(&self, worker: u16) -> Option<Frame> {
        self.up.get(worker as usize)?.pop()
    }

    /// Give an up slot back once its frame was written to the kernel.
    #[inline]
    pub fn recycle_up(&self, f: Frame) {
        let _ = self.up_free.push(f);
    }

    /// The next frame the kernel sent for worker `worker` to transmit.
    #[inline]
    pub fn pop_down(&self, worker: u16) -> Option<Frame> {
        self.down.get(worker as usize)?.pop()
    }

    /// Give a down slot back once its frame was copied.
    #[inline]
    pub fn recycle_down(&self, f: Frame) {
        let _ = self.down_free.push(f);
    }

    fn workers(&self) -> usize {
        self.up.len()
    }
}

/// Which worker transmits a frame the kernel sent: by its IPv4/IPv6
/// addresses (and TCP/UDP ports), so one flow keeps one worker and its
/// order; anything else worker 0.
pub fn down_worker(frame: &[u8], workers: usize) -> usize {
    if workers <= 1 || frame.len() < 14 {
        return 0;
    }
    let (addrs, proto, l4) = match [frame[12], frame[13]] {
        [0x08, 0x00] if frame.len() >= 34 => {
            let ihl = (frame[14] & 0x0f) as usize * 4;
            (&frame[26..34], frame[23], 14 + ihl)
        }
        [0x86, 0xdd] if frame.len() >= 54 => (&frame[22..54], frame[20], 54),
        _ => return 0,
    };
    // FNV-1a over the addresses, then the ports.
    let mut h: u32 = 0x811c_9dc5;
    let mut mix = |b: u8| {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    };
    addrs.iter().for_each(|b| mix(*b));
    if matches!(proto, 6 | 17) {
        if let Some(p) = frame.get(l4..l4 + 4) {
            p.iter().for_each(|b| mix(*b));
        }
    }
    h as usize % workers
}

/// A worker's token bucket for one port's up direction: at most `rate`
/// frames per second, bursts of `rate / 20 + 32` (50 ms worth). Plain
/// integers, the worker's clock; no system call.
#[derive(Debug, Clone, Copy)]
pub struct UpLimiter {
    /// Tokens, in frame-nanoseconds (one frame costs 1e9).
    tokens: u64,
    last_ns: u64,
}

impl Default for UpLimiter {
    /// A full bucket (it is capped at the first frame).
    fn default() -> Self {
        UpLimiter {
            tokens: u64::MAX,
            last_ns: 0,
        }
    }
}

impl UpLimiter {
    const FRAME: u64 = 1_000_000_000;

    /// Whether one more frame may go up at `now_ns` under `rate`.
    #[inline]
    pub fn admit(&mut self, rate: u64, now_ns: u64) -> bool {
        if rate == 0 {
            return true;
        }
        let cap = (rate / 20 + 32).saturating_mul(Self::FRAME);
        let elapsed = now_ns.saturating_sub(self.last_ns).min(Self::FRAME);
        self.last_ns = now_ns;
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(cap);
        if self.tokens >= Self::FRAME {
            self.tokens -= Self::FRAME;
            true
        } else {
            false
        }
    }
}

/// One kernel interface to create.
#[derive(Debug, Clone)]
pub struct KernelIfSpec {
    /// The port's index.
    pub port: u16,
    /// The interface name.
    pub name: String,
    /// The port's MAC.
    pub mac: [u8; 6],
    /// The port's IP MTU.
    pub mtu: u16,
    /// The port's addresses.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Most frames per second handed up (all workers; 0 = no limit).
    pub rate: u64,
    /// af_packet: the physical interface whose kernel stack
    /// [`IngressGuard`] keeps off the port's frames (`None`: no guard).
    pub guard_ifname: Option<String>,
}

/// An nftables netdev ingress chain dropping every frame of one physical
/// interface for the kernel (AF_PACKET sockets see them first); deleted
/// on drop.
#[derive(Debug)]
pub struct IngressGuard {
    table: String,
}

impl IngressGuard {
    /// The table guarding `ifname`.
    pub fn table_name(ifname: &str) -> String {
        let safe: String = ifname
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("rvs_kp_{safe}")
    }

    /// The `nft -f` script that (re)creates the guard of `ifname`.
    pub fn script(ifname: &str) -> String {
        let t = Self::table_name(ifname);
        format!(
            "table netdev {t}\ndelete table netdev {t}\ntable netdev {t} {{\n  chain ingress {{ type filter hook ingress device \"{ifname}\" priority 0; policy drop; }}\n}}\n"
        )
    }

    /// Install the guard of `ifname`.
    pub fn install(ifname: &str) -> Result<IngressGuard, KernelError> {
        validate_ifname(ifname)?;
        nft(ifname, &Self::script(ifname))?;
        Ok(IngressGuard {
            table: Self::table_name(ifname),
        })
    }
}

impl Drop for IngressGuard {
    fn drop(&mut self) {
        let cmd = format!("delete table netdev {}\n", self.table);
        if let Err(e) = nft(&self.table, &cmd) {
            eprintln!("lbd: kernel path: {e}");
        }
    }
}

/// Run `nft -f -` with `script`.
fn nft(ifname: &str, script: &str) -> Result<(), KernelError> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let err = |msg: String| KernelError::Nft {
        ifname: ifname.to_string(),
        msg,
    };
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KernelError::NftMissing(ifname.to_string()),
            _ => err(e.to_string()),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// The addresses of `port` whose TCP/UDP the kernel path takes without a
/// worker (AF_PACKET steering, `driver::af_packet::local`): the port's
/// own addresses that are neither the VIP of a service nor a FULLNAT local
/// address (those stay with the dataplane, as in the workers'
/// `kernel_verdict`), sorted.
pub fn kernel_addrs(snap: &Snapshot, port: u16) -> Vec<IpAddr> {
    let Some(pc) = snap.port(port) else {
        return Vec::new();
    };
    let mut v: Vec<IpAddr> = pc
        .addrs
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| !snap.is_laddr(a) && !snap.services.iter().any(|s| s.vip == *a))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The kernel interfaces, created and not yet served.
pub struct KernelPath {
    rings: Arc<KernelRings>,
    taps: Vec<(u16, OwnedFd, String)>,
    /// Removed when the thread ends, after the TAPs.
    guards: Vec<IngressGuard>,
    /// AF_PACKET ports' own kernel-path sockets (port, socket): the
    /// director's TCP/UDP read here, never by a worker.
    steer: Vec<(u16, Arc<KernelSocket>)>,
    /// Per port with a kernel interface: `kernel_if_pps` (0: none).
    rates: Vec<(u16, u64)>,
    /// Longest frame the path carries (the slots' size).
    slot_bytes: usize,
}

impl KernelPath {
    /// Create every interface of `specs` (up, addressed) and the rings
    /// (of `ring` frames each) for `workers` workers over `ports` ports.
    /// `None` when `specs` is empty.
    pub fn open(
        specs: &[KernelIfSpec],
        workers: u16,
        ports: usize,
        ring: usize,
    ) -> Result<Option<KernelPath>, KernelError> {
        if specs.is_empty() {
            return Ok(None);
        }
        if specs.len() > MAX_KERNEL_IFS {
            return Err(KernelError::TooMany(specs.len()));
        }
        let mut taps = Vec::new();
        for s in specs {
            validate_ifname(&s.name)?;
            let (fd, name) = tap::open_kernel_if(&s.name, s.mtu, s.mac, &s.addrs)?;
            taps.push((s.port, fd, name));
        }
        let mut guards = Vec::new();
        for s in specs {
            if let Some(ifname) = &s.guard_ifname {
                guards.push(IngressGuard::install(ifname)?);
            }
        }
        let slot = specs.iter().map(|s| s.mtu as usize).max().unwrap_or(1500) + 14 + 4;
        let enabled: Vec<u16> = specs.iter().map(|s| s.port).collect();
        let rates: Vec<(u16, u64)> = specs.iter().map(|s| (s.port, s.rate)).collect();
        Ok(Some(KernelPath {
            rings: Arc::new(KernelRings::with_rates(
                workers, ports, &enabled, &rates, slot, ring,
            )),
            taps,
            guards,
            steer: Vec::new(),
            rates,
            slot_bytes: slot,
        }))
    }

    /// Read `port`'s own kernel-path socket in the thread: its frames go
    /// to the port's kernel interface directly, counted as `to_kernel`
    /// (`kernel_drop` when the TAP refuses them, when `kernel_if_pps`
    /// limits them, or when the socket's buffer overflowed), on worker 0's
    /// counters.
    pub fn add_steer_socket(&mut self, port: u16, sock: Arc<KernelSocket>) {
        self.steer.push((port, sock));
    }

    /// The rings the workers use.
    pub fn rings(&self) -> Arc<KernelRings> {
        self.rings.clone()
    }

    /// The interface names, as the kernel named them.
    pub fn names(&self) -> Vec<String> {
        self.taps.iter().map(|t| t.2.clone()).collect()
    }

    /// Start the kernel-path thread; `counters` are the workers' (the
    /// thread writes their `kernel_drop_path`).
    pub fn start(self, counters: Vec<Arc<CoreCounters>>) -> Result<KernelThread, KernelError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("rvs-kernel-path".into())
            .spawn(move || self.run(&flag, &counters))
            .map_err(KernelError::Spawn)?;
        Ok(KernelThread {
            stop,
            handle: Some(handle),
        })
    }

    fn run(self, stop: &AtomicBool, counters: &[Arc<CoreCounters>]) {
        let r = &*self.rings;
        let mut fds: Vec<i32> = self.taps.iter().map(|t| t.1.as_raw_fd()).collect();
        fds.extend(self.steer.iter().map(|(_, s)| s.raw_fd()));
        let mut steer = SteerReader::new(&self);
        let mut fd_of_port = [-1i32; 256];
        for (p, fd, _) in &self.taps {
            if let Some(s) = fd_of_port.get_mut(*p as usize) {
                *s = fd.as_raw_fd();
            }
        }
        let mut reported = false;
        let mut report = |what: &str, e: std::io::Error| {
            if !reported {
                eprintln!("lbd: kernel path: {what}: {e} (further errors counted only)");
                reported = true;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let mut work = 0;
            // Up: what the workers received for the kernel.
            for w in 0..r.workers() {
                for _ in 0..PASS_BUDGET {
                    let Some(f) = r.pop_up(w as u16) else { break };
                    work += 1;
                    let fd = fd_of_port.get(f.port as usize).copied().unwrap_or(-1);
                    if fd < 0 {
                        bump_path_drop(counters, w);
                    } else if let Err(e) = tap::write_frame(fd, f.data()) {
                        bump_path_drop(counters, w);
                        report("write to the kernel interface", e);
                    }
                    r.recycle_up(f);
                }
            }
            // Up, steered: the director's own TCP/UDP that no worker saw.
            work += steer.pass(&fd_of_port, counters, &mut report);
            // Down: what the kernel sent out of its interfaces.
            for (port, fd, _) in &self.taps {
                for _ in 0..PASS_BUDGET {
                    let Some(mut f) = r.down_free.pop() else {
                        break;
                    };
                    match tap::read_frame(fd.as_raw_fd(), &mut f.buf) {
                        Ok(Some(n)) if n >= 14 => {
                            work += 1;
                            f.len = n as u16;
                            f.port = *port;
                            let w = down_worker(f.data(), r.workers());
                            if let Err(f) = r.down[w].push(f) {
                                bump_path_drop(counters, w);
                                let _ = r.down_free.push(f);
                            }
                        }
                        Ok(Some(_)) => {
                            let _ = r.down_free.push(f);
                        }
                        Ok(None) => {
                            let _ = r.down_free.push(f);
                            break;
                        }
                        Err(e) => {
                            let _ = r.down_free.push(f);
                            report("read from the kernel interface", e);
                            break;
                        }
                    }
                }
            }
            if work == 0 {
                if let Err(e) = tap::wait_readable(&fds, IDLE_WAIT_MS) {
                    report("poll", e);
                    std::thread::sleep(std::time::Duration::from_millis(IDLE_WAIT_MS as u64));
                }
            }
        }
        // The TAP fds close here: the interfaces disappear; then the
        // ingress guards go.
        drop(self.taps);
        drop(self.guards);
    }
}

/// The kernel-path thread's reading of the AF_PACKET ports' own sockets
/// (`KernelPath::add_steer_socket`): one buffer, one rate limit per port
/// on the thread's clock, the sockets' overflow read now and then.
struct SteerReader {
    socks: Vec<(u16, Arc<KernelSocket>, u64, UpLimiter)>,
    batch: RecvBatch,
    t0: Instant,
    last_drops: Instant,
}

impl SteerReader {
    fn new(path: &KernelPath) -> SteerReader {
        let rate = |p: u16| path.rates.iter().find(|r| r.0 == p).map_or(0, |r| r.1);
        SteerReader {
            socks: path
                .steer
                .iter()
                .map(|(p, s)| (*p, Arc::clone(s), rate(*p), UpLimiter::default()))
                .collect(),
            batch: RecvBatch::new(STEER_BATCH, path.slot_bytes),
            t0: Instant::now(),
            last_drops: Instant::now(),
        }
    }

    /// Move up to [`PASS_BUDGET`] frames of each socket to its port's
    /// kernel interface; returns how many frames were read.
    fn pass(
        &mut self,
        fd_of_port: &[i32; 256],
        counters: &[Arc<CoreCounters>],
        report: &mut impl FnMut(&str, std::io::Error),
    ) -> usize {
        let Some(c) = counters.first() else { return 0 };
        let mut work = 0;
        let now_ns = self.t0.elapsed().as_nanos() as u64;
        let read_drops = self.last_drops.elapsed() >= Duration::from_millis(100);
        if read_drops {
            self.last_drops = Instant::now();
        }
        for (port, sock, rate, limit) in &mut self.socks {
            if read_drops {
                bump(&c.kernel_drop_path, sock.drops());
            }
            let fd = fd_of_port.get(*port as usize).copied().unwrap_or(-1);
            for _ in 0..PASS_BUDGET / STEER_BATCH {
                let n = match sock.recv_batch(&mut self.batch) {
                    Ok(n) => n,
                    Err(e) => {
                        report("read the port's kernel-path socket", e);
                        0
                    }
                };
                work += n;
                for i in 0..n {
                    let frame = self.batch.frame(i);
                    match frame {
                        Some(f) if fd >= 0 && limit.admit(*rate, now_ns) => {
                            if let Err(e) = tap::write_frame(fd, f) {
                                bump(&c.kernel_drop_path, 1);
                                report("write to the kernel interface", e);
                            } else {
                                bump(&c.to_kernel_path, 1);
                            }
                        }
                        _ => bump(&c.kernel_drop_path, 1),
                    }
                }
                if n < STEER_BATCH {
                    break;
                }
            }
        }
        work
    }
}

fn bump_path_drop(counters: &[Arc<CoreCounters>], w: usize) {
    if let Some(c) = counters.get(w) {
        bump(&c.kernel_drop_path, 1);
    }
}

/// The running kernel-path thread.
pub struct KernelThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl KernelThread {
    /// Stop the thread and close the interfaces.
    pub fn stop(mut self) {
        self.stop_join();
    }

    fn stop_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for KernelThread {
    fn drop(&mut self) {
        self.stop_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_copies_into_a_slot_and_drops_when_no_slot_is_free() {
        let r = KernelRings::new(1, 2, &[1], 64);
        assert!(r.enabled(1) && !r.enabled(0) && !r.enabled(9));
        assert!(r.push_up(0, 1, &[7u8; 60]));
        let f = r.up[0].pop().expect("posted");
        assert_eq!((f.port(), f.data()), (1, &[7u8; 60][..]));
        let _ = r.up_free.push(f);
        // Too long for a slot: dropped, the slot stays free.
        assert!(!r.push_up(0, 1, &[0u8; 65]));
        assert_eq!(r.up_free.len(), UP_SLOTS);
        // Fill the ring: the rest is refused, every slot comes back.
        let ok = (0..RING_SLOTS + 10)
            .filter(|_| r.push_up(0, 1, &[1; 20]))
            .count();
        assert_eq!(ok, RING_SLOTS);
        assert_eq!(r.up_free.len(), UP_SLOTS - RING_SLOTS);
        // An unknown worker is refused.
        assert!(!r.push_up(5, 1, &[1; 20]));
        // `workers.kernel_ring`: rings of 8 frames take 8.
        let small = KernelRings::with_rates(1, 1, &[0], &[], 64, 8);
        assert_eq!((0..20).filter(|_| small.push_up(0, 0, &[1; 20])).count(), 8);
    }

    #[test]
    fn the_up_limiter_admits_its_rate_and_a_bounded_burst() {
        let mut l = UpLimiter::default();
        assert!((0..10_000).all(|_| l.admit(0, 0)), "0 = no limit");
        // 1000/s: the burst is 1000/20 + 32 = 82 frames, from the start
        // and after a long idle.
        assert_eq!(
            (0..1000)
                .filter(|_| UpLimiter::default().admit(1000, 1))
                .count(),
            1000
        );
        let mut fresh = UpLimiter::default();
        assert_eq!((0..1000).filter(|_| fresh.admit(1000, 1)).count(), 82);
        let t0 = 5_000_000_000;
        let burst = (0..1000).filter(|_| l.admit(1000, t0)).count();
        assert_eq!(burst, 82);
        // Then one frame per millisecond.
        let mut admitted = 0;
        for i in 1..=2000u64 {
            // Two offers per millisecond for two seconds.
            if l.admit(1000, t0 + i * 500_000) {
                admitted += 1;
            }
        }
        assert!((999..=1001).contains(&admitted), "{admitted}");
    }

    #[test]
    fn down_worker_keeps_one_flow_on_one_worker_and_spreads_flows() {
        let mut f = vec![0u8; 60];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 2]);
        f[30..34].copy_from_slice(&[10, 0, 0, 9]);
        let mut seen = [false; 4];
        for sport in 0..64u16 {
            f[34..36].copy_from_slice(&sport.to_be_bytes());
            let w = down_worker(&f, 4);
            assert_eq!(w, down_worker(&f, 4));
            seen[w] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
        assert_eq!(down_worker(&f, 1), 0);
        assert_eq!(down_worker(&f[..10], 4), 0);
        f[12] = 0x08;
        f[13] = 0x06; // ARP
        assert_eq!(down_worker(&f, 4), 0);
    }

    #[test]
    fn the_ingress_guard_script_replaces_one_table_per_interface() {
        assert_eq!(IngressGuard::table_name("eth0.10"), "rvs_kp_eth0_10");
        let s = IngressGuard::script("ext0");
        assert!(s.starts_with("table netdev rvs_kp_ext0\ndelete table netdev rvs_kp_ext0\n"));
        assert!(s.contains("hook ingress device \"ext0\" priority 0; policy drop;"));
        assert!(matches!(
            IngressGuard::install("bad name"),
            Err(KernelError::Name(_))
        ));
    }

    #[test]
    fn kernel_if_names_are_checked() {
        assert!(validate_ifname("rvs0").is_ok());
        for bad in ["", "a/b", "eth0:1", "sixteen-chars-xx", "a b", ".."] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }
}
