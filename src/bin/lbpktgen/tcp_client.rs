//! A minimal user-space TCP client for connection-rate tests
//! (`--tcp-handshake`): many clients, each doing
//!
//! ```text
//! SYN ─▶            ◀─ SYN-ACK        (handshake counted, latency recorded)
//! ACK+PSH+request ─▶ ◀─ data [FIN]    (response counted)
//! RST ─▶                              (--close rst, the default)
//! FIN-ACK ─▶ ◀─ FIN, ACK ─▶           (--close fin)
//! ```
//!
//! With an empty request the client closes right after the SYN-ACK.
//!
//! Connections live in `concurrency` slots. Client endpoints (flows) are
//! taken in turn, so an endpoint is used again only after every other one
//! was (skipping endpoints whose connection is still open), and a table
//! from endpoint to slot leads a received segment to its connection. The
//! initial sequence number of an endpoint advances by [`ISN_STEP`] on each
//! turn, as a real stack's clock-driven ISN does: a Linux server still
//! holding the endpoint's previous connection in TIME_WAIT (after
//! `--close fin`) accepts the new SYN instead of answering it with an ACK.
//!
//! Rules: no I/O and no clock here — the transmit thread feeds segments and
//! the time in, and turns each [`Emit`] into a frame. Nothing is allocated
//! after [`TcpClients::new`]. No retransmission: a connection that gets no
//! answer within the timeout is reset and counted as timed out.

use serde::Serialize;

use crate::histogram::LatencyHistogram;

/// How far an endpoint's initial sequence number moves per turn through
/// the endpoints (well inside TCP's 2^31 "after" window).
pub const ISN_STEP: u32 = 1 << 24;
/// Most client endpoints (the endpoint → slot table costs 4 bytes each).
pub const MAX_FLOWS: u32 = 1 << 24;
/// Endpoint → slot entry of an endpoint with no open connection.
const NO_SLOT: u32 = u32::MAX;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// How a client ends a connection after the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseMode {
    /// Send RST+ACK (cheapest for both sides).
    Rst,
    /// Send FIN+ACK, wait for the server's FIN and acknowledge it.
    Fin,
}

/// Client parameters.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// Connections open at once (slots).
    pub concurrency: u32,
    /// Client endpoints available (flows).
    pub flows: u32,
    /// Request length in bytes (0: close right after the handshake).
    pub request_len: u32,
    /// How connections end.
    pub close: CloseMode,
    /// How long a connection may wait for each answer, ns.
    pub timeout_ns: u64,
}

impl ClientConfig {
    /// Refuse settings the clients cannot run with: no slots, fewer
    /// endpoints than slots, more endpoints than [`MAX_FLOWS`].
    pub fn check(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if self.flows < self.concurrency {
            return Err(format!(
                "--flows {} is less than --concurrency {}: every open connection needs its own client endpoint",
                self.flows, self.concurrency
            ));
        }
        if self.flows > MAX_FLOWS {
            return Err(format!(
                "--flows {} is more than the {MAX_FLOWS} client endpoints --tcp-handshake supports",
                self.flows
            ));
        }
        Ok(())
    }
}

/// A received TCP segment of one of the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The client endpoint (flow) it was sent to.
    pub tuple: u32,
    /// Flag bits.
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Payload bytes.
    pub payload_len: u32,
    /// When it was received, ns since the clock origin.
    pub rx_ns: u64,
}

/// A segment the client wants sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emit {
    /// The client endpoint (flow) it is sent from.
    pub tuple: u32,
    /// Flag bits.
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Whether it carries the request.
    pub request: bool,
}

/// What the clients did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClientStats {
    /// Connections started (SYNs sent).
    pub opened: u64,
    /// Handshakes completed (valid SYN-ACKs).
    pub handshakes: u64,
    /// Requests sent.
    pub requests: u64,
    /// Responses received (first data of a connection).
    pub responses: u64,
    /// Connections closed by the client after a response (or right after
    /// the handshake with an empty request).
    pub completed: u64,
    /// SYNs answered with RST.
    pub refused: u64,
    /// Established connections reset by the server.
    pub reset: u64,
    /// Established connections the server closed (FIN) without a response.
    pub closed_early: u64,
    /// Connections given up waiting for a SYN-ACK or a response.
    pub timeouts: u64,
    /// Segments for a connection already closed by the client (e.g. the
    /// server's FIN after our RST).
    pub late: u64,
    /// Segments for no connection, or not fitting its state.
    pub stray: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    SynSent,
    AwaitResponse,
    FinWait,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    state: State,
    tuple: u32,
    isn: u32,
    snd_nxt: u32,
    rcv_nxt: u32,
    syn_ns: u64,
    req_ns: u64,
    deadline_ns: u64,
}

