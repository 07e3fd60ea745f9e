//! The generator's threads: one transmit thread (the TX port's first queue)
//! and one receive thread per RX port, each a busy-poll loop over its own
//! queue, generic over the driver's queue type.
//!
//! * The **TX thread** builds packets from the prebuilt templates into pool
//!   buffers as the rate limiter allows, sends them with `tx_burst` (what
//!   the device does not take stays queued, in order, and is retried), and
//!   also polls its own queue's receive side: a device may steer replies to
//!   any of its queues, ARP requests for the source addresses must be
//!   answered, and in `--tcp-handshake` mode it owns the TCP client state
//!   machine (segments that arrive on other queues reach it through a
//!   bounded lock-free queue of [`Segment`]s).
//! * An **RX thread** runs the [`Sink`] on everything its queue receives.
//!
//! Phases of the TX thread: *sending* (until the count, the duration, or a
//! stop from the main thread), *flushing* (what is still queued), then
//! *draining*: it keeps polling (and, in handshake mode, finishing open
//! connections) until the main thread says stop.
//!
//! Rules: no allocation inside the loops (bursts, sinks, histograms and the
//! client table are made before; buffers come from the driver's pool); no
//! locks; counters for the live display are per thread, plain relaxed
//! stores. A thread that finds nothing to do backs off (short sleeps after
//! 1 ms of idleness, or until the next packet is due) unless `--busy-poll`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use rvs::dataplane::driver::{heapbuf, Burst, PacketBuf, PortQueue};

use crate::frame::{Fields, FlowSpace, FrameTemplate};
use crate::histogram::LatencyHistogram;
use crate::rate::RateLimiter;
use crate::signature::Signature;
use crate::sink::{write_arp_reply, Sink, SinkReport, Verdict, ARP_FRAME_LEN};
use crate::tcp_client::{ClientStats, Emit, Segment, TcpClients};

/// Idle time after which a thread starts sleeping between polls.
const IDLE_AFTER_NS: u64 = 1_000_000;
/// One idle sleep.
const IDLE_SLEEP: Duration = Duration::from_micros(50);
/// Shortest wait for the next due packet worth a sleep (timer slack makes
/// shorter sleeps overshoot; the limiter's credit absorbs what is late).
const MIN_PACING_SLEEP_NS: u64 = 20_000;
/// Segments taken from the RX threads per loop.
const EVENTS_PER_LOOP: usize = 64;
/// Connection slots checked for timeouts per loop.
const SWEEP_PER_LOOP: usize = 64;
/// Buffers put on a heap-driver thread's free list at start.
const PREWARM_BUFS: usize = 1024;

/// The run's monotonic clock: ns since one origin shared by all threads.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds since the origin.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// Flags between the main thread and the workers.
#[derive(Debug, Default)]
pub struct Control {
    /// Main → TX: stop sending (duration over, or interrupted).
    pub stop_tx: AtomicBool,
    /// Main → all: leave the loop.
    pub stop_all: AtomicBool,
    /// TX → main: sending is over and the last packet left.
    pub tx_done: AtomicBool,
    /// TX → main: sending is over and no connection is open (handshake).
    pub tx_idle: AtomicBool,
    /// TX → sinks: packets built so far (signed sequence numbers below it
    /// are plausible).
    pub tx_built: AtomicU64,
}

/// One thread's running totals for the live display (written by that
/// thread only, read by the main thread).
#[derive(Debug, Default)]
pub struct Live {
    /// Packets sent.
    pub tx_packets: AtomicU64,
    /// Frames received.
    pub rx_packets: AtomicU64,
    /// Signed packets matched.
    pub rx_matched: AtomicU64,
    /// TCP handshakes completed.
    pub handshakes: AtomicU64,
}

/// Set the calling thread's CPU affinity (see [`ThreadSetup::affinity`]).
#[derive(Debug, Clone, Copy)]
pub enum Affinity {
    /// Pin to this core.
    Core(core_affinity::CoreId),
    /// Allow every CPU in this set (the process's mask before DPDK pinned
    /// the main thread).
    Mask(libc::cpu_set_t),
    /// Leave as inherited.
    Inherit,
}

/// What every worker thread needs.
#[derive(Clone)]
pub struct ThreadSetup {
    /// The shared clock.
    pub clock: Clock,
    /// Flags with the main thread.
    pub control: Arc<Control>,
    /// This thread's live counters.
    pub live: Arc<Live>,
    /// Where the thread runs.
    pub affinity: Affinity,
    /// Whether the queue is a DPDK queue (register the thread as an lcore).
    pub dpdk: bool,
    /// Poll without ever sleeping.
    pub busy_poll: bool,
    /// The MAC the generator answers ARP with.
    pub src_mac: [u8; 6],
}

