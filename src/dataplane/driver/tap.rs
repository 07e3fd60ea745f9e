//! TAP driver: a kernel TAP interface (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI |
//! IFF_MULTI_QUEUE`) as a port, one file descriptor per queue, for tests and
//! demos without NICs.
//!
//! The kernel side of the TAP is the director's *peer*: frames the director
//! transmits ([`PortQueue::tx_burst`]) arrive on the kernel interface as
//! received, and frames the kernel sends out of the interface are what the
//! director receives. So the director's own MAC ([`PortCaps::mac`]) is a
//! different address from the kernel interface's ([`TapDriver::kernel_mac`]):
//! by default a locally administered MAC derived from the interface name
//! ([`director_mac_for`]), or the one given to [`TapDriver::open_with_mac`].
//!
//! Rules:
//! * [`TapDriver::open`] creates (or attaches to) the interface with one
//!   non-blocking fd per queue, sets its MTU and brings the link up
//!   (`SIOCSIFFLAGS IFF_UP`); addresses and routes on the kernel side are the
//!   caller's business.
//! * The device is not made persistent: it disappears when the last queue fd
//!   closes (all [`TapQueue`]s and the driver dropped). An interface that was
//!   made persistent by someone else (`ip tuntap add ... multi_queue`) is
//!   attached to and stays.
//! * The kernel chooses which queue receives each frame (by its flow hash):
//!   [`Steering::None`], the workers hand over flows they do not own.
//! * `rx_burst` does one `read()` per frame until `EAGAIN` or the burst is
//!   full; `tx_burst` one `write()` per frame until `EAGAIN` (the rest stays
//!   in the burst). Buffers are [`HeapBuf`]s from the worker's free list, so
//!   a warmed queue allocates nothing.
//! * Counters are per queue, written only by the queue's worker (relaxed
//!   load + store, no locked instructions) and summed by [`Driver::stats`].