/// The client connections.
#[derive(Debug, Clone)]
pub struct TcpClients {
    cfg: ClientConfig,
    conns: Vec<Conn>,
    free: Vec<u32>,
    /// Per endpoint: the slot of its open connection, or [`NO_SLOT`].
    tuple_slot: Vec<u32>,
    /// The endpoint to try next.
    next_tuple: u32,
    /// Completed turns through the endpoints.
    turn: u32,
    sweep_next: usize,
    stats: ClientStats,
    handshake_latency: LatencyHistogram,
    response_latency: LatencyHistogram,
}

/// An endpoint's initial sequence number on turn `turn`: a reproducible
/// scramble of the endpoint, advanced by [`ISN_STEP`] per turn.
fn initial_seq(tuple: u32, turn: u32) -> u32 {
    let mut x = u64::from(tuple) ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x as u32).wrapping_add(turn.wrapping_mul(ISN_STEP))
}

impl TcpClients {
    /// Clients for `cfg` (see [`ClientConfig::check`]).
    pub fn new(cfg: ClientConfig) -> Result<TcpClients, String> {
        cfg.check()?;
        let c = cfg.concurrency;
        let conns = vec![
            Conn {
                state: State::Free,
                tuple: 0,
                isn: 0,
                snd_nxt: 0,
                rcv_nxt: 0,
                syn_ns: 0,
                req_ns: 0,
                deadline_ns: 0,
            };
            c as usize
        ];
        Ok(TcpClients {
            cfg,
            conns,
            tuple_slot: vec![NO_SLOT; cfg.flows as usize],
            next_tuple: 0,
            turn: 0,
            // Popped from the back: slot 0 first.
            free: (0..c).rev().collect(),
            sweep_next: 0,
            stats: ClientStats::default(),
            handshake_latency: LatencyHistogram::new(),
            response_latency: LatencyHistogram::new(),
        })
    }

    /// What the clients did so far.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// SYN sent → SYN-ACK received, ns.
    pub fn handshake_latency(&self) -> &LatencyHistogram {
        &self.handshake_latency
    }

