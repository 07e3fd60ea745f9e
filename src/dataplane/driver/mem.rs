//! `mem` driver: packets in memory, for benchmarks and golden tests.
//!
//! A [`MemQueue`] receives from either a script (frames queued by a test,
//! delivered once, in order) or a synthetic generator (a set of prebuilt
//! frames — one per flow — cycled forever, copied into a fresh buffer on
//! each receive as a NIC's DMA would). What the worker transmits is counted
//! and either kept (for tests to inspect) or recycled at once (benchmarks).
//!
//! Rules: in generator mode with `keep_tx = false` nothing allocates once the
//! buffer list is warm.

use std::collections::VecDeque;

use super::heapbuf::HeapBuf;
use super::{Burst, DriverError, PacketBuf, PortCaps, PortQueue, PortStats, Steering};
use crate::dataplane::driver::Driver;

/// Where received packets come from.
#[derive(Debug)]
enum Source {
    Script(VecDeque<Vec<u8>>),
    Cycle { frames: Vec<Vec<u8>>, next: usize },
    Flows(FlowGen),
}

/// Synthetic flows from one template frame (pktgen style): packet `n` is the
/// template with its IPv4 source address replaced by `base + flow(n)`, where
/// `flow(n)` walks the `flows` flows in a scrambled order (so table lookups
/// do not hit the cache by luck). The IPv4 header and TCP/UDP checksums are
/// patched incrementally, as a NIC-side generator would emit them.
#[derive(Debug, Clone)]
pub struct FlowGen {
    template: Vec<u8>,
    /// Offset of the IPv4 header in the template.
    l3: usize,
    /// Offset of the TCP/UDP checksum in the template, if any.
    l4_csum: Option<usize>,
    base: u32,
    flows: u32,
    n: u64,
    /// When set, only these flow numbers are generated (a worker's own
    /// flows, as a NIC steering by the owner function would deliver them).
    only: Option<Vec<u32>>,
}

impl FlowGen {
    /// A generator over `flows` flows from an untagged Ethernet/IPv4
    /// TCP or UDP `template` whose source address is the first flow's.
    pub fn new(template: Vec<u8>, flows: u32) -> FlowGen {
        let l3 = 14;
        let ihl = (template.get(l3).copied().unwrap_or(0x45) & 0x0f) as usize * 4;
        let proto = template.get(l3 + 9).copied().unwrap_or(0);
        let l4_csum = match proto {
            6 => Some(l3 + ihl + 16),
            17 => Some(l3 + ihl + 6),
            _ => None,
        };
        let base = u32::from_be_bytes([
            template[l3 + 12],
            template[l3 + 13],
            template[l3 + 14],
            template[l3 + 15],
        ]);
        FlowGen {
            template,
            l3,
            l4_csum,
            base,
            flows: flows.max(1),
            n: 0,
            only: None,
        }
    }

