//! The two sockets the VRRP service uses on a port's kernel interface: a
//! raw IPv4 socket for protocol 112 (adverts in and out, IP header built by
//! the caller as keepalived builds it) and a send-only AF_PACKET socket
//! (gratuitous ARPs). Part of `sys`: every `unsafe` is one system call.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The interface index of `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

fn socket(domain: i32, kind: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            domain,
            kind | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            proto,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A raw IPv4 socket for VRRP bound to one interface, joined to
/// 224.0.0.18, not looping its own multicast back.
pub struct VrrpSocket {
    fd: OwnedFd,
}

impl VrrpSocket {
    /// Opens it on interface `ifname` (index `index`).
    pub fn open(ifname: &str, index: u32) -> io::Result<VrrpSocket> {
        let fd = socket(libc::AF_INET, libc::SOCK_RAW, 112)?;
        let one: libc::c_int = 1;
        let zero: libc::c_int = 0;
        setsockopt(&fd, libc::IPPROTO_IP, libc::IP_HDRINCL, &one)?;
        let name = ifname.as_bytes();
        let mut dev = [0u8; libc::IFNAMSIZ];
        let n = name.len().min(libc::IFNAMSIZ - 1);
        dev[..n].copy_from_slice(&name[..n]);
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &dev)?;
        let mreqn = |group: Ipv4Addr| libc::ip_mreqn {
            imr_multiaddr: libc::in_addr {
                s_addr: u32::from(group).to_be(),
            },
            imr_address: libc::in_addr { s_addr: 0 },
            imr_ifindex: index as libc::c_int,
        };
        setsockopt(
            &fd,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &mreqn(Ipv4Addr::UNSPECIFIED),
        )?;
        setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &zero)?;
        let ttl: libc::c_int = 255;
        setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &ttl)?;
        let tos: libc::c_int = 0xc0;
        setsockopt(&fd, libc::IPPROTO_IP, libc::IP_TOS, &tos)?;
        setsockopt(
            &fd,
            libc::IPPROTO_IP,
            libc::IP_ADD_MEMBERSHIP,
            &mreqn(crate::wire::vrrp::MCAST_V4),
        )?;
        Ok(VrrpSocket { fd })
    }

    /// Sends `packet` (IP header included) to `dst`.
    pub fn send_to(&self, packet: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(dst).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `packet` and `sa` are live for the call, lengths match.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Receives one IPv4 packet (header included); `Ok(None)` when none
    /// waits.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: `buf` is writable for its length during the call.
        let rc = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(err),
            };
        }
        Ok(Some(rc as usize))
    }
}

impl AsFd for VrrpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A send-only AF_PACKET socket on one interface (whole Ethernet frames).
pub struct FrameSocket {
    fd: OwnedFd,
    index: u32,
}

impl FrameSocket {
    /// Opens it on interface index `index` (protocol 0: it receives
    /// nothing).
    pub fn open(index: u32) -> io::Result<FrameSocket> {
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
        Ok(FrameSocket { fd, index })
    }

    /// Sends one Ethernet frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_ll is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.index as i32;
        sll.sll_halen = 6;
        if let Some(dst) = frame.get(..6) {
            sll.sll_addr[..6].copy_from_slice(dst);
        }
        // SAFETY: `frame` and `sll` are live for the call, lengths match.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// What [`VrrpSocket6::recv`] got: the VRRP message's length and, from the
/// ancillary data, its source, destination and hop limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received6 {
    /// Bytes of VRRP message in the buffer.
    pub len: usize,
    /// Source address.
    pub src: std::net::Ipv6Addr,
    /// Destination address.
    pub dst: std::net::Ipv6Addr,
    /// Hop limit.
    pub hop_limit: u8,
}

/// A raw IPv6 socket for VRRP (the kernel builds the IPv6 header: hop
/// limit 255, traffic class 0xc0) bound to one interface, joined to
/// ff02::12, not looping its own multicast back, reporting each packet's
/// destination and hop limit.
pub struct VrrpSocket6 {
    fd: OwnedFd,
}

impl VrrpSocket6 {
    /// Opens it on interface `ifname` (index `index`).
    pub fn open(ifname: &str, index: u32) -> io::Result<VrrpSocket6> {
        let fd = socket(libc::AF_INET6, libc::SOCK_RAW, 112)?;
        let name = ifname.as_bytes();
        let mut dev = [0u8; libc::IFNAMSIZ];
        let n = name.len().min(libc::IFNAMSIZ - 1);
        dev[..n].copy_from_slice(&name[..n]);
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &dev)?;
        let one: libc::c_int = 1;
        let zero: libc::c_int = 0;
        let hops: libc::c_int = 255;
        let tclass: libc::c_int = 0xc0;
        let ifindex = index as libc::c_int;
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &ifindex)?;
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &zero)?;
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &hops)?;
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &hops)?;
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, &tclass)?;
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &one)?;
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &one)?;
        let mreq = libc::ipv6_mreq {
            ipv6mr_multiaddr: libc::in6_addr {
                s6_addr: crate::wire::vrrp::MCAST_V6.octets(),
            },
            ipv6mr_interface: index,
        };
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq)?;
        Ok(VrrpSocket6 { fd })
    }

    /// Sends the VRRP message `msg` to `dst` on interface `index`.
    pub fn send_to(&self, msg: &[u8], dst: std::net::Ipv6Addr, index: u32) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_in6 is a valid value.
        let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_addr = libc::in6_addr {
            s6_addr: dst.octets(),
        };
        sa.sin6_scope_id = index;
        // SAFETY: `msg` and `sa` are live for the call, lengths match.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Receives one VRRP message; `Ok(None)` when none waits.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received6>> {
        // SAFETY: all-zero values of these C structs are valid.
        let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: every pointer in `msg` points to a live buffer of the
        // length given, for the duration of the call.
        let rc = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(err),
            };
        }
        let mut got = Received6 {
            len: rc as usize,
            src: std::net::Ipv6Addr::from(from.sin6_addr.s6_addr),
            dst: std::net::Ipv6Addr::UNSPECIFIED,
            hop_limit: 0,
        };
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the control buffer the
        // kernel filled (msg_controllen bytes), returning null at its end.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: `cmsg` points to a complete header inside `control`.
            let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
            // SAFETY: the data of a header the kernel wrote.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT {
                // SAFETY: IPV6_HOPLIMIT carries one int (maybe unaligned).
                let hops = unsafe { std::ptr::read_unaligned(data.cast::<libc::c_int>()) };
                got.hop_limit = hops.clamp(0, 255) as u8;
            } else if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
                // SAFETY: IPV6_PKTINFO carries one in6_pktinfo.
                let info = unsafe { std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>()) };
                got.dst = std::net::Ipv6Addr::from(info.ipi6_addr.s6_addr);
            }
            // SAFETY: as for CMSG_FIRSTHDR.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        Ok(Some(got))
    }
}

impl AsFd for VrrpSocket6 {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits up to `timeout` until one of `fds` is readable; returns whether
/// one is (an interrupted wait counts as "not yet"). At most 8 fds.
pub fn wait_any_readable(fds: &[BorrowedFd<'_>], timeout: std::time::Duration) -> io::Result<bool> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; 8];
    let n = fds.len().min(pfds.len());
    for (p, fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd.as_raw_fd();
    }
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll(2) reads and writes the first `n` pollfds of `pfds`,
    // which outlive the call; the descriptors are borrowed, hence open.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(err)
        };
    }
    Ok(rc > 0)
}
