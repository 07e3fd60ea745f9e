//! Stages 3–4 of DESIGN §1: connection lookup and setup. A packet that
//! matches no connection but a service gets one: persistence templates
//! (reuse the template's real server while it lives), the scheduler's pick,
//! the FULLNAT local port (from this worker's partition of the service's
//! pool, preferring one whose reply RSS delivers to this worker), and the
//! per-core accounting of real servers' active/inactive/persistent
//! connections, undone when connections expire or are removed.
//!
//! TCP without SYN (IPVS `sloppy_tcp`, [`opens_tcp`]): with the setting on
//! (globally or for the service) a segment without SYN that matches no
//! connection is scheduled like a SYN and the connection takes its state
//! from that segment (an ACK makes it ESTABLISHED with that timeout); a
//! segment with RST never starts a connection (as in IPVS); with it off,
//! both are dropped as `not_syn`. A service behind the SYN proxy still
//! requires the proxy's handshake (the proxy decides, `synproxy_new`): a
//! proxied flow's sequence shift lives only on the director that made it,
//! so another director could not carry it on anyway, and an ACK flood must
//! not open connections past the proxy.
//!
//! Rules: reads the service and its real servers from the current snapshot
//! by reference (no reference-count traffic on the shared snapshot per
//! connection); every refusal is one [`DropReason`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Outcome, Worker, NO_POS};
use crate::conntrack::{
    addr_from_ip, addr_to_ip, tcp_flags, Conn, ConnId, ConntrackError, Dir, Fwd, LaddrPool,
    NewConn, Proto, Tick, Tuple, TICKS_PER_SEC,
};
use crate::dataplane::counters::{bump, CoreCounters, DropReason};
use crate::dataplane::driver::PortQueue;
use crate::dataplane::snapshot::{Service, Snapshot};
use crate::dataplane::xmit::Layout;
use crate::sched::{DestLoad, FlowKey, SchedState};
use crate::wire::ip_proto;

/// Local ports tried for one whose FULLNAT reply RSS delivers to the
/// allocating worker (with N queues about 1 in N matches).
const RSS_PORT_TRIES: u32 = 64;

/// Per-core state of one service.
pub(super) struct SvcCore {
    pub(super) id: u16,
    pub(super) sched: SchedState,
    pub(super) loads: Vec<DestLoad>,
    pub(super) pool: Option<LaddrPool>,
    pub(super) laddrs: Vec<IpAddr>,
}

impl<Q: PortQueue> Worker<Q> {
    /// A TCP or UDP packet: its connection, or a new one for its service.
    pub(super) fn l4(&mut self, b: Q::Buf, lay: Layout, t: Tuple, hash: u32, flags: u8) -> Outcome {
        match self.conns.lookup(&t, hash) {
            Some((id, dir)) => self.forward(id, dir, b, lay, flags),
            None => match self.snap.find_service(t.proto, &t.dst, t.dport) {
                Some(si)
                    if self
                        .snap
                        .is_standby_service(self.snap.services[si as usize].id) =>
                {
                    Outcome::Drop(DropReason::VrrpBackup)
                }
                Some(si) if t.proto == ip_proto::TCP && self.synproxy_on(si as usize) => {
                    self.synproxy_new(si as usize, b, lay, t, flags)
                }
                Some(si) => match self.new_conn(si as usize, &t, flags) {
                    Ok(id) => self.forward(id, Dir::Original, b, lay, flags),
                    Err(r) => Outcome::Drop(r),
                },
                None => {
                    let dst = addr_to_ip(&t.dst, t.v6);
                    Outcome::Drop(if self.snap.is_local(&dst) {
                        DropReason::Local
                    } else {
                        DropReason::NoService
                    })
                }
            },
        }
    }

