//! AF_PACKET sockets: the kernel ABI (`<linux/if_packet.h>`,
//! `<linux/if_ether.h>` constants and structs, spelled out so the driver
//! does not depend on what a libc version exports), ring geometry checks,
//! and every system call of the driver outside the per-burst ones: socket,
//! bind, `setsockopt`/`getsockopt`, fanout group and filters, `mmap`,
//! `SIOCGIF*` ioctls, and the `sendto`/`sendmmsg` wrappers `tx` uses.
//!
//! Rules: `unsafe` here is a system call (or the zeroing/adoption of what
//! one takes or returns) on memory this module sizes itself, each block
//! with its `// SAFETY:` comment; nothing here runs per packet except the
//! `kick`/`sendmmsg` wrappers. Errors come back as `io::Error` (or a
//! `DriverError::Config` for bad geometry) for the caller to put in context.

use super::cbpf::{
    ancillary, jump, stmt, BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W,
};
use super::{AfPacketOptions, Tpacket, TxMode};
use crate::dataplane::driver::DriverError;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// ---------------------------------------------------------------------------
// Kernel ABI (<linux/if_packet.h>, <linux/if_ether.h>), spelled out here so
// the driver does not depend on which of them a libc version exports.

pub(super) const L2_OVERHEAD: usize = 14 + 4;
const ON: libc::c_int = 1;
const ETH_P_ALL: u16 = 0x0003;
pub(super) const ETH_P_8021Q: u16 = 0x8100;
pub(super) const ETH_P_8021AD: u16 = 0x88a8;
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
const TPACKET_V2: libc::c_int = 1;
const TPACKET_V3: libc::c_int = 2;
const PACKET_FANOUT_CBPF: u32 = 6;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;
pub(super) const PACKET_OUTGOING: u8 = 4;
pub(super) const TP_STATUS_KERNEL: u32 = 0;
pub(super) const TP_STATUS_USER: u32 = 1;
pub(super) const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
pub(super) const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
pub(super) const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
pub(super) const TP_STATUS_AVAILABLE: u32 = 0;
pub(super) const TP_STATUS_SEND_REQUEST: u32 = 1;
pub(super) const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// `struct tpacket_block_desc`: `hdr.bh1.block_status`, `num_pkts`,
/// `offset_to_first_pkt`.
pub(super) const BLOCK_STATUS_OFF: usize = 8;
pub(super) const BLOCK_NUM_PKTS_OFF: usize = 12;
pub(super) const BLOCK_FIRST_OFF: usize = 16;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where the `sockaddr_ll`
/// follows the header, and where TX data starts.
pub(super) const TPACKET3_SLL_OFF: usize = 48;
/// `TPACKET3_HDRLEN`: header + `sockaddr_ll` (20 bytes).
pub(super) const TPACKET3_HDRLEN: usize = 48 + 20;
/// `TPACKET_ALIGN(sizeof(struct tpacket2_hdr))`: where the `sockaddr_ll`
/// follows a `tpacket2_hdr`, and where TX data starts.
pub(super) const TPACKET2_SLL_OFF: usize = 32;
/// `TPACKET2_HDRLEN`: header + `sockaddr_ll`.
pub(super) const TPACKET2_HDRLEN: usize = 32 + 20;
/// Where the kernel puts a received frame in a `TPACKET_V2` slot at most:
/// `TPACKET_ALIGN(TPACKET2_HDRLEN + 16)` (the network header's offset for
/// a MAC header of up to 16 bytes; the frame starts before it).
pub(super) const TPACKET2_RX_NET_OFF: usize = 80;
/// The kernel's `BPF_MAXINSNS`.
pub(super) const MAX_BPF_INSNS: usize = 4096;

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
pub(super) struct TpacketStatsV3 {
    pub(super) tp_packets: u32,
    pub(super) tp_drops: u32,
    pub(super) tp_freeze_q_cnt: u32,
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
pub(super) struct RingGeometry {
    pub(super) block_size: usize,
    pub(super) block_count: usize,
    pub(super) frame_size: usize,
    pub(super) block_timeout_ms: u32,
    pub(super) tx_ring: bool,
    pub(super) version: Tpacket,
}

/// Checks ring options as [`super::AfPacketDriver::open`] would, without
/// opening anything (for configuration checks): sizes of 0, misaligned
/// frames, frames larger than blocks, rings over 2 GiB.
pub fn check_options(ifname: &str, opts: &AfPacketOptions) -> Result<(), DriverError> {
    RingGeometry::new(ifname, opts).map(|_| ())
}

impl RingGeometry {
    pub(super) fn new(ifname: &str, o: &AfPacketOptions) -> Result<RingGeometry, DriverError> {
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
            version: o.tpacket,
        })
    }

    /// Where TX data starts in a TX ring slot (the header, aligned).
    pub(super) fn tx_data_offset(&self) -> usize {
        match self.version {
            Tpacket::V2 => TPACKET2_SLL_OFF,
            Tpacket::V3 => TPACKET3_SLL_OFF,
        }
    }

    /// Frames per block (`TPACKET_V2` RX slots, TX ring slots).
    pub(super) fn frames_per_block(&self) -> usize {
        self.block_size / self.frame_size
    }

    pub(super) fn ring_len(&self) -> usize {
        self.block_size * self.block_count
    }

    pub(super) fn frame_count(&self) -> usize {
        (self.block_size / self.frame_size) * self.block_count
    }

    fn map_len(&self) -> usize {
        self.ring_len() * if self.tx_ring { 2 } else { 1 }
    }

    /// The ring request; `TPACKET_V2` reads only its first four fields
    /// (`struct tpacket_req`), which `tpacket_req3` starts with.
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
pub(super) struct OpenSocket {
    pub(super) fd: OwnedFd,
    pub(super) map: Mapping,
}