use super::heapbuf::{HeapBuf, BUF_SIZE, HEADROOM};
use super::{Burst, Driver, DriverError, PacketBuf, PortCaps, PortQueue, PortStats, Steering};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Most queues a TAP device can have (the kernel's `MAX_TAP_QUEUES`).
pub const MAX_TAP_QUEUES: u16 = 256;

/// Bytes of Ethernet header (with one VLAN tag) a frame adds to the IP MTU.
const L2_OVERHEAD: usize = 14 + 4;

/// A TAP interface opened as a port.
pub struct TapDriver {
    caps: PortCaps,
    kernel_mac: [u8; 6],
    queues: Option<Vec<TapQueue>>,
    counters: Vec<Arc<QueueCounters>>,
}

impl TapDriver {
    /// Create (or attach to) the TAP interface `name` with `queues` queues,
    /// set its MTU to `mtu` and bring it up. The director's MAC is
    /// [`director_mac_for`]`(name)`.
    pub fn open(name: &str, queues: u16, mtu: u16) -> Result<TapDriver, DriverError> {
        TapDriver::open_with_mac(name, queues, mtu, None)
    }

    /// Like [`TapDriver::open`], with the director's MAC given (`None`: the
    /// default derived from the name). The MAC must not be the kernel
    /// interface's own.
    pub fn open_with_mac(
        name: &str,
        queues: u16,
        mtu: u16,
        mac: Option<[u8; 6]>,
    ) -> Result<TapDriver, DriverError> {
        validate_ifname(name)?;
        if queues == 0 || queues > MAX_TAP_QUEUES {
            return Err(DriverError::Config(format!(
                "tap {name}: {queues} queues (must be 1..={MAX_TAP_QUEUES})"
            )));
        }
        if mtu < 68 || mtu as usize + L2_OVERHEAD > BUF_SIZE - HEADROOM {
            return Err(DriverError::Config(format!(
                "tap {name}: MTU {mtu} (must be 68..={})",
                BUF_SIZE - HEADROOM - L2_OVERHEAD
            )));
        }
        if let Some(m) = mac {
            if m[0] & 1 != 0 || m == [0; 6] {
                return Err(DriverError::Config(format!(
                    "tap {name}: director MAC {} is not a unicast address",
                    fmt_mac(&m)
                )));
            }
        }

        // The first TUNSETIFF creates the device (the kernel may rewrite the
        // name, e.g. "tap%d"); the others attach further queues to it.
        let mut fds = Vec::with_capacity(queues as usize);
        let mut ifname = name.to_string();
        for q in 0..queues {
            let (fd, actual) = tun_attach(&ifname).map_err(|e| {
                DriverError::os(format!("tap {ifname}: attach queue {q} (TUNSETIFF)"), e)
            })?;
            ifname = actual;
            fds.push(fd);
        }

        let ctl = CtlSocket::new()
            .map_err(|e| DriverError::os(format!("tap {ifname}: control socket"), e))?;
        ctl.set_mtu(&ifname, mtu)
            .map_err(|e| DriverError::os(format!("tap {ifname}: set MTU {mtu}"), e))?;
        ctl.set_up(&ifname)
            .map_err(|e| DriverError::os(format!("tap {ifname}: bring link up"), e))?;
        let kernel_mac = ctl
            .hwaddr(&ifname)
            .map_err(|e| DriverError::os(format!("tap {ifname}: read MAC"), e))?;

        let mut director_mac = mac.unwrap_or_else(|| director_mac_for(&ifname));
        if director_mac == kernel_mac {
            if mac.is_some() {
                return Err(DriverError::Config(format!(
                    "tap {ifname}: director MAC {} is the kernel interface's own",
                    fmt_mac(&kernel_mac)
                )));
            }
            director_mac[5] ^= 1;
        }

        let counters: Vec<Arc<QueueCounters>> = (0..queues)
            .map(|_| Arc::new(QueueCounters::default()))
            .collect();
        let queue_list = fds
            .into_iter()
            .zip(&counters)
            .enumerate()
            .map(|(i, (fd, c))| TapQueue {
                fd,
                index: i as u16,
                counters: Arc::clone(c),
                spare: None,
                gone: false,
            })
            .collect();

        Ok(TapDriver {
            caps: PortCaps {
                name: ifname,
                mac: director_mac,
                mtu,
                queues,
                tx_csum_offload: false,
                steering: Steering::None,
            },
            kernel_mac,
            queues: Some(queue_list),
            counters,
        })
    }

    /// The interface name as the kernel knows it.
    pub fn ifname(&self) -> &str {
        &self.caps.name
    }

    /// The MAC of the kernel side of the TAP (the director's peer).
    pub fn kernel_mac(&self) -> [u8; 6] {
        self.kernel_mac
    }
}

impl Driver for TapDriver {
    type Queue = TapQueue;

    fn caps(&self) -> &PortCaps {
        &self.caps
    }

    fn take_queues(&mut self) -> Result<Vec<TapQueue>, DriverError> {
        self.queues.take().ok_or(DriverError::QueuesTaken)
    }

    fn stats(&self) -> PortStats {
        sum_counters(&self.counters)
    }
}

/// One queue of a TAP interface: one non-blocking fd. Dropping it detaches
/// the queue (the last one closed removes the interface).
pub struct TapQueue {
    fd: OwnedFd,
    index: u16,
    counters: Arc<QueueCounters>,
    /// A buffer kept from a read that found nothing, for the next call.
    spare: Option<HeapBuf>,
    /// The interface was deleted under the open fd (reads and writes fail
    /// with `EBADFD`): the queue does no more I/O.
    gone: bool,
}

impl TapQueue {
    /// Which queue of the device this is (0-based).
    pub fn index(&self) -> u16 {
        self.index
    }
}

impl TapQueue {
    /// After a failed read or write: `EBADFD` (or `ENODEV`/`ENXIO`) means
    /// the interface was deleted under us. The queue stops its I/O and the
    /// port reports it (`PortStats::link_gone`; the daemon logs it once,
    /// from its own thread: a worker never logs).
    #[cold]
    fn check_gone(&mut self, e: &io::Error) {
        if matches!(
            e.raw_os_error(),
            Some(libc::EBADFD) | Some(libc::ENODEV) | Some(libc::ENXIO)
        ) {
            self.gone = true;
            self.counters.gone.store(1, Ordering::Relaxed);
        }
    }
}

impl PortQueue for TapQueue {
    type Buf = HeapBuf;

    fn rx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        if self.gone {
            return 0;
        }
        let (mut n, mut bytes, mut errors) = (0usize, 0usize, 0u64);
        while burst.room() > 0 {
            let mut buf = self.spare.take().unwrap_or_else(HeapBuf::alloc);
            match read_fd(self.fd.as_raw_fd(), buf.room_mut()) {
                Ok(len) if len > 0 => {
                    buf.set_len(len);
                    bytes += len;
                    n += 1;
                    // Cannot fail: room() > 0 was checked above.
                    let _ = burst.push(buf);
                }
                Ok(_) => {
                    self.spare = Some(buf);
                    break;
                }
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        errors += 1;
                        self.check_gone(&e);
                    }
                    self.spare = Some(buf);
                    break;
                }
            }
        }
        let c = &self.counters;
        bump(&c.ipackets, n as u64);
        bump(&c.ibytes, bytes as u64);
        bump(&c.ierrors, errors);
        n
    }

    fn tx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        if self.gone {
            // Not sent, not counted as sent: the worker frees them.
            return 0;
        }
        let (mut sent, mut bytes, mut errors) = (0usize, 0usize, 0u64);
        for buf in burst.as_slice() {
            match write_fd(self.fd.as_raw_fd(), buf.data()) {
                Ok(_) => {
                    sent += 1;
                    bytes += buf.len();
                }
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        errors += 1;
                        self.check_gone(&e);
                    }
                    break;
                }
            }
        }
        drop(burst.drain_front(sent));
        let c = &self.counters;
        bump(&c.opackets, sent as u64);
        bump(&c.obytes, bytes as u64);
        bump(&c.oerrors, errors);
        sent
    }

    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(HeapBuf::alloc())
    }
}