    /// Schedule a new connection for service position `si`.
    pub(super) fn new_conn(
        &mut self,
        si: usize,
        t: &Tuple,
        flags: u8,
    ) -> Result<ConnId, DropReason> {
        // Borrow the snapshot through its field (disjoint from the mutable
        // state below) instead of cloning the `Arc`: a clone is an atomic
        // increment on a cache line every worker shares.
        let snap = &*self.snap;
        let svc = &snap.services[si];
        if t.proto == ip_proto::TCP && !opens_tcp(flags, svc.sloppy_tcp_on(&snap.settings)) {
            return Err(DropReason::NotSyn);
        }
        if self.defense.todrop() {
            // IPVS's drop_packet (ip_vs_todrop in conn_schedule).
            return Err(DropReason::DropPacket);
        }
        if self.conns.len() >= self.conns.capacity() {
            return Err(DropReason::TableFull);
        }
        // Persistence: reuse the template's real server while it lives.
        let mut template = None;
        let mut pick = None;
        if let Some(timeout) = svc.persistent {
            let tk = Tuple::template_key(t.proto, t.v6, &t.src, &svc.netmask, &t.dst, svc.vport);
            if let Some(tid) = self.conns.lookup_template(&tk, tk.hash()) {
                let dest_id = self.conns.get(tid).dest();
                let usable = svc
                    .dests
                    .iter()
                    .position(|d| d.id == dest_id)
                    .filter(|&di| {
                        let d = &svc.dests[di];
                        d.weight > 0 || !snap.settings.expire_quiescent_template
                    });
                match usable {
                    Some(di) => {
                        // IPVS refreshes the template each time it is used.
                        self.conns.touch(tid, self.tick);
                        template = Some(tid);
                        pick = Some(di);
                    }
                    None => {
                        // Template points at a deleted or (with
                        // expire_quiescent_template) quiesced server:
                        // unindex it (ip_vs_check_template) so a new one
                        // can be made; it goes once its conns are gone.
                        let _ = self.conns.invalidate_template(tid);
                    }
                }
            }
            if pick.is_none() {
                let di = schedule(&mut self.svcs[si], svc, t, self.tick)?;
                let d = &svc.dests[di];
                let tid = self
                    .conns
                    .insert_template(
                        &tk,
                        d.id,
                        svc.id,
                        addr_from_ip(&d.addr),
                        d.port,
                        timeout,
                        self.tick,
                    )
                    .map_err(|_| DropReason::TableFull)?;
                add_persist(&mut self.svcs[si], &self.counters, di, d.id, 1);
                template = Some(tid);
                pick = Some(di);
            }
        }
        let di = match pick {
            Some(di) => di,
            None => schedule(&mut self.svcs[si], svc, t, self.tick)?,
        };
        let d = &svc.dests[di];
        let rport = if d.port == 0 || svc.vport == 0 {
            t.dport
        } else {
            d.port
        };
        let (lip, lport) = if d.fwd == Fwd::FullNat {
            // Where the device spreads the replies by RSS, take a local port
            // whose reply (RIP:rport → LIP:lport) lands on this worker's own
            // queue, so it needs no hand-over; else any port of the partition.
            let rss = snap
                .routes
                .lookup(&d.addr)
                .and_then(|h| snap.port(h.port))
                .and_then(|p| p.rss.as_deref())
                .filter(|_| self.cfg.workers > 1);
            let me = self.cfg.index;
            let got = match (self.svcs[si].pool.as_mut(), rss) {
                (Some(p), Some(r)) => p
                    .alloc_matching(RSS_PORT_TRIES, |l, lp| {
                        r.fullnat_reply_queue(d.addr, rport, addr_to_ip(l, t.v6), lp) == Some(me)
                    })
                    .or_else(|| p.alloc()),
                (Some(p), None) => p.alloc(),
                (None, _) => None,
            };
            match got {
                Some(x) => x,
                None => return Err(DropReason::LaddrExhausted),
            }
        } else {
            ([0u8; 16], 0)
        };
        let proto = Proto::from_number(t.proto).ok_or(DropReason::UnsupportedProto)?;
        let nc = NewConn {
            proto,
            v6: t.v6,
            fwd: d.fwd,
            cip: t.src,
            cport: t.sport,
            vip: t.dst,
            vport: t.dport,
            rip: addr_from_ip(&d.addr),
            rport,
            lip,
            lport,
            svc: svc.id,
            dest: d.id,
            template,
            flags: 0,
        };
        match self.conns.insert(&nc, self.tick, &snap.timeouts) {
            Ok(id) => {
                let core = &mut self.svcs[si];
                let view = &svc.views[di];
                core.loads[di].inactive += 1;
                core.loads[di].on_bind(view);
                core.sched.load_changed(&core.loads, di);
                bump(&self.counters.conns_created, 1);
                bump(&self.counters.conns_now, 1);
                bump(&self.counters.services[svc.id as usize].conns, 1);
                bump(&self.counters.dests[d.id as usize].conns, 1);
                bump(&self.counters.dest_conns[d.id as usize].inactive, 1);
                if d.fwd == Fwd::FullNat {
                    bump(&self.counters.fullnat_ports_in_use, 1);
                }
                Ok(id)
            }
            Err(e) => {
                if let Some(p) = self.svcs[si].pool.as_mut() {
                    if d.fwd == Fwd::FullNat {
                        p.free(&lip, lport);
                    }
                }
                Err(match e {
                    ConntrackError::TableFull { .. } => DropReason::TableFull,
                    // A FULLNAT (lip, lport) still indexed by a connection a
                    // previous pool handed out: the port is busy.
                    ConntrackError::Exists(_) if d.fwd == Fwd::FullNat => {
                        DropReason::LaddrExhausted
                    }
                    _ => DropReason::Conflict,
                })
            }
        }
    }