    /// Replace the TCP flags byte of the template (e.g. SYN for set-up,
    /// then ACK for established traffic).
    pub fn set_tcp_flags(&mut self, flags: u8) {
        let ihl = (self.template[self.l3] & 0x0f) as usize * 4;
        let off = self.l3 + ihl + 13;
        if let Some(csum_off) = self.l4_csum {
            let old = u16::from_be_bytes([self.template[off - 1], self.template[off]]);
            self.template[off] = flags;
            let new = u16::from_be_bytes([self.template[off - 1], self.template[off]]);
            let c = u16::from_be_bytes([self.template[csum_off], self.template[csum_off + 1]]);
            let c = crate::wire::checksum::update16(c, old, new);
            self.template[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
        }
    }

    /// Keep only the flows for which `keep(source address)` holds (e.g. the
    /// flows a given worker owns).
    pub fn retain_flows(mut self, keep: impl Fn(std::net::Ipv4Addr) -> bool) -> FlowGen {
        let list: Vec<u32> = (0..self.flows)
            .filter(|f| keep(std::net::Ipv4Addr::from(self.base.wrapping_add(*f))))
            .collect();
        self.only = Some(list);
        self
    }

    /// Restart at the first packet.
    pub fn rewind(&mut self) {
        self.n = 0;
    }

    /// The flow of packet `n`.
    fn flow_of(&self, n: u64) -> u32 {
        // Multiplicative scramble by a prime (2654435761): a bijection over
        // any flow count below it.
        match &self.only {
            Some(list) if !list.is_empty() => {
                list[(n.wrapping_mul(0x9E37_79B1) % list.len() as u64) as usize]
            }
            _ => (n.wrapping_mul(0x9E37_79B1) % self.flows as u64) as u32,
        }
    }

    fn next_into(&mut self, b: &mut HeapBuf) -> bool {
        let f = self.flow_of(self.n);
        self.n = self.n.wrapping_add(1);
        let Some(d) = b.append(self.template.len()) else {
            return false;
        };
        d.copy_from_slice(&self.template);
        let l3 = self.l3;
        let new = self.base.wrapping_add(f);
        d[l3 + 12..l3 + 16].copy_from_slice(&new.to_be_bytes());
        let ic = u16::from_be_bytes([d[l3 + 10], d[l3 + 11]]);
        d[l3 + 10..l3 + 12]
            .copy_from_slice(&crate::wire::checksum::update32(ic, self.base, new).to_be_bytes());
        if let Some(o) = self.l4_csum {
            let c = u16::from_be_bytes([d[o], d[o + 1]]);
            if !(c == 0 && d[l3 + 9] == 17) {
                let c = crate::wire::checksum::update32(c, self.base, new);
                d[o..o + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
        true
    }
}

/// One queue of a mem port.
#[derive(Debug)]
pub struct MemQueue {
    source: Source,
    keep_tx: bool,
    sent: Vec<Vec<u8>>,
    /// Packets received.
    pub rx_count: u64,
    /// Packets transmitted.
    pub tx_count: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// When set, `tx_burst` takes at most this many packets per call
    /// (to test partial transmits).
    pub tx_limit: Option<usize>,
}

impl MemQueue {
    /// A queue delivering `frames` once, keeping what is sent.
    pub fn scripted(frames: impl IntoIterator<Item = Vec<u8>>) -> Self {
        MemQueue {
            source: Source::Script(frames.into_iter().collect()),
            keep_tx: true,
            sent: Vec::new(),
            rx_count: 0,
            tx_count: 0,
            tx_bytes: 0,
            tx_limit: None,
        }
    }

    /// A queue cycling over `frames` forever; transmitted packets are
    /// counted and freed.
    pub fn generator(frames: Vec<Vec<u8>>) -> Self {
        MemQueue {
            source: Source::Cycle { frames, next: 0 },
            keep_tx: false,
            sent: Vec::new(),
            rx_count: 0,
            tx_count: 0,
            tx_bytes: 0,
            tx_limit: None,
        }
    }

    /// A queue generating synthetic flows; transmitted packets are counted
    /// and freed.
    pub fn flows(gen: FlowGen) -> Self {
        MemQueue {
            source: Source::Flows(gen),
            keep_tx: false,
            sent: Vec::new(),
            rx_count: 0,
            tx_count: 0,
            tx_bytes: 0,
            tx_limit: None,
        }
    }

    /// The flow generator, to change its template between phases.
    pub fn flow_gen_mut(&mut self) -> Option<&mut FlowGen> {
        match &mut self.source {
            Source::Flows(g) => Some(g),
            _ => None,
        }
    }

    /// Queue more frames for a scripted queue (ignored by a generator).
    pub fn inject(&mut self, frame: Vec<u8>) {
        if let Source::Script(q) = &mut self.source {
            q.push_back(frame);
        }
    }

    /// Take what was transmitted so far (scripted queues keep it).
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.sent)
    }
}

impl PortQueue for MemQueue {
    type Buf = HeapBuf;

    fn rx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        let mut n = 0;
        while !burst.is_full() {
            let frame = match &mut self.source {
                Source::Script(q) => match q.pop_front() {
                    Some(f) => HeapBuf::from_slice(&f),
                    None => break,
                },
                Source::Cycle { frames, next } => {
                    if frames.is_empty() {
                        break;
                    }
                    let f = HeapBuf::from_slice(&frames[*next]);
                    *next += 1;
                    if *next == frames.len() {
                        *next = 0;
                    }
                    f
                }
                Source::Flows(g) => {
                    let mut b = HeapBuf::alloc();
                    if !g.next_into(&mut b) {
                        break;
                    }
                    b
                }
            };
            if burst.push(frame).is_err() {
                break;
            }
            n += 1;
        }
        self.rx_count += n as u64;
        n
    }

    fn tx_burst(&mut self, burst: &mut Burst<HeapBuf>) -> usize {
        let n = self.tx_limit.map_or(burst.len(), |l| l.min(burst.len()));
        for b in burst.drain_front(n) {
            self.tx_count += 1;
            self.tx_bytes += b.len() as u64;
            if self.keep_tx {
                self.sent.push(b.data().to_vec());
            }
        }
        n
    }

    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(HeapBuf::alloc())
    }

    fn rx_exhausted(&self) -> bool {
        matches!(&self.source, Source::Script(q) if q.is_empty())
    }
}

/// A mem port: hands out prepared queues.
pub struct MemDriver {
    caps: PortCaps,
    queues: Option<Vec<MemQueue>>,
}

impl MemDriver {
    /// A port named `name` with MAC `mac` and the given queues (one per
    /// worker).
    pub fn new(name: &str, mac: [u8; 6], mtu: u16, queues: Vec<MemQueue>) -> Self {
        MemDriver {
            caps: PortCaps {
                name: name.to_string(),
                mac,
                mtu,
                queues: queues.len() as u16,
                tx_csum_offload: false,
                steering: Steering::None,
            },
            queues: Some(queues),
        }
    }
}

impl Driver for MemDriver {
    type Queue = MemQueue;
    fn caps(&self) -> &PortCaps {
        &self.caps
    }
    fn take_queues(&mut self) -> Result<Vec<MemQueue>, DriverError> {
        self.queues.take().ok_or(DriverError::QueuesTaken)
    }
    fn stats(&self) -> PortStats {
        PortStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_queue_delivers_once_and_keeps_tx() {
        let mut q = MemQueue::scripted(vec![vec![1u8; 60], vec![2u8; 60]]);
        let mut b = Burst::new();
        assert_eq!(q.rx_burst(&mut b), 2);
        assert!(q.rx_exhausted());
        assert_eq!(q.tx_burst(&mut b), 2);
        assert!(b.is_empty());
        assert_eq!(q.take_sent(), vec![vec![1u8; 60], vec![2u8; 60]]);
    }

    #[test]
    fn generator_cycles_frames_and_partial_tx_leaves_rest() {
        let mut q = MemQueue::generator(vec![vec![1u8; 64], vec![2u8; 64], vec![3u8; 64]]);
        let mut b = Burst::new();
        assert_eq!(q.rx_burst(&mut b), super::super::BURST_SIZE);
        assert_eq!(b.as_slice()[3].data()[0], 1);
        q.tx_limit = Some(5);
        assert_eq!(q.tx_burst(&mut b), 5);
        assert_eq!(b.len(), super::super::BURST_SIZE - 5);
        assert_eq!(
            b.as_slice()[0].data()[0],
            3,
            "the sixth packet is first now"
        );
    }
}
