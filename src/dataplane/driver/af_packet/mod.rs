//! AF_PACKET driver: a real Linux interface as a port without DPDK, one
//! `AF_PACKET`/`SOCK_RAW` socket per queue, all queues in one
//! `PACKET_FANOUT` group.
//!
//! * **Receive**: a memory-mapped RX ring per socket, `TPACKET_V2` by
//!   default ([`Tpacket`]): fixed frame slots that the kernel hands over one
//!   by one as it writes them, so a frame waits only for the worker's next
//!   poll. `TPACKET_V3` ([`Tpacket::V3`]) packs frames into blocks and hands
//!   a block over only when it is full or when its retire timer
//!   ([`AfPacketOptions::block_timeout_ms`], at least 1 ms) fires, so under
//!   light load every crossing of the director waited for that timer:
//!   measured with `bench/e2e_rps.sh` (wrk, 32 connections, NAT), V2 served
//!   1.7× the requests of V3 at a lower p50 (README, Benchmarks).
//!   `rx_burst` never waits. Each frame is **copied** into a [`HeapBuf`]
//!   (so buffers have headroom and outlive the ring slot) and its slot (V2)
//!   or block (V3, once its last frame is taken) goes back to the kernel at
//!   once. A VLAN tag the kernel stripped into the frame
//!   metadata is put back into the packet, so workers see the frame as it was
//!   on the wire; a TCP/UDP checksum the kernel left unfinished
//!   (`TP_STATUS_CSUMNOTREADY`: locally generated traffic, e.g. from a veth
//!   peer) is completed, so forwarded packets leave with valid checksums.
//!   Packets the host itself sends out of the interface (`PACKET_OUTGOING`)
//!   are ignored (fanout flag, socket filter, and a check of each frame).
//! * **Transmit**: `sendmmsg(2)` of the whole burst ([`TxMode::Sendmmsg`],
//!   the default) or a TX ring (of the RX ring's version) kicked with
//!   `sendto(fd, NULL, 0, MSG_DONTWAIT)` ([`TxMode::Ring`]). Measured here
//!   over veth (`tx_modes_throughput` in `tests/driver_af_packet.rs`),
//!   `sendmmsg` was as fast or up to ~15 % faster than the ring (the ring's
//!   zero-copy fragments are copied again when the packet crosses into the
//!   peer's namespace), so it is the default; on a real NIC the ring may win
//!   and can be chosen. `PACKET_QDISC_BYPASS` is on by default.
//! * **Steering**: with more than one queue the group is a
//!   `PACKET_FANOUT_CBPF` group whose classic-BPF program
//!   ([`fanout_program`]) computes [`SteerPlan::owner`], so every packet
//!   lands on the queue of the worker that owns its flow
//!   ([`Steering::Owner`]). At open the program for an empty plan is
//!   installed (owner = hash of the destination); the control plane installs
//!   the real plan with [`AfPacketDriver::set_steering`] whenever it changes.
//!   IPv4 fragments (first or not) land on the worker that routes their
//!   datagram (`steer::frag_owner`, see `dataplane::worker::frag`).
//!   Packets the program cannot classify exactly go to queue 0 and the
//!   software ring takes them to their owner: non-IP (ARP), IP protocols
//!   other than TCP/UDP, IPv6 with extension headers before TCP/UDP (IPv6
//!   fragments among them), truncated headers.
//! * **The director's own TCP/UDP** (a port with a kernel interface):
//!   [`AfPacketDriver::open_kernel_socket`] opens a socket outside the
//!   group for the kernel-path thread, and [`AfPacketDriver::steer_kernel`]
//!   gives it and every queue's socket complementary socket filters
//!   (`local`), so such frames never enter a worker's ring.
//! * The interface is put in promiscuous mode (`PACKET_MR_PROMISC`) because
//!   the director answers for MAC addresses of its own. Leave it without IP
//!   addresses so the host stack ignores the traffic.
//!
//! Rules: `rx_burst`/`tx_burst` make no allocation once the worker's buffer
//! free list is warm (the `sendmmsg` headers and iovecs live in the queue),
//! no locks, no logging; counters are per queue and written only by the
//! queue's worker.

//!
//! Layout: this file holds the options, [`AfPacketDriver`] (opening the
//! group, steering, port stats) and [`AfPacketQueue`] (the `PortQueue`
//! impl and its counters); `rx` the TPACKET_V3 receive ring and frame
//! handling, `tx` the two transmit paths, `socket` the kernel ABI and every
//! packet-socket system call, `cbpf` the fanout steering program, `local`
//! the kernel path's own socket and its filters.

