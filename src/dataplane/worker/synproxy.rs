//! The SYN proxy (DPVS `--synproxy`, Linux syncookies): a service with the
//! proxy on answers a client's SYN itself with a SYN-ACK whose sequence
//! number is a cookie and creates no state; only an ACK carrying a valid
//! cookie creates the connection, schedules, and opens the connection to
//! the real server with the client's own SYN options. When the real
//! server's SYN-ACK arrives the director acknowledges it for the client and
//! from then on shifts sequence numbers (and SACK blocks, and timestamps)
//! between the two handshakes in both directions.
//!
//! The cookie (Linux `__cookie_v4_init_sequence`): `H0(tuple) + client_isn +
//! (minute << 24) + ((H1(tuple, minute) + mss_index) mod 2^24)`, with keyed
//! SipHash over the tuple and the snapshot's secret; it is valid for the
//! minute it was made and the next. Window scale and SACK are carried in
//! the low 6 bits of the director's timestamp (as Linux does), so they
//! survive only when the client uses timestamps.
//!
//! State kept per proxied connection, without growing the entry: the
//! connection's flags byte ([`SP_PENDING`], [`SP_ON`], [`SP_TS`], the real
//! server's window scale) and two words the conntrack keeps in the unused
//! half of the local-address field ([`Conn::proxy_words`]): during the
//! server handshake the cookie and the director's timestamp, afterwards the
//! sequence and timestamp offsets.
//!
//! Rules: every SYN that reaches a proxied service is answered (counted in
//! `syn_cookies_sent`) or dropped with a reason; every ACK is counted valid
//! or invalid. Packets are rewritten in place in the buffer they came in
//! (no allocation); handshake packets get a full L4 checksum, forwarded
//! packets incremental updates. DR and TUN cannot shift sequence numbers on
//! the return path (it bypasses the director): the control plane refuses
//! the proxy for them.
//!
//! While the real server's handshake runs ([`ProxyQueues`], bounded and
//! allocated once with the worker; driven by the worker's tick, no system
//! call):
//!
//! * **SYN retransmission** (DPVS `synproxy_syn_retry`): a copy of the SYN
//!   sent to the real server is kept; when no SYN-ACK came within
//!   [`SYN_RETRY_TICKS`] it is sent again, at most [`SYN_RETRIES`] times.
//!   When the copy ring is full the connection simply gets no retransmits.
//!   Each retransmission that leaves is counted (`synproxy_syn_retransmits`).
//! * **Early client data** (DPVS keeps the ACK with data and replays it):
//!   segments with payload that arrive after the client's ACK and before the
//!   server's SYN-ACK are held — at most [`HELD_PER_CONN`] per connection,
//!   [`HELD_SLOTS`] per worker, for [`HELD_TICKS`] — and forwarded right
//!   after the director's ACK to the server, in arrival order. What does not
//!   fit, waits too long, or was a bare ACK is dropped and counted
//!   (`synproxy_pending`); the client retransmits it. Counted besides:
//!   `synproxy_held`, `synproxy_held_replayed`, `synproxy_held_full` (did
//!   not fit) and `synproxy_held_timeout` (waited too long). (Data inside the
//!   cookie ACK itself is not kept: that buffer becomes the SYN.)
//! * **Two cookie secrets**: the snapshot carries the current secret and the
//!   one before it ([`crate::dataplane::snapshot::Snapshot::synproxy_key_prev`]); an ACK is checked
//!   against both, so a cookie made just before the control plane rotated
//!   the secret still opens its connection.

use std::hash::Hasher;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Outcome, Worker};
use crate::conntrack::timer::tick_reached;
use crate::conntrack::{tcp_flags, Addr, Conn, ConnId, Dir, Fwd, Tick, Tuple, TICKS_PER_SEC};
use crate::dataplane::counters::{bump, DropReason};
use crate::dataplane::driver::{PacketBuf, PortQueue};
use crate::dataplane::xmit::Layout;
use crate::wire::checksum;

/// The connection waits for the real server's SYN-ACK.
pub const SP_PENDING: u8 = 1;
/// The connection's sequence numbers are shifted.
pub const SP_ON: u8 = 2;
/// Timestamps are in use (shifted too).
pub const SP_TS: u8 = 4;
/// The client negotiated window scaling (the director announced
/// [`OUR_WSCALE`]).
pub const SP_WS: u8 = 8;
/// Shift of the real server's window scale in the flags byte (4 bits).
const SP_WS_SHIFT: u8 = 4;

