//! The operating-system calls that the layers above the drivers need and
//! that the standard library does not offer: blocking and waiting for
//! termination signals, the file-mode creation mask, a Unix-socket connect
//! with a bounded wait, a bounded wait for a readable socket, a
//! transparent-huge-page hint, and a cache prefetch; [`vrrp_sockets`]: the
//! VRRP service's raw IP and AF_PACKET sockets.
//!
//! Rules: this is the only module outside `dataplane::driver` with `unsafe`
//! code; every function here is safe to call, states its contract, and
//! keeps each `unsafe` block to one system call or intrinsic with a
//! `// SAFETY:` comment. `wire`, `sched`, `conntrack` and `ctl` deny
//! `unsafe_code` and come here instead. Nothing here allocates on a call
//! the hot path makes ([`prefetch_line`]).

pub mod vrrp_sockets;

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The signals `lbd` waits for — SIGINT and SIGTERM (stop), SIGUSR2
/// (drain, as `lbctl --drain`), SIGHUP
/// (reload) — blocked in the thread that made this set and in every thread
/// it starts afterwards, so no handler ever runs in a worker and only
/// [`TermSignals::wait`] takes them.
pub struct TermSignals {
    set: libc::sigset_t,
}

impl TermSignals {
    /// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR2 in the calling thread. Call it before any
    /// thread is started so that every thread inherits the mask.
    pub fn block() -> io::Result<TermSignals> {
        // SAFETY: sigset_t is a plain C struct for which all-zero is a valid
        // value; sigemptyset initialises it right after.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, exclusively borrowed sigset_t; the signal
        // numbers are valid; pthread_sigmask reads `set` and ignores the null
        // old-set pointer.
        let rc = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::sigaddset(&mut set, libc::SIGUSR2);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(TermSignals { set })
    }

    /// Waits for SIGINT, SIGTERM, SIGHUP or SIGUSR2 and returns its number.
    pub fn wait(&self) -> io::Result<i32> {
        loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: `self.set` is an initialised sigset_t and `signal` a
            // valid out-pointer for the duration of the call.
            let rc = unsafe { libc::sigwait(&self.set, &mut signal) };
            match rc {
                0 => return Ok(signal),
                libc::EINTR => continue,
                err => return Err(io::Error::from_raw_os_error(err)),
            }
        }
    }
}

impl TermSignals {
    /// As [`TermSignals::wait`], giving up after `timeout`: `Ok(None)`.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> io::Result<Option<i32>> {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
        };
        loop {
            // SAFETY: `self.set` is an initialised sigset_t, the info
            // pointer may be null, and `ts` outlives the call.
            let rc = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
            if rc >= 0 {
                return Ok(Some(rc));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(None),
                Some(libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
    }
}

/// Sends SIGTERM to this process (not to one thread), as `kill -TERM
/// $(pidof lbd)` would: [`TermSignals::wait`] takes it and `lbd` stops.
/// Used by a finished drain.
pub fn terminate_self() -> io::Result<()> {
    // SAFETY: kill with our own PID and a valid signal number touches no
    // memory of ours.
    let rc = unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The name of a signal [`TermSignals`] takes, for logs.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGUSR2 => "SIGUSR2",
        _ => "signal",
    }
}

/// Sets the process umask for its lifetime and restores the previous one
/// on drop.
pub struct UmaskGuard(libc::mode_t);

impl UmaskGuard {
    /// Sets the mask to `mask` (e.g. `0o177` for files readable and writable
    /// by the owner only).
    pub fn set(mask: u32) -> UmaskGuard {
        // SAFETY: umask only swaps the process file-mode creation mask; it
        // cannot fail and touches no memory of ours.
        UmaskGuard(unsafe { libc::umask(mask as libc::mode_t) })
    }
}

impl Drop for UmaskGuard {
    fn drop(&mut self) {
        // SAFETY: as in `set`, restores the previous mask.
        unsafe { libc::umask(self.0) };
    }
}

/// Connects a Unix stream socket with a bounded wait. A blocking `connect(2)`
/// on `AF_UNIX` waits for room in a full listen backlog for at most the
/// socket's send timeout, so `SO_SNDTIMEO` is set before connecting (std's
/// `UnixStream::connect` cannot do that); it stays set as the write timeout.
/// A timed-out connect is reported as `io::ErrorKind::TimedOut`.
pub fn connect_unix(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;

    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero bytes are a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid Unix socket path {}", path.display()),
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }

    // SAFETY: socket(2) with constant arguments; the result is checked below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };

    // A zero timeval would mean "wait forever": use at least 1 µs.
    let timeout = timeout.max(Duration::from_micros(1));
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below 1_000_000, so it fits suseconds_t on every target.
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt reads exactly size_of::<timeval>() bytes from `tv`,
    // which outlives the call; `socket` is an open descriptor.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast::<libc::c_void>(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `addr` is a valid, NUL-terminated sockaddr_un that outlives the
    // call, and the length passed is its size; `socket` is an open descriptor.
    let rc = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {} timed out", path.display()),
            ),
            _ => err,
        });
    }
    Ok(UnixStream::from(socket))
}

