//! AF_PACKET driver: a real Linux interface as a port without DPDK, one
//! `AF_PACKET`/`SOCK_RAW` socket per queue, all queues in one
//! `PACKET_FANOUT` group.
//!
//! * **Receive**: a `TPACKET_V3` memory-mapped ring per socket. The kernel
//!   fills blocks of frames and hands a block over when it is full or when
//!   [`AfPacketOptions::block_timeout_ms`] (default 1 ms) has passed, so a
//!   quiet link never holds packets back for long; `rx_burst` never waits. Each
//!   frame is **copied** into a [`HeapBuf`] (so buffers have headroom and
//!   outlive the ring slot) and the block goes back to the kernel as soon as
//!   its last frame is taken. A VLAN tag the kernel stripped into the frame
//!   metadata is put back into the packet, so workers see the frame as it was
//!   on the wire; a TCP/UDP checksum the kernel left unfinished
//!   (`TP_STATUS_CSUMNOTREADY`: locally generated traffic, e.g. from a veth
//!   peer) is completed, so forwarded packets leave with valid checksums.
//!   Packets the host itself sends out of the interface (`PACKET_OUTGOING`)
//!   are ignored (fanout flag, socket filter, and a check of each frame).
//! * **Transmit**: `sendmmsg(2)` of the whole burst ([`TxMode::Sendmmsg`],
//!   the default) or a `TPACKET_V3` TX ring kicked with
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
//! * The interface is put in promiscuous mode (`PACKET_MR_PROMISC`) because
//!   the director answers for MAC addresses of its own. Leave it without IP
//!   addresses so the host stack ignores the traffic.
//!
//! Rules: `rx_burst`/`tx_burst` make no allocation once the worker's buffer
//! free list is warm (the `sendmmsg` headers and iovecs live in the queue),
//! no locks, no logging; counters are per queue and written only by the
//! queue's worker.

use super::heapbuf::{HeapBuf, BUF_SIZE, HEADROOM};
use super::BURST_SIZE;
use super::{Burst, Driver, DriverError, PacketBuf, PortCaps, PortQueue, PortStats, Steering};
use crate::steer::SteerPlan;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// How a queue transmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxMode {
    /// One `sendmmsg(2)` per burst; the kernel copies each packet.
    #[default]
    Sendmmsg,
    /// A memory-mapped `TPACKET_V3` TX ring, one `sendto` kick per burst.
    Ring,
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
    /// Bytes per frame slot (a multiple of 16): TX ring slots; the RX ring
    /// packs frames by their real size.
    pub frame_size: u32,
    /// Fanout group id; `None` (the default): a group id the kernel picks,
    /// unique in the network namespace. Steering relies on queue `i` being
    /// member `i`, so a given id must not be in use by other sockets.
    pub fanout_group_id: Option<u16>,
    /// Send without the interface's qdisc (`PACKET_QDISC_BYPASS`).
    pub qdisc_bypass: bool,
    /// Most milliseconds the kernel keeps a partly filled RX block before
    /// handing it over (`tp_retire_blk_tov`).
    pub block_timeout_ms: u32,
    /// How queues transmit.
    pub tx_mode: TxMode,
    /// The director's MAC ([`PortCaps::mac`]); `None`: the interface's own.
    pub mac: Option<[u8; 6]>,
}

