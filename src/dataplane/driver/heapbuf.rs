//! Heap packet buffers for the software drivers (`mem`, `pcap`, `tap`,
//! `af_packet`), shaped like DPDK mbufs: a fixed [`BUF_SIZE`]-byte block with
//! [`HEADROOM`] bytes kept free in front of the data.
//!
//! Rules: like a DPDK mempool, blocks come from a small per-thread free list
//! (the per-lcore cache) backed by one shared, bounded, lock-free ring (the
//! common pool). Once a worker has warmed the pool ([`prewarm`]) receiving,
//! rewriting and transmitting allocate nothing. A block freed on another
//! thread (a packet handed over a steering ring) joins that thread's list;
//! a list never grows past [`POOL_MAX`] blocks — beyond that blocks go to
//! the shared ring, and a thread whose list ran empty refills up to
//! [`REFILL`] blocks from it before it allocates. So a worker that receives
//! packets other workers transmit takes back the blocks they freed (a
//! worker that only transmits what others received keeps at most
//! [`POOL_MAX`] of them), and memory stays bounded: at most [`POOL_MAX`]
//! blocks per thread plus [`SHARED_MAX`] in the ring; beyond that blocks go
//! back to the allocator.

use super::PacketBuf;
use crossbeam_queue::ArrayQueue;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Bytes kept free in front of the packet for TUN/FULLNAT headers.
pub const HEADROOM: usize = 128;
/// Size of one block (headroom + data room).
pub const BUF_SIZE: usize = HEADROOM + 2048;
/// Most blocks a thread keeps on its free list (the per-lcore cache).
pub const POOL_MAX: usize = 2048;
/// Most blocks the shared ring holds (the common pool).
pub const SHARED_MAX: usize = 64 * 1024;
/// Blocks a thread whose list ran empty takes from the shared ring at once.
pub const REFILL: usize = 32;

type Block = Box<[u8; BUF_SIZE]>;

thread_local! {
    static POOL: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The common pool: blocks freed on threads whose list was full, for
/// threads whose list ran empty. Created once (by [`prewarm`] or the first
/// overflow), never resized.
fn shared() -> &'static ArrayQueue<Block> {
    static SHARED: OnceLock<ArrayQueue<Block>> = OnceLock::new();
    SHARED.get_or_init(|| ArrayQueue::new(SHARED_MAX))
}

/// Provide `n` blocks for this thread (at worker start), so the hot path
/// does not allocate: its free list is filled up to `n` (at most
/// [`POOL_MAX`]) and the rest of the `n` blocks go to the shared ring, where
/// every thread finds them — the slack for packets in flight between
/// workers.
pub fn prewarm(n: usize) {
    let ring = shared();
    let in_list = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let want = n.min(POOL_MAX);
        let room = POOL_MAX.saturating_sub(p.len());
        p.reserve(room);
        while p.len() < want {
            p.push(Box::new([0u8; BUF_SIZE]));
        }
        want
    });
    for _ in in_list..n {
        if ring.push(Box::new([0u8; BUF_SIZE])).is_err() {
            break;
        }
    }
}

/// A block from this thread's list, refilled from the shared ring when
/// empty; `None` when both are empty.
fn take_block() -> Option<Block> {
    POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.is_empty() {
            let ring = shared();
            for _ in 0..REFILL {
                match ring.pop() {
                    Some(b) => p.push(b),
                    None => break,
                }
            }
        }
        p.pop()
    })
    .ok()
    .flatten()
}

/// Return a block: to this thread's list, else to the shared ring, else to
/// the allocator.
fn give_block(b: Block) {
    let mut spill = Some(b);
    // `try_with`: during thread teardown the list may be gone; then the
    // block goes to the shared ring.
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            if let Some(b) = spill.take() {
                p.push(b);
            }
        }
    });
    if let Some(b) = spill {
        let _ = shared().push(b);
    }
}

/// Blocks on this thread's free list.
pub fn pooled() -> usize {
    POOL.with(|p| p.borrow().len())
}

/// A packet in a heap block. Dropping it returns the block to this thread's
/// free list.
pub struct HeapBuf {
    block: Option<Block>,
    start: u16,
    end: u16,
}

impl HeapBuf {
    /// An empty buffer with [`HEADROOM`] bytes of headroom.
    pub fn alloc() -> HeapBuf {
        let block = take_block().unwrap_or_else(|| Box::new([0u8; BUF_SIZE]));
        HeapBuf {
            block: Some(block),
            start: HEADROOM as u16,
            end: HEADROOM as u16,
        }
    }

