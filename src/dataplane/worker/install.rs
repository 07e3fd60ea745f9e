//! Snapshot install and the mailbox: the control thread's messages (a new
//! snapshot, a connection listing, stop), handled between bursts. Installing
//! a snapshot remaps the per-core service state by stable id — scheduler
//! state, loads and local-port pools of services and real servers that
//! remain are kept — invalidates the next-hop cache and acknowledges the
//! generation in the worker's counters.
//!
//! Rules: control work, never on the packet path; the acknowledgement is
//! published (release) after everything else is in place.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::links::Msg;
use super::setup::SvcCore;
use super::{Worker, NO_POS};
use crate::conntrack::{addr_from_ip, addr_to_ip, Fwd, LaddrPool, TICKS_PER_SEC};
use crate::dataplane::counters::MAX_DESTS;
use crate::dataplane::driver::PortQueue;
use crate::dataplane::snapshot::Snapshot;
use crate::sched::DestLoad;

/// A connection as listed by `lbctl -Lnc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEntry {
    /// IP protocol (0 for templates of fwmark services).
    pub proto: u8,
    /// State name ("ESTABLISHED", "UDP", "NONE" for templates).
    pub state: &'static str,
    /// Milliseconds until expiry.
    pub expires_ms: u64,
    /// Client.
    pub client: (IpAddr, u16),
    /// Virtual service address.
    pub virt: (IpAddr, u16),
    /// Real server.
    pub dest: (IpAddr, u16),
    /// FULLNAT local address.
    pub local: Option<(IpAddr, u16)>,
    /// A persistence template.
    pub template: bool,
    /// Forwarding method.
    pub fwd: Fwd,
    /// Owning worker.
    pub worker: u16,
    /// Installed from a peer director's sync message.
    pub synced: bool,
}

impl<Q: PortQueue> Worker<Q> {
    /// Handle the control thread's messages.
    pub(super) fn take_mail(&mut self) {
        let me = self.cfg.index as usize;
        while let Some(m) = self.links.mailbox[me].pop() {
            match m {
                Msg::Snapshot(s) => self.install(s),
                Msg::DumpConns(tx) => {
                    let _ = tx.send(self.dump_conns());
                }
                Msg::Stop => self.stopped = true,
                Msg::SyncExport(on) => self.sync_export = on,
                Msg::SyncDump => self.sync_dump = Some(0),
            }
        }
    }

    /// Switch to a new snapshot: remap per-core service state by stable id,
    /// keeping scheduler state, loads and local-port pools of services and
    /// real servers that remain. Control work, done between bursts.
    pub fn install(&mut self, snap: Arc<Snapshot>) {
        let mut old: Vec<SvcCore> = std::mem::take(&mut self.svcs);
        let old_pos = std::mem::replace(&mut self.dest_pos, vec![NO_POS; MAX_DESTS]);
        let mut svcs = Vec::with_capacity(snap.services.len());
        for (si, s) in snap.services.iter().enumerate() {
            let prev = old
                .iter()
                .position(|o| o.id == s.id)
                .map(|i| old.swap_remove(i));
            let mut loads = vec![DestLoad::default(); s.dests.len()];
            if let Some(p) = &prev {
                for (di, d) in s.dests.iter().enumerate() {
                    let op = old_pos.get(d.id as usize).copied().unwrap_or(NO_POS);
                    if op != NO_POS && (op >> 16) as usize == old_svc_index(&p.id, &self.snap) {
                        if let Some(l) = p.loads.get((op & 0xffff) as usize) {
                            loads[di] = *l;
                        }
                    }
                }
            }
            for (di, d) in s.dests.iter().enumerate() {
                if let Some(slot) = self.dest_pos.get_mut(d.id as usize) {
                    *slot = ((si as u32) << 16) | di as u32;
                }
            }
            let (lo, hi) = snap.settings.lport_range;
            let (prev_sched, prev) = match prev {
                Some(p) => (Some(p.sched), Some((p.pool, p.laddrs))),
                None => (None, None),
            };
            let (pool, laddrs) = match prev {
                Some((pool, laddrs)) if laddrs == s.laddrs => (pool, laddrs),
                _ if s.laddrs.is_empty() => (None, Vec::new()),
                _ => {
                    let lips: Vec<_> = s.laddrs.iter().map(addr_from_ip).collect();
                    (
                        Some(LaddrPool::new(
                            &lips,
                            lo,
                            hi,
                            self.cfg.index,
                            self.cfg.workers,
                        )),
                        s.laddrs.clone(),
                    )
                }
            };
            let sched = match prev_sched {
                Some(mut st) => {
                    s.sched.refresh_state(&mut st);
                    st
                }
                None => s.sched.new_state(),
            };
            svcs.push(SvcCore {
                id: s.id,
                sched,
                loads,
                pool,
                laddrs,
            });
        }
        self.svcs = svcs;
        self.neigh.set_static(&snap.static_neigh);
        self.nh.invalidate();
        self.tx.ensure_ports(self.queues.len());
        self.counters
            .generation
            .store(snap.generation, Ordering::Release);
        // Connections of real servers that left the snapshot are handled
        // lazily, as IPVS does: with expire_nodest_conn their next packet
        // is dropped and the connection expired (see `forward`); otherwise
        // they keep flowing until they expire. Nothing here walks the table.
        self.snap = snap;
    }

    /// The connection table as `lbctl -Lnc` lists it.
    pub(super) fn dump_conns(&self) -> Vec<ConnEntry> {
        let now = self.tick;
        self.conns
            .iter()
            .map(|(_, c)| {
                let v6 = c.v6();
                let left = c.expires_at().saturating_sub(now) as u64;
                ConnEntry {
                    proto: c.proto(),
                    state: if c.is_template() {
                        "NONE"
                    } else {
                        c.state_name()
                    },
                    expires_ms: left * 1000 / TICKS_PER_SEC as u64,
                    client: (addr_to_ip(&c.cip(), v6), c.cport()),
                    virt: (addr_to_ip(&c.vip(), v6), c.vport()),
                    dest: (addr_to_ip(&c.rip(), v6), c.rport()),
                    local: (c.fwd() == Fwd::FullNat && !c.is_template())
                        .then(|| (addr_to_ip(&c.lip(), v6), c.lport())),
                    template: c.is_template(),
                    fwd: c.fwd(),
                    worker: self.cfg.index,
                    synced: c.is_synced(),
                }
            })
            .collect()
    }
}

fn old_svc_index(id: &u16, snap: &Snapshot) -> usize {
    snap.services
        .iter()
        .position(|s| s.id == *id)
        .unwrap_or(usize::MAX)
}
