//! AF_PACKET receive: the user side of a queue's RX ring, `TPACKET_V3`
//! (blocks of frames, each block handed over whole) or `TPACKET_V2` (fixed
//! frame slots, each handed over on its own), the parsing of each frame's
//! `tpacket3_hdr` / `tpacket2_hdr`, and the copy of a frame into a
//! [`HeapBuf`] (VLAN tag put back, partial TCP/UDP checksum completed).
//!
//! Rules: runs on the worker's hot path: no allocation, lock, logging or
//! system call; every offset the kernel writes into the ring is checked
//! against the block (V3) or slot (V2) before it is used (a bad one ends
//! the block or slot, it never reads outside the mapping). Block (V3) and
//! frame (V2) status words are the only memory shared with the kernel and
//! are read/written with acquire/release.

use super::socket::{
    BLOCK_FIRST_OFF, BLOCK_NUM_PKTS_OFF, BLOCK_STATUS_OFF, ETH_P_8021AD, ETH_P_8021Q,
    TPACKET2_HDRLEN, TPACKET2_SLL_OFF, TPACKET3_HDRLEN, TPACKET3_SLL_OFF, TP_STATUS_CSUMNOTREADY,
    TP_STATUS_KERNEL, TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID,
};
use crate::dataplane::driver::heapbuf::HeapBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// What one look at the RX ring found.
pub(super) enum RxStep {
    /// A frame was handed to the callback (or an empty block skipped).
    Progress,
    /// No block is ready.
    Empty,
    /// The block's frame list (V3) or the slot's header (V2) was
    /// inconsistent; the block or slot was given back.
    Corrupt,
}

/// What the ring says about one received frame.
pub(super) struct FrameMeta {
    status: u32,
    pub(super) pkttype: u8,
    vlan_tci: u16,
    vlan_tpid: u16,
    /// Length on the wire (more than the frame if the kernel truncated it).
    wire_len: u32,
}

/// The user side of an RX ring: `TPACKET_V3` blocks, or with `frames`
/// the fixed slots of a `TPACKET_V2` ring.
pub(super) struct RxRing {
    pub(super) base: *mut u8,
    pub(super) block_size: usize,
    pub(super) block_count: usize,
    /// V3: block being read (or to be read next). V2: the next slot.
    pub(super) block: usize,
    /// V3: frames of the current block not yet taken (0: no block open).
    pub(super) left: u32,
    /// V3: offset of the next frame in the current block.
    pub(super) off: usize,
    /// `TPACKET_V2`: the slot geometry; `None` for `TPACKET_V3`.
    pub(super) frames: Option<FrameSlots>,
}

/// The frame slots of a `TPACKET_V2` ring: `per_block` slots of
/// `frame_size` bytes at the start of each block, `count` in all.
pub(super) struct FrameSlots {
    pub(super) frame_size: usize,
    pub(super) per_block: usize,
    pub(super) count: usize,
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

    /// Take the next frame, if one is ready: `f` sees its metadata and
    /// bytes (valid only during the call).
    #[inline]
    pub(super) fn next_frame(&mut self, f: impl FnOnce(&FrameMeta, &[u8])) -> RxStep {
        match &self.frames {
            Some(slots) => {
                let (size, per_block, count) = (slots.frame_size, slots.per_block, slots.count);
                self.next_slot(size, per_block, count, f)
            }
            None => self.next_in_block(f),
        }
    }

    /// `TPACKET_V2`: the frame in slot `self.block`, if the kernel handed
    /// it over; the slot goes back right after `f`.
    fn next_slot(
        &mut self,
        frame_size: usize,
        per_block: usize,
        count: usize,
        f: impl FnOnce(&FrameMeta, &[u8]),
    ) -> RxStep {
        let i = self.block;
        let at = (i / per_block) * self.block_size + (i % per_block) * frame_size;
        // SAFETY: i < count = block_count * per_block, so the slot's
        // frame_size bytes lie inside the RX ring (RingGeometry). The slot
        // is 16-byte aligned (blocks are page aligned, frame_size a
        // multiple of 16): its status word, the u32 at offset 0, is aligned,
        // valid for the mapping's life, and the kernel accesses it atomically.
        let slot = unsafe { self.base.add(at) };
        // SAFETY: see above.
        let status = unsafe { AtomicU32::from_ptr(slot.cast()) };
        if status.load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            return RxStep::Empty;
        }
        // SAFETY: the slot is ours (TP_STATUS_USER) until the release
        // store below: the kernel does not write it meanwhile, and the
        // slice is not used after that store.
        let bytes = unsafe { std::slice::from_raw_parts(slot, frame_size) };
        let step = match parse_v2_header(bytes) {
            Some((meta, start, len)) => {
                f(&meta, &bytes[start..start + len]);
                RxStep::Progress
            }
            None => RxStep::Corrupt,
        };
        status.store(TP_STATUS_KERNEL, Ordering::Release);
        self.block = if i + 1 == count { 0 } else { i + 1 };
        step
    }

    /// `TPACKET_V3`: the next frame of the open block, or of the next block
    /// if the kernel handed it over.
    fn next_in_block(&mut self, f: impl FnOnce(&FrameMeta, &[u8])) -> RxStep {
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
    let meta = FrameMeta {
        status,
        pkttype,
        vlan_tci,
        vlan_tpid,
        wire_len,
    };
    let (meta, start, len) = inside(meta, off + mac, snaplen, blk.len())?;
    Some((meta, start, len, next))
}

