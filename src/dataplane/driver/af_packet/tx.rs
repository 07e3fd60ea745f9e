//! AF_PACKET transmit: the two ways a queue sends a burst, `sendmmsg(2)`
//! from preallocated headers/iovecs ([`MmsgArrays`]) or the user side of a
//! `TPACKET_V2`/`V3` TX ring ([`TxRing`]) kicked with one `sendto`.
//!
//! Rules: runs on the worker's hot path: no allocation, lock or logging;
//! the only system call is the one send/kick per burst. A transient error
//! (`EAGAIN`, `ENOBUFS`, `EINTR`) is not counted and leaves the unsent
//! packets with the caller (a failed ring kick is retried on the next
//! burst); TX ring slots are handed to the kernel with release stores.

use super::socket::{
    kick, sendmmsg, TPACKET2_SLL_OFF, TPACKET3_SLL_OFF, TP_STATUS_AVAILABLE,
    TP_STATUS_SEND_REQUEST, TP_STATUS_WRONG_FORMAT,
};
use super::Tpacket;
use crate::dataplane::driver::heapbuf::HeapBuf;
use crate::dataplane::driver::{PacketBuf, BURST_SIZE};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

/// How a queue transmits.
pub(super) enum TxPath {
    Mmsg(MmsgArrays),
    Ring(TxRing),
}

/// Preallocated `sendmmsg` arguments: one header and one iovec per packet
/// of a burst; header `i` points at iovec `i` for the life of the queue.
pub(super) struct MmsgArrays {
    hdrs: Box<[libc::mmsghdr; BURST_SIZE]>,
    iovs: Box<[libc::iovec; BURST_SIZE]>,
}

impl MmsgArrays {
    pub(super) fn new() -> MmsgArrays {
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
    pub(super) fn send(&mut self, fd: RawFd, bufs: &[HeapBuf]) -> (usize, usize, u64) {
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
            Err(e) if is_gone(&e) => (0, 0, GONE),
            Err(_) => (0, 0, 1),
        }
    }
}

/// Where a TX slot's header fields are: `tpacket2_hdr` or `tpacket3_hdr`.
#[derive(Clone, Copy)]
pub(super) struct TxLayout {
    status: usize,
    len: usize,
    snaplen: usize,
    /// `tp_next_offset` (V3 only).
    next: Option<usize>,
    /// Where the frame starts (the header, aligned).
    data: usize,
}

impl TxLayout {
    pub(super) fn of(v: Tpacket) -> TxLayout {
        match v {
            Tpacket::V2 => TxLayout {
                status: 0,
                len: 4,
                snaplen: 8,
                next: None,
                data: TPACKET2_SLL_OFF,
            },
            Tpacket::V3 => TxLayout {
                status: 20,
                len: 16,
                snaplen: 12,
                next: Some(0),
                data: TPACKET3_SLL_OFF,
            },
        }
    }
}

/// The user side of a `TPACKET_V2`/`V3` TX ring.
pub(super) struct TxRing {
    pub(super) base: *mut u8,
    pub(super) block_size: usize,
    pub(super) frame_size: usize,
    pub(super) frames_per_block: usize,
    pub(super) frame_count: usize,
    /// Next slot to fill (the kernel sends in the same order).
    pub(super) head: usize,
    /// A kick failed: kick again on the next call even with nothing new.
    pub(super) kick_pending: bool,
    pub(super) layout: TxLayout,
}

impl TxRing {
    fn frame_ptr(&self, i: usize) -> *mut u8 {
        let (blk, idx) = (i / self.frames_per_block, i % self.frames_per_block);
        // SAFETY: i < frame_count = block_count * frames_per_block, so the
        // slot lies inside the TX ring of the mapping.
        unsafe { self.base.add(blk * self.block_size + idx * self.frame_size) }
    }

    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: tp_status is the u32 at offset 0 (tpacket2_hdr) or 20
        // (tpacket3_hdr) of the slot (slots are 16-byte aligned), live for
        // the mapping, and the kernel accesses it atomically.
        unsafe { AtomicU32::from_ptr(self.frame_ptr(i).add(self.layout.status).cast()) }
    }

    /// Put `bufs` into free slots and kick the kernel; returns (placed,
    /// bytes, errors).
    pub(super) fn send(&mut self, fd: RawFd, bufs: &[HeapBuf]) -> (usize, usize, u64) {
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
            let l = self.layout;
            // SAFETY: the slot is AVAILABLE (or WRONG_FORMAT), so the kernel
            // does not read or write it; it is frame_size bytes and
            // l.data + len <= frame_size (max_frame was checked against
            // frame_size at open, and tx_burst only passes frames up to
            // max_frame). The header fields written lie before l.data and
            // do not include the status word (stored below).
            unsafe {
                let hdr = std::slice::from_raw_parts_mut(slot, l.data);
                if let Some(next) = l.next {
                    hdr[next..next + 4].copy_from_slice(&0u32.to_ne_bytes());
                }
                hdr[l.snaplen..l.snaplen + 4].copy_from_slice(&(len as u32).to_ne_bytes());
                hdr[l.len..l.len + 4].copy_from_slice(&(len as u32).to_ne_bytes());
                std::slice::from_raw_parts_mut(slot.add(l.data), len).copy_from_slice(b.data());
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
                Err(e) if is_gone(&e) => {
                    // The kernel refused before reading the ring: hand the
                    // slots back, nothing of this burst was sent.
                    for _ in 0..placed {
                        self.head = (self.head + self.frame_count - 1) % self.frame_count;
                        self.status(self.head)
                            .store(TP_STATUS_AVAILABLE, Ordering::Release);
                    }
                    self.kick_pending = false;
                    return (0, 0, GONE);
                }
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

/// The error count a send path returns when the interface is gone.
pub(super) const GONE: u64 = u64::MAX;

/// The bound interface was deleted (`ENXIO` from the socket's send, whose
/// device lookup failed; `ENODEV`).
pub(super) fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENODEV))
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR)
    )
}
