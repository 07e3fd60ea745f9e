//! [`Mbuf`]: an owned DPDK `rte_mbuf` as a [`PacketBuf`].
//!
//! Rules: single-segment buffers only (the queue frees multi-segment ones
//! on receive, and `alloc` makes single-segment ones), so the packet is
//! `data_len` bytes at `buf_addr + data_off`. An `Mbuf` is the only owner
//! of its `rte_mbuf` (reference count 1); dropping it returns it to its
//! pool (`rte_pktmbuf_free`). prepend/adj/append/trim are DPDK's own
//! functions (through the C shim), so headroom and lengths follow DPDK.

use std::fmt;
use std::ptr::NonNull;

use super::sys;
use crate::dataplane::driver::PacketBuf;

/// An owned, single-segment DPDK packet buffer. Same layout as a
/// `*mut rte_mbuf`.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is the sole owner of its rte_mbuf (never shared, refcnt
// 1), so moving it to another thread moves exclusive access; freeing it
// from any thread is sound because mempool puts are multi-producer safe
// (a thread without an lcore id bypasses the per-lcore caches).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Take ownership of a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must be null or a valid single-segment `rte_mbuf` that nothing
    /// else owns or uses afterwards.
    pub unsafe fn from_raw(ptr: *mut sys::rte_mbuf) -> Option<Mbuf> {
        NonNull::new(ptr).map(Mbuf)
    }

    /// Give up ownership; the caller must free or transmit the mbuf.
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The raw mbuf (still owned by `self`).
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    /// The port it was received on (`mbuf->port`).
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: `self.0` is a valid mbuf we own exclusively (type
        // invariant); shared access matches `&self`.
        unsafe { self.0.as_ref() }
    }

    /// Pointer to the first packet byte.
    pub(crate) fn data_ptr(&self) -> *mut u8 {
        let m = self.raw();
        // SAFETY: buf_addr + data_off lies inside the mbuf's data buffer
        // (DPDK invariant data_off <= buf_len).
        unsafe { (m.buf_addr as *mut u8).add(m.data_off as usize) }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (type invariant) and never use it again.
        unsafe { sys::rvs_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.len())
            .field("headroom", &self.headroom())
            .field("tailroom", &self.tailroom())
            .finish()
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: a single-segment mbuf holds data_len initialised packet
        // bytes at data_ptr(); borrowed for the life of &self.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.raw().data_len as usize) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let len = self.raw().data_len as usize;
        // SAFETY: as in `data`, and `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), len) }
    }

    #[inline]
    fn headroom(&self) -> usize {
        self.raw().data_off as usize
    }

    #[inline]
    fn tailroom(&self) -> usize {
        let m = self.raw();
        (m.buf_len as usize).saturating_sub(m.data_off as usize + m.data_len as usize)
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: we own the mbuf; rte_pktmbuf_prepend returns NULL without
        // change when the headroom is too small.
        let p = unsafe { sys::rvs_pktmbuf_prepend(self.0.as_ptr(), n16) };
        if p.is_null() {
            return None;
        }
        // SAFETY: on success `p` points at the n new front bytes, inside
        // the buffer and now part of the packet; borrowed from &mut self.
        Some(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n) })
    }

    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: we own the mbuf; rte_pktmbuf_adj returns NULL without
        // change when the packet is shorter than n.
        !unsafe { sys::rvs_pktmbuf_adj(self.0.as_ptr(), n16) }.is_null()
    }

    #[inline]
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: we own the mbuf; rte_pktmbuf_append returns NULL without
        // change when the tailroom is too small.
        let p = unsafe { sys::rvs_pktmbuf_append(self.0.as_ptr(), n16) };
        if p.is_null() {
            return None;
        }
        // SAFETY: on success `p` points at the n new tail bytes, inside the
        // buffer and now part of the packet; borrowed from &mut self.
        Some(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n) })
    }

    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: we own the mbuf; rte_pktmbuf_trim returns -1 without
        // change when the packet is shorter than n.
        unsafe { sys::rvs_pktmbuf_trim(self.0.as_ptr(), n16) == 0 }
    }

    #[inline]
    fn rss_hash(&self) -> Option<u32> {
        let mut h = 0u32;
        // SAFETY: we own the mbuf; `h` is a valid out-pointer.
        let some = unsafe { sys::rvs_pktmbuf_rss_hash(self.0.as_ptr(), &mut h) } != 0;
        some.then_some(h)
    }
}
