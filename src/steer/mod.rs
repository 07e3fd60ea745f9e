//! Flow ownership and receive-side scaling (DESIGN §5): which worker owns a
//! packet, computed the same way on every core and simple enough for a
//! classic-BPF fanout program or a NIC flow rule to compute too; and which
//! queue a NIC's RSS puts a packet on ([`rss`]).
//!
//! * client → VIP packets and NAT replies: `owner_hash(fold(client addr),
//!   client port)`; for a reply the client is the destination, so both
//!   directions agree;
//! * persistent services: `owner_hash(fold(client addr & mask), 0)`, so one
//!   client's connections (any port) share a core and its template;
//! * FULLNAT replies: the local port names its owner, [`lport_owner`] =
//!   `lport % workers` (each worker allocates local ports only from its
//!   partition, see `conntrack::LaddrPool`).
//!
//! * IP fragments: non-first fragments carry no ports, so no device and no
//!   worker can compute the flow owner from them. Every fragment of a
//!   datagram (src, dst, protocol, identification) is handed in software to
//!   one worker, [`frag_owner`], which learns the flow owner from the first
//!   fragment (it has the ports) and passes the datagram's fragments on to
//!   it, in order (`dataplane::worker::frag`). The AF_PACKET cBPF fanout
//!   program computes [`frag_owner`] for IPv4 fragments too, so they arrive
//!   at the router; IPv6 fragments (an extension header) reach queue 0 and
//!   are handed over in software, as on devices that cannot steer them.
//!
//! A packet to a VIP belongs to the service of its exact port, else to the
//! port-0 ("every port") service of that address ([`SteerPlan::service`],
//! the lookup the worker's snapshot makes). [`flow_owner`] is the owner
//! function given that lookup's answer ([`Destination`]); [`SteerPlan::owner`]
//! is it over the plan the devices get.
//!
//! This module is the one source of these functions: the worker
//! (`dataplane::worker`), the AF_PACKET driver's cBPF fanout program (which
//! computes [`SteerPlan::owner`] in classic BPF), the DPDK driver's
//! `rte_flow` rules ([`LportMatch`]) and RSS set-up ([`rss`]), and the
//! FULLNAT port pools (`conntrack::laddr`) all take them from here;
//! `tests/owner_agreement.rs` checks that they agree.
//!
//! Rules: a leaf — depends on `std` only, so the drivers, `conntrack` and the
//! dataplane can all use it without a cycle. Pure integer arithmetic on
//! 32-bit words (cBPF has 32-bit ALU ops: xor, mul, shift, mod), no table
//! lookups beyond the VIP/LIP sets, no allocation in the per-packet
//! functions.

pub mod rss;

/// Fold an address (IPv4: 4 bytes; IPv6: 16 bytes) to 32 bits by xor of its
/// big-endian words.
#[inline]
pub fn fold_addr(addr: &[u8]) -> u32 {
    let mut x = 0u32;
    for w in addr.chunks_exact(4) {
        x ^= u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
    }
    x
}

/// The owner hash of a folded address and a port.
#[inline]
pub fn owner_hash(folded_addr: u32, port: u16) -> u32 {
    (folded_addr ^ port as u32).wrapping_mul(0x9E37_79B1) >> 16
}

/// The worker owning a client flow.
#[inline]
pub fn client_owner(client_addr: &[u8], client_port: u16, workers: u16) -> u16 {
    if workers <= 1 {
        return 0;
    }
    (owner_hash(fold_addr(client_addr), client_port) % workers as u32) as u16
}

/// The worker owning a FULLNAT reply to local port `lport` (`lport %
/// workers`; 0 when `workers` is 0 or 1): the partition of the local ports
/// among the workers.
#[inline]
pub fn lport_owner(lport: u16, workers: u16) -> u16 {
    if workers <= 1 {
        0
    } else {
        lport % workers
    }
}

/// The worker through which every fragment of one IP datagram passes
/// (source, destination, identification; 0 when `workers` is 0 or 1): it
/// alone sees all of the datagram's fragments, whatever queue they arrive
/// on, and learns the flow owner from the first.
#[inline]
pub fn frag_owner(src: &[u8], dst: &[u8], ident: u32, workers: u16) -> u16 {
    if workers <= 1 {
        return 0;
    }
    let id = (ident ^ (ident >> 16)) as u16;
    (owner_hash(fold_addr(src) ^ fold_addr(dst), id) % workers as u32) as u16
}

/// A worker's share of the local-port space as a device flow rule matches
/// it (`rte_flow` "dst port & mask == value → queue", DPVS `sa_pool`): ports
/// with `lport & mask == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LportMatch {
    /// Bits of the port compared.
    pub mask: u16,
    /// Their value for this worker (`value & !mask == 0`).
    pub value: u16,
}