    /// Account a connection's state change in the per-core loads.
    pub(super) fn account(&mut self, dest_id: u16, became_active: bool, became_inactive: bool) {
        if !became_active && !became_inactive {
            return;
        }
        let pos = self
            .dest_pos
            .get(dest_id as usize)
            .copied()
            .unwrap_or(NO_POS);
        let cc = &self.counters.dest_conns[dest_id as usize];
        let (da, di): (i64, i64) = if became_active { (1, -1) } else { (-1, 1) };
        add_clamped(&cc.active, da);
        add_clamped(&cc.inactive, di);
        if pos == NO_POS {
            return;
        }
        let (si, dj) = ((pos >> 16) as usize, (pos & 0xffff) as usize);
        if let Some(s) = self.svcs.get_mut(si) {
            if let Some(l) = s.loads.get_mut(dj) {
                l.active = (l.active as i64 + da).max(0) as u32;
                l.inactive = (l.inactive as i64 + di).max(0) as u32;
                s.sched.load_changed(&s.loads, dj);
            }
        }
    }

    /// Expire at most the configured budget of connections.
    pub(super) fn expire(&mut self) {
        let budget = self.cfg.expire_budget;
        let counters = &self.counters;
        let svcs = &mut self.svcs;
        let dest_pos = &self.dest_pos;
        let snap = &self.snap;
        let n = self.conns.expire(self.tick, budget, |c| {
            release_conn(c, snap, svcs, dest_pos, counters);
        });
        if n > 0 {
            let cur = counters.conns_now.load(Relaxed);
            counters
                .conns_now
                .store(cur.saturating_sub(n as u64), Relaxed);
            bump(&counters.conns_expired, n as u64);
        }
    }

    /// Remove connection `id` (not a template still in use), undoing its
    /// accounting.
    pub(super) fn remove_conn(&mut self, id: ConnId) {
        let c = *self.conns.get(id);
        if c.is_template() && c.n_control() > 0 {
            return;
        }
        release_conn(
            &c,
            &self.snap,
            &mut self.svcs,
            &self.dest_pos,
            &self.counters,
        );
        let _ = self.conns.remove(id);
        let cur = self.counters.conns_now.load(Relaxed);
        self.counters
            .conns_now
            .store(cur.saturating_sub(1), Relaxed);
    }
}