/// `meta` with the frame's start and length, if the frame ends within
/// `room` bytes.
fn inside(
    meta: FrameMeta,
    start: usize,
    len: usize,
    room: usize,
) -> Option<(FrameMeta, usize, usize)> {
    (start.checked_add(len)? <= room).then_some((meta, start, len))
}

/// Parse the `tpacket2_hdr` at the start of a V2 slot: the metadata and
/// the frame's start and length in the slot. `None` when the frame does
/// not lie inside the slot.
fn parse_v2_header(slot: &[u8]) -> Option<(FrameMeta, usize, usize)> {
    if slot.len() < TPACKET2_HDRLEN {
        return None;
    }
    let status = rd_u32(slot, 0);
    let wire_len = rd_u32(slot, 4);
    let snaplen = rd_u32(slot, 8) as usize;
    let start = u16::from_ne_bytes([slot[12], slot[13]]) as usize;
    let vlan_tci = u16::from_ne_bytes([slot[24], slot[25]]);
    let vlan_tpid = u16::from_ne_bytes([slot[26], slot[27]]);
    let pkttype = slot[TPACKET2_SLL_OFF + 10];
    if start < TPACKET2_HDRLEN {
        return None;
    }
    let meta = FrameMeta {
        status,
        pkttype,
        vlan_tci,
        vlan_tpid,
        wire_len,
    };
    inside(meta, start, snaplen, slot.len())
}

/// Copy a received frame into `buf`, putting back a VLAN tag the kernel
/// took out and finishing a checksum it left partial. `false` when the
/// frame was truncated by the ring or does not fit a buffer (e.g. a GRO/GSO
/// aggregate larger than the MTU).
pub(super) fn fill_rx_buf(buf: &mut HeapBuf, frame: &[u8], meta: &FrameMeta) -> bool {
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

#[cfg(test)]
mod tests {
    use super::super::tests::v6;
    use super::*;
    use crate::dataplane::driver::heapbuf::{BUF_SIZE, HEADROOM};
    use crate::dataplane::driver::PacketBuf;

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
    fn v2_slot_headers_are_parsed_and_bad_ones_refused() {
        let mut slot = vec![0u8; 256];
        slot[0..4].copy_from_slice(&(TP_STATUS_USER | TP_STATUS_VLAN_VALID).to_ne_bytes());
        slot[4..8].copy_from_slice(&60u32.to_ne_bytes()); // tp_len
        slot[8..12].copy_from_slice(&60u32.to_ne_bytes()); // tp_snaplen
        slot[12..14].copy_from_slice(&66u16.to_ne_bytes()); // tp_mac
        slot[24..26].copy_from_slice(&0x2005u16.to_ne_bytes());
        slot[26..28].copy_from_slice(&0x88a8u16.to_ne_bytes());
        slot[TPACKET2_SLL_OFF + 10] = super::super::socket::PACKET_OUTGOING;
        let (m, start, len) = parse_v2_header(&slot).expect("valid header");
        assert_eq!((start, len, m.wire_len), (66, 60, 60));
        assert_eq!((m.vlan_tci, m.vlan_tpid, m.pkttype), (0x2005, 0x88a8, 4));
        assert_ne!(m.status & TP_STATUS_VLAN_VALID, 0);
        // The frame runs past the slot.
        slot[8..12].copy_from_slice(&200u32.to_ne_bytes());
        assert!(parse_v2_header(&slot).is_none());
        // The frame starts inside the header.
        slot[8..12].copy_from_slice(&60u32.to_ne_bytes());
        slot[12..14].copy_from_slice(&16u16.to_ne_bytes());
        assert!(parse_v2_header(&slot).is_none());
        assert!(parse_v2_header(&slot[..40]).is_none());
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
}
