//! The per-core connection table: entries, hash index, expiry, templates.
//!
//! Layout (all allocated by [`ConnTable::new`], nothing after):
//! * `entries`: `capacity` fixed-size [`Conn`] records (108 bytes, IPv6-wide
//!   addresses). Free entries form a singly linked free list.
//! * `buckets`: 4 × capacity `u32` chain heads. Each connection has one
//!   index key per direction it sees (client → VIP, and for NAT / FULLNAT
//!   the real server's reply), so at most 2 × capacity keys and a load
//!   factor ≤ 0.5 when full: a hit reads about 1.25 entries, a miss (a new
//!   connection) 0.5. The count is not a power of two: a hash's bucket is
//!   `hash × buckets >> 32` (multiply-shift range reduction), so the index
//!   costs 16 bytes per connection whatever the capacity. A chain link is
//!   `id << 1 | dir`; the next links live in the entry (`hnext[dir]`), so an
//!   index key costs no memory beyond its bucket share.
//! * the timer wheel ([`super::timer`]): ≤ 8193 `u32` heads plus two `u32`
//!   links per entry.
//!
//! Total: at most 108 + 16 + 0.5 bytes per connection for capacity ≥ 1024
//! (measured by [`ConnTable::bytes_per_conn`]).
//!
//! Rules:
//! * Single-threaded, owned by one worker; no locks, no allocation after `new`.
//! * A new connection starts INACTIVE in state NONE (TCP) or "UDP", expiring
//!   after the NONE / UDP timeout; every packet refreshes the expiry to
//!   `now + timeout(state)` (IPVS `ip_vs_conn_put`).
//! * DR / TUN connections see only the client's direction: they carry IPVS's
//!   NOOUTPUT flag, so TCP segments use the INPUT-ONLY table.
//! * Persistence templates (IPVS `ip_vs_sched_persist`) are entries with the
//!   template flag, keyed by [`Tuple::template_key`], holding the real server
//!   and counting the live connections they control (`n_control`). A template
//!   whose time comes while it still controls connections is re-armed for
//!   [`TEMPLATE_RETRY_SECS`] (IPVS `ip_vs_conn_expire`'s `expire_later`).
//! * Connection lookups never return templates and template lookups never
//!   return connections, even when their tuples coincide.

use super::key::{Addr, Tuple, ADDR_ZERO};
use super::tcp_state::{check_timeout, next_tcp_state, TcpDir, TcpState, Timeouts};
use super::timer::{secs_to_ticks, tick_reached, Linked, Tick, Wheel, WheelLink, NIL};
use super::{ConnId, ConntrackError, Dir, Fwd, Proto};
use crate::sys::{advise_huge_pages, prefetch_line};

/// Largest capacity [`ConnTable::new`] honours (larger requests are clamped).
pub const MAX_CAPACITY: u32 = 1 << 30;

/// How long a template that still controls connections lives on when its
/// time comes (IPVS: `cp->timeout = 60*HZ` in `ip_vs_conn_expire`).
pub const TEMPLATE_RETRY_SECS: u32 = 60;

// `Conn::bits`.
const B_IN_USE: u8 = 1 << 0;
const B_V6: u8 = 1 << 1;
const B_TEMPLATE: u8 = 1 << 2;
/// IPVS `IP_VS_CONN_F_INACTIVE`.
const B_INACTIVE: u8 = 1 << 3;
/// IPVS `IP_VS_CONN_F_NOOUTPUT`: no reply seen (DR / TUN) → INPUT-ONLY table.
const B_NOOUTPUT: u8 = 1 << 4;
/// The entry's keys are in the hash index.
const B_HASHED: u8 = 1 << 5;
/// Bits 6–7: [`Fwd`].
const B_FWD_SHIFT: u32 = 6;

// `Conn::state`: bits 0–3 the IPVS state number, the high bits for sync.
const S_STATE_MASK: u8 = 0x0f;
/// Installed from a peer's sync message (IPVS `IP_VS_CONN_F_SYNC`).
const S_SYNCED: u8 = 0x80;
/// Exported to the sync thread at least once.
const S_SYNC_SENT: u8 = 0x40;

const TCP: u8 = 6;

/// What the dataplane knows when it creates a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NewConn {
    /// Transport protocol.
    pub proto: Proto,
    /// IPv6 (all four addresses are of one family).
    pub v6: bool,
    /// Forwarding method of the chosen real server.
    pub fwd: Fwd,
    /// Client address and port.
    pub cip: Addr,
    /// Client port.
    pub cport: u16,
    /// Virtual address and port the client connected to.
    pub vip: Addr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address and port.
    pub rip: Addr,
    /// Real server port.
    pub rport: u16,
    /// FULLNAT local address (stored but not indexed for other methods).
    pub lip: Addr,
    /// FULLNAT local port (stored but not indexed for other methods).
    pub lport: u16,
    /// Service index (the dataplane's numbering).
    pub svc: u16,
    /// Real server index (the dataplane's numbering).
    pub dest: u16,
    /// The persistence template controlling this connection, if any: its
    /// `n_control` is incremented now and decremented when this connection goes.
    pub template: Option<ConnId>,
    /// Free for the dataplane (stored, never interpreted here).
    pub flags: u8,
}