mod local;
mod rx;
mod socket;
mod tx;

#[doc(hidden)]
pub mod cbpf;

#[cfg(test)]
mod tests;

pub use cbpf::fanout_program;
pub use local::{local_program, KernelSocket, LocalSet, RecvBatch, Side};
pub use rx::complete_partial_checksum;
pub use socket::check_options;

use super::heapbuf::{HeapBuf, BUF_SIZE, HEADROOM};
use super::{Burst, Driver, DriverError, PacketBuf, PortCaps, PortQueue, PortStats, Steering};
use crate::steer::SteerPlan;
use rx::{fill_rx_buf, FrameSlots, RxRing, RxStep};
use socket::{
    add_promisc, attach_filter, bound_ifindex, create_group, drop_outgoing_filter, if_index,
    open_socket, packet_stats, set_fanout, set_fanout_program, CtlSocket, Mapping, RingGeometry,
    L2_OVERHEAD, MAX_BPF_INSNS, PACKET_OUTGOING, TPACKET2_RX_NET_OFF,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tx::{MmsgArrays, TxLayout, TxPath, TxRing};

/// How a queue transmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxMode {
    /// One `sendmmsg(2)` per burst; the kernel copies each packet.
    #[default]
    Sendmmsg,
    /// A memory-mapped `TPACKET_V3` TX ring, one `sendto` kick per burst.
    Ring,
}

/// Which `TPACKET` version a queue's rings use (`PACKET_VERSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tpacket {
    /// Fixed-size frame slots: the kernel hands each frame over as soon as
    /// it is written, so a frame waits for nothing but the worker's poll.
    #[default]
    V2,
    /// Blocks of variable-size frames: the kernel hands a block over when
    /// it is full or [`AfPacketOptions::block_timeout_ms`] after it was
    /// opened, so under light load every frame waits up to that long.
    V3,
}

/// Ring geometry and group options of an [`AfPacketDriver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Bytes per ring block (a multiple of the page size). RX blocks hold
    /// several frames each.
    pub block_size: u32,
    /// Blocks per ring (each queue has one RX ring, and in [`TxMode::Ring`]
    /// one TX ring of the same size).
    pub block_count: u32,
    /// Bytes per frame slot (a multiple of 16): TX ring slots, and
    /// `TPACKET_V2` RX slots (which must hold the header, 80 bytes, and the
    /// longest frame); a `TPACKET_V3` RX ring packs frames by their real
    /// size.
    pub frame_size: u32,
    /// Fanout group id; `None` (the default): a group id the kernel picks,
    /// unique in the network namespace. Steering relies on queue `i` being
    /// member `i`, so a given id must not be in use by other sockets.
    pub fanout_group_id: Option<u16>,
    /// Send without the interface's qdisc (`PACKET_QDISC_BYPASS`).
    pub qdisc_bypass: bool,
    /// `TPACKET_V3` only: most milliseconds the kernel keeps a partly
    /// filled RX block before handing it over (`tp_retire_blk_tov`; the
    /// kernel's timer rounds it up to whole jiffies).
    pub block_timeout_ms: u32,
    /// The rings' `TPACKET` version.
    pub tpacket: Tpacket,
    /// How queues transmit.
    pub tx_mode: TxMode,
    /// The director's MAC ([`PortCaps::mac`]); `None`: the interface's own.
    pub mac: Option<[u8; 6]>,
}

impl Default for AfPacketOptions {
    fn default() -> Self {
        AfPacketOptions {
            block_size: 1 << 17,
            // 16 MiB: 8192 TPACKET_V2 slots of 2 KiB, room for a few ms of
            // a 64-byte flood while the worker is preempted (32 blocks, 2048
            // slots, lost more of such a flood in bench/veth_vs_nft.sh).
            block_count: 128,
            frame_size: 2048,
            fanout_group_id: None,
            qdisc_bypass: true,
            block_timeout_ms: 1,
            tpacket: Tpacket::default(),
            tx_mode: TxMode::default(),
            mac: None,
        }
    }
}