impl Default for AfPacketOptions {
    fn default() -> Self {
        AfPacketOptions {
            block_size: 1 << 17,
            block_count: 32,
            frame_size: 2048,
            fanout_group_id: None,
            qdisc_bypass: true,
            block_timeout_ms: 1,
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
        if opts.tx_mode == TxMode::Ring && max_frame > geometry.frame_size - TX_DATA_OFFSET {
            return Err(DriverError::Config(format!(
                "af_packet {ifname}: frame_size {} cannot hold a {max_frame}-byte frame",
                geometry.frame_size
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
    fn new(
        fd: Arc<OwnedFd>,
        index: u16,
        map: Mapping,
        g: &RingGeometry,
        mode: TxMode,
        max_frame: usize,
        counters: Arc<QueueCounters>,
    ) -> AfPacketQueue {
        let rx = RxRing {
            base: map.ptr,
            block_size: g.block_size,
            block_count: g.block_count,
            block: 0,
            left: 0,
            off: 0,
        };
        let tx = match mode {
            TxMode::Ring => TxPath::Ring(TxRing {
                // SAFETY: the mapping is rx_len + tx_len bytes (RingGeometry
                // sized it so in Ring mode), so rx_len is inside it.
                base: unsafe { map.ptr.add(g.ring_len()) },
                block_size: g.block_size,
                frame_size: g.frame_size,
                frames_per_block: g.block_size / g.frame_size,
                frame_count: g.frame_count(),
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
            _map: map,
        }
    }

    /// Which queue (fanout member) this is.
    pub fn index(&self) -> u16 {
        self.index
    }
}

impl PortQueue for AfPacketQueue {
    type Buf = HeapBuf;

    fn rx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
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
                RxStep::Empty => break,
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

/// What one look at the RX ring found.
enum RxStep {
    /// A frame was handed to the callback (or an empty block skipped).
    Progress,
    /// No block is ready.
    Empty,
    /// The block's frame list was inconsistent; the block was given back.
    Corrupt,
}

/// What the ring says about one received frame.
struct FrameMeta {
    status: u32,
    pkttype: u8,
    vlan_tci: u16,
    vlan_tpid: u16,
    /// Length on the wire (more than the frame if the kernel truncated it).
    wire_len: u32,
}

/// The user side of a `TPACKET_V3` RX ring.
struct RxRing {
    base: *mut u8,
    block_size: usize,
    block_count: usize,
    /// Block being read (or to be read next).
    block: usize,
    /// Frames of the current block not yet taken (0: no block open).
    left: u32,
    /// Offset of the next frame in the current block.
    off: usize,
}

impl RxRing {
    fn block_ptr(&self, i: usize) -> *mut u8 {
        // SAFETY: i < block_count, and the RX ring is block_count *
        // block_size bytes at `base` (RingGeometry).
        unsafe { self.base.add(i * self.block_size) }
    }

    /// The block's status word, shared with the kernel.
    fn block_status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the block descriptor starts every block (page aligned);
        // `block_status` is the u32 at offset 8, 4-byte aligned, valid for
        // the life of the mapping, and the kernel accesses it atomically.
        unsafe { AtomicU32::from_ptr(self.block_ptr(i).add(BLOCK_STATUS_OFF).cast()) }
    }

    /// Give the current block back to the kernel and move to the next one.
    fn release(&mut self) {
        self.block_status(self.block)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.block = (self.block + 1) % self.block_count;
        self.left = 0;
    }

    /// Take the next frame, if a block is ready: `f` sees its metadata and
    /// bytes (valid only during the call).
    fn next_frame(&mut self, f: impl FnOnce(&FrameMeta, &[u8])) -> RxStep {
        if self.left == 0 {
            if self.block_status(self.block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                return RxStep::Empty;
            }
            let blk = self.block_bytes();
            let num = rd_u32(blk, BLOCK_NUM_PKTS_OFF);
            let first = rd_u32(blk, BLOCK_FIRST_OFF) as usize;
            if num == 0 {
                self.release();
                return RxStep::Progress;
            }
            self.left = num;
            self.off = first;
        }
        let blk = self.block_bytes();
        let off = self.off;
        let Some((meta, start, len, next)) = parse_frame_header(blk, off) else {
            self.release();
            return RxStep::Corrupt;
        };
        f(&meta, &blk[start..start + len]);
        self.left -= 1;
        if self.left == 0 {
            self.release();
        } else if next == 0 {
            // More frames promised but no link to them: give up the block.
            self.release();
            return RxStep::Corrupt;
        } else {
            self.off = off + next;
        }
        RxStep::Progress
    }

    /// The current block's bytes. Only called while the block is ours
    /// (status had TP_STATUS_USER), when the kernel does not write it.
    fn block_bytes(&self) -> &[u8] {
        // SAFETY: the block is block_size bytes inside the live mapping; the
        // kernel does not write a block it has handed to user space (status
        // TP_STATUS_USER) until `release` stores TP_STATUS_KERNEL, and the
        // returned slice is not used past that point (it borrows `self`,
        // which `release` needs mutably).
        unsafe { std::slice::from_raw_parts(self.block_ptr(self.block), self.block_size) }
    }
}

/// Parse the `tpacket3_hdr` at `off` of a block: the metadata, the frame's
/// start and length in the block, and the offset of the next frame.
/// `None` when anything points outside the block.
fn parse_frame_header(blk: &[u8], off: usize) -> Option<(FrameMeta, usize, usize, usize)> {
    if off.checked_add(TPACKET3_HDRLEN)? > blk.len() {
        return None;
    }
    let next = rd_u32(blk, off) as usize;
    let snaplen = rd_u32(blk, off + 12) as usize;
    let wire_len = rd_u32(blk, off + 16);
    let status = rd_u32(blk, off + 20);
    let mac = u16::from_ne_bytes([blk[off + 24], blk[off + 25]]) as usize;
    let vlan_tci = rd_u32(blk, off + 32) as u16;
    let vlan_tpid = u16::from_ne_bytes([blk[off + 36], blk[off + 37]]);
    let pkttype = blk[off + TPACKET3_SLL_OFF + 10];
    let start = off + mac;
    if start.checked_add(snaplen)? > blk.len() {
        return None;
    }
    Some((
        FrameMeta {
            status,
            pkttype,
            vlan_tci,
            vlan_tpid,
            wire_len,
        },
        start,
        snaplen,
        next,
    ))
}

/// Copy a received frame into `buf`, putting back a VLAN tag the kernel
/// took out and finishing a checksum it left partial. `false` when the
/// frame was truncated by the ring or does not fit a buffer (e.g. a GRO/GSO
/// aggregate larger than the MTU).
fn fill_rx_buf(buf: &mut HeapBuf, frame: &[u8], meta: &FrameMeta) -> bool {
    if (meta.wire_len as usize) != frame.len() || frame.len() < 14 {
        return false;
    }
    let tagged = meta.status & TP_STATUS_VLAN_VALID != 0;
    let total = frame.len() + if tagged { 4 } else { 0 };
    let room = buf.room_mut();
    if total > room.len() {
        return false;
    }
    if tagged {
        let tpid = if meta.status & TP_STATUS_VLAN_TPID_VALID != 0 {
            meta.vlan_tpid
        } else {
            ETH_P_8021Q
        };
        room[..12].copy_from_slice(&frame[..12]);
        room[12..14].copy_from_slice(&tpid.to_be_bytes());
        room[14..16].copy_from_slice(&meta.vlan_tci.to_be_bytes());
        room[16..total].copy_from_slice(&frame[12..]);
    } else {
        room[..total].copy_from_slice(frame);
    }
    if meta.status & TP_STATUS_CSUMNOTREADY != 0 {
        complete_partial_checksum(&mut room[..total]);
    }
    buf.set_len(total);
    true
}

/// Finish the TCP/UDP checksum of a frame whose checksum field holds only
/// the pseudo-header sum (Linux `CHECKSUM_PARTIAL`, what a NIC with checksum
/// offload would complete): the one's-complement sum of the whole L4
/// segment, complemented. Handles IPv4 and IPv6 (no extension headers) over
/// Ethernet with up to two VLAN tags; anything else is left as it is.
/// Returns whether a checksum was written.
pub fn complete_partial_checksum(frame: &mut [u8]) -> bool {
    let mut l3 = 12;
    let mut ethertype = be16(frame, l3);
    let mut tags = 0;
    while (ethertype == Some(ETH_P_8021Q) || ethertype == Some(ETH_P_8021AD)) && tags < 2 {
        l3 += 4;
        ethertype = be16(frame, l3);
        tags += 1;
    }
    l3 += 2;
    let (proto, l4, end) = match ethertype {
        Some(0x0800) => {
            let Some(&vihl) = frame.get(l3) else {
                return false;
            };
            let ihl = (vihl & 0x0f) as usize * 4;
            let Some(total) = be16(frame, l3 + 2) else {
                return false;
            };
            let Some(&proto) = frame.get(l3 + 9) else {
                return false;
            };
            (proto, l3 + ihl, l3 + total as usize)
        }
        Some(0x86dd) => {
            let (Some(&proto), Some(plen)) = (frame.get(l3 + 6), be16(frame, l3 + 4)) else {
                return false;
            };
            (proto, l3 + 40, l3 + 40 + plen as usize)
        }
        _ => return false,
    };
    let field = match proto {
        6 => l4 + 16,
        17 => l4 + 6,
        _ => return false,
    };
    if end > frame.len() || field + 2 > end || l4 < l3 + 20 {
        return false;
    }
    let mut sum: u64 = 0;
    let seg = &frame[l4..end];
    let mut words = seg.chunks_exact(2);
    for w in &mut words {
        sum += u16::from_be_bytes([w[0], w[1]]) as u64;
    }
    if let [last] = words.remainder() {
        sum += (*last as u64) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut csum = !(sum as u16);
    if csum == 0 {
        csum = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&csum.to_be_bytes());
    true
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn rd_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// How a queue transmits.
enum TxPath {
    Mmsg(MmsgArrays),
    Ring(TxRing),
}

/// Preallocated `sendmmsg` arguments: one header and one iovec per packet
/// of a burst; header `i` points at iovec `i` for the life of the queue.
struct MmsgArrays {
    hdrs: Box<[libc::mmsghdr; BURST_SIZE]>,
    iovs: Box<[libc::iovec; BURST_SIZE]>,
}

impl MmsgArrays {
    fn new() -> MmsgArrays {
        // SAFETY: mmsghdr and iovec are plain C structs for which all-zero
        // bytes are a valid value (null pointers, zero lengths).
        let mut m = unsafe {
            MmsgArrays {
                hdrs: Box::new(std::mem::zeroed()),
                iovs: Box::new(std::mem::zeroed()),
            }
        };
        for i in 0..BURST_SIZE {
            m.hdrs[i].msg_hdr.msg_iov = &mut m.iovs[i];
            m.hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        m
    }

    /// Send `bufs` with one `sendmmsg`; returns (sent, bytes, errors).
    fn send(&mut self, fd: RawFd, bufs: &[HeapBuf]) -> (usize, usize, u64) {
        if bufs.is_empty() {
            return (0, 0, 0);
        }
        for (iov, b) in self.iovs.iter_mut().zip(bufs) {
            iov.iov_base = b.data().as_ptr() as *mut libc::c_void;
            iov.iov_len = b.len();
        }
        match sendmmsg(fd, &mut self.hdrs[..bufs.len()]) {
            Ok(n) => (n, bufs[..n].iter().map(|b| b.len()).sum(), 0),
            Err(e) if is_transient(&e) => (0, 0, 0),
            Err(_) => (0, 0, 1),
        }
    }
}

/// The user side of a `TPACKET_V3` TX ring.
struct TxRing {
    base: *mut u8,
    block_size: usize,
    frame_size: usize,
    frames_per_block: usize,
    frame_count: usize,
    /// Next slot to fill (the kernel sends in the same order).
    head: usize,
    /// A kick failed: kick again on the next call even with nothing new.
    kick_pending: bool,
}

impl TxRing {
    fn frame_ptr(&self, i: usize) -> *mut u8 {
        let (blk, idx) = (i / self.frames_per_block, i % self.frames_per_block);
        // SAFETY: i < frame_count = block_count * frames_per_block, so the
        // slot lies inside the TX ring of the mapping.
        unsafe { self.base.add(blk * self.block_size + idx * self.frame_size) }
    }

    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: tp_status is the u32 at offset 20 of the slot's
        // tpacket3_hdr (slots are 16-byte aligned), live for the mapping,
        // and the kernel accesses it atomically.
        unsafe { AtomicU32::from_ptr(self.frame_ptr(i).add(20).cast()) }
    }

    /// Put `bufs` into free slots and kick the kernel; returns (placed,
    /// bytes, errors).
    fn send(&mut self, fd: RawFd, bufs: &[HeapBuf]) -> (usize, usize, u64) {
        let (mut placed, mut bytes, mut errors) = (0usize, 0usize, 0u64);
        for b in bufs {
            let status = self.status(self.head).load(Ordering::Acquire);
            if status == TP_STATUS_WRONG_FORMAT {
                errors += 1;
            } else if status != TP_STATUS_AVAILABLE {
                break; // ring full: slots still queued or in flight
            }
            let slot = self.frame_ptr(self.head);
            let len = b.len();
            // SAFETY: the slot is AVAILABLE (or WRONG_FORMAT), so the kernel
            // does not read or write it; it is frame_size bytes and
            // TX_DATA_OFFSET + len <= frame_size (max_frame was checked
            // against frame_size at open, and tx_burst only passes frames up
            // to max_frame).
            unsafe {
                let hdr = std::slice::from_raw_parts_mut(slot, TX_DATA_OFFSET);
                hdr[0..4].copy_from_slice(&0u32.to_ne_bytes()); // tp_next_offset
                hdr[12..16].copy_from_slice(&(len as u32).to_ne_bytes()); // tp_snaplen
                hdr[16..20].copy_from_slice(&(len as u32).to_ne_bytes()); // tp_len
                std::slice::from_raw_parts_mut(slot.add(TX_DATA_OFFSET), len)
                    .copy_from_slice(b.data());
            }
            self.status(self.head)
                .store(TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.head = (self.head + 1) % self.frame_count;
            placed += 1;
            bytes += len;
        }
        if placed > 0 || self.kick_pending {
            match kick(fd) {
                Ok(()) => self.kick_pending = false,
                Err(e) => {
                    self.kick_pending = true;
                    if !is_transient(&e) {
                        errors += 1;
                    }
                }
            }
        }
        (placed, bytes, errors)
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR)
    )
}

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
}

/// Add `n` to a counter only the calling thread writes.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// Kernel ABI (<linux/if_packet.h>, <linux/if_ether.h>), spelled out here so
// the driver does not depend on which of them a libc version exports.

const L2_OVERHEAD: usize = 14 + 4;
const ON: libc::c_int = 1;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_LOSS: libc::c_int = 14;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_FANOUT_DATA: libc::c_int = 22;
const PACKET_MR_PROMISC: u16 = 1;
const TPACKET_V3: libc::c_int = 2;
const PACKET_FANOUT_CBPF: u32 = 6;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;
const PACKET_OUTGOING: u8 = 4;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// `struct tpacket_block_desc`: `hdr.bh1.block_status`, `num_pkts`,
/// `offset_to_first_pkt`.
const BLOCK_STATUS_OFF: usize = 8;
const BLOCK_NUM_PKTS_OFF: usize = 12;
const BLOCK_FIRST_OFF: usize = 16;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where the `sockaddr_ll`
/// follows the header, and where TX data starts.
const TPACKET3_SLL_OFF: usize = 48;
const TX_DATA_OFFSET: usize = 48;
/// `TPACKET3_HDRLEN`: header + `sockaddr_ll` (20 bytes).
const TPACKET3_HDRLEN: usize = 48 + 20;
/// The kernel's `BPF_MAXINSNS`.
const MAX_BPF_INSNS: usize = 4096;

/// `struct tpacket_req3`.
#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketStatsV3 {
    tp_packets: u32,
    tp_drops: u32,
    tp_freeze_q_cnt: u32,
}

/// `struct packet_mreq`.
#[repr(C)]
#[derive(Clone, Copy)]
struct PacketMreq {
    ifindex: libc::c_int,
    kind: u16,
    alen: u16,
    address: [u8; 8],
}

/// Validated ring sizes.
struct RingGeometry {
    block_size: usize,
    block_count: usize,
    frame_size: usize,
    block_timeout_ms: u32,
    tx_ring: bool,
}

impl RingGeometry {
    fn new(ifname: &str, o: &AfPacketOptions) -> Result<RingGeometry, DriverError> {
        let page = page_size();
        let bad = |what: String| Err(DriverError::Config(format!("af_packet {ifname}: {what}")));
        if o.block_size == 0 || o.block_size as usize % page != 0 || o.block_size > 1 << 30 {
            return bad(format!(
                "block_size {} must be a multiple of the page size ({page})",
                o.block_size
            ));
        }
        if o.frame_size % 16 != 0 || (o.frame_size as usize) < TPACKET3_HDRLEN + 60 {
            return bad(format!(
                "frame_size {} must be a multiple of 16 and at least {}",
                o.frame_size,
                TPACKET3_HDRLEN + 60
            ));
        }
        if o.frame_size > o.block_size {
            return bad(format!(
                "frame_size {} larger than block_size {}",
                o.frame_size, o.block_size
            ));
        }
        if o.block_count == 0 || o.block_count as u64 * o.block_size as u64 > 1 << 31 {
            return bad(format!(
                "block_count {} (ring of at most 2 GiB, at least one block)",
                o.block_count
            ));
        }
        if o.block_timeout_ms == 0 {
            return bad("block_timeout_ms must be at least 1".into());
        }
        Ok(RingGeometry {
            block_size: o.block_size as usize,
            block_count: o.block_count as usize,
            frame_size: o.frame_size as usize,
            block_timeout_ms: o.block_timeout_ms,
            tx_ring: o.tx_mode == TxMode::Ring,
        })
    }

    fn ring_len(&self) -> usize {
        self.block_size * self.block_count
    }

    fn frame_count(&self) -> usize {
        (self.block_size / self.frame_size) * self.block_count
    }

    fn map_len(&self) -> usize {
        self.ring_len() * if self.tx_ring { 2 } else { 1 }
    }

    fn req(&self, rx: bool) -> TpacketReq3 {
        TpacketReq3 {
            block_size: self.block_size as u32,
            block_nr: self.block_count as u32,
            frame_size: self.frame_size as u32,
            frame_nr: self.frame_count() as u32,
            retire_blk_tov: if rx { self.block_timeout_ms } else { 0 },
            sizeof_priv: 0,
            feature_req_word: 0,
        }
    }
}

/// A socket with its rings mapped, bound, still dropping every packet.
struct OpenSocket {
    fd: OwnedFd,
    map: Mapping,
}

/// Create one queue's socket: TPACKET_V3 rings, mapped, a drop-all filter
/// (until it has joined the group), qdisc bypass, bound to the interface.
/// On failure: the step that failed and the error.
fn open_socket(
    g: &RingGeometry,
    o: &AfPacketOptions,
    ifindex: i32,
) -> Result<OpenSocket, (&'static str, io::Error)> {
    let fd = packet_socket().map_err(|e| ("socket(AF_PACKET)", e))?;
    let raw = fd.as_raw_fd();
    setsockopt(raw, SOL_PACKET, PACKET_VERSION, &TPACKET_V3).map_err(|e| ("TPACKET_V3", e))?;
    if g.tx_ring {
        // Skip malformed TX slots instead of stalling the ring (before any
        // ring exists, or the kernel refuses).
        setsockopt(raw, SOL_PACKET, PACKET_LOSS, &ON).map_err(|e| ("PACKET_LOSS", e))?;
    }
    setsockopt(raw, SOL_PACKET, PACKET_RX_RING, &g.req(true)).map_err(|e| ("RX ring", e))?;
    if g.tx_ring {
        setsockopt(raw, SOL_PACKET, PACKET_TX_RING, &g.req(false)).map_err(|e| ("TX ring", e))?;
    }
    let map = Mapping::new(raw, g.map_len()).map_err(|e| ("mmap rings", e))?;
    attach_filter(raw, &[stmt(BPF_RET | BPF_K, 0)]).map_err(|e| ("drop-all filter", e))?;
    if o.qdisc_bypass {
        setsockopt(raw, SOL_PACKET, PACKET_QDISC_BYPASS, &ON)
            .map_err(|e| ("PACKET_QDISC_BYPASS", e))?;
    }
    bind_ll(raw, ifindex).map_err(|e| ("bind", e))?;
    Ok(OpenSocket { fd, map })
}

/// Create the fanout group with the first socket: the given id, or one the
/// kernel picks; also asks the kernel to leave out outgoing packets where
/// it can. Returns (id, type and flags for the other members).
fn create_group(fd: RawFd, id: Option<u16>) -> io::Result<(u16, u32)> {
    let mut last = None;
    for ignore_outgoing in [PACKET_FANOUT_FLAG_IGNORE_OUTGOING, 0] {
        let flags = PACKET_FANOUT_CBPF | ignore_outgoing;
        let r = match id {
            Some(id) => set_fanout(fd, id, flags).map(|()| id),
            None => set_fanout(fd, 0, flags | PACKET_FANOUT_FLAG_UNIQUEID)
                .and_then(|()| getsockopt::<u32>(fd, SOL_PACKET, PACKET_FANOUT))
                .map(|v| v as u16),
        };
        match r {
            Ok(id) => return Ok((id, flags)),
            // Kernels before 6.9 do not know IGNORE_OUTGOING: retry without
            // (the socket filter drops outgoing packets anyway).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

fn set_fanout(fd: RawFd, id: u16, type_flags: u32) -> io::Result<()> {
    let arg: u32 = id as u32 | (type_flags << 16);
    setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg)
}

fn set_fanout_program(fd: RawFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // The kernel copies the program during the call.
    setsockopt(fd, SOL_PACKET, PACKET_FANOUT_DATA, &fprog)
}

fn attach_filter(fd: RawFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// The socket filter every queue runs: drop packets the host sends out of
/// the interface, keep everything else whole.
fn drop_outgoing_filter() -> [libc::sock_filter; 4] {
    [
        stmt(BPF_LD | BPF_W | BPF_ABS, ancillary(libc::SKF_AD_PKTTYPE)),
        jump(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING as u32, 0, 1),
        stmt(BPF_RET | BPF_K, 0),
        stmt(BPF_RET | BPF_K, u32::MAX),
    ]
}

fn add_promisc(fd: RawFd, ifindex: i32) -> io::Result<()> {
    let mreq = PacketMreq {
        ifindex,
        kind: PACKET_MR_PROMISC,
        alen: 0,
        address: [0; 8],
    };
    setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)
}

fn packet_stats(fd: RawFd) -> io::Result<TpacketStatsV3> {
    getsockopt::<TpacketStatsV3>(fd, SOL_PACKET, PACKET_STATISTICS)
}

// ---------------------------------------------------------------------------
// Small safe wrappers around the system calls.

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

fn if_index(name: &str) -> io::Result<i32> {
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i as i32)
    }
}

fn packet_socket() -> io::Result<OwnedFd> {
    // Protocol 0: receives nothing until bound with ETH_P_ALL.
    // SAFETY: plain socket(2) call with constant arguments.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh socket fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `setsockopt` with a plain-data value (`T` is a `#[repr(C)]` struct or
/// integer as the option expects).
fn setsockopt<T: Copy>(fd: RawFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live `T` of size_of::<T>() bytes that the
    // kernel only reads during the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `getsockopt` into a plain-data value.
fn getsockopt<T: Copy + Default>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<T> {
    let mut v = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` is a live, exclusively borrowed `T`; the kernel writes at
    // most `len` = size_of::<T>() bytes into it and updates `len`.
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut T).cast(), &mut len) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

fn bind_ll(fd: RawFd, ifindex: i32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a live sockaddr_ll and the length passed is its size.
    let r = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Tell the kernel to send every TX ring slot marked SEND_REQUEST, without
/// waiting for completions.
fn kick(fd: RawFd) -> io::Result<()> {
    // SAFETY: a null buffer of length 0 and no address: the kernel reads
    // nothing from user memory except the ring it already maps.
    let r = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `sendmmsg(fd, hdrs, MSG_DONTWAIT)`; returns how many were sent.
fn sendmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: every header's msg_iov points at one iovec in the queue's
    // arrays, each describing a live HeapBuf's bytes, all borrowed for the
    // duration of this call; the kernel writes only `msg_len` fields.
    let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as _, libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// A shared memory mapping of a socket's rings; unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(fd: RawFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of the socket's rings at an
        // address the kernel chooses; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            Ok(Mapping { ptr: p.cast(), len })
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; the queue that
        // owned the rings is being dropped, so no slice into them is alive.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// `struct ifreq` (see tap.rs): name, then a 24-byte union.
#[repr(C, align(8))]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

/// A datagram socket for `SIOCGIF*` ioctls.
struct CtlSocket(OwnedFd);

impl CtlSocket {
    fn new() -> io::Result<CtlSocket> {
        // SAFETY: plain socket(2) call with constant arguments.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh socket fd that nothing else owns.
        Ok(CtlSocket(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    fn ioctl(&self, ifname: &str, req: libc::c_ulong) -> io::Result<IfReq> {
        let mut ifr = IfReq {
            name: [0; 16],
            data: [0; 24],
        };
        let n = ifname.len().min(15);
        ifr.name[..n].copy_from_slice(&ifname.as_bytes()[..n]);
        // SAFETY: SIOCGIF* requests write at most sizeof(struct ifreq)
        // bytes to the pointer, a live exclusively borrowed IfReq that large.
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), req as _, &mut ifr as *mut IfReq) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ifr)
        }
    }

    fn mtu(&self, ifname: &str) -> io::Result<u16> {
        let r = self.ioctl(ifname, libc::SIOCGIFMTU)?;
        let mtu = i32::from_ne_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]);
        Ok(mtu.clamp(0, u16::MAX as i32) as u16)
    }

    fn hwaddr(&self, ifname: &str) -> io::Result<[u8; 6]> {
        let r = self.ioctl(ifname, libc::SIOCGIFHWADDR)?;
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&r.data[2..8]);
        Ok(mac)
    }
}

// ---------------------------------------------------------------------------
// The steering program.

const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_ST: u16 = 0x02;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_MISC: u16 = 0x07;
const BPF_W: u16 = 0x00;
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_IMM: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_IND: u16 = 0x40;
const BPF_MEM: u16 = 0x60;
const BPF_MSH: u16 = 0xa0;
const BPF_MUL: u16 = 0x20;
const BPF_AND: u16 = 0x50;
const BPF_RSH: u16 = 0x70;
const BPF_MOD: u16 = 0x90;
const BPF_XOR: u16 = 0xa0;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;
const BPF_X: u16 = 0x08;
const BPF_A: u16 = 0x10;
const BPF_TAX: u16 = 0x00;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The `k` of a load of ancillary data `what` (`SKF_AD_*`).
fn ancillary(what: libc::c_int) -> u32 {
    (libc::SKF_AD_OFF + what) as u32
}

// Scratch memory words of the program.
const M_PROTO: u32 = 0;
const M_SPORT: u32 = 1;
const M_DPORT: u32 = 2;
const M_S0: u32 = 3; // source address words S0..S3 (IPv4: S0 only)
const M_D0: u32 = 7; // destination address words D0..D3
const M_SF: u32 = 11; // folded source (xor of its words)
const M_DF: u32 = 12; // folded destination
const M_T: u32 = 13; // temporary

/// The classic-BPF `PACKET_FANOUT_CBPF` program for `plan`: returns
/// exactly [`SteerPlan::owner`] for TCP and UDP over IPv4 and IPv6 (no
/// extension headers), untagged or with an 802.1Q/802.1ad tag;
/// [`steer::frag_owner`](crate::steer::frag_owner) for IPv4 fragments
/// (first or not: the worker that routes a datagram's fragments); and 0 for
/// everything else (ARP, other protocols, IPv6 fragments, truncated
/// headers).
///
/// The kernel runs fanout programs on received packets with the data
/// starting at the network header (the Ethernet header and a VLAN tag the
/// kernel recognised are metadata by then), the EtherType in ancillary
/// `SKF_AD_PROTOCOL`. A tag still in the data (`protocol` 802.1Q/802.1ad,
/// e.g. the inner tag of a double-tagged frame) is skipped.
pub fn fanout_program(plan: &SteerPlan) -> Vec<libc::sock_filter> {
    if plan.workers <= 1 {
        return vec![stmt(BPF_RET | BPF_K, 0)];
    }
    let mut a = Asm::default();
    let (v4_0, v6_0, tagged, v4_4, v6_4) = (a.label(), a.label(), a.label(), a.label(), a.label());
    let (match4, match6, hash, lport, zero) =
        (a.label(), a.label(), a.label(), a.label(), a.label());

    // Which network protocol, where its header starts.
    a.op(BPF_LD | BPF_W | BPF_ABS, ancillary(libc::SKF_AD_PROTOCOL));
    a.jeq(0x0800, Some(v4_0), None);
    a.jeq(0x86dd, Some(v6_0), None);
    a.jeq(ETH_P_8021Q as u32, Some(tagged), None);
    a.jeq(ETH_P_8021AD as u32, Some(tagged), Some(zero));
    a.place(tagged);
    a.op(BPF_LD | BPF_H | BPF_ABS, 2);
    a.jeq(0x0800, Some(v4_4), None);
    a.jeq(0x86dd, Some(v6_4), Some(zero));

    for (label, base) in [(v4_0, 0u32), (v4_4, 4)] {
        a.place(label);
        parse_ipv4(&mut a, base, match4, plan.workers, zero);
    }
    for (label, base) in [(v6_0, 0u32), (v6_4, 4)] {
        a.place(label);
        parse_ipv6(&mut a, base, match6, zero);
    }
    a.place(match4);
    match_family(&mut a, plan, 1, lport, hash);
    a.place(match6);
    match_family(&mut a, plan, 4, lport, hash);

    // owner_hash(A, X) % workers
    a.place(hash);
    a.op(BPF_ALU | BPF_XOR | BPF_X, 0);
    a.op(BPF_ALU | BPF_MUL | BPF_K, 0x9E37_79B1);
    a.op(BPF_ALU | BPF_RSH | BPF_K, 16);
    a.op(BPF_ALU | BPF_MOD | BPF_K, plan.workers as u32);
    a.op(BPF_RET | BPF_A, 0);
    // lport_owner(dport)
    a.place(lport);
    a.op(BPF_LD | BPF_MEM, M_DPORT);
    a.op(BPF_ALU | BPF_MOD | BPF_K, plan.workers as u32);
    a.op(BPF_RET | BPF_A, 0);
    a.place(zero);
    a.op(BPF_RET | BPF_K, 0);
    a.finish()
}

/// IPv4 header at `base`: store protocol, addresses and ports of TCP/UDP;
/// a fragment (MF or an offset) returns `steer::frag_owner` of its
/// addresses and identification among `workers`.
fn parse_ipv4(a: &mut Asm, base: u32, matcher: usize, workers: u16, zero: usize) {
    let (l4, frag) = (a.label(), a.label());
    a.op(BPF_LD | BPF_H | BPF_ABS, base + 6);
    a.jump(BPF_JSET, 0x3fff, Some(frag), None); // MF or fragment offset
    a.op(BPF_LD | BPF_B | BPF_ABS, base + 9);
    a.jeq(6, Some(l4), None);
    a.jeq(17, None, Some(zero));
    a.place(l4);
    a.op(BPF_ST, M_PROTO);
    a.op(BPF_LD | BPF_W | BPF_ABS, base + 12);
    a.op(BPF_ST, M_S0);
    a.op(BPF_ST, M_SF);
    a.op(BPF_LD | BPF_W | BPF_ABS, base + 16);
    a.op(BPF_ST, M_D0);
    a.op(BPF_ST, M_DF);
    a.op(BPF_LDX | BPF_B | BPF_MSH, base);
    a.op(BPF_LD | BPF_H | BPF_IND, base);
    a.op(BPF_ST, M_SPORT);
    a.op(BPF_LD | BPF_H | BPF_IND, base + 2);
    a.op(BPF_ST, M_DPORT);
    a.ja(matcher);
    // frag_owner: owner_hash(src ^ dst, ident) % workers.
    a.place(frag);
    a.op(BPF_LD | BPF_W | BPF_ABS, base + 12);
    a.op(BPF_ST, M_T);
    a.op(BPF_LD | BPF_W | BPF_ABS, base + 16);
    a.op(BPF_LDX | BPF_W | BPF_MEM, M_T);
    a.op(BPF_ALU | BPF_XOR | BPF_X, 0);
    a.op(BPF_MISC | BPF_TAX, 0);
    a.op(BPF_LD | BPF_H | BPF_ABS, base + 4);
    // Inline (the kernel's memory check runs straight on past a RET, so a
    // jump into the shared hash would taint the local-port block after it).
    a.op(BPF_ALU | BPF_XOR | BPF_X, 0);
    a.op(BPF_ALU | BPF_MUL | BPF_K, 0x9E37_79B1);
    a.op(BPF_ALU | BPF_RSH | BPF_K, 16);
    a.op(BPF_ALU | BPF_MOD | BPF_K, workers as u32);
    a.op(BPF_RET | BPF_A, 0);
}

/// IPv6 header at `base`: TCP/UDP directly after the fixed header only.
fn parse_ipv6(a: &mut Asm, base: u32, matcher: usize, zero: usize) {
    let l4 = a.label();
    a.op(BPF_LD | BPF_B | BPF_ABS, base + 6);
    a.jeq(6, Some(l4), None);
    a.jeq(17, None, Some(zero));
    a.place(l4);
    a.op(BPF_ST, M_PROTO);
    for (first_word, first_slot, fold_slot) in [(base + 8, M_S0, M_SF), (base + 24, M_D0, M_DF)] {
        for i in 0..4 {
            a.op(BPF_LD | BPF_W | BPF_ABS, first_word + 4 * i);
            a.op(BPF_ST, first_slot + i);
        }
        // fold = w0 ^ w1 ^ w2 ^ w3 (A holds w3)
        for i in 0..3 {
            a.op(BPF_MISC | BPF_TAX, 0);
            a.op(BPF_LD | BPF_MEM, first_slot + i);
            a.op(BPF_ALU | BPF_XOR | BPF_X, 0);
        }
        a.op(BPF_ST, fold_slot);
    }
    a.op(BPF_LD | BPF_H | BPF_ABS, base + 40);
    a.op(BPF_ST, M_SPORT);
    a.op(BPF_LD | BPF_H | BPF_ABS, base + 42);
    a.op(BPF_ST, M_DPORT);
    a.ja(matcher);
}

/// The address word `i` of a 4- or 16-byte address (missing bytes 0, as
/// `SteerPlan::owner` zips a short mask).
fn word(bytes: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    for (j, b) in w.iter_mut().enumerate() {
        *b = bytes.get(4 * i + j).copied().unwrap_or(0);
    }
    u32::from_be_bytes(w)
}

/// Local addresses, then services in plan order, then the default (client
/// = destination), for addresses of `words` 32-bit words. Every way out
/// jumps to `hash` with A = folded address, X = port, or to `lport`.
fn match_family(a: &mut Asm, plan: &SteerPlan, words: usize, lport: usize, hash: usize) {
    let len = words * 4;
    for laddr in plan.laddrs.iter().filter(|l| l.len() == len) {
        let next = a.label();
        for i in 0..words {
            a.op(BPF_LD | BPF_MEM, M_D0 + i as u32);
            a.jeq(word(laddr, i), None, Some(next));
        }
        a.ja(lport);
        a.place(next);
    }
    // Exact-port services before the port-0 ("every port") ones, the order
    // of `SteerPlan::service` (and of the worker's service lookup).
    let exact = plan.services.iter().filter(|s| s.vport != 0);
    let any_port = plan.services.iter().filter(|s| s.vport == 0);
    for s in exact.chain(any_port) {
        if s.vip.len() != len || !(s.proto == 6 || s.proto == 17) {
            continue; // can never match a TCP/UDP packet of this family
        }
        let next = a.label();
        a.op(BPF_LD | BPF_MEM, M_PROTO);
        a.jeq(s.proto as u32, None, Some(next));
        for i in 0..words {
            a.op(BPF_LD | BPF_MEM, M_D0 + i as u32);
            a.jeq(word(&s.vip, i), None, Some(next));
        }
        if s.vport != 0 {
            a.op(BPF_LD | BPF_MEM, M_DPORT);
            a.jeq(s.vport as u32, None, Some(next));
        }
        match &s.persist_mask {
            None => {
                a.op(BPF_LDX | BPF_W | BPF_MEM, M_SPORT);
                a.op(BPF_LD | BPF_MEM, M_SF);
            }
            Some(mask) => {
                // xor of the masked source words, port 0
                let kept: Vec<(u32, u32)> = (0..words)
                    .map(|i| (M_S0 + i as u32, word(mask, i)))
                    .filter(|&(_, m)| m != 0)
                    .collect();
                if kept.is_empty() {
                    a.op(BPF_LD | BPF_IMM, 0);
                }
                for (n, &(slot, m)) in kept.iter().enumerate() {
                    if n > 0 {
                        a.op(BPF_ST, M_T);
                    }
                    a.op(BPF_LD | BPF_MEM, slot);
                    if m != u32::MAX {
                        a.op(BPF_ALU | BPF_AND | BPF_K, m);
                    }
                    if n > 0 {
                        a.op(BPF_MISC | BPF_TAX, 0);
                        a.op(BPF_LD | BPF_MEM, M_T);
                        a.op(BPF_ALU | BPF_XOR | BPF_X, 0);
                    }
                }
                a.op(BPF_LDX | BPF_W | BPF_IMM, 0);
            }
        }
        a.ja(hash);
        a.place(next);
    }
    a.op(BPF_LDX | BPF_W | BPF_MEM, M_DPORT);
    a.op(BPF_LD | BPF_MEM, M_DF);
    a.ja(hash);
}

/// A tiny classic-BPF assembler with forward labels. Conditional jumps
/// reach at most 255 instructions; `finish` turns a longer one into a short
/// jump over an unconditional `ja` (32-bit reach).
#[derive(Default)]
struct Asm {
    items: Vec<Item>,
    labels: usize,
}

#[derive(Clone, Copy)]
enum Item {
    Label(usize),
    Op(u16, u32),
    /// Conditional jump; `None` = the next instruction.
    Jump(u16, u32, Option<usize>, Option<usize>),
    Ja(usize),
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    fn place(&mut self, l: usize) {
        self.items.push(Item::Label(l));
    }
    fn op(&mut self, code: u16, k: u32) {
        self.items.push(Item::Op(code, k));
    }
    fn jump(&mut self, op: u16, k: u32, jt: Option<usize>, jf: Option<usize>) {
        self.items.push(Item::Jump(BPF_JMP | op | BPF_K, k, jt, jf));
    }
    fn jeq(&mut self, k: u32, jt: Option<usize>, jf: Option<usize>) {
        self.jump(BPF_JEQ, k, jt, jf);
    }
    fn ja(&mut self, l: usize) {
        self.items.push(Item::Ja(l));
    }

    /// Instruction index of every label.
    fn layout(&self) -> Vec<usize> {
        let mut at = vec![usize::MAX; self.labels];
        let mut pc = 0;
        for it in &self.items {
            match it {
                Item::Label(l) => at[*l] = pc,
                _ => pc += 1,
            }
        }
        at
    }

    fn finish(mut self) -> Vec<libc::sock_filter> {
        // Widen far conditional jumps until every one reaches.
        'widen: loop {
            let at = self.layout();
            let mut pc = 0;
            for idx in 0..self.items.len() {
                match self.items[idx] {
                    Item::Label(_) => continue,
                    Item::Jump(code, k, jt, jf) => {
                        let far = |t: Option<usize>| t.is_some_and(|l| at[l] - (pc + 1) > 255);
                        if far(jt) || far(jf) {
                            let after = self.label();
                            let (near, target) = if far(jt) {
                                (Item::Jump(code, k, None, jf.or(Some(after))), jt)
                            } else {
                                (Item::Jump(code, k, jt.or(Some(after)), None), jf)
                            };
                            let target = target.unwrap_or(after);
                            self.items
                                .splice(idx..=idx, [near, Item::Ja(target), Item::Label(after)]);
                            continue 'widen;
                        }
                    }
                    _ => {}
                }
                pc += 1;
            }
            break;
        }
        let at = self.layout();
        let mut out = Vec::with_capacity(self.items.len());
        for it in &self.items {
            let pc = out.len();
            let rel = |l: usize| at[l] - (pc + 1);
            match *it {
                Item::Label(_) => {}
                Item::Op(code, k) => out.push(stmt(code, k)),
                Item::Jump(code, k, jt, jf) => out.push(jump(
                    code,
                    k,
                    jt.map_or(0, |l| rel(l) as u8),
                    jf.map_or(0, |l| rel(l) as u8),
                )),
                Item::Ja(l) => out.push(stmt(BPF_JMP | BPF_JA, rel(l) as u32)),
            }
        }
        out
    }
}

/// A classic-BPF interpreter for exactly the opcodes [`fanout_program`]
/// emits, with the kernel's semantics for fanout programs, and the kernel's
/// static checks: how the unit tests and `tests/owner_agreement.rs` check
/// that the program computes [`SteerPlan::owner`]. Test support, not part
/// of the driver (nothing else calls it).
#[doc(hidden)]
pub mod cbpf {
    use super::*;

    /// What a fanout program sees: `skb->protocol` and the data from the
    /// network header on.
    pub struct Skb<'a> {
        /// `skb->protocol`: the EtherType (ancillary `SKF_AD_PROTOCOL`).
        pub protocol: u16,
        /// The packet from the network header on.
        pub data: &'a [u8],
    }

    fn load(data: &[u8], off: u32, size: usize) -> Option<u32> {
        let off = off as usize;
        let b = data.get(off..off.checked_add(size)?)?;
        Some(b.iter().fold(0u32, |acc, &x| (acc << 8) | x as u32))
    }

    /// Run `prog` on `skb`; a load outside the packet ends the program with
    /// 0, as in the kernel.
    pub fn run(prog: &[libc::sock_filter], skb: &Skb) -> u32 {
        let (mut a, mut x, mut m) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0usize;
        loop {
            let ins = prog[pc];
            pc += 1;
            let k = ins.k;
            let size = match ins.code & 0x18 {
                BPF_W => 4,
                BPF_H => 2,
                _ => 1,
            };
            match ins.code {
                c if c == BPF_LD | BPF_W | BPF_ABS && k >= ancillary(0) => {
                    assert_eq!(
                        k,
                        ancillary(libc::SKF_AD_PROTOCOL),
                        "unexpected ancillary load"
                    );
                    a = skb.protocol as u32;
                }
                c if c & 0x07 == BPF_LD && c & 0xe0 == BPF_ABS => match load(skb.data, k, size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c & 0x07 == BPF_LD && c & 0xe0 == BPF_IND => {
                    match load(skb.data, x.wrapping_add(k), size) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                c if c == BPF_LD | BPF_IMM => a = k,
                c if c == BPF_LD | BPF_MEM => a = m[k as usize],
                c if c == BPF_LDX | BPF_W | BPF_IMM => x = k,
                c if c == BPF_LDX | BPF_W | BPF_MEM => x = m[k as usize],
                c if c == BPF_LDX | BPF_B | BPF_MSH => match load(skb.data, k, 1) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                c if c == BPF_ST => m[k as usize] = a,
                c if c == BPF_ALU | BPF_AND | BPF_K => a &= k,
                c if c == BPF_ALU | BPF_XOR | BPF_X => a ^= x,
                c if c == BPF_ALU | BPF_MUL | BPF_K => a = a.wrapping_mul(k),
                c if c == BPF_ALU | BPF_RSH | BPF_K => a >>= k,
                c if c == BPF_ALU | BPF_MOD | BPF_K => a %= k,
                c if c == BPF_MISC | BPF_TAX => x = a,
                c if c == BPF_JMP | BPF_JA => pc += k as usize,
                c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                    pc += if a == k { ins.jt } else { ins.jf } as usize
                }
                c if c == BPF_JMP | BPF_JSET | BPF_K => {
                    pc += if a & k != 0 { ins.jt } else { ins.jf } as usize
                }
                c if c == BPF_RET | BPF_K => return k,
                c if c == BPF_RET | BPF_A => return a,
                c => panic!("opcode {c:#x} not expected in a fanout program"),
            }
        }
    }

    /// The kernel's static checks on a classic program (bpf_check_classic):
    /// size, jump targets, final RET, scratch indices, no division by a
    /// zero constant, and no read of a scratch word that is not written on
    /// every path to it (check_load_and_stores, same algorithm).
    pub fn verify(prog: &[libc::sock_filter]) -> Result<(), String> {
        let n = prog.len();
        if n == 0 || n > MAX_BPF_INSNS {
            return Err(format!("length {n}"));
        }
        let mut masks = vec![0xffffu16; n];
        let mut valid = 0u16;
        for (pc, ins) in prog.iter().enumerate() {
            valid &= masks[pc];
            let class = ins.code & 0x07;
            let uses_scratch = class == BPF_ST || (ins.code & 0xe0 == BPF_MEM && class <= BPF_LDX);
            if uses_scratch && ins.k >= 16 {
                return Err(format!("pc {pc}: scratch index {}", ins.k));
            }
            if ins.code == BPF_ALU | BPF_MOD | BPF_K && ins.k == 0 {
                return Err(format!("pc {pc}: mod 0"));
            }
            match ins.code {
                c if c == BPF_ST => valid |= 1 << ins.k,
                c if (c == BPF_LD | BPF_MEM || c == BPF_LDX | BPF_W | BPF_MEM)
                    && valid & (1 << ins.k) == 0 =>
                {
                    return Err(format!("pc {pc}: reads M[{}] before it is set", ins.k));
                }
                c if c == BPF_JMP | BPF_JA => {
                    let t = pc + 1 + ins.k as usize;
                    if t >= n {
                        return Err(format!("pc {pc}: ja out of range"));
                    }
                    masks[t] &= valid;
                    valid = 0xffff;
                }
                c if class == BPF_JMP && c != BPF_JMP | BPF_JA => {
                    for off in [ins.jt, ins.jf] {
                        let t = pc + 1 + off as usize;
                        if t >= n {
                            return Err(format!("pc {pc}: jump out of range"));
                        }
                        masks[t] &= valid;
                    }
                    valid = 0xffff;
                }
                _ => {}
            }
        }
        if prog[n - 1].code & 0x07 != BPF_RET {
            return Err("last instruction is not RET".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::cbpf::{run, verify, Skb};
    use super::*;
    use crate::steer::SteerService;

    // --- Packets, built byte by byte.

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn bytes<const N: usize>(&mut self) -> [u8; N] {
            let mut b = [0u8; N];
            for x in &mut b {
                *x = self.next() as u8;
            }
            b
        }
    }

    /// An IPv4 header with `options` words of options and a TCP/UDP-ish
    /// L4 header (ports, then zeros).
    fn ipv4(proto: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, options: u8) -> Vec<u8> {
        let ihl = 5 + options as usize;
        let mut p = vec![0u8; ihl * 4 + 20];
        p[0] = 0x40 | (ihl as u8);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..ihl * 4].fill(1); // NOP options
        let l4 = ihl * 4;
        p[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
        p[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn ipv6(next: u8, src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40 + 20];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&20u16.to_be_bytes());
        p[6] = next;
        p[7] = 64;
        p[8..24].copy_from_slice(&src);
        p[24..40].copy_from_slice(&dst);
        p[40..42].copy_from_slice(&sport.to_be_bytes());
        p[42..44].copy_from_slice(&dport.to_be_bytes());
        p
    }

    /// Every way the kernel may present an L3 packet to the program:
    /// untagged (or tag taken into metadata), tag left in the data
    /// (802.1Q and 802.1ad).
    fn views(ethertype: u16, l3: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = vec![(ethertype, l3.to_vec())];
        for tpid in [ETH_P_8021Q, ETH_P_8021AD] {
            let mut d = vec![0x20, 0x0a];
            d.extend_from_slice(&ethertype.to_be_bytes());
            d.extend_from_slice(l3);
            out.push((tpid, d));
        }
        out
    }

    fn v6(prefix: u16, last: u16) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[0..2].copy_from_slice(&0x2001u16.to_be_bytes());
        a[2..4].copy_from_slice(&0x0db8u16.to_be_bytes());
        a[4..6].copy_from_slice(&prefix.to_be_bytes());
        a[14..16].copy_from_slice(&last.to_be_bytes());
        a
    }

    fn svc(proto: u8, vip: &[u8], vport: u16, mask: Option<&[u8]>) -> SteerService {
        SteerService {
            proto,
            vip: vip.to_vec(),
            vport,
            persist_mask: mask.map(|m| m.to_vec()),
        }
    }

    /// Services of every shape: all ports, one port, persistent with full,
    /// short and over-long masks, a protocol the program never sees, both
    /// families; local addresses of both families.
    fn mixed_plan(workers: u16) -> SteerPlan {
        let mut v6_64 = [0u8; 16];
        v6_64[..8].fill(0xff);
        SteerPlan {
            workers,
            services: vec![
                svc(6, &[198, 51, 100, 10], 80, None),
                svc(17, &[198, 51, 100, 10], 0, None),
                svc(6, &[198, 51, 100, 20], 443, Some(&[255, 255, 255, 0])),
                svc(6, &[198, 51, 100, 21], 0, Some(&[255, 255])),
                svc(17, &[198, 51, 100, 22], 53, Some(&v6_64)),
                svc(1, &[198, 51, 100, 30], 0, None),
                svc(6, &v6(1, 0x10), 80, None),
                svc(17, &v6(1, 0x20), 53, Some(&v6_64)),
                svc(6, &v6(1, 0x21), 0, Some(&[255, 255, 255, 255])),
                svc(6, &v6(1, 0x22), 8080, Some(&[0xff; 16])),
                svc(6, &[198, 51, 100, 10], 8080, Some(&[255, 255, 0, 0])),
            ],
            laddrs: vec![vec![198, 51, 100, 200], v6(1, 0x200).to_vec()],
        }
    }

    /// Many services, so that jumps reach past 255 instructions.
    fn big_plan(workers: u16) -> SteerPlan {
        let mut services = Vec::new();
        for i in 0..280u16 {
            let mask = (i % 3 == 0).then_some(&[255u8, 255, 255, 0][..]);
            services.push(svc(
                6 + 11 * (i % 2) as u8,
                &[203, 0, (i >> 8) as u8, i as u8],
                80 + i % 4,
                mask,
            ));
        }
        for i in 0..40u16 {
            services.push(svc(6, &v6(7, i), 443, None));
        }
        SteerPlan {
            workers,
            services,
            laddrs: (0..20u8).map(|i| vec![203, 0, 200, i]).collect(),
        }
    }

    fn addr_pool4(plan: &SteerPlan) -> Vec<[u8; 4]> {
        let mut pool: Vec<[u8; 4]> = plan
            .services
            .iter()
            .map(|s| &s.vip)
            .chain(&plan.laddrs)
            .filter_map(|a| <[u8; 4]>::try_from(a.as_slice()).ok())
            .collect();
        pool.extend([
            [198, 51, 100, 7],
            [198, 51, 100, 99],
            [10, 1, 2, 3],
            [203, 0, 113, 5],
        ]);
        pool
    }

    fn addr_pool6(plan: &SteerPlan) -> Vec<[u8; 16]> {
        let mut pool: Vec<[u8; 16]> = plan
            .services
            .iter()
            .map(|s| &s.vip)
            .chain(&plan.laddrs)
            .filter_map(|a| <[u8; 16]>::try_from(a.as_slice()).ok())
            .collect();
        pool.extend([v6(1, 0x7), v6(2, 0x7), v6(1, 0x99)]);
        pool
    }

    /// Check the program against `plan.owner` on `n` random packets of
    /// each family, in every presentation; returns how many were checked.
    fn check_plan(plan: &SteerPlan, n: usize, seed: u64) -> usize {
        let prog = fanout_program(plan);
        verify(&prog).unwrap_or_else(|e| panic!("program rejected: {e}"));
        let mut rng = Rng(seed);
        let (pool4, pool6) = (addr_pool4(plan), addr_pool6(plan));
        let ports = [80u16, 443, 53, 8080, 81, 82, 83, 0, 65535];
        let port = |rng: &mut Rng| {
            if rng.below(2) == 0 {
                ports[rng.below(ports.len() as u64) as usize]
            } else {
                rng.next() as u16
            }
        };
        let mut checked = 0;
        for _ in 0..n {
            let proto = if rng.below(2) == 0 { 6 } else { 17 };
            let (sport, dport) = (port(&mut rng), port(&mut rng));
            // IPv4: source random or from the pool, destination mostly from the pool.
            let src4 = if rng.below(3) == 0 {
                pool4[rng.below(pool4.len() as u64) as usize]
            } else {
                rng.bytes()
            };
            let dst4 = if rng.below(5) == 0 {
                rng.bytes()
            } else {
                pool4[rng.below(pool4.len() as u64) as usize]
            };
            let options = if rng.below(4) == 0 {
                rng.below(11) as u8
            } else {
                0
            };
            let want = plan.owner(proto, &src4, sport, &dst4, dport);
            for (protocol, data) in views(0x0800, &ipv4(proto, src4, sport, dst4, dport, options)) {
                let got = run(
                    &prog,
                    &Skb {
                        protocol,
                        data: &data,
                    },
                );
                assert_eq!(got, want as u32, "IPv4 {proto} {src4:?}:{sport} -> {dst4:?}:{dport} (ihl options {options}, protocol {protocol:#x})");
                checked += 1;
            }
            let src6 = if rng.below(3) == 0 {
                pool6[rng.below(pool6.len() as u64) as usize]
            } else {
                rng.bytes()
            };
            let dst6 = if rng.below(5) == 0 {
                rng.bytes()
            } else {
                pool6[rng.below(pool6.len() as u64) as usize]
            };
            let want = plan.owner(proto, &src6, sport, &dst6, dport);
            for (protocol, data) in views(0x86dd, &ipv6(proto, src6, sport, dst6, dport)) {
                let got = run(
                    &prog,
                    &Skb {
                        protocol,
                        data: &data,
                    },
                );
                assert_eq!(
                    got, want as u32,
                    "IPv6 {proto} {src6:?}:{sport} -> {dst6:?}:{dport} (protocol {protocol:#x})"
                );
                checked += 1;
            }
        }
        checked
    }

    #[test]
    fn fanout_program_computes_the_owner_for_every_tcp_udp_packet() {
        let mut checked = 0;
        for workers in [2u16, 3, 4, 7, 16] {
            checked += check_plan(&mixed_plan(workers), 400, 0x9e37_79b9 + workers as u64);
            checked += check_plan(
                &SteerPlan {
                    workers,
                    ..SteerPlan::default()
                },
                100,
                7 + workers as u64,
            );
        }
        assert!(checked > 10_000, "{checked}");
    }

    #[test]
    fn fanout_program_with_hundreds_of_services_widens_far_jumps_and_stays_exact() {
        let plan = big_plan(4);
        let prog = fanout_program(&plan);
        assert!(
            prog.len() > 2000 && prog.len() <= MAX_BPF_INSNS,
            "{} instructions",
            prog.len()
        );
        check_plan(&plan, 400, 42);
        // Packets to the last services, the farthest jumps.
        for i in 270..280u16 {
            let vip = [203, 0, (i >> 8) as u8, i as u8];
            let proto = 6 + 11 * (i % 2) as u8;
            for cport in [1000u16, 2000, 3000] {
                let want = plan.owner(proto, &[192, 0, 2, 9], cport, &vip, 80 + i % 4);
                let l3 = ipv4(proto, [192, 0, 2, 9], cport, vip, 80 + i % 4, 0);
                assert_eq!(
                    run(
                        &prog,
                        &Skb {
                            protocol: 0x0800,
                            data: &l3
                        }
                    ),
                    want as u32
                );
            }
        }
    }

    #[test]
    fn fanout_program_sends_what_it_cannot_classify_to_queue_0() {
        let plan = mixed_plan(4);
        let prog = fanout_program(&plan);
        let zero = |protocol: u16, data: &[u8]| run(&prog, &Skb { protocol, data });
        // Pick a flow whose owner is not 0, so 0 means "not classified".
        let cport = (1000u16..)
            .find(|&p| plan.owner(17, &[192, 0, 2, 1], p, &[198, 51, 100, 10], 9) != 0)
            .expect("some port has a non-zero owner");
        let good = ipv4(17, [192, 0, 2, 1], cport, [198, 51, 100, 10], 9, 0);
        assert_ne!(zero(0x0800, &good), 0);
        // ARP
        assert_eq!(zero(0x0806, &[0u8; 28]), 0);
        // ICMP
        let mut icmp = good.clone();
        icmp[9] = 1;
        assert_eq!(zero(0x0800, &icmp), 0);
        // IPv4 fragments, first or not, go to their datagram's router.
        for (flags, ident) in [
            (0x0010u16, 7u16),
            (0x2000, 7),
            (0x2010, 0x4242),
            (0x0010, 9),
        ] {
            let mut frag = good.clone();
            frag[4..6].copy_from_slice(&ident.to_be_bytes());
            frag[6..8].copy_from_slice(&flags.to_be_bytes());
            let want = crate::steer::frag_owner(&frag[12..16], &frag[16..20], ident.into(), 4);
            assert_eq!(zero(0x0800, &frag), u32::from(want), "{flags:#x} {ident}");
            let mut tagged = vec![0, 10, 0x08, 0x00];
            tagged.extend_from_slice(&frag);
            assert_eq!(zero(ETH_P_8021Q, &tagged), u32::from(want), "tagged");
        }
        let routers: std::collections::BTreeSet<u32> = (0..64u16)
            .map(|id| {
                let mut frag = good.clone();
                frag[4..6].copy_from_slice(&id.to_be_bytes());
                frag[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
                zero(0x0800, &frag)
            })
            .collect();
        assert_eq!(routers.len(), 4, "datagrams spread over every worker");
        // Truncated before the ports.
        assert_eq!(zero(0x0800, &good[..22]), 0);
        // IPv6 with a hop-by-hop header first.
        let mut v6p = ipv6(17, v6(9, 1), cport, v6(1, 0x10), 9);
        v6p[6] = 0;
        assert_eq!(zero(0x86dd, &v6p), 0);
        // A tag in the data followed by something that is not IP.
        assert_eq!(zero(ETH_P_8021Q, &[0, 10, 0x08, 0x06, 0, 0]), 0);
    }

    #[test]
    fn single_worker_program_returns_0() {
        let prog = fanout_program(&mixed_plan(1));
        assert_eq!(prog.len(), 1);
        assert_eq!(
            run(
                &prog,
                &Skb {
                    protocol: 0x0800,
                    data: &[]
                }
            ),
            0
        );
    }

    #[test]
    fn kernel_accepts_the_generated_programs() {
        // SO_ATTACH_FILTER runs the same classic checks as PACKET_FANOUT_DATA
        // and needs no privilege.
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "{}", io::Error::last_os_error());
        // SAFETY: fresh fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for plan in [
            mixed_plan(2),
            mixed_plan(5),
            big_plan(3),
            SteerPlan {
                workers: 2,
                ..SteerPlan::default()
            },
        ] {
            let prog = fanout_program(&plan);
            attach_filter(fd.as_raw_fd(), &prog).unwrap_or_else(|e| {
                panic!("kernel refused a {}-instruction program: {e}", prog.len())
            });
        }
        attach_filter(fd.as_raw_fd(), &drop_outgoing_filter()).expect("outgoing filter");
    }

    #[test]
    fn asm_widens_a_far_conditional_jump_into_a_ja() {
        let mut a = Asm::default();
        let far = a.label();
        a.op(BPF_LD | BPF_IMM, 5);
        a.jeq(5, Some(far), None);
        for _ in 0..300 {
            a.op(BPF_LD | BPF_IMM, 1);
        }
        a.op(BPF_RET | BPF_K, 1);
        a.place(far);
        a.op(BPF_RET | BPF_K, 2);
        let prog = a.finish();
        verify(&prog).expect("valid");
        assert_eq!(prog.len(), 2 + 1 + 300 + 2);
        assert_eq!(
            run(
                &prog,
                &Skb {
                    protocol: 0,
                    data: &[]
                }
            ),
            2
        );
    }

    // --- Receive-side frame handling.

    fn meta(status: u32, len: usize) -> FrameMeta {
        FrameMeta {
            status,
            pkttype: 0,
            vlan_tci: 0x2005,
            vlan_tpid: 0x88a8,
            wire_len: len as u32,
        }
    }

    fn udp4_frame() -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 0, 2, 1], [198, 51, 100, 10], 64)
            .udp(4000, 53)
            .write(&mut v, b"hello, partial checksum!")
            .expect("build");
        v
    }

    #[test]
    fn rx_puts_back_a_stripped_vlan_tag() {
        let frame = udp4_frame();
        let mut buf = HeapBuf::alloc();
        assert!(fill_rx_buf(
            &mut buf,
            &frame,
            &meta(TP_STATUS_VLAN_VALID, frame.len())
        ));
        let d = buf.data();
        assert_eq!(d.len(), frame.len() + 4);
        assert_eq!(&d[..12], &frame[..12]);
        assert_eq!(
            &d[12..16],
            &[0x81, 0x00, 0x20, 0x05],
            "802.1Q when the TPID is not given"
        );
        assert_eq!(&d[16..], &frame[12..]);

        let mut buf = HeapBuf::alloc();
        let m = meta(
            TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID,
            frame.len(),
        );
        assert!(fill_rx_buf(&mut buf, &frame, &m));
        assert_eq!(&buf.data()[12..16], &[0x88, 0xa8, 0x20, 0x05]);
    }

    #[test]
    fn rx_refuses_truncated_and_oversized_frames() {
        let frame = udp4_frame();
        let mut buf = HeapBuf::alloc();
        assert!(
            !fill_rx_buf(&mut buf, &frame, &meta(0, frame.len() + 100)),
            "snaplen < wire length"
        );
        let big = vec![0u8; BUF_SIZE - HEADROOM + 1];
        assert!(!fill_rx_buf(&mut buf, &big, &meta(0, big.len())));
    }

    /// Replace the L4 checksum of `frame` by what Linux leaves in a
    /// CHECKSUM_PARTIAL packet: the folded pseudo-header sum.
    fn make_partial(frame: &mut [u8], l3: usize, v6: bool) -> (usize, u16) {
        let (src, dst, proto, l4, l4len) = if v6 {
            let plen = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) as usize;
            (
                l3 + 8..l3 + 24,
                l3 + 24..l3 + 40,
                frame[l3 + 6],
                l3 + 40,
                plen,
            )
        } else {
            let ihl = (frame[l3] & 0xf) as usize * 4;
            let total = u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]) as usize;
            (
                l3 + 12..l3 + 16,
                l3 + 16..l3 + 20,
                frame[l3 + 9],
                l3 + ihl,
                total - ihl,
            )
        };
        let mut sum = 0u32;
        for r in [src, dst] {
            for w in frame[r].chunks(2) {
                sum += u16::from_be_bytes([w[0], w[1]]) as u32;
            }
        }
        sum += proto as u32 + l4len as u32;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let field = l4 + if proto == 6 { 16 } else { 6 };
        let good = u16::from_be_bytes([frame[field], frame[field + 1]]);
        frame[field..field + 2].copy_from_slice(&(sum as u16).to_be_bytes());
        (field, good)
    }

    #[test]
    fn partial_checksums_are_completed_like_the_kernel_would() {
        // UDP/IPv4 with an odd payload length, TCP/IPv6 behind an 802.1Q tag.
        let udp = udp4_frame();
        let mut tcp6 = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .single_vlan(etherparse::VlanId::try_new(10).expect("vlan id"))
            .ipv6(v6(1, 1), v6(1, 0x10), 64)
            .tcp(40000, 80, 12345, 65000)
            .write(&mut tcp6, b"GET / HTTP/1.1\r\n\r\n!")
            .expect("build");
        for (frame, l3, is6) in [(udp, 14, false), (tcp6, 18, true)] {
            let mut f = frame.clone();
            let (field, good) = make_partial(&mut f, l3, is6);
            assert_ne!(&f[field..field + 2], &good.to_be_bytes());
            let mut buf = HeapBuf::alloc();
            assert!(fill_rx_buf(
                &mut buf,
                &f,
                &meta(TP_STATUS_CSUMNOTREADY, f.len())
            ));
            assert_eq!(
                buf.data(),
                &frame[..],
                "completed checksum equals etherparse's"
            );
        }
        // Without the status flag the bytes are left alone.
        let mut f = udp4_frame();
        make_partial(&mut f, 14, false);
        let mut buf = HeapBuf::alloc();
        assert!(fill_rx_buf(&mut buf, &f, &meta(0, f.len())));
        assert_eq!(buf.data(), &f[..]);
    }

    #[test]
    fn partial_checksum_leaves_other_packets_alone() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let before = arp.clone();
        assert!(!complete_partial_checksum(&mut arp));
        assert_eq!(arp, before);
        let mut short = udp4_frame();
        short.truncate(30);
        assert!(!complete_partial_checksum(&mut short));
    }

    #[test]
    fn frame_headers_pointing_outside_the_block_are_refused() {
        let mut blk = vec![0u8; 256];
        // A frame at 48: mac offset 80, snaplen 100: ends at 228, fits.
        blk[48 + 12..48 + 16].copy_from_slice(&100u32.to_ne_bytes());
        blk[48 + 24..48 + 26].copy_from_slice(&80u16.to_ne_bytes());
        assert!(parse_frame_header(&blk, 48).is_some());
        blk[48 + 12..48 + 16].copy_from_slice(&200u32.to_ne_bytes());
        assert!(parse_frame_header(&blk, 48).is_none());
        assert!(parse_frame_header(&blk, 250).is_none());
    }

    #[test]
    fn options_are_checked_before_any_socket_is_opened() {
        let bad = [
            AfPacketOptions {
                block_size: 1000,
                ..Default::default()
            },
            AfPacketOptions {
                frame_size: 2047,
                ..Default::default()
            },
            AfPacketOptions {
                frame_size: 1 << 18,
                ..Default::default()
            },
            AfPacketOptions {
                block_count: 0,
                ..Default::default()
            },
            AfPacketOptions {
                block_timeout_ms: 0,
                ..Default::default()
            },
        ];
        for o in bad {
            let r = AfPacketDriver::open("lo", 1, o.clone());
            assert!(
                matches!(r, Err(DriverError::Config(_))),
                "{o:?}: {:?}",
                r.err()
            );
        }
        assert!(matches!(
            AfPacketDriver::open("lo", 0, AfPacketOptions::default()),
            Err(DriverError::Config(_))
        ));
    }
}
