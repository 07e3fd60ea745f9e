//! Connection synchronisation in the worker (reference §3.3, §3.7): the
//! master side exports connection events into this worker's export ring,
//! the backup side installs what the sync thread put in its install ring.
//!
//! When a connection is exported (only while a master sync daemon runs,
//! `Msg::SyncExport`): a TCP connection on its transition to ESTABLISHED
//! (not IPVS's 3rd packet) and on every later change to FIN_WAIT,
//! TIME_WAIT, CLOSE, CLOSE_WAIT or LAST_ACK (forced out at once, so the
//! backup frees entries); a UDP connection at its first packet; both
//! again by time while packets flow: at the first packet of each refresh
//! window (a quarter of the state's timeout, 1 s to 60 s), so an idle
//! long-lived flow is refreshed before the backup's copy expires. A
//! connection controlled by a persistence template exports the template
//! first.
//!
//! A full resynchronisation (`Msg::SyncDump`, a backup asked for it)
//! walks the table a bounded number of slots per pass and exports what a
//! live event would have ([`DUMP_BUDGET`], ring kept half free).
//!
//! Installing: the service and real server are found in the running
//! snapshot (the backup must have the same services, as with IPVS); an
//! existing entry with the same real server takes the new state and
//! timeout, one with another real server is replaced; a new one is
//! inserted with its FULLNAT local address and port, linked to its
//! template, accounted like a scheduled connection and marked synced.
//! Its FULLNAT local port is held in this worker's pool of the service
//! (`LaddrPool::claim`) until the connection goes, so no new connection
//! is handed a port a synced one uses. The port must be in this worker's
//! partition (`steer::lport_owner`: where its replies are steered); it is
//! whenever both directors run as many workers (the master's owning
//! worker allocated it from its own partition, and the flow has the same
//! owner here). Otherwise the entry is refused and counted
//! (`install_lport_foreign`): its replies would reach a worker that does
//! not know the flow, and that worker could hand the port out again.
//!
//! Rules: no allocation, lock, log or system call: ring pushes and pops
//! only; a full ring drops and counts (`sync::export`); at most
//! [`INSTALL_BUDGET`] installs per pass.

use super::setup::add_persist;
use super::Worker;
use crate::conntrack::{addr_to_ip, Claim, TICKS_PER_SEC};
use crate::conntrack::{ConnId, Fwd, NewConn, Proto, StateChange, TcpState, Tick, Tuple};
use crate::dataplane::counters::bump as bump_core;
use crate::dataplane::driver::PortQueue;
use crate::steer::lport_owner;
use crate::sync::export::{bump, SyncEntry, SYNC_RING_SLOTS};
use crate::wire::ip_proto;

/// Entries installed at most per pass of the loop.
pub const INSTALL_BUDGET: usize = 64;
/// Table slots a full resynchronisation walks at most per pass.
pub const DUMP_BUDGET: u32 = 1024;

/// Whether `now` falls in a later refresh window than `last` for a
/// connection whose state's timeout is `timeout` ticks.
#[inline]
fn refresh_due(last: Tick, now: Tick, timeout: Tick) -> bool {
    let window = (timeout / 4).clamp(TICKS_PER_SEC, 60 * TICKS_PER_SEC);
    last / window != now / window
}

impl<Q: PortQueue> Worker<Q> {
    /// After a packet of connection `id` (state change `ch`; its previous
    /// packet came at `last_seen`): export it if §3.3/§3.7 say so.
    #[inline]
    pub(super) fn sync_after_packet(&mut self, id: ConnId, ch: StateChange, last_seen: Tick) {
        let c = self.conns.get(id);
        let due = if c.proto() == ip_proto::TCP {
            match ch.new {
                TcpState::Established => {
                    ch.old != ch.new || refresh_due(last_seen, self.tick, c.timeout_ticks())
                }
                TcpState::FinWait
                | TcpState::TimeWait
                | TcpState::Close
                | TcpState::CloseWait
                | TcpState::LastAck => ch.old != ch.new,
                _ => false,
            }
        } else {
            !c.sync_sent() || refresh_due(last_seen, self.tick, c.timeout_ticks())
        };
        if !due {
            return;
        }
        let me = self.cfg.index;
        if let Some(tid) = c.template() {
            if let Some(t) = self.conns.try_get(tid) {
                self.links.sync.export(me, SyncEntry::from_conn(t));
            }
        }
        let c = self.conns.get_mut(id);
        c.set_sync_sent();
        self.links.sync.export(me, SyncEntry::from_conn(c));
    }