/// The default director MAC for a TAP named `ifname`: locally administered
/// unicast (`02:..`), the other five bytes an FNV-1a hash of the name.
pub fn director_mac_for(ifname: &str) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ifname.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

pub fn validate_ifname(name: &str) -> Result<(), DriverError> {
    super::check_ifname(name)
        .map_err(|e| DriverError::Config(format!("tap: bad interface name {e}")))
}

// ---------------------------------------------------------------------------
// Per-queue counters.

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
    /// 1 once the interface vanished (`TapQueue::check_gone`).
    gone: AtomicU64,
}

/// Add `n` to a counter that only the calling thread writes (no locked
/// read-modify-write needed; readers see whole values).
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

fn sum_counters(counters: &[Arc<QueueCounters>]) -> PortStats {
    let mut s = PortStats::default();
    for c in counters {
        s.ipackets += c.ipackets.load(Ordering::Relaxed);
        s.ibytes += c.ibytes.load(Ordering::Relaxed);
        s.ierrors += c.ierrors.load(Ordering::Relaxed);
        s.opackets += c.opackets.load(Ordering::Relaxed);
        s.obytes += c.obytes.load(Ordering::Relaxed);
        s.oerrors += c.oerrors.load(Ordering::Relaxed);
        s.link_gone |= c.gone.load(Ordering::Relaxed) != 0;
    }
    s
}

// ---------------------------------------------------------------------------
// Small safe wrappers around the system calls.

const IFNAMSIZ: usize = 16;
/// `_IOW('T', 202, int)` from `<linux/if_tun.h>`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_MULTI_QUEUE: i16 = 0x0100;