/// One connection or persistence template, as stored in the table.
///
/// Fields are read through getters; only [`Conn::set_flags`] mutates from
/// outside — state and expiry change through the [`ConnTable`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    // Hot for lookups first.
    hnext: [u32; 2],
    proto: u8,
    bits: u8,
    state: u8,
    user_flags: u8,
    cport: u16,
    vport: u16,
    rport: u16,
    lport: u16,
    cip: Addr,
    vip: Addr,
    rip: Addr,
    lip: Addr,
    svc: u16,
    dest: u16,
    deadline: Tick,
    /// Ticks added to `now` on each refresh (IPVS `cp->timeout`).
    timeout: Tick,
    /// Connection: id of the controlling template or NIL.
    /// Template: `n_control`, the number of live connections it controls.
    link: u32,
    wheel: WheelLink,
}

/// The entry size the memory budget is built on.
pub const CONN_SIZE: usize = 108;
// `prefetch_entry` covers the whole entry with three lines.
const _: () = assert!(std::mem::size_of::<Conn>() == CONN_SIZE && CONN_SIZE <= 128);

impl Linked for Conn {
    #[inline]
    fn link(&self) -> &WheelLink {
        &self.wheel
    }
    #[inline]
    fn link_mut(&mut self) -> &mut WheelLink {
        &mut self.wheel
    }
}

impl Conn {
    const EMPTY: Conn = Conn {
        hnext: [NIL, NIL],
        proto: 0,
        bits: 0,
        state: 0,
        user_flags: 0,
        cport: 0,
        vport: 0,
        rport: 0,
        lport: 0,
        cip: ADDR_ZERO,
        vip: ADDR_ZERO,
        rip: ADDR_ZERO,
        lip: ADDR_ZERO,
        svc: 0,
        dest: 0,
        deadline: 0,
        timeout: 0,
        link: NIL,
        wheel: WheelLink::UNLINKED,
    };