impl ThreadSetup {
    /// Pin (or unpin) the thread, register it with DPDK, warm the buffer
    /// list. Failures are reported once and the run goes on.
    fn enter(&self, name: &str) {
        match self.affinity {
            Affinity::Core(c) => {
                if !core_affinity::set_for_current(c) {
                    eprintln!("lbpktgen: {name}: cannot pin to core {}", c.id);
                }
            }
            Affinity::Mask(set) => {
                // SAFETY: `set` is a valid cpu_set_t of the size passed;
                // pid 0 is the calling thread.
                let rc = unsafe {
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
                };
                if rc != 0 {
                    eprintln!(
                        "lbpktgen: {name}: cannot set CPU affinity: {}",
                        std::io::Error::last_os_error()
                    );
                }
            }
            Affinity::Inherit => {}
        }
        if self.dpdk {
            register_dpdk(name);
        } else {
            heapbuf::prewarm(PREWARM_BUFS);
        }
    }

    fn leave(&self) {
        if self.dpdk {
            unregister_dpdk();
        }
    }
}

#[cfg(feature = "dpdk")]
fn register_dpdk(name: &str) {
    if let Err(e) = rvs::dataplane::driver::dpdk::register_worker_thread() {
        eprintln!("lbpktgen: {name}: {e}");
    }
}

#[cfg(not(feature = "dpdk"))]
fn register_dpdk(_name: &str) {}

#[cfg(feature = "dpdk")]
fn unregister_dpdk() {
    rvs::dataplane::driver::dpdk::unregister_worker_thread();
}

#[cfg(not(feature = "dpdk"))]
fn unregister_dpdk() {}

/// Back-off of a polling loop that finds nothing to do.
struct Idle {
    busy_poll: bool,
    last_work_ns: u64,
}

impl Idle {
    fn new(busy_poll: bool, now_ns: u64) -> Idle {
        Idle {
            busy_poll,
            last_work_ns: now_ns,
        }
    }

    fn worked(&mut self, now_ns: u64) {
        self.last_work_ns = now_ns;
    }