/// `struct ifreq`: the name, then a union whose largest member (`struct
/// ifmap`) is 24 bytes on 64-bit targets (16 on 32-bit; a larger buffer is
/// harmless).
#[repr(C, align(8))]
struct IfReq {
    name: [u8; IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> IfReq {
        let mut r = IfReq {
            name: [0; IFNAMSIZ],
            data: [0; 24],
        };
        let n = name.len().min(IFNAMSIZ - 1);
        r.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        r
    }

    fn name(&self) -> String {
        CStr::from_bytes_until_nul(&self.name)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn flags(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }

    fn set_flags(&mut self, f: i16) {
        self.data[..2].copy_from_slice(&f.to_ne_bytes());
    }
}

/// `ioctl(fd, req, &mut ifreq)`.
fn ioctl_ifreq(fd: RawFd, req: libc::c_ulong, ifr: &mut IfReq) -> io::Result<()> {
    // SAFETY: every request passed here (TUNSETIFF, SIOC[GS]IF*) reads and
    // writes at most `sizeof(struct ifreq)` bytes at the pointer, which
    // points to a live, exclusively borrowed `IfReq` at least that large.
    let r = unsafe { libc::ioctl(fd, req as _, ifr as *mut IfReq) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Open `/dev/net/tun` non-blocking and attach it to TAP `name` as one more
/// queue; returns the fd and the interface name the kernel used.
fn tun_attach(name: &str) -> io::Result<(OwnedFd, String)> {
    // SAFETY: the path is a NUL-terminated C string literal; open has no
    // other memory effects.
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly opened fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut ifr = IfReq::new(name);
    ifr.set_flags(IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE);
    ioctl_ifreq(fd.as_raw_fd(), TUNSETIFF, &mut ifr)?;
    Ok((fd, ifr.name()))
}

/// A datagram socket for the interface ioctls (`SIOC[GS]IF*`).
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

    fn set_mtu(&self, ifname: &str, mtu: u16) -> io::Result<()> {
        let mut ifr = IfReq::new(ifname);
        ifr.data[..4].copy_from_slice(&(mtu as i32).to_ne_bytes());
        ioctl_ifreq(self.0.as_raw_fd(), libc::SIOCSIFMTU, &mut ifr)
    }

    fn set_up(&self, ifname: &str) -> io::Result<()> {
        let mut ifr = IfReq::new(ifname);
        ioctl_ifreq(self.0.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr)?;
        let flags = ifr.flags() | libc::IFF_UP as i16;
        ifr.set_flags(flags);
        ioctl_ifreq(self.0.as_raw_fd(), libc::SIOCSIFFLAGS, &mut ifr)
    }

    fn hwaddr(&self, ifname: &str) -> io::Result<[u8; 6]> {
        let mut ifr = IfReq::new(ifname);
        ioctl_ifreq(self.0.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr)?;
        // struct sockaddr: sa_family (2 bytes), then sa_data.
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&ifr.data[2..8]);
        Ok(mac)
    }
}

/// `read(2)` into `buf`.
fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, exclusively borrowed slice of `buf.len()`
    // writable bytes.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `write(2)` of `buf` (one whole frame on a TAP fd).
fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live slice of `buf.len()` readable bytes.
    let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// A kernel interface for the director's own traffic (`dataplane::kernel`):
/// the TAP `name`, single queue, non-blocking, non-persistent, with the
/// port's MAC (`SIOCSIFHWADDR`) and MTU, the port's addresses (IPv4 through
/// `SIOCSIFADDR`/`SIOCSIFNETMASK`, further IPv4 addresses as `name:N`
/// aliases; IPv6 through an `in6_ifreq`), and up. Unlike a TAP port, the
/// kernel side *is* the director here: frames read from the fd are what the
/// director's kernel sends out of the port, frames written to it are what
/// the port received for the kernel. Returns the fd and the kernel's name.
pub fn open_kernel_if(
    name: &str,
    mtu: u16,
    mac: [u8; 6],
    addrs: &[(std::net::IpAddr, u8)],
) -> Result<(OwnedFd, String), DriverError> {
    validate_ifname(name)?;
    let (fd, ifname) = tun_attach(name)
        .map_err(|e| DriverError::os(format!("kernel_if {name}: create (TUNSETIFF)"), e))?;
    let ctl = CtlSocket::new()
        .map_err(|e| DriverError::os(format!("kernel_if {ifname}: control socket"), e))?;
    let label = ifname.clone();
    let os = |what: String| {
        let label = label.clone();
        move |e| DriverError::os(format!("kernel_if {label}: {what}"), e)
    };
    let mut ifr = IfReq::new(&ifname);
    ifr.data[..2].copy_from_slice(&1u16.to_ne_bytes()); // ARPHRD_ETHER
    ifr.data[2..8].copy_from_slice(&mac);
    ioctl_ifreq(ctl.0.as_raw_fd(), libc::SIOCSIFHWADDR, &mut ifr)
        .map_err(os(format!("set MAC {}", fmt_mac(&mac))))?;
    ctl.set_mtu(&ifname, mtu)
        .map_err(os(format!("set MTU {mtu}")))?;
    let mut v4 = 0;
    for (a, len) in addrs {
        match a {
            std::net::IpAddr::V4(a4) => {
                let label = if v4 == 0 {
                    ifname.clone()
                } else {
                    format!("{ifname}:{v4}")
                };
                v4 += 1;
                let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                for (req, ip) in [
                    (libc::SIOCSIFADDR, a4.octets()),
                    (libc::SIOCSIFNETMASK, mask.to_be_bytes()),
                ] {
                    let mut ifr = IfReq::new(&label);
                    ifr.data[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                    ifr.data[4..8].copy_from_slice(&ip);
                    ioctl_ifreq(ctl.0.as_raw_fd(), req as libc::c_ulong, &mut ifr)
                        .map_err(os(format!("add address {a}/{len}")))?;
                }
            }
            std::net::IpAddr::V6(a6) => {
                add_addr6(&ifname, a6, *len).map_err(os(format!("add address {a}/{len}")))?
            }
        }
    }
    ctl.set_up(&ifname)
        .map_err(os("bring link up".to_string()))?;
    Ok((fd, ifname))
}

/// `SIOCSIFADDR` with a `struct in6_ifreq` on an AF_INET6 socket.
fn add_addr6(ifname: &str, a: &std::net::Ipv6Addr, len: u8) -> io::Result<()> {
    #[repr(C)]
    struct In6IfReq {
        addr: [u8; 16],
        prefixlen: u32,
        ifindex: i32,
    }
    let cname = std::ffi::CString::new(ifname).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `cname` is a live NUL-terminated string; no other memory
    // effects.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain socket(2) call with constant arguments.
    let raw = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh socket fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = In6IfReq {
        addr: a.octets(),
        prefixlen: u32::from(len),
        ifindex: ifindex as i32,
    };
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads `sizeof(struct
    // in6_ifreq)` bytes at the pointer, a live `In6IfReq` of that layout.
    let r = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFADDR as _,
            &mut req as *mut In6IfReq,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Wait until one of `fds` is readable or `timeout_ms` passes
/// (`poll(2)`); `EINTR` counts as a timeout.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<()> {
    let mut p = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 16];
    let n = fds.len().min(p.len());
    for (slot, fd) in p.iter_mut().zip(fds) {
        slot.fd = *fd;
        slot.events = libc::POLLIN;
    }
    // SAFETY: `p` is a live array of at least `n` pollfd structures.
    let r = unsafe { libc::poll(p.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Read one frame from a kernel interface fd into `buf` (`Ok(None)`:
/// nothing to read).
pub fn read_frame(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match read_fd(fd, buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Write one frame to a kernel interface fd.
pub fn write_frame(fd: RawFd, frame: &[u8]) -> io::Result<usize> {
    write_fd(fd, frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_director_mac_is_local_unicast_and_stable() {
        let a = director_mac_for("rvs0");
        assert_eq!(a[0], 0x02, "locally administered, unicast");
        assert_eq!(a, director_mac_for("rvs0"));
        assert_ne!(a, director_mac_for("rvs1"));
    }

    #[test]
    fn open_refuses_bad_configuration_before_touching_the_kernel() {
        let bad = [
            TapDriver::open("", 1, 1500),
            TapDriver::open("a-name-far-too-long", 1, 1500),
            TapDriver::open("has space", 1, 1500),
            TapDriver::open("tap0", 0, 1500),
            TapDriver::open("tap0", 1, 4000),
            TapDriver::open_with_mac("tap0", 1, 1500, Some([1, 0, 0, 0, 0, 1])),
        ];
        for r in bad {
            assert!(matches!(r, Err(DriverError::Config(_))), "{:?}", r.err());
        }
    }

    #[test]
    fn ifreq_round_trips_name_and_flags() {
        let mut r = IfReq::new("rvs-tap");
        r.set_flags(IFF_TAP | IFF_NO_PI);
        assert_eq!(r.name(), "rvs-tap");
        assert_eq!(r.flags(), IFF_TAP | IFF_NO_PI);
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }
}