/// Create one queue's socket: TPACKET_V2 or V3 rings, mapped, a drop-all filter
/// (until it has joined the group), qdisc bypass, bound to the interface.
/// On failure: the step that failed and the error.
pub(super) fn open_socket(
    g: &RingGeometry,
    o: &AfPacketOptions,
    ifindex: i32,
) -> Result<OpenSocket, (&'static str, io::Error)> {
    let fd = packet_socket().map_err(|e| ("socket(AF_PACKET)", e))?;
    let raw = fd.as_raw_fd();
    let (version, name) = match g.version {
        Tpacket::V2 => (TPACKET_V2, "TPACKET_V2"),
        Tpacket::V3 => (TPACKET_V3, "TPACKET_V3"),
    };
    setsockopt(raw, SOL_PACKET, PACKET_VERSION, &version).map_err(|e| (name, e))?;
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
pub(super) fn create_group(fd: RawFd, id: Option<u16>) -> io::Result<(u16, u32)> {
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

pub(super) fn set_fanout(fd: RawFd, id: u16, type_flags: u32) -> io::Result<()> {
    let arg: u32 = id as u32 | (type_flags << 16);
    setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg)
}

pub(super) fn set_fanout_program(fd: RawFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // The kernel copies the program during the call.
    setsockopt(fd, SOL_PACKET, PACKET_FANOUT_DATA, &fprog)
}

pub(super) fn attach_filter(fd: RawFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// The socket filter every queue runs: drop packets the host sends out of
/// the interface, keep everything else whole.
pub(super) fn drop_outgoing_filter() -> [libc::sock_filter; 4] {
    [
        stmt(BPF_LD | BPF_W | BPF_ABS, ancillary(libc::SKF_AD_PKTTYPE)),
        jump(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING as u32, 0, 1),
        stmt(BPF_RET | BPF_K, 0),
        stmt(BPF_RET | BPF_K, u32::MAX),
    ]
}

pub(super) fn add_promisc(fd: RawFd, ifindex: i32) -> io::Result<()> {
    let mreq = PacketMreq {
        ifindex,
        kind: PACKET_MR_PROMISC,
        alen: 0,
        address: [0; 8],
    };
    setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)
}

pub(super) fn packet_stats(fd: RawFd) -> io::Result<TpacketStatsV3> {
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

pub(super) fn if_index(name: &str) -> io::Result<i32> {
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i as i32)
    }
}

pub(super) fn packet_socket() -> io::Result<OwnedFd> {
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
pub(super) fn setsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: &T,
) -> io::Result<()> {
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

pub(super) fn bind_ll(fd: RawFd, ifindex: i32) -> io::Result<()> {
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

/// Make `fd` non-blocking (`O_NONBLOCK`).
pub(super) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own; F_GETFL/F_SETFL touch no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The interface index the packet socket is bound to now
/// (`getsockname(2)`): the kernel sets it to -1 when the interface is
/// unregistered (`packet_notifier`, `NETDEV_UNREGISTER`), so a queue that
/// only receives can tell that its interface vanished.
pub(super) fn bound_ifindex(fd: RawFd) -> io::Result<i32> {
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sll` is a live sockaddr_ll of `len` bytes; the kernel writes
    // at most `len` bytes into it and the new length into `len`.
    let r = unsafe { libc::getsockname(fd, (&mut sll as *mut libc::sockaddr_ll).cast(), &mut len) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sll.sll_ifindex)
    }
}

/// Tell the kernel to send every TX ring slot marked SEND_REQUEST, without
/// waiting for completions.
pub(super) fn kick(fd: RawFd) -> io::Result<()> {
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
pub(super) fn sendmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
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
pub(super) struct Mapping {
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
}

impl Mapping {
    pub(super) fn new(fd: RawFd, len: usize) -> io::Result<Mapping> {
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
pub(super) struct CtlSocket(OwnedFd);

impl CtlSocket {
    pub(super) fn new() -> io::Result<CtlSocket> {
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

    pub(super) fn mtu(&self, ifname: &str) -> io::Result<u16> {
        let r = self.ioctl(ifname, libc::SIOCGIFMTU)?;
        let mtu = i32::from_ne_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]);
        Ok(mtu.clamp(0, u16::MAX as i32) as u16)
    }

    pub(super) fn hwaddr(&self, ifname: &str) -> io::Result<[u8; 6]> {
        let r = self.ioctl(ifname, libc::SIOCGIFHWADDR)?;
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&r.data[2..8]);
        Ok(mac)
    }
}