/// Waits up to `timeout` for `fd` to become readable (for a listening
/// socket: a connection to accept). Returns whether it did; an interrupted
/// wait counts as "not yet". Lets a thread that waits on a socket look at a
/// stop flag between waits instead of needing a connection to wake it.
pub fn wait_readable(fd: &impl std::os::fd::AsFd, timeout: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll(2) reads and writes exactly one pollfd, which outlives
    // the call; the descriptor is open for as long as `fd` is borrowed.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
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

/// Asks the kernel to back the 2 MiB-aligned part of `v`'s allocation with
/// transparent huge pages (`MADV_HUGEPAGE`). A hint: failure is harmless
/// and ignored; the contents of `v` are not touched.
pub fn advise_huge_pages<T>(v: &mut Vec<T>) {
    const HUGE: usize = 2 << 20;
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < HUGE {
        return;
    }
    let start = v.as_mut_ptr() as usize;
    let aligned = (start + HUGE - 1) & !(HUGE - 1);
    let end = (start + bytes) & !(HUGE - 1);
    if end > aligned {
        advise_huge(aligned, end - aligned);
    }
}

#[cfg(target_os = "linux")]
fn advise_huge(addr: usize, len: usize) {
    // SAFETY: [addr, addr + len) lies inside a vector's own allocation (its
    // capacity, 2 MiB aligned inside it, see `advise_huge_pages`);
    // MADV_HUGEPAGE only changes how the kernel backs those pages, never
    // their contents or validity. Failure is harmless and ignored.
    let _ = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_addr: usize, _len: usize) {}

/// Asks the CPU to pull the cache line holding `p` into L1 (a no-op off
/// x86_64). `p` may be any address, even dangling: it is never read.
// `_mm_prefetch` is a safe fn on newer toolchains, an unsafe one on older.
#[allow(unused_unsafe)]
#[inline(always)]
pub fn prefetch_line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a cache hint with no architectural
        // effect: it never faults and never dereferences `p` (any address is
        // allowed, even dangling); SSE is part of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A UDP socket bound to `addr` with `SO_REUSEADDR`, so that several
/// sockets of one host (a sync master's and a backup's) can all bind the
/// sync group's address and port and each receive its messages.
pub fn udp_bind_reuse(addr: std::net::SocketAddrV4) -> io::Result<std::net::UdpSocket> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) with constant arguments; the result is checked below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: SO_REUSEADDR reads one c_int from `one`, which outlives the
    // call; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: bind(2) reads a sockaddr_in of the given length from `sin`,
    // which outlives the call; the fd is open.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::UdpSocket::from(socket))
}

/// The IPv4 address of network interface `name` (`SIOCGIFADDR`): the
/// source a sync master binds to, the interface a backup joins its group
/// on. Errors name the interface.
pub fn interface_ipv4(name: &str) -> io::Result<std::net::Ipv4Addr> {
    use std::os::fd::AsRawFd;
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: `ifreq` is a plain C struct (a name and a union of plain
    // data) for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFADDR reads the NUL-terminated name (the buffer is
    // zeroed beyond it) and writes a sockaddr into `req`, which lives
    // across the call; the fd is an open socket.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFADDR, &mut req) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("no IPv4 address on interface {name}: {err}"),
        ));
    }
    // SAFETY: after a successful SIOCGIFADDR the union holds `ifru_addr`,
    // an AF_INET sockaddr: port in sa_data[0..2], address in [2..6].
    let d = unsafe { req.ifr_ifru.ifru_addr }.sa_data;
    Ok(std::net::Ipv4Addr::new(
        d[2] as u8, d[3] as u8, d[4] as u8, d[5] as u8,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_unix_refuses_bad_paths_and_reaches_a_listener() {
        assert_eq!(
            connect_unix(Path::new(""), Duration::from_millis(10))
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        let long = "x".repeat(200);
        assert_eq!(
            connect_unix(Path::new(&long), Duration::from_millis(10))
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let _client = connect_unix(&path, Duration::from_secs(1)).unwrap();
        assert!(listener.accept().is_ok());
        drop(listener);
        std::fs::remove_file(&path).unwrap();
        assert!(connect_unix(&path, Duration::from_millis(10)).is_err());
    }

    #[test]
    fn huge_page_hint_keeps_contents() {
        let mut v: Vec<u64> = Vec::with_capacity(1 << 20);
        v.extend(0..1000);
        advise_huge_pages(&mut v);
        assert!(v.iter().copied().eq(0..1000));
    }
}