/// An interface opened through AF_PACKET sockets, one per queue.
pub struct AfPacketDriver {
    caps: PortCaps,
    ifindex: i32,
    fanout_id: u16,
    /// Every queue's socket (shared with the queue), for the group option
    /// and the kernel's drop counters.
    sockets: Vec<Arc<OwnedFd>>,
    queues: Option<Vec<AfPacketQueue>>,
    counters: Vec<Arc<QueueCounters>>,
    /// Kernel drops read so far (`PACKET_STATISTICS` resets on read).
    kernel_drops: AtomicU64,
    /// The kernel path's own socket and the set its filter keeps
    /// ([`AfPacketDriver::open_kernel_socket`]).
    kernel_steer: Option<(Arc<KernelSocket>, Mutex<LocalSet>)>,
}

impl AfPacketDriver {
    /// Open `queues` sockets on interface `ifname` (in the calling thread's
    /// network namespace), map their rings, join them to one fanout group
    /// (queue `i` is member `i`), install the steering program for an empty
    /// plan when `queues > 1`, and make the interface promiscuous.
    pub fn open(
        ifname: &str,
        queues: u16,
        opts: AfPacketOptions,
    ) -> Result<AfPacketDriver, DriverError> {
        if queues == 0 {
            return Err(DriverError::Config(format!("af_packet {ifname}: 0 queues")));
        }
        let geometry = RingGeometry::new(ifname, &opts)?;
        let ifindex = if_index(ifname)
            .map_err(|e| DriverError::os(format!("af_packet {ifname}: interface index"), e))?;
        let ctl = CtlSocket::new()
            .map_err(|e| DriverError::os(format!("af_packet {ifname}: control socket"), e))?;
        let mtu = ctl
            .mtu(ifname)
            .map_err(|e| DriverError::os(format!("af_packet {ifname}: read MTU"), e))?;
        let if_mac = ctl
            .hwaddr(ifname)
            .map_err(|e| DriverError::os(format!("af_packet {ifname}: read MAC"), e))?;
        let max_frame = mtu as usize + L2_OVERHEAD;
        if max_frame > BUF_SIZE - HEADROOM {
            return Err(DriverError::Config(format!(
                "af_packet {ifname}: MTU {mtu} too large for packet buffers (at most {})",
                BUF_SIZE - HEADROOM - L2_OVERHEAD
            )));
        }
        if opts.tx_mode == TxMode::Ring
            && max_frame > geometry.frame_size - geometry.tx_data_offset()
        {
            return Err(DriverError::Config(format!(
                "af_packet {ifname}: frame_size {} cannot hold a {max_frame}-byte frame",
                geometry.frame_size
            )));
        }
        if opts.tpacket == Tpacket::V2 && max_frame + TPACKET2_RX_NET_OFF > geometry.frame_size {
            return Err(DriverError::Config(format!(
                "af_packet {ifname}: frame_size {} cannot hold a {max_frame}-byte frame after the {TPACKET2_RX_NET_OFF}-byte TPACKET_V2 header (frame_size >= {}, or tpacket: v3)",
                geometry.frame_size,
                (max_frame + TPACKET2_RX_NET_OFF).next_multiple_of(16)
            )));
        }

        let mut sockets = Vec::with_capacity(queues as usize);
        let mut queue_list = Vec::with_capacity(queues as usize);
        let mut counters = Vec::with_capacity(queues as usize);
        let mut group: Option<(u16, u32)> = None;
        for q in 0..queues {
            let what = |step: &str| format!("af_packet {ifname} queue {q}: {step}");
            let sock = open_socket(&geometry, &opts, ifindex)
                .map_err(|(step, e)| DriverError::os(what(step), e))?;
            // Join the group: the first socket creates it, the others join
            // with the same id and flags; member order = queue order.
            let (id, type_flags) = match group {
                Some(g) => {
                    set_fanout(sock.fd.as_raw_fd(), g.0, g.1)
                        .map_err(|e| DriverError::os(what("join fanout group"), e))?;
                    g
                }
                None => create_group(sock.fd.as_raw_fd(), opts.fanout_group_id)
                    .map_err(|e| DriverError::os(what("create fanout group"), e))?,
            };
            group = Some((id, type_flags));
            // Now that the group decides, let traffic in (the socket dropped
            // everything until here, so no queue sees another's packets).
            attach_filter(sock.fd.as_raw_fd(), &drop_outgoing_filter())
                .map_err(|e| DriverError::os(what("attach socket filter"), e))?;
            add_promisc(sock.fd.as_raw_fd(), ifindex)
                .map_err(|e| DriverError::os(what("promiscuous mode"), e))?;
            let c = Arc::new(QueueCounters::default());
            let fd = Arc::new(sock.fd);
            sockets.push(Arc::clone(&fd));
            counters.push(Arc::clone(&c));
            queue_list.push(AfPacketQueue::new(
                fd,
                q,
                sock.map,
                &geometry,
                opts.tx_mode,
                max_frame,
                c,
                ifindex,
            ));
        }
        let fanout_id = group.map(|g| g.0).unwrap_or(0);

        let driver = AfPacketDriver {
            caps: PortCaps {
                name: ifname.to_string(),
                mac: opts.mac.unwrap_or(if_mac),
                mtu,
                queues,
                tx_csum_offload: false,
                steering: if queues > 1 {
                    Steering::Owner
                } else {
                    Steering::None
                },
            },
            ifindex,
            fanout_id,
            sockets,
            queues: Some(queue_list),
            counters,
            kernel_drops: AtomicU64::new(0),
            kernel_steer: None,
        };
        if queues > 1 {
            driver.set_steering(&SteerPlan {
                workers: queues,
                ..SteerPlan::default()
            })?;
        }
        Ok(driver)
    }