    /// Nothing happened this round: spin, or sleep a little once idle for
    /// a while.
    fn nothing(&mut self, now_ns: u64) {
        if !self.busy_poll && now_ns.saturating_sub(self.last_work_ns) > IDLE_AFTER_NS {
            std::thread::sleep(IDLE_SLEEP);
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Poll `q` once: every frame goes through `sink`, ARP requests for the
/// source addresses are answered, segments go to `on_segment` (which gets
/// the queue back to answer on). Returns the frames received.
///
/// The receive time and the count of packets built (`built`, the bound
/// for plausible sequence numbers) are read after the burst came back: a
/// thread descheduled between reading them and `rx_burst` would otherwise
/// judge fresh packets by stale values.
#[allow(clippy::too_many_arguments)]
fn poll_rx<Q: PortQueue>(
    q: &mut Q,
    rx: &mut Burst<Q::Buf>,
    arp: &mut Burst<Q::Buf>,
    sink: &mut Sink,
    src_mac: [u8; 6],
    clock: &Clock,
    built: impl Fn() -> u64,
    arp_replies: &mut u64,
    mut on_segment: impl FnMut(&mut Q, Segment),
) -> usize {
    let n = q.rx_burst(rx);
    if n == 0 {
        return 0;
    }
    let now_ns = clock.now_ns();
    let built = built();
    for buf in rx.drain() {
        match sink.handle(buf.data(), now_ns, built) {
            Verdict::Done => {}
            Verdict::ArpRequest(req) => {
                if let Some(mut b) = q.alloc() {
                    if let Some(d) = b.append(ARP_FRAME_LEN) {
                        write_arp_reply(d, src_mac, &req);
                        let _ = arp.push(b);
                    }
                }
            }
            Verdict::Segment(s) => on_segment(q, s),
        }
    }
    if !arp.is_empty() {
        *arp_replies += q.tx_burst(arp) as u64;
        arp.clear();
    }
    n
}

/// What the TX thread sends.
pub enum Traffic {
    /// Signed UDP or TCP packets over the flows, round robin.
    Stream {
        /// The frame.
        data: FrameTemplate,
        /// TCP: each flow's first packet is a SYN, the others ACK+PSH.
        tcp: bool,
    },
    /// TCP connections.
    Handshake {
        /// The frames the client sends.
        templates: EmitTemplates,
        /// The client state machine.
        client: Box<TcpClients>,
        /// Segments the RX threads received.
        events: Arc<ArrayQueue<Segment>>,
    },
}

/// The TX thread's work order.
pub struct TxJob {
    /// What to send.
    pub traffic: Traffic,
    /// The source endpoints.
    pub flows: FlowSpace,
    /// Packets (connections) per second; `None`: as fast as possible.
    pub rate_pps: Option<f64>,
    /// Packets (connections) to send; `None`: until the deadline.
    pub count: Option<u64>,
    /// When to stop sending, ns since the clock origin.
    pub deadline_ns: u64,
    /// The sink for what the TX queue receives.
    pub sink: Sink,
    /// Thread set-up.
    pub setup: ThreadSetup,
}

/// The client's results (handshake mode).
#[derive(Debug, Clone)]
pub struct TcpReport {
    /// Counters.
    pub stats: ClientStats,
    /// SYN → SYN-ACK, ns.
    pub handshake_latency: LatencyHistogram,
    /// Request → response, ns.
    pub response_latency: LatencyHistogram,
    /// Connections still open when the run ended.
    pub open_at_end: u32,
}

/// What the TX thread did.
#[derive(Debug, Clone)]
pub struct TxReport {
    /// Packets the device took.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Packets not built because the pool was empty.
    pub nobuf: u64,
    /// Packets built but never taken by the device (dropped at the end).
    pub unsent: u64,
    /// ARP replies sent.
    pub arp_replies: u64,
    /// Sending started, ns since the clock origin.
    pub start_ns: u64,
    /// The last packet left (or the thread stopped), ns.
    pub end_ns: u64,
    /// What the TX queue received.
    pub sink: SinkReport,
    /// Handshake mode results.
    pub tcp: Option<TcpReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Sending,
    Flushing,
    Draining,
}

/// What the TX thread has sent.
#[derive(Debug, Default)]
struct TxCounts {
    packets: u64,
    bytes: u64,
    /// Packets not built because the pool was empty.
    nobuf: u64,
}

impl TxCounts {
    /// Send `out` (the rest stays queued) and count what the device took;
    /// returns that number of packets.
    #[inline]
    fn transmit<Q: PortQueue>(&mut self, q: &mut Q, out: &mut Burst<Q::Buf>) -> usize {
        let before: usize = out.as_slice().iter().map(|b| b.len()).sum();
        let sent = q.tx_burst(out);
        let after: usize = out.as_slice().iter().map(|b| b.len()).sum();
        self.packets += sent as u64;
        self.bytes += (before - after) as u64;
        sent
    }
}

/// The TX thread: run `job` on `q` until the main thread stops it.
pub fn tx_thread<Q: PortQueue>(mut q: Q, job: TxJob) -> TxReport {
    let setup = job.setup.clone();
    setup.enter("tx");
    let report = match job.traffic {
        Traffic::Stream { data, tcp } => {
            let mut gen = StreamGen {
                data,
                tcp,
                flows: job.flows,
            };
            run_tx(
                &mut q,
                &setup,
                job.rate_pps,
                job.count,
                job.deadline_ns,
                job.sink,
                &mut gen,
            )
        }
        Traffic::Handshake {
            templates,
            client,
            events,
        } => {
            let mut gen = HandshakeGen {
                templates,
                client,
                events,
                flows: job.flows,
                ident: 0,
            };
            let mut r = run_tx(
                &mut q,
                &setup,
                job.rate_pps,
                job.count,
                job.deadline_ns,
                job.sink,
                &mut gen,
            );
            r.tcp = Some(TcpReport {
                stats: *gen.client.stats(),
                handshake_latency: gen.client.handshake_latency().clone(),
                response_latency: gen.client.response_latency().clone(),
                open_at_end: gen.client.open_connections(),
            });
            r
        }
    };
    drop(q);
    setup.leave();
    report
}

/// One kind of traffic, driven by [`run_tx`].
trait Generator {
    /// Build up to `n` new packets (or connections) into `out` at
    /// `now_ns`; returns how many were started, and counts buffers the
    /// pool could not give in `counts.nobuf`.
    fn generate<Q: PortQueue>(
        &mut self,
        q: &mut Q,
        out: &mut Burst<Q::Buf>,
        n: usize,
        first: u64,
        now_ns: u64,
        counts: &mut TxCounts,
    ) -> usize;

    /// A received segment (handshake mode), answered into `out`.
    fn on_segment<Q: PortQueue>(
        &mut self,
        _q: &mut Q,
        _out: &mut Burst<Q::Buf>,
        _seg: &Segment,
        _now_ns: u64,
        _counts: &mut TxCounts,
    ) {
    }

    /// Work besides sending new packets: segments from the RX threads,
    /// timeouts. Returns whether anything happened.
    fn housekeeping<Q: PortQueue>(
        &mut self,
        _q: &mut Q,
        _out: &mut Burst<Q::Buf>,
        _now_ns: u64,
        _counts: &mut TxCounts,
    ) -> bool {
        false
    }

    /// Whether no work is pending (handshake: no connection open).
    fn idle(&self) -> bool {
        true
    }

    /// Live handshake count.
    fn handshakes(&self) -> u64 {
        0
    }
}

/// Signed packets over the flows, round robin.
struct StreamGen {
    data: FrameTemplate,
    tcp: bool,
    flows: FlowSpace,
}

/// TCP sequence number of the stream mode's SYNs (data follows at +1).
const STREAM_ISN: u32 = 1_000;

impl Generator for StreamGen {
    #[inline]
    fn generate<Q: PortQueue>(
        &mut self,
        q: &mut Q,
        out: &mut Burst<Q::Buf>,
        n: usize,
        first: u64,
        now_ns: u64,
        counts: &mut TxCounts,
    ) -> usize {
        let len = self.data.len();
        let flows = u64::from(self.flows.flows());
        for i in 0..n {
            let seq = first + i as u64;
            let Some(mut b) = q.alloc() else {
                counts.nobuf += 1;
                return i;
            };
            let Some(dst) = b.append(len) else {
                counts.nobuf += 1;
                return i;
            };
            let (src_ip, src_port) = self.flows.tuple((seq % flows) as u32);
            let syn = self.tcp && seq < flows;
            let f = Fields {
                src_ip,
                src_port,
                ident: seq as u16,
                tcp_seq: if syn { STREAM_ISN } else { STREAM_ISN + 1 },
                tcp_ack: if syn { 0 } else { 1 },
                tcp_flags: if syn { TCP_SYN } else { TCP_ACK_PSH },
                sig: Some(Signature {
                    seq: seq as u32,
                    tx_ns: now_ns as u32,
                }),
            };
            self.data.write(dst, &f);
            // Cannot fail: the caller asks for at most the burst's room.
            let _ = out.push(b);
        }
        n
    }
}

/// The frames of the TCP client.
pub struct EmitTemplates {
    /// SYN (with an MSS option).
    pub syn: FrameTemplate,
    /// ACK, RST, FIN without data.
    pub bare: FrameTemplate,
    /// ACK+PSH with the request.
    pub request: FrameTemplate,
}

/// Build the frame for `e` into `out`; `false` when `out` is full or the
/// pool is empty (counted in `counts.nobuf`).
#[allow(clippy::too_many_arguments)]
fn build_emit<Q: PortQueue>(
    t: &EmitTemplates,
    flows: &FlowSpace,
    ident: &mut u16,
    q: &mut Q,
    out: &mut Burst<Q::Buf>,
    e: &Emit,
    counts: &mut TxCounts,
) -> bool {
    if out.is_full() {
        return false;
    }
    let template = if e.flags & TCP_SYN != 0 {
        &t.syn
    } else if e.request {
        &t.request
    } else {
        &t.bare
    };
    let Some(mut b) = q.alloc() else {
        counts.nobuf += 1;
        return false;
    };
    let Some(dst) = b.append(template.len()) else {
        counts.nobuf += 1;
        return false;
    };
    let (src_ip, src_port) = flows.tuple(e.tuple);
    *ident = ident.wrapping_add(1);
    template.write(
        dst,
        &Fields {
            src_ip,
            src_port,
            ident: *ident,
            tcp_seq: e.seq,
            tcp_ack: e.ack,
            tcp_flags: e.flags,
            sig: None,
        },
    );
    // Cannot fail: not full (checked above).
    let _ = out.push(b);
    true
}

/// TCP SYN flag bit.
const TCP_SYN: u8 = 0x02;
/// TCP ACK|PSH flag bits.
const TCP_ACK_PSH: u8 = 0x18;

/// TCP connections through [`TcpClients`].
struct HandshakeGen {
    templates: EmitTemplates,
    client: Box<TcpClients>,
    events: Arc<ArrayQueue<Segment>>,
    flows: FlowSpace,
    ident: u16,
}

/// Most rounds an answer waits for room in the transmit burst before it
/// is dropped (the connection then times out).
const MUST_SEND_TRIES: u32 = 1000;

impl HandshakeGen {
    /// Queue the answer `e`, sending what is queued first if there is no
    /// room.
    fn must_send<Q: PortQueue>(
        &mut self,
        q: &mut Q,
        out: &mut Burst<Q::Buf>,
        e: &Emit,
        counts: &mut TxCounts,
    ) {
        let mut tries = 0;
        while out.is_full() && tries < MUST_SEND_TRIES {
            counts.transmit(q, out);
            tries += 1;
        }
        build_emit(
            &self.templates,
            &self.flows,
            &mut self.ident,
            q,
            out,
            e,
            counts,
        );
    }
}

impl Generator for HandshakeGen {
    fn generate<Q: PortQueue>(
        &mut self,
        q: &mut Q,
        out: &mut Burst<Q::Buf>,
        n: usize,
        _first: u64,
        now_ns: u64,
        counts: &mut TxCounts,
    ) -> usize {
        for i in 0..n {
            let Some(e) = self.client.open(now_ns) else {
                return i;
            };
            // A SYN that cannot be built leaves its slot to time out.
            build_emit(
                &self.templates,
                &self.flows,
                &mut self.ident,
                q,
                out,
                &e,
                counts,
            );
        }
        n
    }

    fn on_segment<Q: PortQueue>(
        &mut self,
        q: &mut Q,
        out: &mut Burst<Q::Buf>,
        seg: &Segment,
        now_ns: u64,
        counts: &mut TxCounts,
    ) {
        if let Some(e) = self.client.on_segment(seg, now_ns) {
            self.must_send(q, out, &e, counts);
        }
    }

    fn housekeeping<Q: PortQueue>(
        &mut self,
        q: &mut Q,
        out: &mut Burst<Q::Buf>,
        now_ns: u64,
        counts: &mut TxCounts,
    ) -> bool {
        let mut did = false;
        for _ in 0..EVENTS_PER_LOOP {
            let Some(seg) = self.events.pop() else {
                break;
            };
            did = true;
            self.on_segment(q, out, &seg, now_ns.max(seg.rx_ns), counts);
        }
        let HandshakeGen {
            templates,
            client,
            flows,
            ident,
            ..
        } = self;
        let before = client.stats().timeouts;
        client.sweep(now_ns, SWEEP_PER_LOOP, |e| {
            build_emit(templates, flows, ident, q, out, &e, counts)
        });
        did || client.stats().timeouts != before
    }

    fn idle(&self) -> bool {
        self.client.open_connections() == 0
    }

    fn handshakes(&self) -> u64 {
        self.client.stats().handshakes
    }
}

/// The generic TX loop.
fn run_tx<Q: PortQueue, G: Generator>(
    q: &mut Q,
    setup: &ThreadSetup,
    rate_pps: Option<f64>,
    count: Option<u64>,
    deadline_ns: u64,
    mut sink: Sink,
    gen: &mut G,
) -> TxReport {
    let clock = setup.clock;
    let control = &setup.control;
    let live = &setup.live;
    let mut out: Burst<Q::Buf> = Burst::new();
    let mut rx: Burst<Q::Buf> = Burst::new();
    let mut arp: Burst<Q::Buf> = Burst::new();
    let start_ns = clock.now_ns();
    let mut limiter = RateLimiter::new(rate_pps, start_ns);
    let mut idle = Idle::new(setup.busy_poll, start_ns);
    let mut phase = Phase::Sending;
    let limit = count.unwrap_or(u64::MAX);
    let mut started = 0u64;
    let mut counts = TxCounts::default();
    let mut arp_replies = 0u64;
    let mut end_ns = 0u64;

    while !control.stop_all.load(Ordering::Relaxed) {
        let now = clock.now_ns();
        if phase == Phase::Sending
            && (started >= limit || now >= deadline_ns || control.stop_tx.load(Ordering::Relaxed))
        {
            phase = Phase::Flushing;
        }
        if phase == Phase::Flushing && out.is_empty() {
            phase = Phase::Draining;
            end_ns = now;
            control.tx_done.store(true, Ordering::Release);
        }

        // What came back on this queue (and answers to it).
        let mut work = poll_rx(
            q,
            &mut rx,
            &mut arp,
            &mut sink,
            setup.src_mac,
            &clock,
            || started,
            &mut arp_replies,
            |q, seg| gen.on_segment(q, &mut out, &seg, seg.rx_ns, &mut counts),
        ) > 0;
        work |= gen.housekeeping(q, &mut out, now, &mut counts);

        // New packets (connections), as the limiter allows.
        if phase == Phase::Sending && !out.is_full() {
            let want = (limit - started).min(out.room() as u64) as usize;
            let n = limiter.allowance(now, want);
            if n > 0 {
                let made = gen.generate(q, &mut out, n, started, now, &mut counts);
                limiter.commit(made);
                started += made as u64;
                control.tx_built.store(started, Ordering::Release);
                work |= made > 0;
            }
        }

        if !out.is_empty() {
            work |= counts.transmit(q, &mut out) > 0;
        }

        live.tx_packets.store(counts.packets, Ordering::Relaxed);
        live.rx_packets
            .store(sink.counts().packets, Ordering::Relaxed);
        live.rx_matched
            .store(sink.counts().matched, Ordering::Relaxed);
        live.handshakes.store(gen.handshakes(), Ordering::Relaxed);
        if phase == Phase::Draining && gen.idle() {
            control.tx_idle.store(true, Ordering::Release);
        }

        if work {
            idle.worked(now);
        } else if phase == Phase::Sending && out.is_empty() {
            // Paced: wait for the next packet's time.
            let wait = limiter.ns_until_next(now);
            if !setup.busy_poll && wait >= MIN_PACING_SLEEP_NS {
                std::thread::sleep(Duration::from_nanos(wait.min(IDLE_AFTER_NS)));
            } else {
                std::hint::spin_loop();
            }
        } else {
            idle.nothing(now);
        }
    }
    if end_ns == 0 {
        end_ns = clock.now_ns();
    }
    let unsent = out.len() as u64;
    out.clear();
    TxReport {
        packets: counts.packets,
        bytes: counts.bytes,
        nobuf: counts.nobuf,
        unsent,
        arp_replies,
        start_ns,
        end_ns,
        sink: sink.into_report(),
        tcp: None,
    }
}

/// An RX thread's work order.
pub struct RxJob {
    /// The sink.
    pub sink: Sink,
    /// Where segments go (handshake mode): the TX thread's client.
    pub events: Option<Arc<ArrayQueue<Segment>>>,
    /// Thread set-up.
    pub setup: ThreadSetup,
}

/// What an RX thread did.
#[derive(Debug, Clone)]
pub struct RxReport {
    /// The sink's totals.
    pub sink: SinkReport,
    /// ARP replies sent.
    pub arp_replies: u64,
    /// Segments dropped because the TX thread's event queue was full.
    pub events_dropped: u64,
}

/// An RX thread: run the sink on `q` until the main thread stops it.
pub fn rx_thread<Q: PortQueue>(mut q: Q, job: RxJob) -> RxReport {
    let setup = job.setup.clone();
    setup.enter("rx");
    let report = run_rx(&mut q, &setup, job.sink, job.events.as_deref());
    drop(q);
    setup.leave();
    report
}

fn run_rx<Q: PortQueue>(
    q: &mut Q,
    setup: &ThreadSetup,
    mut sink: Sink,
    events: Option<&ArrayQueue<Segment>>,
) -> RxReport {
    let clock = setup.clock;
    let control = &setup.control;
    let mut rx: Burst<Q::Buf> = Burst::new();
    let mut arp: Burst<Q::Buf> = Burst::new();
    let mut idle = Idle::new(setup.busy_poll, clock.now_ns());
    let (mut arp_replies, mut events_dropped) = (0u64, 0u64);
    while !control.stop_all.load(Ordering::Relaxed) {
        let now = clock.now_ns();
        let n = poll_rx(
            q,
            &mut rx,
            &mut arp,
            &mut sink,
            setup.src_mac,
            &clock,
            || control.tx_built.load(Ordering::Acquire),
            &mut arp_replies,
            |_, seg| {
                let queued = match events {
                    Some(ev) => ev.push(seg).is_ok(),
                    None => false,
                };
                if !queued {
                    events_dropped += 1;
                }
            },
        );
        if n > 0 {
            idle.worked(now);
            setup
                .live
                .rx_packets
                .store(sink.counts().packets, Ordering::Relaxed);
            setup
                .live
                .rx_matched
                .store(sink.counts().matched, Ordering::Relaxed);
        } else {
            idle.nothing(now);
        }
    }
    RxReport {
        sink: sink.into_report(),
        arp_replies,
        events_dropped,
    }
}