    /// One step of a full resynchronisation: walks up to
    /// [`DUMP_BUDGET`] table slots, exporting every connection a live
    /// event would have exported (ESTABLISHED or closing TCP, UDP) with
    /// its template first, while the export ring is at most half full (so
    /// live events keep room); the walk resumes at the next pass.
    pub(super) fn sync_dump_step(&mut self) {
        let Some(start) = self.sync_dump else {
            return;
        };
        let me = self.cfg.index;
        let cap = self.conns.capacity();
        let end = start.saturating_add(DUMP_BUDGET).min(cap);
        let mut slot = start;
        while slot < end {
            if self.links.sync.export_len(me) >= SYNC_RING_SLOTS / 2 {
                break;
            }
            if let Some(c) = self.conns.try_get(ConnId(slot)) {
                let wanted = !c.is_template()
                    && (c.proto() != ip_proto::TCP
                        || matches!(
                            c.state(),
                            TcpState::Established
                                | TcpState::FinWait
                                | TcpState::TimeWait
                                | TcpState::Close
                                | TcpState::CloseWait
                                | TcpState::LastAck
                        ));
                if wanted {
                    if let Some(t) = c.template().and_then(|t| self.conns.try_get(t)) {
                        self.links.sync.export(me, SyncEntry::from_conn(t));
                    }
                    self.links.sync.export(me, SyncEntry::from_conn(c));
                }
            }
            slot += 1;
        }
        self.sync_dump = (slot < cap).then_some(slot);
    }

    /// Installs up to [`INSTALL_BUDGET`] entries the sync thread handed
    /// to this worker; returns how many it took.
    pub(super) fn take_synced(&mut self) -> usize {
        let me = self.cfg.index;
        let mut n = 0;
        while n < INSTALL_BUDGET {
            let Some(e) = self.links.sync.take_install(me) else {
                break;
            };
            n += 1;
            let got = self.install_synced(&e);
            let c = &self.links.sync.counters[usize::from(me)];
            match got {
                Ok(true) => bump(&c.installed, 1),
                Ok(false) => bump(&c.updated, 1),
                Err(Refused::Foreign) => bump(&c.install_lport_foreign, 1),
                Err(Refused::Other) => bump(&c.install_failed, 1),
            }
        }
        n
    }

    /// Installs one entry: `Ok(true)` new, `Ok(false)` updated, else why
    /// it was refused.
    fn install_synced(&mut self, e: &SyncEntry) -> Result<bool, Refused> {
        self.install_entry(e).unwrap_or(Err(Refused::Other))
    }