    /// Install the fanout program for `plan` (again whenever the plan
    /// changes): from then on every TCP/UDP packet goes to the queue
    /// `plan.owner(..)` names. `plan.workers` must equal the queue count.
    pub fn set_steering(&self, plan: &SteerPlan) -> Result<(), DriverError> {
        let queues = self.caps.queues;
        if plan.workers != queues && !(queues == 1 && plan.workers <= 1) {
            return Err(DriverError::Config(format!(
                "af_packet {}: steering plan for {} workers on {queues} queues",
                self.caps.name, plan.workers
            )));
        }
        let prog = fanout_program(plan);
        if prog.len() > MAX_BPF_INSNS {
            return Err(DriverError::Config(format!(
                "af_packet {}: steering program has {} instructions (kernel limit {MAX_BPF_INSNS}); too many services/local addresses",
                self.caps.name,
                prog.len()
            )));
        }
        let fd = self.sockets.first().ok_or_else(|| {
            DriverError::Config(format!("af_packet {}: no sockets", self.caps.name))
        })?;
        set_fanout_program(fd.as_raw_fd(), &prog).map_err(|e| {
            DriverError::os(
                format!("af_packet {}: install steering program", self.caps.name),
                e,
            )
        })
    }

    /// Open the kernel path's own receive socket on the interface (outside
    /// the fanout group; `local` module): from the next
    /// [`AfPacketDriver::steer_kernel`] on, the director's own TCP/UDP
    /// reaches it instead of the workers. Opening it twice gives the same
    /// socket.
    pub fn open_kernel_socket(&mut self) -> Result<Arc<KernelSocket>, DriverError> {
        if let Some((s, _)) = &self.kernel_steer {
            return Ok(Arc::clone(s));
        }
        let s = KernelSocket::open(self.ifindex).map_err(|(step, e)| {
            DriverError::os(
                format!("af_packet {}: kernel socket: {step}", self.caps.name),
                e,
            )
        })?;
        let s = Arc::new(s);
        self.kernel_steer = Some((Arc::clone(&s), Mutex::new(LocalSet::none())));
        Ok(s)
    }

    /// Let the kernel socket take `set`'s frames and every worker socket
    /// drop them (no-op without a kernel socket, or when `set` is what is
    /// installed). Called from the control plane with every snapshot. The
    /// change never loses a frame: first the workers keep everything but
    /// what both the old and the new set send to the kernel, then the
    /// kernel socket switches to the new set, then the workers narrow to
    /// its complement (a frame in between may reach both: harmless).
    pub fn steer_kernel(&self, set: &LocalSet) -> Result<(), DriverError> {
        let Some((sock, installed)) = &self.kernel_steer else {
            return Ok(());
        };
        let mut installed = installed.lock().unwrap_or_else(PoisonError::into_inner);
        if *installed == *set {
            return Ok(());
        }
        for side in [Side::Kernel, Side::Workers] {
            let n = local_program(set, side).len();
            if n > MAX_BPF_INSNS {
                return Err(DriverError::Config(format!(
                    "af_packet {}: kernel-path filter has {n} instructions (kernel limit {MAX_BPF_INSNS}); too many addresses",
                    self.caps.name
                )));
            }
        }
        let os =
            |what: &str, e| DriverError::os(format!("af_packet {}: {what}", self.caps.name), e);
        let both = installed.intersect(set);
        self.attach_worker_filters(&local_program(&both, Side::Workers))
            .map_err(|e| os("widen the workers' filter", e))?;
        sock.set_filter(set)
            .map_err(|e| os("kernel socket filter", e))?;
        *installed = set.clone();
        self.attach_worker_filters(&local_program(set, Side::Workers))
            .map_err(|e| os("narrow the workers' filter", e))
    }