/// MSS values a cookie can carry (Linux `msstab`).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
/// The window scale the director announces to clients.
pub const OUR_WSCALE: u8 = 7;
/// The (unscaled) window of the director's SYN-ACK.
const SYNACK_WINDOW: u16 = 65535;
/// The window of the director's ACK to the real server (scaled by the
/// client's shift; the client's next segment sets the real one).
const SERVER_ACK_WINDOW: u16 = 8192;
/// Cookie age limit in minutes (Linux `MAX_SYNCOOKIE_AGE`).
const MAX_AGE: u32 = 2;
/// Lowest 6 bits of the timestamp carry the options.
const TS_OPT_MASK: u32 = 0x3f;
/// "No window scale" in the timestamp bits.
const WS_NONE: u32 = 0xf;
/// TTL of the packets the director makes.
const TTL: u8 = 64;

/// SYN retransmissions to a real server that did not answer (DPVS's
/// `synproxy_syn_retry` default).
pub const SYN_RETRIES: u8 = 3;
/// Wait before each SYN retransmission (the initial RTO of RFC 6298).
pub const SYN_RETRY_TICKS: Tick = TICKS_PER_SEC;
/// SYN copies a worker keeps (connections in their server handshake).
pub const SYN_SLOTS: usize = 1024;
/// Longest SYN frame kept (Ethernet + VLAN + IPv6 + TCP with options fit).
const SYN_COPY: usize = 128;
/// Early client segments a worker holds.
pub const HELD_SLOTS: usize = 256;
/// Early client segments held per connection (DPVS `max_ack_saved`).
pub const HELD_PER_CONN: usize = 3;
/// How long an early segment is held before it is dropped.
pub const HELD_TICKS: Tick = 3 * TICKS_PER_SEC;

/// A fixed-capacity FIFO, allocated once.
struct Ring<T> {
    slots: Box<[Option<T>]>,
    head: usize,
    len: usize,
}

impl<T> Ring<T> {
    fn new(cap: usize) -> Self {
        Ring {
            slots: (0..cap).map(|_| None).collect(),
            head: 0,
            len: 0,
        }
    }
    /// Appends `v`; gives it back when full.
    fn push(&mut self, v: T) -> Result<(), T> {
        if self.len == self.slots.len() {
            return Err(v);
        }
        let i = (self.head + self.len) % self.slots.len();
        self.slots[i] = Some(v);
        self.len += 1;
        Ok(())
    }
    fn front(&self) -> Option<&T> {
        if self.len == 0 {
            return None;
        }
        self.slots[self.head].as_ref()
    }
    fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let v = self.slots[self.head].take();
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        v
    }
    fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        let (cap, head, len) = (self.slots.len(), self.head, self.len);
        let (a, b) = self.slots.split_at_mut(head);
        b.iter_mut()
            .chain(a.iter_mut())
            .take(len.min(cap))
            .filter_map(Option::as_mut)
    }
}

/// A SYN sent to a real server, kept for retransmission.
struct SynCopy {
    id: ConnId,
    t: Tuple,
    due: Tick,
    left: u8,
    len: u8,
    frame: [u8; SYN_COPY],
}

/// A client segment held until the server's handshake completes.
struct Held<B> {
    id: ConnId,
    t: Tuple,
    due: Tick,
    lay: Layout,
    flags: u8,
    /// `None` once replayed.
    b: Option<B>,
}

/// The proxy's per-worker queues of connections in their server
/// handshake (see the module doc).
pub(super) struct ProxyQueues<B> {
    syns: Ring<SynCopy>,
    held: Ring<Held<B>>,
}

impl<B> ProxyQueues<B> {
    pub(super) fn new() -> Self {
        ProxyQueues {
            syns: Ring::new(SYN_SLOTS),
            held: Ring::new(HELD_SLOTS),
        }
    }
}

/// TCP options of a segment, as far as the proxy cares.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TcpOpts {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift.
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_perm: bool,
    /// Timestamps (TSval, TSecr).
    pub ts: Option<(u32, u32)>,
}

/// Parse the options of the TCP header at `tcp` (whole header).
pub fn parse_opts(tcp: &[u8]) -> TcpOpts {
    let mut o = TcpOpts::default();
    if tcp.len() < 20 {
        return o;
    }
    let hl = ((tcp[12] >> 4) as usize * 4).clamp(20, tcp.len());
    let opts = &tcp[20..hl];
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = opts.get(i + 1) else { break };
                let len = len as usize;
                if len < 2 || i + len > opts.len() {
                    break;
                }
                let v = &opts[i + 2..i + len];
                match (kind, len) {
                    (2, 4) => o.mss = Some(u16::from_be_bytes([v[0], v[1]])),
                    (3, 3) => o.wscale = Some(v[0].min(14)),
                    (4, 2) => o.sack_perm = true,
                    (8, 10) => {
                        o.ts = Some((
                            u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                            u32::from_be_bytes([v[4], v[5], v[6], v[7]]),
                        ))
                    }
                    _ => {}
                }
                i += len;
            }
        }
    }
    o
}