/// Undo a connection's accounting when it goes away, and apply IPVS's
/// unbind rule (`ip_vs_unbind_dest`): the server's OVERLOADED flag clears
/// once its connections fall below the lower threshold (or 3/4 of the
/// upper one, or at once without thresholds).
pub(super) fn release_conn(
    c: &Conn,
    snap: &Snapshot,
    svcs: &mut [SvcCore],
    dest_pos: &[u32],
    counters: &CoreCounters,
) {
    let d = c.dest() as usize;
    let pos = dest_pos.get(d).copied().unwrap_or(NO_POS);
    let sub = |a: &AtomicU64| a.store(a.load(Relaxed).saturating_sub(1), Relaxed);
    if !c.is_template() && c.fwd() == Fwd::FullNat {
        sub(&counters.fullnat_ports_in_use);
    }
    if let Some(cc) = counters.dest_conns.get(d) {
        if c.is_template() {
            sub(&cc.persist);
        } else if c.is_active() {
            sub(&cc.active);
        } else {
            sub(&cc.inactive);
        }
    }
    if pos != NO_POS {
        let (si, di) = ((pos >> 16) as usize, (pos & 0xffff) as usize);
        if let Some(core) = svcs.get_mut(si) {
            if let Some(l) = core.loads.get_mut(di) {
                if c.is_template() {
                    l.persist = l.persist.saturating_sub(1);
                } else if c.is_active() {
                    l.active = l.active.saturating_sub(1);
                } else {
                    l.inactive = l.inactive.saturating_sub(1);
                }
                if let Some(view) = snap.services.get(si).and_then(|s| s.views.get(di)) {
                    l.on_unbind(view);
                }
                core.sched.load_changed(&core.loads, di);
            }
            if !c.is_template() && c.fwd() == Fwd::FullNat {
                if let Some(p) = core.pool.as_mut() {
                    p.free(&c.lip(), c.lport());
                }
            }
        }
    } else if !c.is_template() && c.fwd() == Fwd::FullNat {
        // The service is gone or changed: return the port to whichever pool
        // of this worker owns that local address.
        for core in svcs.iter_mut() {
            if let Some(p) = core.pool.as_mut() {
                p.free(&c.lip(), c.lport());
            }
        }
    }
}

/// Whether a TCP segment with `flags` that matches no connection may start
/// one (IPVS `tcp_conn_schedule`): never with RST (even with SYN); with SYN;
/// without SYN only under `sloppy_tcp`. The new connection then takes its
/// state from the segment through IPVS's table (an ACK: NONE →
/// ESTABLISHED, a FIN: NONE → CLOSE), as IPVS's `set_tcp_state` does.
#[inline]
pub(super) fn opens_tcp(flags: u8, sloppy: bool) -> bool {
    flags & tcp_flags::RST == 0 && (sloppy || flags & tcp_flags::SYN != 0)
}

/// The scheduler's pick among service `svc`'s real servers (its position).
fn schedule(core: &mut SvcCore, svc: &Service, t: &Tuple, tick: Tick) -> Result<usize, DropReason> {
    let flow = FlowKey {
        saddr: t.src,
        sport: t.sport,
        daddr: t.dst,
        v6: t.v6,
    };
    let now_s = tick / TICKS_PER_SEC;
    svc.sched
        .pick(&mut core.sched, &svc.views, &core.loads, &flow, now_s)
        .ok_or(DropReason::NoDest)
}

/// Count `delta` persistence templates on real server position `di` (id
/// `dest_id`) of a service, in the per-core loads and the counters.
pub(super) fn add_persist(
    core: &mut SvcCore,
    counters: &CoreCounters,
    di: usize,
    dest_id: u16,
    delta: i64,
) {
    if let Some(l) = core.loads.get_mut(di) {
        l.persist = (l.persist as i64 + delta).max(0) as u32;
    }
    if let Some(cc) = counters.dest_conns.get(dest_id as usize) {
        add_clamped(&cc.persist, delta);
    }
}

/// Add `delta` to a counter the worker alone writes, not below zero.
fn add_clamped(c: &AtomicU64, delta: i64) {
    let v = c.load(Relaxed) as i64 + delta;
    c.store(v.max(0) as u64, Relaxed);
}