impl LportMatch {
    /// Whether `lport` is in this share.
    pub fn contains(&self, lport: u16) -> bool {
        lport & self.mask == self.value
    }

    /// The shares matching rvs's owner function
    /// ([`lport_owner`](lport_owner):
    /// `lport % workers`) for `workers` workers, one per worker/queue;
    /// `None` when `workers` is not a power of two (then `%` is no mask).
    pub fn owner_partition(workers: u16) -> Option<Vec<LportMatch>> {
        if workers == 0 || !workers.is_power_of_two() {
            return None;
        }
        let mask = workers - 1;
        Some(
            (0..workers)
                .map(|value| LportMatch { mask, value })
                .collect(),
        )
    }
}

/// A service as the steering program sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteerService {
    /// IP protocol (6 or 17).
    pub proto: u8,
    /// Virtual address (4 or 16 bytes).
    pub vip: Vec<u8>,
    /// Virtual port; 0 = every port.
    pub vport: u16,
    /// For persistent services, the client mask (4 or 16 bytes); the
    /// owner is then computed from the masked address with port 0.
    pub persist_mask: Option<Vec<u8>>,
}

/// Everything a device-side steering program needs: services and local
/// addresses. Built by the control plane from each snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SteerPlan {
    /// Number of workers (queues).
    pub workers: u16,
    /// Virtual services.
    pub services: Vec<SteerService>,
    /// FULLNAT local addresses (4 or 16 bytes each).
    pub laddrs: Vec<Vec<u8>>,
}

/// What the owner function needs to know about a packet's destination
/// (the caller looks it up: a worker in its snapshot, [`SteerPlan::owner`]
/// in the plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// A FULLNAT local address: the packet is a reply to a local port.
    Laddr,
    /// A virtual service, persistent with this client mask (4 or 16 bytes,
    /// or the 16-byte form of an IPv4 mask) or not.
    Service {
        /// The client mask of a persistent service.
        persist_mask: Option<&'a [u8]>,
    },
    /// Anything else (a NAT reply: the destination is the client).
    Other,
}

/// The worker owning a TCP/UDP packet `src:sport → dst:dport` (addresses
/// of 4 or 16 bytes) whose destination is `dest` — the one owner function
/// (DESIGN §5): FULLNAT replies by local port, client → VIP traffic by the
/// (masked) client, everything else (NAT replies) by the destination = the
/// client.
#[inline]
pub fn flow_owner(
    dest: Destination<'_>,
    src: &[u8],
    sport: u16,
    dst: &[u8],
    dport: u16,
    workers: u16,
) -> u16 {
    if workers <= 1 {
        return 0;
    }
    match dest {
        Destination::Laddr => lport_owner(dport, workers),
        Destination::Service {
            persist_mask: Some(m),
        } => {
            let mut masked = [0u8; 16];
            for (o, (a, b)) in masked.iter_mut().zip(src.iter().zip(m.iter())) {
                *o = a & b;
            }
            client_owner(&masked[..src.len().min(16)], 0, workers)
        }
        Destination::Service { persist_mask: None } => client_owner(src, sport, workers),
        Destination::Other => client_owner(dst, dport, workers),
    }
}

impl SteerPlan {
    /// The service a packet to `dst:dport` belongs to, looked up as the
    /// worker's snapshot does: the exact port first, then the service of
    /// port 0 (every port) on that address.
    pub fn service(&self, proto: u8, dst: &[u8], dport: u16) -> Option<&SteerService> {
        let on = |port: u16| {
            self.services
                .iter()
                .find(move |s| s.proto == proto && s.vport == port && s.vip.as_slice() == dst)
        };
        on(dport).or_else(|| on(0))
    }