/// Write SYN options into `out` (≤ 20 bytes, a multiple of 4); returns
/// the length.
fn write_opts(out: &mut [u8; 20], o: &TcpOpts) -> usize {
    let mut n = 0;
    if let Some(m) = o.mss {
        out[..4].copy_from_slice(&[2, 4, (m >> 8) as u8, m as u8]);
        n = 4;
    }
    match (o.sack_perm, o.ts) {
        (true, Some((v, e))) => {
            out[n..n + 2].copy_from_slice(&[4, 2]);
            out[n + 2..n + 4].copy_from_slice(&[8, 10]);
            out[n + 4..n + 8].copy_from_slice(&v.to_be_bytes());
            out[n + 8..n + 12].copy_from_slice(&e.to_be_bytes());
            n += 12;
        }
        (false, Some((v, e))) => {
            out[n..n + 4].copy_from_slice(&[1, 1, 8, 10]);
            out[n + 4..n + 8].copy_from_slice(&v.to_be_bytes());
            out[n + 8..n + 12].copy_from_slice(&e.to_be_bytes());
            n += 12;
        }
        (true, None) => {
            out[n..n + 4].copy_from_slice(&[1, 1, 4, 2]);
            n += 4;
        }
        (false, None) => {}
    }
    if let Some(w) = o.wscale {
        out[n..n + 4].copy_from_slice(&[1, 3, 3, w]);
        n += 4;
    }
    n
}

/// Keyed hash of a tuple (SipHash-2-4 with the snapshot's secret).
fn tuple_hash(key: &[u64; 2], which: u64, t: &Tuple, count: u32) -> u32 {
    // std's SipHasher is deprecated only in favour of crates; it is the
    // keyed PRF the cookie needs and allocates nothing.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(key[0] ^ which, key[1]);
    h.write(&t.src);
    h.write(&t.dst);
    h.write_u16(t.sport);
    h.write_u16(t.dport);
    h.write_u32(count);
    h.finish() as u32
}

/// The cookie for a SYN of `t` (client → VIP) with initial sequence
/// `isn`, made in minute `count`, carrying MSS index `mss_idx`.
pub fn make_cookie(key: &[u64; 2], t: &Tuple, isn: u32, count: u32, mss_idx: u8) -> u32 {
    tuple_hash(key, 0, t, 0)
        .wrapping_add(isn)
        .wrapping_add(count << 24)
        .wrapping_add(tuple_hash(key, 1, t, count).wrapping_add(mss_idx as u32) & 0xff_ffff)
}

/// The MSS index a cookie carries if it is valid in minute `count`
/// (made then or in the minute before).
pub fn check_cookie(key: &[u64; 2], t: &Tuple, isn: u32, cookie: u32, count: u32) -> Option<u8> {
    let c = cookie
        .wrapping_sub(tuple_hash(key, 0, t, 0))
        .wrapping_sub(isn);
    let made = c >> 24;
    let diff = (count & 0xff).wrapping_sub(made) & 0xff;
    if diff >= MAX_AGE {
        return None;
    }
    let made_count = count.wrapping_sub(diff);
    let idx = (c.wrapping_sub(tuple_hash(key, 1, t, made_count))) & 0xff_ffff;
    if (idx as usize) < MSS_TABLE.len() {
        Some(idx as u8)
    } else {
        None
    }
}

/// The largest table MSS not above the client's (536 when it sent none).
pub fn mss_index(mss: Option<u16>) -> u8 {
    let m = mss.unwrap_or(536);
    MSS_TABLE.iter().rposition(|&x| x <= m).unwrap_or(0) as u8
}

/// Read a big-endian u32.
#[inline]
fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

#[inline]
fn wr32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_be_bytes());
}

/// One TCP segment to build in place.
struct Seg<'a> {
    src: &'a Addr,
    sport: u16,
    dst: &'a Addr,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    opts: &'a TcpOpts,
}