    /// IP protocol number (6 TCP, 17 UDP; a fwmark template may hold 0).
    pub fn proto(&self) -> u8 {
        self.proto
    }
    /// IPv6 connection.
    pub fn v6(&self) -> bool {
        self.bits & B_V6 != 0
    }
    /// Forwarding method (NAT for templates).
    pub fn fwd(&self) -> Fwd {
        Fwd::from_bits(self.bits >> B_FWD_SHIFT)
    }
    /// Client address (templates: the masked client address).
    pub fn cip(&self) -> Addr {
        self.cip
    }
    /// Client port (0 for templates).
    pub fn cport(&self) -> u16 {
        self.cport
    }
    /// Virtual address.
    pub fn vip(&self) -> Addr {
        self.vip
    }
    /// Virtual port.
    pub fn vport(&self) -> u16 {
        self.vport
    }
    /// Real server address.
    pub fn rip(&self) -> Addr {
        self.rip
    }
    /// Real server port.
    pub fn rport(&self) -> u16 {
        self.rport
    }
    /// FULLNAT local address (the zero address for other methods).
    pub fn lip(&self) -> Addr {
        self.lip_key()
    }
    /// The local address as indexed: the SYN proxy keeps its offsets in
    /// bytes 8..16 of the `lip` field, which an IPv4 local address (bytes
    /// 0..4) and NAT (no local address) leave unused.
    #[inline(always)]
    fn lip_key(&self) -> Addr {
        if self.fwd() != Fwd::FullNat {
            return ADDR_ZERO;
        }
        if self.v6() {
            return self.lip;
        }
        let mut a = ADDR_ZERO;
        a[..4].copy_from_slice(&self.lip[..4]);
        a
    }
    /// Whether the SYN proxy can keep its offsets in this connection (every
    /// method but FULLNAT over IPv6, whose local address fills the field).
    pub fn has_proxy_room(&self) -> bool {
        !(self.v6() && self.fwd() == Fwd::FullNat)
    }
    /// The SYN proxy's two 32-bit words (sequence and timestamp offsets, or
    /// while the handshake with the real server runs, the cookie and the
    /// director's timestamp). Zero unless set.
    pub fn proxy_words(&self) -> (u32, u32) {
        let l = &self.lip;
        (
            u32::from_ne_bytes([l[8], l[9], l[10], l[11]]),
            u32::from_ne_bytes([l[12], l[13], l[14], l[15]]),
        )
    }
    /// Sets the SYN proxy's words; ignored where [`Self::has_proxy_room`]
    /// is false.
    pub fn set_proxy_words(&mut self, a: u32, b: u32) {
        if !self.has_proxy_room() {
            return;
        }
        self.lip[8..12].copy_from_slice(&a.to_ne_bytes());
        self.lip[12..16].copy_from_slice(&b.to_ne_bytes());
    }
    /// FULLNAT local port.
    pub fn lport(&self) -> u16 {
        self.lport
    }
    /// Service index.
    pub fn svc(&self) -> u16 {
        self.svc
    }
    /// Real server index.
    pub fn dest(&self) -> u16 {
        self.dest
    }
    /// The dataplane's own flags.
    pub fn flags(&self) -> u8 {
        self.user_flags
    }
    /// Sets the dataplane's own flags.
    pub fn set_flags(&mut self, flags: u8) {
        self.user_flags = flags;
    }
    /// TCP state; [`TcpState::None`] for UDP connections and templates
    /// (IPVS state number 0).
    pub fn state(&self) -> TcpState {
        TcpState::from_index(self.state & S_STATE_MASK).unwrap_or_default()
    }
    /// The state as `ipvsadm -Lnc` prints it: the TCP state name, "UDP" for
    /// UDP connections, "NONE" for templates.
    pub fn state_name(&self) -> &'static str {
        if self.is_template() {
            "NONE"
        } else if self.proto == TCP {
            self.state().name()
        } else {
            "UDP"
        }
    }
    /// Installed from a peer director's sync message (`lbctl -Lnc` marks it).
    pub fn is_synced(&self) -> bool {
        self.state & S_SYNCED != 0
    }
    /// Exported for synchronisation at least once (the worker's note).
    pub fn sync_sent(&self) -> bool {
        self.state & S_SYNC_SENT != 0
    }
    /// Notes that it was exported for synchronisation.
    pub fn set_sync_sent(&mut self) {
        self.state |= S_SYNC_SENT;
    }
    /// Counts as an active connection of its real server (never for UDP or
    /// templates).
    pub fn is_active(&self) -> bool {
        self.bits & (B_TEMPLATE | B_INACTIVE) == 0
    }
    /// The tick at which it expires unless refreshed.
    pub fn expires_at(&self) -> Tick {
        self.deadline
    }
    /// Ticks added to `now` on each refresh (the timeout of its state, or the
    /// template's timeout).
    pub fn timeout_ticks(&self) -> Tick {
        self.timeout
    }
    /// The persistence template controlling this connection.
    pub fn template(&self) -> Option<ConnId> {
        if self.is_template() || self.link == NIL {
            None
        } else {
            Some(ConnId(self.link))
        }
    }
    /// This entry is a persistence template.
    pub fn is_template(&self) -> bool {
        self.bits & B_TEMPLATE != 0
    }
    /// Templates: how many live connections it controls; 0 otherwise.
    pub fn n_control(&self) -> u32 {
        if self.is_template() {
            self.link
        } else {
            0
        }
    }

    /// The client's direction: `(cip, cport → vip, vport)`; for a template its key.
    pub fn original_tuple(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            v6: self.v6(),
            src: self.cip,
            sport: self.cport,
            dst: self.vip,
            dport: self.vport,
        }
    }

    /// The real server's reply as it reaches the director: NAT
    /// `(rip, rport → cip, cport)`, FULLNAT `(rip, rport → lip, lport)`;
    /// `None` for DR / TUN (replies bypass the director) and templates.
    pub fn reply_tuple(&self) -> Option<Tuple> {
        if self.is_template() {
            return None;
        }
        let (dst, dport) = match self.fwd() {
            Fwd::Nat => (self.cip, self.cport),
            Fwd::FullNat => (self.lip_key(), self.lport),
            Fwd::Dr | Fwd::Tun => return None,
        };
        Some(Tuple {
            proto: self.proto,
            v6: self.v6(),
            src: self.rip,
            sport: self.rport,
            dst,
            dport,
        })
    }

    fn in_use(&self) -> bool {
        self.bits & B_IN_USE != 0
    }

    /// Moves a TCP connection to state `new`, flipping INACTIVE as the
    /// state's activity says and noting it in `sc`.
    #[inline(always)]
    fn enter_state(&mut self, new: TcpState, sc: &mut StateChange) {
        let inactive = self.bits & B_INACTIVE != 0;
        if !inactive && !new.is_active() {
            self.bits |= B_INACTIVE;
            sc.became_inactive = true;
        } else if inactive && new.is_active() {
            self.bits &= !B_INACTIVE;
            sc.became_active = true;
        }
        self.state = (self.state & !S_STATE_MASK) | new as u8;
        sc.new = new;
    }

    /// Whether index key `dir` of this entry is `t` (and the entry is of the
    /// wanted kind).
    #[inline(always)]
    fn matches(&self, dir: u32, t: &Tuple, template: bool) -> bool {
        if self.proto != t.proto
            || (self.bits & B_V6 != 0) != t.v6
            || (self.bits & B_TEMPLATE != 0) != template
        {
            return false;
        }
        if dir == 0 {
            self.cport == t.sport && self.vport == t.dport && self.cip == t.src && self.vip == t.dst
        } else {
            let (dst, dport) = if self.fwd() == Fwd::FullNat {
                (self.lip_key(), self.lport)
            } else {
                (self.cip, self.cport)
            };
            self.rport == t.sport && dport == t.dport && self.rip == t.src && dst == t.dst
        }
    }
}