    fn attach_worker_filters(&self, prog: &[libc::sock_filter]) -> std::io::Result<()> {
        for fd in &self.sockets {
            attach_filter(fd.as_raw_fd(), prog)?;
        }
        Ok(())
    }

    /// The fanout group id the queues share.
    pub fn fanout_group_id(&self) -> u16 {
        self.fanout_id
    }

    /// The interface index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }
}

impl Driver for AfPacketDriver {
    type Queue = AfPacketQueue;

    fn caps(&self) -> &PortCaps {
        &self.caps
    }

    fn take_queues(&mut self) -> Result<Vec<AfPacketQueue>, DriverError> {
        self.queues.take().ok_or(DriverError::QueuesTaken)
    }

    fn stats(&self) -> PortStats {
        let mut s = PortStats::default();
        for c in &self.counters {
            s.ipackets += c.ipackets.load(Ordering::Relaxed);
            s.ibytes += c.ibytes.load(Ordering::Relaxed);
            s.ierrors += c.ierrors.load(Ordering::Relaxed);
            s.opackets += c.opackets.load(Ordering::Relaxed);
            s.obytes += c.obytes.load(Ordering::Relaxed);
            s.oerrors += c.oerrors.load(Ordering::Relaxed);
            s.link_gone |= c.gone.load(Ordering::Relaxed) != 0;
        }
        let mut drops = 0u64;
        for fd in &self.sockets {
            if let Ok(st) = packet_stats(fd.as_raw_fd()) {
                drops += st.tp_drops as u64;
            }
        }
        s.imissed = self.kernel_drops.fetch_add(drops, Ordering::Relaxed) + drops;
        s
    }
}

// ---------------------------------------------------------------------------
// The queue.

/// One worker's socket: its RX ring, and its TX ring or `sendmmsg` arrays.
pub struct AfPacketQueue {
    fd: Arc<OwnedFd>,
    index: u16,
    rx: RxRing,
    tx: TxPath,
    /// Longest frame the device takes (MTU + Ethernet + one VLAN tag).
    max_frame: usize,
    counters: Arc<QueueCounters>,
    /// The interface was deleted: the queue does no more I/O.
    gone: bool,
    /// The interface index the socket was bound to.
    ifindex: i32,
    /// Empty receive polls since the last check that the interface is
    /// still there (see [`GONE_CHECK_EVERY`]).
    empty_polls: u32,
    /// Keeps the rings mapped; unmapped on drop (after the rings' last use).
    _map: Mapping,
}

// SAFETY: the raw pointers inside (`RxRing`, `TxPath`) point into `_map`,
// which this queue owns exclusively and moves with it; the iovec/mmsghdr
// pointers are rewritten on every `tx_burst` and only dereferenced by the
// kernel during that call. Nothing is shared with another thread except
// the socket fd (thread-safe) and the atomic counters.
unsafe impl Send for AfPacketQueue {}

impl AfPacketQueue {
    #[allow(clippy::too_many_arguments)]
    fn new(
        fd: Arc<OwnedFd>,
        index: u16,
        map: Mapping,
        g: &RingGeometry,
        mode: TxMode,
        max_frame: usize,
        counters: Arc<QueueCounters>,
        ifindex: i32,
    ) -> AfPacketQueue {
        let rx = RxRing {
            base: map.ptr,
            block_size: g.block_size,
            block_count: g.block_count,
            block: 0,
            left: 0,
            off: 0,
            frames: match g.version {
                Tpacket::V2 => Some(FrameSlots {
                    frame_size: g.frame_size,
                    per_block: g.frames_per_block(),
                    count: g.frame_count(),
                }),
                Tpacket::V3 => None,
            },
        };
        let tx = match mode {
            TxMode::Ring => TxPath::Ring(TxRing {
                // SAFETY: the mapping is rx_len + tx_len bytes (RingGeometry
                // sized it so in Ring mode), so rx_len is inside it.
                base: unsafe { map.ptr.add(g.ring_len()) },
                block_size: g.block_size,
                frame_size: g.frame_size,
                frames_per_block: g.frames_per_block(),
                frame_count: g.frame_count(),
                layout: TxLayout::of(g.version),
                head: 0,
                kick_pending: false,
            }),
            TxMode::Sendmmsg => TxPath::Mmsg(MmsgArrays::new()),
        };
        AfPacketQueue {
            fd,
            index,
            rx,
            tx,
            max_frame,
            counters,
            gone: false,
            ifindex,
            empty_polls: 0,
            _map: map,
        }
    }