    /// Request sent → first response byte received, ns.
    pub fn response_latency(&self) -> &LatencyHistogram {
        &self.response_latency
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u32 {
        self.cfg.concurrency - self.free.len() as u32
    }

    /// Start a connection at `now_ns`: its SYN, or `None` when every slot
    /// is busy.
    pub fn open(&mut self, now_ns: u64) -> Option<Emit> {
        let slot = self.free.pop()?;
        // At most `concurrency - 1` other endpoints are busy and there are
        // at least `concurrency` endpoints: this finds a free one.
        let (tuple, turn) = loop {
            let (t, turn) = (self.next_tuple, self.turn);
            self.next_tuple += 1;
            if self.next_tuple == self.cfg.flows {
                self.next_tuple = 0;
                self.turn = self.turn.wrapping_add(1);
            }
            if self.tuple_slot[t as usize] == NO_SLOT {
                break (t, turn);
            }
        };
        self.tuple_slot[tuple as usize] = slot;
        let isn = initial_seq(tuple, turn);
        let conn = &mut self.conns[slot as usize];
        conn.state = State::SynSent;
        conn.tuple = tuple;
        conn.isn = isn;
        conn.snd_nxt = isn.wrapping_add(1);
        conn.rcv_nxt = 0;
        conn.syn_ns = now_ns;
        conn.deadline_ns = now_ns + self.cfg.timeout_ns;
        self.stats.opened += 1;
        Some(Emit {
            tuple,
            flags: SYN,
            seq: isn,
            ack: 0,
            request: false,
        })
    }

    fn free_slot(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        conn.state = State::Free;
        self.tuple_slot[conn.tuple as usize] = NO_SLOT;
        self.free.push(slot as u32);
    }

    /// Whether endpoint `tuple` has had a connection (this turn or before).
    fn used_before(&self, tuple: u32) -> bool {
        self.turn > 0 || tuple < self.next_tuple
    }

    /// Close the connection in `slot` after its response (or handshake):
    /// RST+ACK, or FIN+ACK (then, unless the server has already sent its
    /// FIN, wait for it).
    fn close(&mut self, slot: usize, now_ns: u64, peer_fin: bool) -> Emit {
        let conn = &mut self.conns[slot];
        let e = Emit {
            tuple: conn.tuple,
            flags: match self.cfg.close {
                CloseMode::Rst => RST | ACK,
                CloseMode::Fin => FIN | ACK,
            },
            seq: conn.snd_nxt,
            ack: conn.rcv_nxt,
            request: false,
        };
        if self.cfg.close == CloseMode::Fin && !peer_fin {
            conn.snd_nxt = conn.snd_nxt.wrapping_add(1);
            conn.state = State::FinWait;
            conn.deadline_ns = now_ns + self.cfg.timeout_ns;
        } else {
            self.free_slot(slot);
        }
        e
    }

    /// Feed one received segment; returns what to send in answer, if
    /// anything.
    pub fn on_segment(&mut self, seg: &Segment, now_ns: u64) -> Option<Emit> {
        let Some(&slot) = self.tuple_slot.get(seg.tuple as usize) else {
            self.stats.stray += 1;
            return None;
        };
        if slot == NO_SLOT {
            if self.used_before(seg.tuple) {
                // A connection of this endpoint already closed by us.
                self.stats.late += 1;
            } else {
                self.stats.stray += 1;
            }
            return None;
        }
        let slot = slot as usize;
        let conn = self.conns[slot];
        let has = |f: u8| seg.flags & f != 0;
        match conn.state {
            State::Free => None,
            State::SynSent => {
                let acks_syn = has(ACK) && seg.ack == conn.isn.wrapping_add(1);
                if has(RST) && (acks_syn || !has(ACK)) {
                    self.stats.refused += 1;
                    self.free_slot(slot);
                    return None;
                }
                if !(has(SYN) && acks_syn) {
                    self.stats.stray += 1;
                    return None;
                }
                self.stats.handshakes += 1;
                self.handshake_latency
                    .record(seg.rx_ns.saturating_sub(conn.syn_ns));
                let c = &mut self.conns[slot];
                c.rcv_nxt = seg.seq.wrapping_add(1);
                if self.cfg.request_len == 0 {
                    self.stats.completed += 1;
                    return Some(self.close(slot, now_ns, false));
                }
                Some(self.send_request(slot, now_ns, true))
            }
            State::AwaitResponse => {
                if has(RST) {
                    self.stats.reset += 1;
                    self.free_slot(slot);
                    return None;
                }
                if has(SYN) {
                    // Our request (with the handshake's ACK) was lost and
                    // the server repeats its SYN-ACK: send it again.
                    if seg.seq.wrapping_add(1) == conn.rcv_nxt {
                        return Some(self.send_request(slot, now_ns, false));
                    }
                    self.stats.stray += 1;
                    return None;
                }
                if seg.seq != conn.rcv_nxt || (seg.payload_len == 0 && !has(FIN)) {
                    // A bare ACK of the request, or out of order: wait.
                    return None;
                }
                let fin = has(FIN);
                self.conns[slot].rcv_nxt = seg
                    .seq
                    .wrapping_add(seg.payload_len)
                    .wrapping_add(u32::from(fin));
                if seg.payload_len > 0 {
                    self.stats.responses += 1;
                    self.stats.completed += 1;
                    self.response_latency
                        .record(seg.rx_ns.saturating_sub(conn.req_ns));
                } else {
                    self.stats.closed_early += 1;
                }
                Some(self.close(slot, now_ns, fin))
            }
            State::FinWait => {
                if has(RST) {
                    self.free_slot(slot);
                    return None;
                }
                if seg.seq != conn.rcv_nxt {
                    return None;
                }
                // More data, an ACK of our FIN, or the server's FIN.
                let rcv_nxt = seg.seq.wrapping_add(seg.payload_len);
                self.conns[slot].rcv_nxt = rcv_nxt;
                if !has(FIN) {
                    return None;
                }
                let e = Emit {
                    tuple: conn.tuple,
                    flags: ACK,
                    seq: conn.snd_nxt,
                    ack: rcv_nxt.wrapping_add(1),
                    request: false,
                };
                self.free_slot(slot);
                Some(e)
            }
        }
    }

    /// Send (`first`) or send again the request with the handshake's ACK.
    fn send_request(&mut self, slot: usize, now_ns: u64, first: bool) -> Emit {
        let c = &mut self.conns[slot];
        let e = Emit {
            tuple: c.tuple,
            flags: ACK | PSH,
            seq: c.isn.wrapping_add(1),
            ack: c.rcv_nxt,
            request: true,
        };
        c.snd_nxt = c.isn.wrapping_add(1).wrapping_add(self.cfg.request_len);
        c.state = State::AwaitResponse;
        c.req_ns = now_ns;
        c.deadline_ns = now_ns + self.cfg.timeout_ns;
        if first {
            self.stats.requests += 1;
        }
        e
    }

    /// Look at up to `budget` slots (round robin) for connections past
    /// their deadline at `now_ns`: each is reset (`emit` gets its RST) and
    /// freed. Stops early, returning `false`, when `emit` refuses (no room
    /// to send); the slot is then looked at again next time.
    pub fn sweep(
        &mut self,
        now_ns: u64,
        budget: usize,
        mut emit: impl FnMut(Emit) -> bool,
    ) -> bool {
        let n = self.conns.len();
        for _ in 0..budget.min(n) {
            let slot = self.sweep_next;
            let conn = self.conns[slot];
            if conn.state != State::Free && now_ns >= conn.deadline_ns {
                let e = match conn.state {
                    State::SynSent => Emit {
                        tuple: conn.tuple,
                        flags: RST,
                        seq: conn.isn.wrapping_add(1),
                        ack: 0,
                        request: false,
                    },
                    _ => Emit {
                        tuple: conn.tuple,
                        flags: RST | ACK,
                        seq: conn.snd_nxt,
                        ack: conn.rcv_nxt,
                        request: false,
                    },
                };
                if !emit(e) {
                    return false;
                }
                if conn.state != State::FinWait {
                    self.stats.timeouts += 1;
                }
                self.free_slot(slot);
            }
            self.sweep_next = (slot + 1) % n;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FlowSpace;
    use crate::sink::{Sink, SinkMode, Verdict};
    use rvs::wire::{EthernetAddress, PacketBuilder, TcpFlags};
    use std::net::Ipv4Addr;

    const MS: u64 = 1_000_000;
    const REQ: u32 = 18;

    fn vip() -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 1, 1)
    }

    fn flows() -> FlowSpace {
        FlowSpace::new(Ipv4Addr::new(198, 18, 0, 10), Some(1), 1024, 8).expect("flows")
    }

    fn clients(close: CloseMode, request_len: u32) -> TcpClients {
        TcpClients::new(ClientConfig {
            concurrency: 4,
            flows: 8,
            request_len,
            close,
            timeout_ns: 100 * MS,
        })
        .expect("config")
    }

    /// A segment from the VIP to flow `tuple`, built as bytes and read
    /// back through the sink, as the transmit thread would get it.
    fn from_server(
        tuple: u32,
        flags: TcpFlags,
        seq: u32,
        ack: u32,
        payload: &[u8],
        rx_ns: u64,
    ) -> Segment {
        let (ip, port) = flows().tuple(tuple);
        let frame = PacketBuilder::ethernet(
            EthernetAddress([2, 0, 0, 0, 0, 2]),
            EthernetAddress([2, 0, 0, 0, 0, 1]),
        )
        .ipv4(vip(), Ipv4Addr::from(ip))
        .tcp(80, port)
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .payload(payload)
        .build();
        let mut sink = Sink::new(
            SinkMode::Handshake {
                vip: vip(),
                vport: 80,
            },
            flows(),
            true,
        );
        match sink.handle(&frame, rx_ns, 0) {
            Verdict::Segment(s) => s,
            other => panic!("not a segment: {other:?}"),
        }
    }

    fn synack(syn: &Emit, server_isn: u32, rx_ns: u64) -> Segment {
        from_server(
            syn.tuple,
            TcpFlags::SYN | TcpFlags::ACK,
            server_isn,
            syn.seq.wrapping_add(1),
            b"",
            rx_ns,
        )
    }

    #[test]
    fn syn_ack_completes_the_handshake_and_sends_the_request() {
        let mut c = clients(CloseMode::Rst, REQ);
        let syn = c.open(MS).expect("a free slot");
        assert_eq!(syn.flags, SYN);
        assert_eq!((syn.tuple, syn.ack, syn.request), (0, 0, false));
        let req = c
            .on_segment(&synack(&syn, 7000, 3 * MS), 3 * MS)
            .expect("request");
        assert_eq!(
            req,
            Emit {
                tuple: 0,
                flags: ACK | PSH,
                seq: syn.seq.wrapping_add(1),
                ack: 7001,
                request: true
            }
        );
        assert_eq!(c.stats().handshakes, 1);
        assert_eq!(c.handshake_latency().max(), Some(2 * MS));

        let data = from_server(
            0,
            TcpFlags::ACK | TcpFlags::PSH,
            7001,
            req.seq.wrapping_add(REQ),
            b"HTTP/1.0 200 OK\r\n\r\n",
            4 * MS,
        );
        let rst = c.on_segment(&data, 4 * MS).expect("reset");
        assert_eq!(rst.flags, RST | ACK);
        assert_eq!((rst.seq, rst.ack), (req.seq.wrapping_add(REQ), 7001 + 19));
        let s = c.stats();
        assert_eq!(
            (s.requests, s.responses, s.completed, s.stray),
            (1, 1, 1, 0)
        );
        assert_eq!(c.open_connections(), 0);
        assert_eq!(c.response_latency().max(), Some(MS));
    }

    #[test]
    fn a_syn_ack_that_does_not_ack_our_syn_is_stray() {
        let mut c = clients(CloseMode::Rst, REQ);
        let syn = c.open(0).expect("slot");
        let bad = from_server(
            syn.tuple,
            TcpFlags::SYN | TcpFlags::ACK,
            1,
            syn.seq.wrapping_add(2),
            b"",
            0,
        );
        assert_eq!(c.on_segment(&bad, 0), None);
        // For a flow no connection uses right now.
        let other = from_server(5, TcpFlags::SYN | TcpFlags::ACK, 1, 1, b"", 0);
        assert_eq!(c.on_segment(&other, 0), None);
        assert_eq!(c.stats().stray, 2);
        assert_eq!(c.stats().handshakes, 0);
        assert_eq!(c.open_connections(), 1);
    }

    #[test]
    fn rst_to_the_syn_counts_as_refused() {
        let mut c = clients(CloseMode::Rst, REQ);
        let syn = c.open(0).expect("slot");
        let rst = from_server(
            syn.tuple,
            TcpFlags::RST | TcpFlags::ACK,
            0,
            syn.seq.wrapping_add(1),
            b"",
            0,
        );
        assert_eq!(c.on_segment(&rst, 0), None);
        assert_eq!(c.stats().refused, 1);
        assert_eq!(c.open_connections(), 0);
    }

    #[test]
    fn fin_close_waits_for_the_servers_fin_and_acks_it() {
        let mut c = clients(CloseMode::Fin, REQ);
        let syn = c.open(0).expect("slot");
        let req = c.on_segment(&synack(&syn, 100, 0), 0).expect("request");
        let data = from_server(
            syn.tuple,
            TcpFlags::ACK,
            101,
            req.seq.wrapping_add(REQ),
            b"hello",
            0,
        );
        let fin = c.on_segment(&data, 0).expect("our FIN");
        assert_eq!(fin.flags, FIN | ACK);
        assert_eq!((fin.seq, fin.ack), (req.seq.wrapping_add(REQ), 106));
        assert_eq!(c.open_connections(), 1, "waiting for the server's FIN");
        let ack_of_fin = from_server(
            syn.tuple,
            TcpFlags::ACK,
            106,
            fin.seq.wrapping_add(1),
            b"",
            0,
        );
        assert_eq!(c.on_segment(&ack_of_fin, 0), None);
        let server_fin = from_server(
            syn.tuple,
            TcpFlags::FIN | TcpFlags::ACK,
            106,
            fin.seq.wrapping_add(1),
            b"",
            0,
        );
        let last = c.on_segment(&server_fin, 0).expect("final ACK");
        assert_eq!(last.flags, ACK);
        assert_eq!((last.seq, last.ack), (fin.seq.wrapping_add(1), 107));
        assert_eq!(c.open_connections(), 0);
        assert_eq!(c.stats().completed, 1);
    }

    #[test]
    fn response_with_fin_is_closed_at_once() {
        let mut c = clients(CloseMode::Fin, REQ);
        let syn = c.open(0).expect("slot");
        let req = c.on_segment(&synack(&syn, 100, 0), 0).expect("request");
        let data_fin = from_server(
            syn.tuple,
            TcpFlags::FIN | TcpFlags::ACK | TcpFlags::PSH,
            101,
            req.seq.wrapping_add(REQ),
            b"bye",
            0,
        );
        let fin = c.on_segment(&data_fin, 0).expect("our FIN");
        assert_eq!((fin.flags, fin.ack), (FIN | ACK, 105));
        assert_eq!(c.open_connections(), 0);
        assert_eq!(c.stats().responses, 1);
    }

    #[test]
    fn empty_request_closes_right_after_the_handshake() {
        let mut c = clients(CloseMode::Rst, 0);
        let syn = c.open(0).expect("slot");
        let rst = c.on_segment(&synack(&syn, 9, 0), 0).expect("reset");
        assert_eq!(
            (rst.flags, rst.seq, rst.ack),
            (RST | ACK, syn.seq.wrapping_add(1), 10)
        );
        assert_eq!(
            (
                c.stats().handshakes,
                c.stats().completed,
                c.stats().requests
            ),
            (1, 1, 0)
        );
    }

    #[test]
    fn slots_bound_concurrency() {
        let mut c = clients(CloseMode::Rst, 0);
        let syns: Vec<Emit> = (0..4).map(|_| c.open(0).expect("slot")).collect();
        let tuples: Vec<u32> = syns.iter().map(|e| e.tuple).collect();
        assert_eq!(tuples, vec![0, 1, 2, 3]);
        assert_eq!(c.open(0), None, "4 slots");
        // Finish flow 1's connection: the next one takes the next endpoint.
        assert!(c.on_segment(&synack(&syns[1], 5, 0), 0).is_some());
        assert_eq!(c.open(0).expect("a slot is free").tuple, 4);
        // Flow 1's segments are late now; a flow not used yet is stray.
        let late = from_server(1, TcpFlags::ACK, 6, 0, b"x", 0);
        assert_eq!(c.on_segment(&late, 0), None);
        let never = from_server(6, TcpFlags::ACK, 6, 0, b"x", 0);
        assert_eq!(c.on_segment(&never, 0), None);
        assert_eq!((c.stats().late, c.stats().stray), (1, 1));
    }

    #[test]
    fn endpoints_return_after_all_others_with_an_advanced_isn() {
        let mut c = clients(CloseMode::Rst, 0);
        // Flow 0 stays open the whole time.
        let held = c.open(0).expect("slot");
        let mut seen = Vec::new();
        for _ in 0..9 {
            let e = c.open(0).expect("slot");
            seen.push(e);
            // An empty request: the SYN-ACK closes the connection.
            assert!(c.on_segment(&synack(&e, 1, 0), 0).is_some());
        }
        let tuples: Vec<u32> = seen.iter().map(|e| e.tuple).collect();
        assert_eq!(
            tuples,
            vec![1, 2, 3, 4, 5, 6, 7, 1, 2],
            "flow 0 is busy: skipped"
        );
        assert_eq!(
            seen[7].seq,
            seen[0].seq.wrapping_add(ISN_STEP),
            "next turn, later ISN"
        );
        assert_eq!(held.tuple, 0);
        assert_eq!(c.open_connections(), 1);
    }

    #[test]
    fn silent_servers_time_out_with_a_reset() {
        let mut c = clients(CloseMode::Rst, REQ);
        let a = c.open(0).expect("slot");
        let b = c.open(50 * MS).expect("slot");
        let mut sent = Vec::new();
        assert!(c.sweep(120 * MS, 16, |e| {
            sent.push(e);
            true
        }));
        assert_eq!(
            sent,
            vec![Emit {
                tuple: a.tuple,
                flags: RST,
                seq: a.seq.wrapping_add(1),
                ack: 0,
                request: false
            }]
        );
        assert_eq!(c.stats().timeouts, 1);
        assert_eq!(c.open_connections(), 1);
        // No room to send: the expired connection stays for the next sweep.
        assert!(!c.sweep(200 * MS, 16, |_| false));
        assert_eq!(c.open_connections(), 1);
        assert!(c.sweep(200 * MS, 16, |e| e.tuple == b.tuple));
        assert_eq!(c.stats().timeouts, 2);
        assert_eq!(c.open_connections(), 0);
    }

    #[test]
    fn more_concurrency_than_flows_is_refused() {
        let cfg = ClientConfig {
            concurrency: 9,
            flows: 8,
            request_len: 1,
            close: CloseMode::Rst,
            timeout_ns: 1,
        };
        assert!(TcpClients::new(cfg).is_err());
    }
}