    /// A buffer holding a copy of `bytes` (truncated to the data room).
    pub fn from_slice(bytes: &[u8]) -> HeapBuf {
        let mut b = HeapBuf::alloc();
        let n = bytes.len().min(BUF_SIZE - HEADROOM);
        if let Some(dst) = b.append(n) {
            dst.copy_from_slice(&bytes[..n]);
        }
        b
    }

    /// Set the data length (after the headroom) to `len` bytes, e.g. after a
    /// driver wrote a frame into [`HeapBuf::room_mut`]. Clamped to the block.
    pub fn set_len(&mut self, len: usize) {
        self.end = (self.start as usize + len).min(BUF_SIZE) as u16;
    }

    /// The whole space from the data start to the end of the block, for a
    /// driver to receive into.
    pub fn room_mut(&mut self) -> &mut [u8] {
        let s = self.start as usize;
        &mut self.block_mut()[s..]
    }

    fn block(&self) -> &[u8; BUF_SIZE] {
        // A HeapBuf holds its block until dropped.
        self.block.as_deref().expect("block present until drop")
    }

    fn block_mut(&mut self) -> &mut [u8; BUF_SIZE] {
        self.block.as_deref_mut().expect("block present until drop")
    }
}

impl Drop for HeapBuf {
    fn drop(&mut self) {
        if let Some(b) = self.block.take() {
            give_block(b);
        }
    }
}

impl PacketBuf for HeapBuf {
    fn data(&self) -> &[u8] {
        &self.block()[self.start as usize..self.end as usize]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        let (s, e) = (self.start as usize, self.end as usize);
        &mut self.block_mut()[s..e]
    }
    fn headroom(&self) -> usize {
        self.start as usize
    }
    fn tailroom(&self) -> usize {
        BUF_SIZE - self.end as usize
    }
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.start as usize {
            return None;
        }
        self.start -= n as u16;
        let s = self.start as usize;
        Some(&mut self.block_mut()[s..s + n])
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.start += n as u16;
        true
    }
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.tailroom() {
            return None;
        }
        let e = self.end as usize;
        self.end += n as u16;
        Some(&mut self.block_mut()[e..e + n])
    }
    fn trim(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.end -= n as u16;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_uses_headroom_and_adj_gives_it_back() {
        let mut b = HeapBuf::from_slice(&[1, 2, 3]);
        assert_eq!(b.headroom(), HEADROOM);
        b.prepend(20).expect("room").fill(9);
        assert_eq!(b.len(), 23);
        assert_eq!(b.data()[20..], [1, 2, 3]);
        assert!(
            b.prepend(HEADROOM).is_none(),
            "only 108 bytes left in front"
        );
        assert!(b.adj(20));
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(!b.adj(4), "cannot strip more than the packet");
    }

    #[test]
    fn append_and_trim_respect_the_block() {
        let mut b = HeapBuf::alloc();
        assert!(b.append(BUF_SIZE - HEADROOM).is_some());
        assert!(b.append(1).is_none());
        assert!(b.trim(10));
        assert_eq!(b.len(), BUF_SIZE - HEADROOM - 10);
    }

    #[test]
    fn dropped_buffers_are_recycled() {
        prewarm(4);
        let before = pooled();
        let b = HeapBuf::alloc();
        assert_eq!(pooled(), before - 1);
        drop(b);
        assert_eq!(pooled(), before);
    }

    #[test]
    fn blocks_freed_on_another_thread_come_back_through_the_shared_ring() {
        // A thread with a full list frees 4 * REFILL blocks: they spill to
        // the shared ring, where a thread with an empty list finds them.
        let spilled = std::thread::spawn(|| {
            prewarm(POOL_MAX);
            let bufs: Vec<HeapBuf> = std::iter::repeat_with(HeapBuf::alloc)
                .take(4 * REFILL)
                .collect();
            prewarm(POOL_MAX);
            drop(bufs);
            assert_eq!(pooled(), POOL_MAX, "the list stays at its bound");
        });
        spilled.join().expect("spilling thread");
        let taker = std::thread::spawn(|| {
            assert_eq!(pooled(), 0);
            let b = HeapBuf::alloc();
            // Refilled from the ring: REFILL blocks taken, one handed out
            // (other tests may have taken some in between, never more).
            let left = pooled();
            assert!(left > 0 && left < REFILL, "{left} blocks refilled");
            drop(b);
        });
        taker.join().expect("taking thread");
    }
}