/// What a packet did to its connection ([`ConnTable::on_packet`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StateChange {
    /// State before the packet.
    pub old: TcpState,
    /// State after the packet.
    pub new: TcpState,
    /// The connection turned from inactive to active (real server counters:
    /// inactconns − 1, activeconns + 1).
    pub became_active: bool,
    /// The connection turned from active to inactive.
    pub became_inactive: bool,
}

/// The per-core connection table. See the module documentation.
pub struct ConnTable {
    entries: Vec<Conn>,
    buckets: Vec<u32>,
    /// `buckets.len()`, for the range reduction in [`Self::bucket`].
    nbuckets: u64,
    wheel: Wheel,
    free_head: u32,
    len: u32,
    capacity: u32,
    last_expire_work: u32,
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("buckets", &self.buckets.len())
            .field("wheel_slots", &self.wheel.slots())
            .finish()
    }
}

impl ConnTable {
    /// A table of `capacity` entries (connections + templates), clamped to
    /// [`MAX_CAPACITY`]. Allocates and initialises everything now.
    pub fn new(capacity: u32) -> Self {
        let capacity = capacity.min(MAX_CAPACITY);
        let mut entries = huge_vec(capacity as usize, Conn::EMPTY);
        for (i, e) in entries.iter_mut().enumerate() {
            let next = i as u32 + 1;
            e.hnext[0] = if next < capacity { next } else { NIL };
        }
        // capacity ≤ 2^30, so 4 × capacity ≤ 2^32: every bucket index
        // `hash × nbuckets >> 32` fits a u32 hash's range.
        let nbuckets = u64::from(capacity.max(1)) * 4;
        ConnTable {
            entries,
            buckets: huge_vec(nbuckets as usize, NIL),
            nbuckets,
            wheel: Wheel::new(Wheel::slots_for_capacity(capacity)),
            free_head: if capacity > 0 { 0 } else { NIL },
            len: 0,
            capacity,
            last_expire_work: 0,
        }
    }

    /// How many entries it can hold.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Live entries (connections and templates).
    pub fn len(&self) -> u32 {
        self.len
    }