/// Turn the packet in `b` (IP at `lay.l3`, L4 at `lay.l4`) into the TCP
/// segment `s` with no payload: IP header fields, fresh TTL, full checksums.
fn build<B: PacketBuf>(b: &mut B, lay: &Layout, s: &Seg) -> bool {
    let mut ob = [0u8; 20];
    let olen = write_opts(&mut ob, s.opts);
    let l4 = lay.l4 as usize;
    let tcp_len = 20 + olen;
    let want = l4 + tcp_len;
    let have = b.len();
    if have > want {
        if !b.trim(have - want) {
            return false;
        }
    } else if have < want && b.append(want - have).is_none() {
        return false;
    }
    let f = b.data_mut();
    let l3 = lay.l3 as usize;
    let t = &mut f[l4..want];
    t[0..2].copy_from_slice(&s.sport.to_be_bytes());
    t[2..4].copy_from_slice(&s.dport.to_be_bytes());
    wr32(t, 4, s.seq);
    wr32(t, 8, s.ack);
    t[12] = ((tcp_len / 4) as u8) << 4;
    t[13] = s.flags;
    t[14..16].copy_from_slice(&s.window.to_be_bytes());
    t[16..20].fill(0);
    t[20..].copy_from_slice(&ob[..olen]);
    let pseudo = if lay.v6 {
        let (sa, da) = (Ipv6Addr::from(*s.src), Ipv6Addr::from(*s.dst));
        let ip = &mut f[l3..];
        let plen = (l4 - l3 - 40 + tcp_len) as u16;
        ip[4..6].copy_from_slice(&plen.to_be_bytes());
        ip[7] = TTL;
        ip[8..24].copy_from_slice(s.src);
        ip[24..40].copy_from_slice(s.dst);
        checksum::pseudo_header_v6(&sa, &da, 6, tcp_len as u32)
    } else {
        let sa = Ipv4Addr::new(s.src[0], s.src[1], s.src[2], s.src[3]);
        let da = Ipv4Addr::new(s.dst[0], s.dst[1], s.dst[2], s.dst[3]);
        let ihl = l4 - l3;
        let ip = &mut f[l3..l4];
        ip[2..4].copy_from_slice(&((ihl + tcp_len) as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&[0x40, 0]); // DF, not a fragment
        ip[8] = TTL;
        ip[10..12].fill(0);
        ip[12..16].copy_from_slice(&s.src[..4]);
        ip[16..20].copy_from_slice(&s.dst[..4]);
        let c = checksum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        checksum::pseudo_header_v4(&sa, &da, 6, tcp_len as u32)
    };
    let t = &mut f[l4..want];
    let c = !checksum::fold(checksum::combine(pseudo, checksum::sum(t)));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    true
}

/// Write `new` at `o` and update the TCP checksum `csum` for it.
#[inline]
fn set32(f: &mut [u8], o: usize, new: u32, csum: &mut u16) {
    let old = rd32(f, o);
    *csum = checksum::update32(*csum, old, new);
    wr32(f, o, new);
}

/// The minute counter cookies are made with.
#[inline]
fn minute(tick: u32) -> u32 {
    tick / (60 * TICKS_PER_SEC)
}

/// The director's timestamp clock (milliseconds).
#[inline]
fn ts_now(now_ns: u64) -> u32 {
    (now_ns / 1_000_000) as u32
}

impl<Q: PortQueue> Worker<Q> {
    /// Whether a new TCP flow of service position `si` goes through the
    /// proxy now: switched on for the service, or the table is fuller than
    /// `settings.synproxy_auto_percent` and the service can be proxied.
    #[inline]
    pub(super) fn synproxy_on(&self, si: usize) -> bool {
        let svc = &self.snap.services[si];
        if !svc.synproxy_capable {
            return false;
        }
        if svc.synproxy {
            return true;
        }
        let auto = self.snap.settings.synproxy_auto_percent as u64;
        auto > 0 && self.conns.len() as u64 * 100 >= self.conns.capacity() as u64 * auto
    }

    /// A TCP packet with no connection for proxied service `si`: answer a
    /// SYN with a cookie, open the server side on a valid ACK.
    pub(super) fn synproxy_new(
        &mut self,
        si: usize,
        b: Q::Buf,
        lay: Layout,
        t: Tuple,
        flags: u8,
    ) -> Outcome {
        let syn = flags & tcp_flags::SYN != 0;
        let ack = flags & tcp_flags::ACK != 0;
        let rst = flags & tcp_flags::RST != 0;
        if syn && !ack && !rst {
            self.synproxy_syn(b, lay, t)
        } else if ack && !syn && !rst {
            self.synproxy_ack(si, b, lay, t)
        } else {
            Outcome::Drop(DropReason::NotSyn)
        }
    }

    /// Client SYN → cookie SYN-ACK from the VIP, in the same buffer.
    fn synproxy_syn(&mut self, mut b: Q::Buf, lay: Layout, t: Tuple) -> Outcome {
        let l4 = lay.l4 as usize;
        let d = b.data();
        if d.len() < l4 + 20 {
            return Outcome::Drop(DropReason::Malformed);
        }
        let isn = rd32(d, l4 + 4);
        let co = parse_opts(&d[l4..]);
        let idx = mss_index(co.mss);
        let cookie = make_cookie(&self.snap.synproxy_key, &t, isn, minute(self.tick), idx);
        let ts = co.ts.map(|(tsval, _)| {
            let ws = co.wscale.map_or(WS_NONE, |w| w as u32);
            let bits = ws | (co.sack_perm as u32) << 4;
            ((ts_now(self.now_ns) & !TS_OPT_MASK) | bits, tsval)
        });
        let opts = TcpOpts {
            mss: Some(MSS_TABLE[idx as usize]),
            wscale: co.wscale.and(ts).map(|_| OUR_WSCALE),
            sack_perm: co.sack_perm && ts.is_some(),
            ts,
        };
        let seg = Seg {
            src: &t.dst,
            sport: t.dport,
            dst: &t.src,
            dport: t.sport,
            seq: cookie,
            ack: isn.wrapping_add(1),
            flags: tcp_flags::SYN | tcp_flags::ACK,
            window: SYNACK_WINDOW,
            opts: &opts,
        };
        if !build(&mut b, &lay, &seg) {
            return Outcome::Drop(DropReason::NoBuffer);
        }
        let out = self.send_to(b, &t.src, t.v6);
        if let Outcome::Done = out {
            bump(&self.counters.syn_cookies_sent, 1);
        }
        out
    }

    /// Client ACK with no connection: check the cookie; if good, make the
    /// connection and turn the ACK into the SYN to the real server.
    fn synproxy_ack(&mut self, si: usize, mut b: Q::Buf, lay: Layout, t: Tuple) -> Outcome {
        let l4 = lay.l4 as usize;
        let d = b.data();
        if d.len() < l4 + 20 {
            return Outcome::Drop(DropReason::Malformed);
        }
        let seq = rd32(d, l4 + 4);
        let cookie = rd32(d, l4 + 8).wrapping_sub(1);
        let isn = seq.wrapping_sub(1);
        let window = u16::from_be_bytes([d[l4 + 14], d[l4 + 15]]);
        let co = parse_opts(&d[l4..]);
        let (now_min, key, prev) = (
            minute(self.tick),
            self.snap.synproxy_key,
            self.snap.synproxy_key_prev,
        );
        let idx = check_cookie(&key, &t, isn, cookie, now_min)
            .or_else(|| check_cookie(&prev, &t, isn, cookie, now_min));
        let Some(idx) = idx else {
            bump(&self.counters.synproxy_acks_invalid, 1);
            return Outcome::Drop(DropReason::SynproxyBadAck);
        };
        bump(&self.counters.synproxy_acks_valid, 1);
        // Options the client sent in its SYN, from our timestamp's low bits.
        let (wscale, sack, ts) = match co.ts {
            Some((tsval, tsecr)) => {
                let ws = tsecr & 0xf;
                let ws = (ws != WS_NONE).then_some(ws.min(14) as u8);
                (ws, tsecr & 0x10 != 0, Some((tsval, tsecr)))
            }
            None => (None, false, None),
        };
        let id = match self.new_conn(si, &t, tcp_flags::SYN) {
            Ok(id) => id,
            Err(r) => return Outcome::Drop(r),
        };
        let c = self.conns.get_mut(id);
        if !c.has_proxy_room() {
            self.remove_conn(id);
            return Outcome::Drop(DropReason::Conflict);
        }
        c.set_proxy_words(cookie, ts.map_or(0, |(_, e)| e));
        let ws_bit = if wscale.is_some() { SP_WS } else { 0 };
        c.set_flags(SP_PENDING | ws_bit | if ts.is_some() { SP_TS } else { 0 });
        let c = *c;
        let (src, sport) = server_side_source(&c);
        let opts = TcpOpts {
            mss: Some(MSS_TABLE[idx as usize]),
            wscale,
            sack_perm: sack,
            ts: ts.map(|(v, _)| (v, 0)),
        };
        let seg = Seg {
            src: &src,
            sport,
            dst: &c.rip(),
            dport: c.rport(),
            seq: isn,
            ack: 0,
            flags: tcp_flags::SYN,
            window,
            opts: &opts,
        };
        if !build(&mut b, &lay, &seg) {
            self.remove_conn(id);
            return Outcome::Drop(DropReason::NoBuffer);
        }
        self.proxy_state(id, Dir::Original, tcp_flags::SYN);
        self.keep_syn(id, &t, b.data());
        self.send_to(b, &c.rip(), t.v6)
    }

    /// Keep a copy of the SYN to the real server for retransmission.
    fn keep_syn(&mut self, id: ConnId, t: &Tuple, frame: &[u8]) {
        if frame.len() > SYN_COPY {
            return;
        }
        let mut copy = SynCopy {
            id,
            t: *t,
            due: self.tick.wrapping_add(SYN_RETRY_TICKS),
            left: SYN_RETRIES,
            len: frame.len() as u8,
            frame: [0; SYN_COPY],
        };
        copy.frame[..frame.len()].copy_from_slice(frame);
        // Full: this connection gets no retransmits (the client's own
        // retransmission of data still reaches a server that answers late).
        let _ = self.proxyq.syns.push(copy);
    }

    /// Whether `id` is still the connection of `t` waiting for its server.
    fn proxy_waiting(&self, id: ConnId, t: &Tuple) -> bool {
        self.conns
            .try_get(id)
            .is_some_and(|c| c.flags() & SP_PENDING != 0 && c.original_tuple() == *t)
    }

    /// The proxy's timers, once per pass: retransmit the SYNs that are due,
    /// drop the held segments that waited too long. Bounded work per pass.
    pub(super) fn synproxy_timers(&mut self) {
        if self.proxyq.syns.len == 0 && self.proxyq.held.len == 0 {
            return;
        }
        let now = self.tick;
        for _ in 0..32 {
            match self.proxyq.syns.front() {
                Some(s) if tick_reached(s.due, now) => {}
                _ => break,
            }
            let Some(mut s) = self.proxyq.syns.pop() else {
                break;
            };
            if !self.proxy_waiting(s.id, &s.t) {
                continue;
            }
            self.resend_syn(&s);
            s.left -= 1;
            if s.left > 0 {
                s.due = now.wrapping_add(SYN_RETRY_TICKS);
                let _ = self.proxyq.syns.push(s);
            }
        }
        for _ in 0..HELD_SLOTS {
            match self.proxyq.held.front() {
                Some(h) if h.b.is_some() && !tick_reached(h.due, now) => break,
                Some(_) => {}
                None => break,
            }
            if let Some(Held { b: Some(_), .. }) = self.proxyq.held.pop() {
                bump(&self.counters.synproxy_held_timeout, 1);
                self.counters.count_drop(DropReason::SynproxyPending);
            }
        }
    }

    /// Send a kept SYN again. A retransmission that cannot leave (no
    /// buffer, no neighbour yet) is simply not sent: it is the director's
    /// own packet, not a received one, so it is not counted as a drop.
    fn resend_syn(&mut self, s: &SynCopy) {
        let Some(mut b) = self.queues.first_mut().and_then(|q| q.alloc()) else {
            return;
        };
        let n = s.len as usize;
        let Some(d) = b.append(n) else {
            return;
        };
        d.copy_from_slice(&s.frame[..n]);
        let c = self.conns.get(s.id);
        let (rip, v6) = (c.rip(), c.v6());
        if let Outcome::Done = self.send_to(b, &rip, v6) {
            bump(&self.counters.synproxy_syn_retransmits, 1);
        }
    }

    /// A client segment while the server handshake runs: hold it if it
    /// carries data and there is room, else drop it.
    fn hold(&mut self, id: ConnId, b: Q::Buf, lay: Layout, flags: u8) -> Outcome {
        let d = b.data();
        let l4 = lay.l4 as usize;
        let end = crate::dataplane::xmit::ip_end(d, &lay).min(d.len());
        let hl = d.get(l4 + 12).map_or(20, |x| (x >> 4) as usize * 4);
        if end <= l4 + hl || flags & (tcp_flags::SYN | tcp_flags::RST) != 0 {
            return Outcome::Drop(DropReason::SynproxyPending);
        }
        let t = self.conns.get(id).original_tuple();
        let mine = self
            .proxyq
            .held
            .iter_mut()
            .filter(|h| h.id == id && h.b.is_some())
            .count();
        if mine >= HELD_PER_CONN {
            bump(&self.counters.synproxy_held_full, 1);
            return Outcome::Drop(DropReason::SynproxyPending);
        }
        let h = Held {
            id,
            t,
            due: self.tick.wrapping_add(HELD_TICKS),
            lay,
            flags,
            b: Some(b),
        };
        match self.proxyq.held.push(h) {
            Ok(()) => {
                bump(&self.counters.synproxy_held, 1);
                Outcome::Done
            }
            Err(_) => {
                bump(&self.counters.synproxy_held_full, 1);
                Outcome::Drop(DropReason::SynproxyPending)
            }
        }
    }

    /// The server handshake of `id` completed: forward its held segments.
    fn replay_held(&mut self, id: ConnId) {
        if self.proxyq.held.len == 0 {
            return;
        }
        let t = self.conns.get(id).original_tuple();
        let mut batch: [Option<(Q::Buf, Layout, u8)>; HELD_PER_CONN] = Default::default();
        let mut n = 0;
        for h in self.proxyq.held.iter_mut() {
            if h.id == id && h.t == t && n < HELD_PER_CONN {
                if let Some(b) = h.b.take() {
                    batch[n] = Some((b, h.lay, h.flags));
                    n += 1;
                }
            }
        }
        bump(&self.counters.synproxy_held_replayed, n as u64);
        for (b, lay, flags) in batch.into_iter().flatten() {
            if let Outcome::Drop(r) = self.forward(id, Dir::Original, b, lay, flags) {
                self.counters.count_drop(r);
            }
        }
    }

    /// A packet of a connection whose server handshake runs: the server's
    /// SYN-ACK completes it (acknowledged for the client, not forwarded);
    /// anything else is dropped.
    pub(super) fn synproxy_pending(
        &mut self,
        id: ConnId,
        dir: Dir,
        mut b: Q::Buf,
        lay: Layout,
        flags: u8,
    ) -> Outcome {
        if dir == Dir::Original {
            return self.hold(id, b, lay, flags);
        }
        if flags & tcp_flags::RST != 0 {
            // The server refused: forget the connection (the client's
            // retransmissions then fail the cookie check or time out).
            self.remove_conn(id);
            return Outcome::Drop(DropReason::SynproxyPending);
        }
        let want = tcp_flags::SYN | tcp_flags::ACK;
        if flags & want != want {
            return Outcome::Drop(DropReason::SynproxyPending);
        }
        let l4 = lay.l4 as usize;
        let d = b.data();
        if d.len() < l4 + 20 {
            return Outcome::Drop(DropReason::Malformed);
        }
        let c = *self.conns.get(id);
        let (cookie, our_ts) = c.proxy_words();
        let rs_isn = rd32(d, l4 + 4);
        let ack = rd32(d, l4 + 8);
        let so = parse_opts(&d[l4..]);
        // The client's sequence numbers pass unchanged: the server must
        // acknowledge the client's ISN + 1 (cookie ISN + 1 - 1 + ...).
        let uses_ts = c.flags() & SP_TS != 0;
        let (ts_delta, ack_ts) = match (uses_ts, so.ts) {
            (true, Some((v, e))) => (v.wrapping_sub(our_ts), Some((e, v))),
            _ => (0, None),
        };
        let seq_delta = rs_isn.wrapping_sub(cookie);
        let client_next = ack;
        // Window scaling holds only if both sides offered it.
        let ws_on = c.flags() & SP_WS != 0;
        let ws = if ws_on {
            so.wscale.unwrap_or(0).min(14)
        } else {
            0
        };
        let mut fl = SP_ON | (ws << SP_WS_SHIFT) | (c.flags() & SP_WS);
        if ack_ts.is_some() {
            fl |= SP_TS;
        }
        {
            let cm = self.conns.get_mut(id);
            cm.set_proxy_words(seq_delta, ts_delta);
            cm.set_flags(fl);
        }
        self.proxy_state(id, Dir::Reply, want);
        let (src, sport) = server_side_source(&c);
        let opts = TcpOpts {
            ts: ack_ts,
            ..TcpOpts::default()
        };
        let seg = Seg {
            src: &src,
            sport,
            dst: &c.rip(),
            dport: c.rport(),
            seq: client_next,
            ack: rs_isn.wrapping_add(1),
            flags: tcp_flags::ACK,
            window: SERVER_ACK_WINDOW,
            opts: &opts,
        };
        if !build(&mut b, &lay, &seg) {
            return Outcome::Drop(DropReason::NoBuffer);
        }
        self.proxy_state(id, Dir::Original, tcp_flags::ACK);
        bump(&self.counters.synproxy_established, 1);
        let out = self.send_to(b, &c.rip(), c.v6());
        self.replay_held(id);
        out
    }
}

impl<Q: PortQueue> Worker<Q> {
    /// Run a packet the director made or consumed through the state
    /// machine, with the active/inactive accounting `forward` does.
    fn proxy_state(&mut self, id: ConnId, dir: Dir, flags: u8) {
        let ch = self
            .conns
            .on_packet(id, dir, flags, self.tick, &self.snap.timeouts);
        if ch.became_active || ch.became_inactive {
            let dest = self.conns.get(id).dest();
            self.account(dest, ch.became_active, ch.became_inactive);
        }
    }
}

/// The source the real server sees: the client (NAT) or the local address.
fn server_side_source(c: &Conn) -> (Addr, u16) {
    if c.fwd() == Fwd::FullNat {
        (c.lip(), c.lport())
    } else {
        (c.cip(), c.cport())
    }
}

/// Shift a forwarded segment of a proxied connection (after the mode's
/// rewrite): client → server acknowledgements, SACK blocks and echoed
/// timestamps move into the server's spaces; server → client sequence
/// numbers and timestamps into the director's, and the window into the
/// scale the director announced.
pub fn fix_up(frame: &mut [u8], lay: &Layout, c: &Conn, dir: Dir) {
    let l4 = lay.l4 as usize;
    if frame.len() < l4 + 20 {
        return;
    }
    let (seq_d, ts_d) = c.proxy_words();
    let fl = c.flags();
    let mut csum = u16::from_be_bytes([frame[l4 + 16], frame[l4 + 17]]);
    match dir {
        Dir::Original => {
            if frame[l4 + 13] & tcp_flags::ACK != 0 {
                let a = rd32(frame, l4 + 8);
                set32(frame, l4 + 8, a.wrapping_add(seq_d), &mut csum);
            }
        }
        Dir::Reply => {
            let s = rd32(frame, l4 + 4);
            set32(frame, l4 + 4, s.wrapping_sub(seq_d), &mut csum);
            let rs_ws = (fl >> SP_WS_SHIFT) as u32;
            let ours = if fl & SP_WS != 0 {
                OUR_WSCALE as u32
            } else {
                0
            };
            if rs_ws != ours {
                let w = u16::from_be_bytes([frame[l4 + 14], frame[l4 + 15]]) as u64;
                let nw = ((w << rs_ws) >> ours).min(0xffff) as u16;
                let old = u16::from_be_bytes([frame[l4 + 14], frame[l4 + 15]]);
                csum = checksum::update16(csum, old, nw);
                frame[l4 + 14..l4 + 16].copy_from_slice(&nw.to_be_bytes());
            }
        }
    }
    // Options: SACK blocks (client → server only) and timestamps.
    let hl = ((frame[l4 + 12] >> 4) as usize * 4).clamp(20, frame.len() - l4);
    let mut i = l4 + 20;
    let end = l4 + hl;
    while i < end {
        match frame[i] {
            0 => break,
            1 => i += 1,
            kind => {
                if i + 1 >= end {
                    break;
                }
                let len = frame[i + 1] as usize;
                if len < 2 || i + len > end {
                    break;
                }
                // Checksum words are 16-bit aligned relative to the TCP
                // header: an option value at an odd offset cannot be updated
                // word-wise, so only even offsets are shifted (every
                // common stack pads options to align them).
                let v = i + 2;
                let aligned = (v - l4) % 2 == 0;
                match (kind, dir) {
                    (5, Dir::Original) if aligned && (len - 2) % 8 == 0 => {
                        let mut o = v;
                        while o + 8 <= i + len {
                            let l = rd32(frame, o);
                            set32(frame, o, l.wrapping_add(seq_d), &mut csum);
                            let r = rd32(frame, o + 4);
                            set32(frame, o + 4, r.wrapping_add(seq_d), &mut csum);
                            o += 8;
                        }
                    }
                    (8, Dir::Original) if len == 10 && aligned && fl & SP_TS != 0 => {
                        let e = rd32(frame, v + 4);
                        set32(frame, v + 4, e.wrapping_add(ts_d), &mut csum);
                    }
                    (8, Dir::Reply) if len == 10 && aligned && fl & SP_TS != 0 => {
                        let tv = rd32(frame, v);
                        set32(frame, v, tv.wrapping_sub(ts_d), &mut csum);
                    }
                    _ => {}
                }
                i += len;
            }
        }
    }
    frame[l4 + 16..l4 + 18].copy_from_slice(&csum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple() -> Tuple {
        let mut s = [0u8; 16];
        s[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut d = [0u8; 16];
        d[..4].copy_from_slice(&[10, 0, 1, 1]);
        Tuple::new(6, false, s, 40000, d, 80)
    }

    #[test]
    fn a_cookie_checks_out_in_its_minute_and_the_next_only() {
        let key = [0x1234, 0x5678];
        let t = tuple();
        for idx in 0..4u8 {
            let c = make_cookie(&key, &t, 1000, 77, idx);
            assert_eq!(check_cookie(&key, &t, 1000, c, 77), Some(idx));
            assert_eq!(check_cookie(&key, &t, 1000, c, 78), Some(idx));
            assert_eq!(check_cookie(&key, &t, 1000, c, 79), None);
            // (A client ISN off by less than 4 shifts the MSS index, as
            // in Linux; further off, the check fails.)
            assert_eq!(check_cookie(&key, &t, 1100, c, 77), None);
            assert_eq!(check_cookie(&[1, 2], &t, 1000, c, 77), None);
            let mut other = t;
            other.sport += 1;
            assert_eq!(check_cookie(&key, &other, 1000, c, 77), None);
        }
    }

    #[test]
    fn random_acks_almost_never_pass() {
        let key = [7, 9];
        let t = tuple();
        let mut x: u32 = 12345;
        let mut ok = 0;
        for _ in 0..100_000 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            if check_cookie(&key, &t, 5, x, 10).is_some() {
                ok += 1;
            }
        }
        // 2 minutes × 4 MSS values of 2^32: expect ~0.0002 per try.
        assert!(ok < 20, "{ok} random cookies passed");
    }

    #[test]
    fn options_round_trip() {
        let o = TcpOpts {
            mss: Some(1460),
            wscale: Some(7),
            sack_perm: true,
            ts: Some((11, 22)),
        };
        let mut b = [0u8; 20];
        let n = write_opts(&mut b, &o);
        let mut hdr = [0u8; 40];
        hdr[12] = (((20 + n) / 4) as u8) << 4;
        hdr[20..20 + n].copy_from_slice(&b[..n]);
        assert_eq!(parse_opts(&hdr[..20 + n]), o);
        assert_eq!(mss_index(Some(1400)), 1);
        assert_eq!(mss_index(Some(9000)), 3);
        assert_eq!(mss_index(None), 0);
    }
}
