//! VRRP helpers shared by the VRRP end-to-end tests: an lbd's instance
//! state through the real `lbctl --vrrp -o json`, and an AF_PACKET sniffer
//! (and injector) that timestamps every advert, ARP and neighbour advert
//! on one interface of a namespace (its thread stops when it drops).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::lbd::{lbctl, Lbd};
use super::netns::Netns;
use super::process::poll_until;

/// `lbctl --vrrp -o json` of `lbd`, parsed.
pub fn vrrp_json(lbd: &Lbd) -> serde_json::Value {
    let out = lbctl(lbd.socket(), &["--vrrp", "-o", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("lbctl --vrrp -o json: {e}: {out}"))
}

/// The state (`MASTER`, `BACKUP`, ...) of `lbd`'s first VRRP instance.
pub fn vrrp_state(lbd: &Lbd) -> String {
    vrrp_json(lbd)["instances"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits (bounded) until `lbd`'s first instance is in `state`; panics with
/// lbd's log otherwise.
pub fn wait_vrrp_state(lbd: &Lbd, state: &str, limit: Duration) {
    let ok = poll_until(limit, Duration::from_millis(50), || {
        (vrrp_state(lbd) == state).then_some(())
    });
    assert!(
        ok.is_some(),
        "lbd not {state} within {limit:?}:\n{}",
        lbd.log_text()
    );
}

/// One captured frame.
#[derive(Clone)]
pub struct Frame {
    pub at: Instant,
    pub data: Vec<u8>,
}

impl Frame {
    /// (source, priority, VRRP message) if this is a VRRP advert (IPv4,
    /// or IPv6 without extension headers).
    pub fn advert(&self) -> Option<(IpAddr, u8, &[u8])> {
        let f = &self.data;
        if f.len() >= 54 && f[12..14] == [0x86, 0xdd] && f[20] == 112 {
            let mut src = [0u8; 16];
            src.copy_from_slice(&f[22..38]);
            let v = &f[54..];
            return Some((Ipv6Addr::from(src).into(), *v.get(2)?, v));
        }
        if f.len() < 34 || f[12..14] != [0x08, 0x00] || f[23] != 112 {
            return None;
        }
        let ihl = usize::from(f[14] & 0x0f) * 4;
        let v = f.get(14 + ihl..)?;
        let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
        Some((src.into(), *v.get(2)?, v))
    }

    /// (source MAC, target) if this is an IPv6 neighbour advertisement
    /// (no extension headers).
    pub fn neighbour_advert(&self) -> Option<([u8; 6], Ipv6Addr)> {
        let d = &self.data;
        if d.len() < 78 || d[12..14] != [0x86, 0xdd] || d[20] != 58 || d[54] != 136 {
            return None;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&d[6..12]);
        let mut target = [0u8; 16];
        target.copy_from_slice(&d[62..78]);
        Some((mac, Ipv6Addr::from(target)))
    }

    /// (operation, sender MAC, sender IP) if this is an ARP frame.
    pub fn arp(&self) -> Option<(u16, [u8; 6], Ipv4Addr)> {
        let f = &self.data;
        if f.len() < 42 || f[12..14] != [0x08, 0x06] {
            return None;
        }
        let mut sha = [0u8; 6];
        sha.copy_from_slice(&f[22..28]);
        Some((
            u16::from_be_bytes([f[20], f[21]]),
            sha,
            Ipv4Addr::new(f[28], f[29], f[30], f[31]),
        ))
    }
}

/// An AF_PACKET sniffer (and injector) on one interface of a namespace.
pub struct Sniffer {
    stop: Arc<AtomicBool>,
    frames: Arc<Mutex<Vec<Frame>>>,
    fd: Arc<OwnedFd>,
    ifindex: i32,
    thread: Option<JoinHandle<()>>,
}

impl Sniffer {
    pub fn start(ns: &Netns, ifname: &str) -> Sniffer {
        let path = format!("/run/netns/{}", ns.name);
        let ifname = ifname.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (stop2, frames2) = (stop.clone(), frames.clone());
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("netns");
            // SAFETY: setns on a valid namespace fd; this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns");
            // SAFETY: socket(2); the result is checked.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW,
                    i32::from((libc::ETH_P_ALL as u16).to_be()),
                )
            };
            assert!(raw >= 0, "AF_PACKET socket");
            // SAFETY: a fresh descriptor owned by nobody else.
            let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
            let name = std::ffi::CString::new(ifname).expect("name");
            // SAFETY: a valid C string.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
            assert!(index > 0, "no such interface");
            // SAFETY: zeroed sockaddr_ll is valid; bind reads it.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sll.sll_ifindex = index;
            // SAFETY: sll lives across the call; the length is its size.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(rc, 0, "bind");
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            };
            // SAFETY: tv lives across the call.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            };
            tx.send((fd.clone(), index)).expect("ready");
            let mut buf = vec![0u8; 2048];
            while !stop2.load(Ordering::Relaxed) {
                // SAFETY: buf is writable for its length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    continue;
                }
                let f = Frame {
                    at: Instant::now(),
                    data: buf[..n as usize].to_vec(),
                };
                if f.advert().is_some() || f.arp().is_some() || f.neighbour_advert().is_some() {
                    frames2.lock().expect("frames").push(f);
                }
            }
        });
        let (fd, ifindex) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("sniffer ready");
        Sniffer {
            stop,
            frames,
            fd,
            ifindex,
            thread: Some(thread),
        }
    }

    pub fn frames(&self) -> Vec<Frame> {
        self.frames.lock().expect("frames").clone()
    }

    /// Adverts from `src` (time, priority).
    pub fn adverts_from(&self, src: impl Into<IpAddr>) -> Vec<(Instant, u8)> {
        let src = src.into();
        self.frames()
            .iter()
            .filter_map(|f| {
                let (s, p, _) = f.advert()?;
                (s == src).then_some((f.at, p))
            })
            .collect()
    }

    /// Waits (bounded) for the first advert from `src` after `after`.
    pub fn first_advert_after(
        &self,
        src: impl Into<IpAddr>,
        after: Instant,
        limit: Duration,
    ) -> Instant {
        let src = src.into();
        poll_until(limit, Duration::from_millis(10), || {
            self.adverts_from(src)
                .into_iter()
                .find(|(t, _)| *t > after)
                .map(|(t, _)| t)
        })
        .unwrap_or_else(|| panic!("no advert from {src} within {limit:?}"))
    }

    /// The last advert from `src` before `before`.
    pub fn last_advert_before(&self, src: impl Into<IpAddr>, before: Instant) -> (Instant, u8) {
        let src = src.into();
        self.adverts_from(src)
            .into_iter()
            .rfind(|(t, _)| *t < before)
            .unwrap_or_else(|| panic!("no advert from {src} before"))
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: zeroed sockaddr_ll is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: frame and sll live across the call.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert!(rc > 0, "inject: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A counter of `lbd`'s sync daemon (`lbctl -L --daemon -o json`), e.g.
/// `installed`: how a test sees the daemon that follows a VRRP instance
/// (`lvs_sync_daemon IF VI`) catch up. 0 when the counter is not listed.
pub fn sync_counter(lbd: &Lbd, name: &str) -> u64 {
    match super::lbd::lbctl_json(lbd.socket(), &["-L", "--daemon"]) {
        rvs::ctl::protocol::Response::Daemon { status } => status
            .counters
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.value),
        other => panic!("lbctl -L --daemon: unexpected answer {other:?}"),
    }
}