    /// What the plan knows of destination `dst:dport` for protocol `proto`.
    pub fn destination(&self, proto: u8, dst: &[u8], dport: u16) -> Destination<'_> {
        if self.laddrs.iter().any(|l| l.as_slice() == dst) {
            return Destination::Laddr;
        }
        match self.service(proto, dst, dport) {
            Some(s) => Destination::Service {
                persist_mask: s.persist_mask.as_deref(),
            },
            None => Destination::Other,
        }
    }

    /// The owner of an IP packet given its addresses and ports, as the
    /// worker computes it ([`flow_owner`] of [`Self::destination`]).
    pub fn owner(&self, proto: u8, src: &[u8], sport: u16, dst: &[u8], dport: u16) -> u16 {
        if self.workers <= 1 {
            return 0;
        }
        let dest = self.destination(proto, dst, dport);
        flow_owner(dest, src, sport, dst, dport, self.workers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_of_a_nat_flow_have_one_owner() {
        let plan = SteerPlan {
            workers: 2,
            services: vec![SteerService {
                proto: 6,
                vip: vec![10, 0, 0, 1],
                vport: 80,
                persist_mask: None,
            }],
            laddrs: vec![],
        };
        for cport in 1000..1100 {
            let c = [203, 0, 113, 7];
            let to_vip = plan.owner(6, &c, cport, &[10, 0, 0, 1], 80);
            let reply = plan.owner(6, &[192, 168, 10, 1], 8080, &c, cport);
            assert_eq!(to_vip, reply);
        }
    }

    #[test]
    fn fragments_of_one_datagram_have_one_owner_and_datagrams_spread() {
        let (c, v) = ([203u8, 0, 113, 7], [10u8, 0, 0, 1]);
        let mut seen = [0u32; 2];
        for id in 0..4000u32 {
            let o = frag_owner(&c, &v, id, 2);
            assert_eq!(o, frag_owner(&c, &v, id, 2));
            seen[o as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 1600), "{seen:?}");
        assert_eq!(frag_owner(&c, &v, 7, 1), 0);
    }

    #[test]
    fn owners_spread_over_workers() {
        let mut seen = [0u32; 4];
        for cport in 0..4000u16 {
            seen[client_owner(&[198, 51, 100, 9], cport, 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn persistent_clients_keep_one_owner_across_ports() {
        let plan = SteerPlan {
            workers: 2,
            services: vec![SteerService {
                proto: 6,
                vip: vec![10, 0, 0, 1],
                vport: 0,
                persist_mask: Some(vec![255, 255, 255, 0]),
            }],
            laddrs: vec![],
        };
        let first = plan.owner(6, &[203, 0, 113, 7], 1, &[10, 0, 0, 1], 80);
        for p in 2..500 {
            assert_eq!(
                plan.owner(6, &[203, 0, 113, 99], p, &[10, 0, 0, 1], 443),
                first
            );
        }
    }

    #[test]
    fn fullnat_reply_owner_is_the_lport_partition() {
        let plan = SteerPlan {
            workers: 2,
            services: vec![],
            laddrs: vec![vec![10, 0, 1, 100]],
        };
        assert_eq!(
            plan.owner(6, &[192, 168, 10, 1], 80, &[10, 0, 1, 100], 5001),
            1
        );
        assert_eq!(
            plan.owner(6, &[192, 168, 10, 1], 80, &[10, 0, 1, 100], 5002),
            0
        );
    }

    #[test]
    fn lport_match_partition_is_the_lport_owner_function() {
        for workers in [1u16, 2, 4, 8] {
            let shares = LportMatch::owner_partition(workers).expect("power of two");
            assert_eq!(shares.len(), workers as usize);
            for lport in (0..=u16::MAX).step_by(7) {
                let owner = lport_owner(lport, workers) as usize;
                for (w, s) in shares.iter().enumerate() {
                    assert_eq!(
                        s.contains(lport),
                        w == owner,
                        "lport {lport} workers {workers}"
                    );
                }
            }
        }
    }

    #[test]
    fn lport_match_partition_needs_a_power_of_two() {
        assert_eq!(LportMatch::owner_partition(3), None);
        assert_eq!(LportMatch::owner_partition(0), None);
    }

    #[test]
    fn an_exact_port_service_wins_over_the_port_0_service_of_its_address() {
        let any_port = SteerService {
            proto: 6,
            vip: vec![10, 0, 0, 1],
            vport: 0,
            persist_mask: Some(vec![255, 255, 255, 0]),
        };
        let web = SteerService {
            proto: 6,
            vip: vec![10, 0, 0, 1],
            vport: 80,
            persist_mask: None,
        };
        let plan = SteerPlan {
            workers: 4,
            services: vec![any_port.clone(), web.clone()],
            laddrs: vec![],
        };
        assert_eq!(plan.service(6, &[10, 0, 0, 1], 80), Some(&web));
        assert_eq!(plan.service(6, &[10, 0, 0, 1], 443), Some(&any_port));
        assert_eq!(plan.service(17, &[10, 0, 0, 1], 80), None);
        for cport in 1000..1100 {
            let c = [203, 0, 113, 7];
            assert_eq!(
                plan.owner(6, &c, cport, &[10, 0, 0, 1], 80),
                client_owner(&c, cport, 4)
            );
            assert_eq!(
                plan.owner(6, &c, cport, &[10, 0, 0, 1], 443),
                client_owner(&[203, 0, 113, 0], 0, 4)
            );
        }
    }
}