    /// No live entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the table allocated: entries + hash index + timer wheel.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Conn>()
            + self.buckets.capacity() * std::mem::size_of::<u32>()
            + self.wheel.heap_bytes()
    }

    /// [`Self::heap_bytes`] / capacity, rounded up.
    pub fn bytes_per_conn(&self) -> usize {
        self.heap_bytes().div_ceil(self.capacity.max(1) as usize)
    }

    /// Number of hash buckets (4 × capacity).
    pub fn bucket_count(&self) -> u64 {
        self.nbuckets
    }

    /// The bucket of `hash`: its position scaled to the bucket count
    /// (Lemire's multiply-shift range reduction; uses the hash's high bits).
    #[inline(always)]
    fn bucket(&self, hash: u32) -> usize {
        ((u64::from(hash) * self.nbuckets) >> 32) as usize
    }

    /// Number of timer wheel slots (ticks).
    pub fn wheel_slots(&self) -> u32 {
        self.wheel.slots()
    }

    /// Work units (wheel slots advanced + entries examined) spent by the last
    /// [`Self::expire`] call; never more than its budget.
    pub fn last_expire_work(&self) -> u32 {
        self.last_expire_work
    }

    /// The connection whose original or reply tuple is `t`; `hash` must be
    /// `t.hash()`. Never returns templates.
    #[inline]
    pub fn lookup(&self, t: &Tuple, hash: u32) -> Option<(ConnId, Dir)> {
        self.find(t, hash, false).map(|(id, d)| {
            let dir = if d == 0 { Dir::Original } else { Dir::Reply };
            (ConnId(id), dir)
        })
    }

    /// The live persistence template keyed by `key`; `hash` must be `key.hash()`.
    #[inline]
    pub fn lookup_template(&self, key: &Tuple, hash: u32) -> Option<ConnId> {
        self.find(key, hash, true).map(|(id, _)| ConnId(id))
    }

    #[inline]
    fn find(&self, t: &Tuple, hash: u32, template: bool) -> Option<(u32, u32)> {
        let mut r = self.buckets[self.bucket(hash)];
        while r != NIL {
            let (id, d) = (r >> 1, r & 1);
            let e = &self.entries[id as usize];
            if e.matches(d, t, template) {
                return Some((id, d));
            }
            r = e.hnext[d as usize];
        }
        None
    }

    /// Hint that a lookup with this hash is coming: prefetches its bucket.
    /// Stage 1 of a burst: hash and `prefetch` every packet, then
    /// [`Self::prefetch_conn`] every packet, then [`Self::prefetch_chain`]
    /// a few packets ahead of the one being looked up.
    #[inline]
    pub fn prefetch(&self, hash: u32) {
        prefetch_line(&self.buckets[self.bucket(hash)]);
    }

    /// Stage 2 of a burst: reads the bucket (prefetched by [`Self::prefetch`])
    /// and prefetches the first entry of its chain, every line of it: the
    /// fields a lookup compares, and those forwarding reads and writes
    /// (service, real server, expiry) after it.
    #[inline]
    pub fn prefetch_conn(&self, hash: u32) {
        let r = self.buckets[self.bucket(hash)];
        self.prefetch_entry(r);
    }

    /// Stage 3 of a burst, a few packets ahead of the lookup: reads the
    /// chain's first entry (prefetched by [`Self::prefetch_conn`]) and, when
    /// it is not the connection `t` names, prefetches the next entry of the
    /// chain — the one a hit then finds in nearly every case (a chain holds
    /// one key per bucket on average when the table is full), so the lookup
    /// does not wait for memory twice in a row. Only reads; a hint.
    #[inline]
    pub fn prefetch_chain(&self, t: &Tuple, hash: u32) {
        let r = self.buckets[self.bucket(hash)];
        if let Some(e) = self.entries.get((r >> 1) as usize) {
            if !e.matches(r & 1, t, false) {
                self.prefetch_entry(e.hnext[(r & 1) as usize]);
            }
        }
    }

    /// Prefetches every cache line of the entry a chain link `r` names
    /// (nothing for `NIL`).
    #[inline(always)]
    fn prefetch_entry(&self, r: u32) {
        if let Some(e) = self.entries.get((r >> 1) as usize) {
            let bytes = (e as *const Conn).cast::<u8>();
            // An entry spans at most three lines; these three addresses are
            // ≤ 64 bytes apart, so they touch each of them.
            prefetch_line(e);
            prefetch_line(bytes.wrapping_add(64));
            prefetch_line(bytes.wrapping_add(CONN_SIZE - 1));
        }
    }

    /// The entry `id`, live or not (stale ids read a free or reused slot).
    ///
    /// # Panics
    /// If `id` is not an index of this table (≥ capacity): ids only come from
    /// this table, so that is a caller bug. [`Self::try_get`] never panics.
    #[inline]
    pub fn get(&self, id: ConnId) -> &Conn {
        &self.entries[id.0 as usize]
    }

    /// Mutable access to entry `id` (see [`Self::get`] for panics).
    #[inline]
    pub fn get_mut(&mut self, id: ConnId) -> &mut Conn {
        &mut self.entries[id.0 as usize]
    }

    /// The live entry `id`, if any.
    pub fn try_get(&self, id: ConnId) -> Option<&Conn> {
        self.entries.get(id.0 as usize).filter(|e| e.in_use())
    }

    /// The live entry `id`, mutably, if any.
    pub fn try_get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.entries.get_mut(id.0 as usize).filter(|e| e.in_use())
    }

    /// Whether `id` names a live entry.
    pub fn is_live(&self, id: ConnId) -> bool {
        self.try_get(id).is_some()
    }

    fn is_live_template(&self, id: ConnId) -> bool {
        self.try_get(id).is_some_and(|e| e.is_template())
    }

    /// Adds a connection, indexed by its original tuple and (NAT, FULLNAT) its
    /// reply tuple. It starts INACTIVE in state NONE (TCP) / UDP and expires
    /// after that state's timeout unless a packet refreshes it.
    pub fn insert(
        &mut self,
        c: &NewConn,
        now: Tick,
        t: &Timeouts,
    ) -> Result<ConnId, ConntrackError> {
        if self.len >= self.capacity {
            return Err(ConntrackError::TableFull {
                capacity: self.capacity,
            });
        }
        if let Some(tid) = c.template {
            if !self.is_live_template(tid) {
                return Err(ConntrackError::NoSuchTemplate(tid));
            }
        }
        let timeout = secs_to_ticks(match c.proto {
            Proto::Tcp => t.tcp(TcpState::None),
            Proto::Udp => t.udp(),
        });
        let mut bits = B_IN_USE | B_INACTIVE | ((c.fwd as u8) << B_FWD_SHIFT);
        if c.v6 {
            bits |= B_V6;
        }
        if !c.fwd.sees_replies() {
            bits |= B_NOOUTPUT;
        }
        let e = Conn {
            hnext: [NIL, NIL],
            proto: c.proto as u8,
            bits,
            state: TcpState::None as u8,
            user_flags: c.flags,
            cport: c.cport,
            vport: c.vport,
            rport: c.rport,
            lport: c.lport,
            cip: c.cip,
            vip: c.vip,
            rip: c.rip,
            lip: c.lip,
            svc: c.svc,
            dest: c.dest,
            deadline: now.wrapping_add(timeout),
            timeout,
            link: c.template.map_or(NIL, |t| t.0),
            wheel: WheelLink::UNLINKED,
        };
        let orig = e.original_tuple();
        let h_orig = orig.hash();
        if let Some((id, _)) = self.find(&orig, h_orig, false) {
            return Err(ConntrackError::Exists(ConnId(id)));
        }
        let reply = e.reply_tuple().map(|r| (r, r.hash()));
        if let Some((r, h)) = &reply {
            if let Some((id, _)) = self.find(r, *h, false) {
                return Err(ConntrackError::Exists(ConnId(id)));
            }
        }
        let id = self.place(e, h_orig, reply.map(|(_, h)| h));
        if let Some(tid) = c.template {
            self.entries[tid.0 as usize].link += 1;
        }
        Ok(ConnId(id))
    }

    /// Adds a persistence template keyed by `key` (see [`Tuple::template_key`])
    /// pointing at real server `dest` (`rip:rport`), living `timeout_s`
    /// seconds (the service's persistence timeout) unless touched.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_template(
        &mut self,
        key: &Tuple,
        dest: u16,
        svc: u16,
        rip: Addr,
        rport: u16,
        timeout_s: u32,
        now: Tick,
    ) -> Result<ConnId, ConntrackError> {
        check_timeout(timeout_s)?;
        if self.len >= self.capacity {
            return Err(ConntrackError::TableFull {
                capacity: self.capacity,
            });
        }
        let h = key.hash();
        if let Some((id, _)) = self.find(key, h, true) {
            return Err(ConntrackError::Exists(ConnId(id)));
        }
        let timeout = secs_to_ticks(timeout_s);
        let mut bits = B_IN_USE | B_TEMPLATE;
        if key.v6 {
            bits |= B_V6;
        }
        let e = Conn {
            proto: key.proto,
            bits,
            cport: key.sport,
            vport: key.dport,
            rport,
            cip: key.src,
            vip: key.dst,
            rip,
            svc,
            dest,
            deadline: now.wrapping_add(timeout),
            timeout,
            link: 0,
            ..Conn::EMPTY
        };
        Ok(ConnId(self.place(e, h, None)))
    }

    /// Takes a free slot, stores `e`, indexes it and files it in the wheel.
    fn place(&mut self, mut e: Conn, h_orig: u32, h_reply: Option<u32>) -> u32 {
        let id = self.free_head;
        self.free_head = self.entries[id as usize].hnext[0];
        e.bits |= B_HASHED;
        self.entries[id as usize] = e;
        self.hash_in(id, 0, h_orig);
        if let Some(h) = h_reply {
            self.hash_in(id, 1, h);
        }
        self.wheel.file(&mut self.entries, id, e.deadline);
        self.len += 1;
        id
    }

    fn hash_in(&mut self, id: u32, dir: u32, hash: u32) {
        let b = self.bucket(hash);
        self.entries[id as usize].hnext[dir as usize] = self.buckets[b];
        self.buckets[b] = (id << 1) | dir;
    }

    fn hash_out(&mut self, id: u32, dir: u32, hash: u32) {
        let me = (id << 1) | dir;
        let my_next = self.entries[id as usize].hnext[dir as usize];
        let b = self.bucket(hash);
        let mut r = self.buckets[b];
        if r == me {
            self.buckets[b] = my_next;
            return;
        }
        while r != NIL {
            let e = &mut self.entries[(r >> 1) as usize];
            let next = e.hnext[(r & 1) as usize];
            if next == me {
                e.hnext[(r & 1) as usize] = my_next;
                return;
            }
            r = next;
        }
    }

    fn unhash(&mut self, id: u32) {
        let e = self.entries[id as usize];
        if e.bits & B_HASHED == 0 {
            return;
        }
        self.hash_out(id, 0, e.original_tuple().hash());
        if let Some(r) = e.reply_tuple() {
            self.hash_out(id, 1, r.hash());
        }
        let e = &mut self.entries[id as usize];
        e.bits &= !B_HASHED;
        e.hnext = [NIL, NIL];
    }

    /// Unindexes, unfiles and frees live entry `id`; releases its template.
    fn free_entry(&mut self, id: u32) -> Conn {
        self.unhash(id);
        self.wheel.unlink(&mut self.entries, id);
        let gone = self.entries[id as usize];
        if let Some(tid) = gone.template() {
            if let Some(t) = self.entries.get_mut(tid.0 as usize) {
                if t.in_use() && t.is_template() {
                    t.link = t.link.saturating_sub(1);
                }
            }
        }
        self.entries[id as usize] = Conn {
            hnext: [self.free_head, NIL],
            ..Conn::EMPTY
        };
        self.free_head = id;
        self.len -= 1;
        gone
    }

    /// Removes a connection or template now, returning what it was.
    /// A template that still controls connections is refused
    /// ([`ConntrackError::TemplateInUse`]); see [`Self::invalidate_template`].
    pub fn remove(&mut self, id: ConnId) -> Result<Conn, ConntrackError> {
        let e = *self.try_get(id).ok_or(ConntrackError::NoSuchConn(id))?;
        if e.n_control() > 0 {
            return Err(ConntrackError::TemplateInUse {
                id,
                n_control: e.n_control(),
            });
        }
        Ok(self.free_entry(id.0))
    }

    /// Unindexes a template so that no new connection finds it (IPVS
    /// `ip_vs_check_template` failing); it stays until its time comes with
    /// no controlled connection left.
    pub fn invalidate_template(&mut self, id: ConnId) -> Result<(), ConntrackError> {
        if !self.is_live_template(id) {
            return Err(ConntrackError::NoSuchTemplate(id));
        }
        self.unhash(id.0);
        Ok(())
    }

    /// Moves the deadline of live entry `id`; re-files it only if earlier
    /// (lazy re-arm).
    #[inline]
    fn set_deadline(&mut self, id: u32, deadline: Tick) {
        let e = &mut self.entries[id as usize];
        let earlier = (deadline.wrapping_sub(e.deadline) as i32) < 0;
        e.deadline = deadline;
        if earlier {
            self.wheel.unlink(&mut self.entries, id);
            self.wheel.file(&mut self.entries, id, deadline);
        }
    }

    /// Refreshes the expiry of entry `id` to `now` + its current timeout
    /// (IPVS `ip_vs_conn_put`), e.g. a template each time it is used.
    /// Ignores ids that are not live.
    pub fn touch(&mut self, id: ConnId, now: Tick) {
        if let Some(e) = self.try_get(id) {
            let d = now.wrapping_add(e.timeout);
            self.set_deadline(id.0, d);
        }
    }

    /// Accounts a packet of connection `id` travelling in `dir`: TCP state
    /// transition (IPVS `set_tcp_state`: INPUT for [`Dir::Original`], OUTPUT
    /// for [`Dir::Reply`], INPUT-ONLY while no reply was seen on DR / TUN
    /// connections), active/inactive flag, and expiry `now + timeout(new
    /// state)` (UDP: the UDP timeout). `tcp_flags` is the raw TCP flags byte
    /// (ignored for UDP). Templates are only refreshed. Ids that are not live
    /// change nothing.
    #[inline]
    pub fn on_packet(
        &mut self,
        id: ConnId,
        dir: Dir,
        tcp_flags: u8,
        now: Tick,
        t: &Timeouts,
    ) -> StateChange {
        let Some(e) = self.entries.get_mut(id.0 as usize).filter(|e| e.in_use()) else {
            return StateChange::default();
        };
        let old = e.state();
        let mut sc = StateChange {
            old,
            new: old,
            became_active: false,
            became_inactive: false,
        };
        if e.bits & B_TEMPLATE == 0 {
            if e.proto == TCP {
                let mut tdir = match dir {
                    Dir::Original => TcpDir::Input,
                    Dir::Reply => TcpDir::Output,
                };
                if e.bits & B_NOOUTPUT != 0 {
                    if dir == Dir::Reply {
                        e.bits &= !B_NOOUTPUT;
                    } else {
                        tdir = TcpDir::InputOnly;
                    }
                }
                let new = next_tcp_state(tdir, tcp_flags, old);
                if new != old {
                    e.enter_state(new, &mut sc);
                }
                e.timeout = secs_to_ticks(t.tcp(new));
            } else {
                e.timeout = secs_to_ticks(t.udp());
            }
        }
        let d = now.wrapping_add(e.timeout);
        self.set_deadline(id.0, d);
        sc
    }

    /// Takes the state and timeout a peer director synchronised (IPVS
    /// `ip_vs_proc_conn`): TCP state `state` (ignored for UDP and
    /// templates), active unless the state is not, expiry `now + timeout_s`
    /// (clamped to the largest timeout; at least one second), and marks
    /// the entry as synced. Ids that are not live change nothing.
    pub fn set_synced(
        &mut self,
        id: ConnId,
        state: TcpState,
        timeout_s: u32,
        now: Tick,
    ) -> StateChange {
        let Some(e) = self.entries.get_mut(id.0 as usize).filter(|e| e.in_use()) else {
            return StateChange::default();
        };
        let old = e.state();
        let mut sc = StateChange {
            old,
            new: old,
            ..StateChange::default()
        };
        if e.bits & B_TEMPLATE == 0 && e.proto == TCP {
            e.enter_state(state, &mut sc);
        }
        e.state |= S_SYNCED;
        e.timeout = secs_to_ticks(timeout_s.clamp(1, super::timer::MAX_TIMEOUT_SECS));
        let d = now.wrapping_add(e.timeout);
        self.set_deadline(id.0, d);
        sc
    }

    /// Removes what has expired by `now`, calling `on_expire` with each entry
    /// just before it goes. Work is bounded by `budget` (one unit per wheel
    /// slot advanced and per entry examined), whatever the table's size; what
    /// is left is picked up by the next call. An entry examined before its
    /// (lazily moved) deadline is re-filed; a template that still controls
    /// connections is re-armed for [`TEMPLATE_RETRY_SECS`]. Returns how many
    /// entries were removed.
    pub fn expire(&mut self, now: Tick, budget: u32, mut on_expire: impl FnMut(&Conn)) -> u32 {
        let mut work = 0;
        let mut expired = 0;
        while let Some(id) = self
            .wheel
            .next_due(&mut self.entries, now, &mut work, budget)
        {
            let e = &mut self.entries[id as usize];
            if !tick_reached(e.deadline, now) {
                let d = e.deadline;
                self.wheel.file(&mut self.entries, id, d);
            } else if e.n_control() > 0 {
                e.timeout = secs_to_ticks(TEMPLATE_RETRY_SECS);
                e.deadline = now.wrapping_add(e.timeout);
                let d = e.deadline;
                self.wheel.file(&mut self.entries, id, d);
            } else {
                on_expire(e);
                self.free_entry(id);
                expired += 1;
            }
        }
        self.last_expire_work = work;
        expired
    }

    /// Removes every connection to real server `dest` of service `svc`, then
    /// the templates pointing at it that control nothing (IPVS
    /// `ip_vs_expire_nodest_conn_flush`). O(capacity); control-triggered.
    /// Returns how many entries were removed.
    pub fn flush_dest(&mut self, svc: u16, dest: u16, on_expire: impl FnMut(&Conn)) -> u32 {
        self.flush_where(|e| e.svc == svc && e.dest == dest, on_expire)
    }

    /// Removes every entry (connections first, then templates), e.g. for
    /// `ipvsadm -C`. O(capacity). Returns how many entries were removed.
    pub fn clear(&mut self, on_expire: impl FnMut(&Conn)) -> u32 {
        self.flush_where(|_| true, on_expire)
    }

    fn flush_where(
        &mut self,
        pick: impl Fn(&Conn) -> bool,
        mut on_expire: impl FnMut(&Conn),
    ) -> u32 {
        let mut n = 0;
        for templates in [false, true] {
            for id in 0..self.capacity {
                let e = &self.entries[id as usize];
                if e.in_use() && e.is_template() == templates && e.n_control() == 0 && pick(e) {
                    on_expire(e);
                    self.free_entry(id);
                    n += 1;
                }
            }
        }
        n
    }

    /// Every live entry, in slot order (for listings; not for the hot path).
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.in_use())
            .map(|(i, e)| (ConnId(i as u32), e))
    }

    /// The next tick the expiry wheel will process (diagnostics).
    pub fn wheel_cursor(&self) -> Tick {
        self.wheel.cur()
    }
}

/// A vector of `n` copies of `fill` whose memory the kernel is asked to back
/// with transparent huge pages before it is first touched (Linux
/// `madvise(MADV_HUGEPAGE)`; a hint: where THP is off or the call fails the
/// table simply uses normal pages). Large tables take TLB misses on nearly
/// every lookup with 4 KiB pages. Construction time only.
fn huge_vec<T: Copy>(n: usize, fill: T) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise_huge_pages(&mut v);
    v.resize(n, fill);
    v
}