    /// [`Self::install_synced`]; `None`: no such service or real server,
    /// table full, conflict.
    fn install_entry(&mut self, e: &SyncEntry) -> Option<Result<bool, Refused>> {
        let snap = &*self.snap;
        let si = snap.find_service(e.proto, &e.vip, e.vport)? as usize;
        let svc = &snap.services[si];
        let rip = addr_to_ip(&e.rip, e.v6);
        let di = svc
            .dests
            .iter()
            .position(|d| d.addr == rip && (d.port == e.rport || d.port == 0 || svc.vport == 0))?;
        let d = &svc.dests[di];
        let state = e.tcp_state();
        if e.template {
            let timeout = e.timeout_s.clamp(1, u32::MAX / 2);
            let key = Tuple::template_key(e.proto, e.v6, &e.cip, &svc.netmask, &e.vip, e.vport);
            if let Some(tid) = self.conns.lookup_template(&key, key.hash()) {
                if self.conns.get(tid).dest() == d.id {
                    self.conns.set_synced(tid, state, timeout, self.tick);
                    return Some(Ok(false));
                }
                let _ = self.conns.invalidate_template(tid);
            }
            let tid = self
                .conns
                .insert_template(&key, d.id, svc.id, e.rip, e.rport, timeout, self.tick)
                .ok()?;
            self.conns.set_synced(tid, state, timeout, self.tick);
            add_persist(&mut self.svcs[si], &self.counters, di, d.id, 1);
            return Some(Ok(true));
        }
        let t = Tuple::new(e.proto, e.v6, e.cip, e.cport, e.vip, e.vport);
        if let Some((id, _)) = self.conns.lookup(&t, t.hash()) {
            let c = self.conns.get(id);
            if c.rip() == e.rip && c.rport() == e.rport {
                let dest_id = c.dest();
                let ch = self.conns.set_synced(id, state, e.timeout_s, self.tick);
                self.account(dest_id, ch.became_active, ch.became_inactive);
                return Some(Ok(false));
            }
            self.remove_conn(id);
        }
        // A FULLNAT connection keeps the master's local port: the port must
        // be in this worker's partition (its replies are steered by it,
        // `steer::lport_owner`; true when both directors run as many
        // workers, since the master's owner allocated it from its own), and
        // it is held in the pool as an allocated one would be.
        let claimed = if e.fwd == Fwd::FullNat {
            if lport_owner(e.lport, self.cfg.workers) != self.cfg.index {
                return Some(Err(Refused::Foreign));
            }
            match self.svcs[si]
                .pool
                .as_mut()
                .map(|p| p.claim(&e.lip, e.lport))
            {
                Some(Claim::Taken | Claim::Shared) => true,
                // Not one of the service's local ports here (another
                // range or address list): no allocation can collide.
                Some(Claim::NotHeld) | None => false,
            }
        } else {
            false
        };
        let snap = &*self.snap;
        let svc = &snap.services[si];
        let d = &svc.dests[di];
        let template = svc.persistent.and_then(|_| {
            let key = Tuple::template_key(e.proto, e.v6, &e.cip, &svc.netmask, &e.vip, e.vport);
            self.conns.lookup_template(&key, key.hash())
        });
        let nc = NewConn {
            proto: Proto::from_number(e.proto)?,
            v6: e.v6,
            fwd: e.fwd,
            cip: e.cip,
            cport: e.cport,
            vip: e.vip,
            vport: e.vport,
            rip: e.rip,
            rport: e.rport,
            lip: e.lip,
            lport: e.lport,
            svc: svc.id,
            dest: d.id,
            template,
            flags: 0,
        };
        let id = match self.conns.insert(&nc, self.tick, &snap.timeouts) {
            Ok(id) => id,
            Err(_) => {
                if claimed {
                    if let Some(p) = self.svcs[si].pool.as_mut() {
                        p.free(&e.lip, e.lport);
                    }
                }
                return None;
            }
        };
        let core = &mut self.svcs[si];
        core.loads[di].inactive += 1;
        core.loads[di].on_bind(&svc.views[di]);
        core.sched.load_changed(&core.loads, di);
        bump_core(&self.counters.conns_now, 1);
        bump_core(&self.counters.dest_conns[d.id as usize].inactive, 1);
        if e.fwd == Fwd::FullNat {
            bump_core(&self.counters.fullnat_ports_in_use, 1);
        }
        let dest_id = d.id;
        let ch = self.conns.set_synced(id, state, e.timeout_s, self.tick);
        self.account(dest_id, ch.became_active, ch.became_inactive);
        Some(Ok(true))
    }
}

/// Why a synced entry was not installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    /// A FULLNAT local port of another worker's partition
    /// (`install_lport_foreign`).
    Foreign,
    /// No such service or real server, table full, conflict
    /// (`install_failed`).
    Other,
}