    /// An idle receive ring: every [`GONE_CHECK_EVERY`] empty polls, ask
    /// the kernel which interface the socket is still bound to. A port that
    /// never transmits learns this way that its interface was deleted (the
    /// transmit path learns it from `ENXIO`). One system call per that many
    /// idle polls, none while packets arrive.
    #[cold]
    fn check_still_bound(&mut self) {
        self.empty_polls = 0;
        match bound_ifindex(self.fd.as_raw_fd()) {
            Ok(i) if i != self.ifindex => self.mark_gone(),
            Err(e) if tx::is_gone(&e) => self.mark_gone(),
            _ => {}
        }
    }

    /// Which queue (fanout member) this is.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The interface was deleted under the socket: stop the queue's I/O
    /// and report it (`PortStats::link_gone`; the daemon logs it once,
    /// from its own thread: a worker never logs).
    #[cold]
    fn mark_gone(&mut self) {
        self.gone = true;
        self.counters.gone.store(1, Ordering::Relaxed);
    }
}

impl PortQueue for AfPacketQueue {
    type Buf = HeapBuf;

    fn rx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        if self.gone {
            return 0;
        }
        let (mut got, mut bytes, mut errors) = (0usize, 0usize, 0u64);
        while burst.room() > 0 {
            let taken = self.rx.next_frame(|meta, frame| {
                if meta.pkttype == PACKET_OUTGOING {
                    return;
                }
                let mut buf = HeapBuf::alloc();
                if fill_rx_buf(&mut buf, frame, meta) {
                    bytes += buf.len();
                    got += 1;
                    // Cannot fail: room() > 0 was checked above.
                    let _ = burst.push(buf);
                } else {
                    errors += 1;
                }
            });
            match taken {
                RxStep::Progress => {}
                RxStep::Empty => {
                    if got == 0 && errors == 0 {
                        self.empty_polls += 1;
                        if self.empty_polls >= GONE_CHECK_EVERY {
                            self.check_still_bound();
                        }
                    } else {
                        self.empty_polls = 0;
                    }
                    break;
                }
                RxStep::Corrupt => errors += 1,
            }
        }
        let c = &self.counters;
        bump(&c.ipackets, got as u64);
        bump(&c.ibytes, bytes as u64);
        bump(&c.ierrors, errors);
        got
    }

    fn tx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        if self.gone {
            // Not sent, not counted as sent: the worker frees them.
            return 0;
        }
        let fd = self.fd.as_raw_fd();
        // Frames the device would refuse (runts, longer than the MTU) end
        // the burst here: the caller frees what is left.
        let mut n = 0;
        for b in burst.as_slice() {
            if b.len() < 14 || b.len() > self.max_frame {
                break;
            }
            n += 1;
        }
        let refused = (n < burst.len()) as u64;
        let (sent, bytes, errors) = match &mut self.tx {
            TxPath::Mmsg(m) => m.send(fd, &burst.as_slice()[..n]),
            TxPath::Ring(r) => r.send(fd, &burst.as_slice()[..n]),
        };
        if errors == tx::GONE {
            self.mark_gone();
            bump(&self.counters.oerrors, 1);
            return 0;
        }
        drop(burst.drain_front(sent));
        let c = &self.counters;
        bump(&c.opackets, sent as u64);
        bump(&c.obytes, bytes as u64);
        bump(&c.oerrors, errors + if sent == n { refused } else { 0 });
        sent
    }

    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(HeapBuf::alloc())
    }
}

/// Empty receive polls between two checks that the interface still exists
/// (a busy-polling worker makes a few million empty polls a second, so a
/// deleted interface is noticed within milliseconds; with the test idle
/// policy's sleeps within a second or two).
const GONE_CHECK_EVERY: u32 = 1024;

// ---------------------------------------------------------------------------
// Counters.

/// One queue's counters; written only by the worker owning the queue.
#[repr(align(64))]
#[derive(Default)]
struct QueueCounters {
    ipackets: AtomicU64,
    ibytes: AtomicU64,
    ierrors: AtomicU64,
    opackets: AtomicU64,
    obytes: AtomicU64,
    oerrors: AtomicU64,
    /// 1 once the interface vanished (`AfPacketQueue::mark_gone`).
    gone: AtomicU64,
}

/// Add `n` to a counter only the calling thread writes.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}
