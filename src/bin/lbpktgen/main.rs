//! lbpktgen — a pktgen-style traffic generator and sink for rvs benchmarks
//! over TAP, AF_PACKET or DPDK ports.
//!
//! ```text
//! lbpktgen --port tap:NAME|af_packet:IFNAME|dpdk:DEVICE [--rx-port SPEC]...
//!          [--eal-args "EAL ARGS"]
//!          [--proto udp|tcp] [--flows N] [--src-ips K] [--size BYTES]
//!          [--tcp-handshake [--concurrency N] [--request STR] [--close rst|fin]
//!                           [--conn-timeout-ms MS]]
//!          [--rate PPS] (--count N | --duration SECS)
//!          [--src-mac MAC] [--dst-mac MAC] [--src-ip BASE] [--src-port BASE]
//!          --dst-ip VIP [--dst-port P]
//!          [--drain-ms MS] [--cores LIST] [--verify-checksums] [--busy-poll]
//!          [--json] [--quiet]
//! ```
//!
//! * **Stream mode** (default): signed UDP (or TCP: each flow's first packet
//!   a SYN, then ACK+PSH) frames of `--size` bytes from `--flows` client
//!   endpoints (source addresses vary first, then ports) to `--dst-ip`
//!   `--dst-port`, at `--rate` packets per second or as fast as possible.
//!   The sink on every RX port matches what comes back by the payload
//!   signature (run tag, sequence number, send time): loss, duplicates,
//!   latency percentiles; other frames are counted as foreign.
//! * **`--tcp-handshake`**: many minimal TCP clients (SYN, then ACK with
//!   the request, then RST or FIN after the response), `--rate`
//!   connections per second with at most `--concurrency` open: handshakes
//!   and completed connections per second, handshake and response latency.
//! * Always bounded: `--count` or `--duration` (at most 300 s) is required;
//!   nothing runs longer than the duration cap. SIGINT/SIGTERM stop the
//!   sending early and still print the summary (a second one ends at once).
//! * The destination MAC defaults to the TAP's kernel side, or is resolved
//!   by ARP on the TX port; the generator answers ARP for its source
//!   addresses on every port.
//! * Output: a progress line on stderr every 0.5 s (unless `--quiet`), the
//!   summary on stdout (text, or JSON with `--json`). Exit status 1 on any
//!   error.
//!
//! Threads: one TX thread on the TX port and one RX thread per RX port (a
//! port that is both gets two queues), pinned to `--cores` (TX first) when
//! given; see `lbpktgen/engine.rs`.

mod engine;
mod frame;
mod histogram;
mod ports;
mod rate;
mod signature;
mod sink;
mod summary;
mod tcp_client;

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, ValueEnum};
use crossbeam_queue::ArrayQueue;
use rvs::wire::EthernetAddress;

use engine::{
    Affinity, Clock, Control, EmitTemplates, Live, RxJob, RxReport, ThreadSetup, Traffic, TxJob,
    TxReport,
};
use frame::{
    FlowSpace, FrameTemplate, Payload, TemplateParams, Transport, L4_OFFSET, TCP_HEADER, UDP_HEADER,
};
use histogram::LatencyHistogram;
use ports::{resolve_mac, spawn_rx, spawn_tx, take_queues, DpdkContext, PortSpec};
use rvs::dataplane::ports::Port;
use sink::{Sink, SinkMode, SinkReport};
use summary::{progress_line, LatencySummary, RxSummary, Snapshot, Summary, TcpSummary, TxSummary};
use tcp_client::{ClientConfig, CloseMode, TcpClients};

/// Longest run, seconds.
const MAX_DURATION_SECS: f64 = 300.0;
/// Frame sizes (without FCS).
const MIN_SIZE: u16 = 64;
const MAX_SIZE: u16 = 1514;
/// How often the progress line is redrawn.
const PROGRESS_EVERY_NS: u64 = 500_000_000;
/// How often the main thread looks at the workers.
const MAIN_TICK: Duration = Duration::from_millis(20);
/// How long after the deadline a TX thread still flushing is waited for.
const TX_GRACE_NS: u64 = 2_000_000_000;
/// Default time to wait for late packets after the last one was sent.
const DEFAULT_DRAIN_MS: u64 = 500;
/// Default open connections in handshake mode.
const DEFAULT_CONCURRENCY: u32 = 256;
/// Default client endpoints in handshake mode.
const DEFAULT_HANDSHAKE_FLOWS: u32 = 60_000;
/// Segments the RX threads can queue for the TX thread's client.
const EVENT_QUEUE: usize = 64 * 1024;

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "lbpktgen",
    version,
    about = "pktgen-style traffic generator and sink for rvs (TAP, AF_PACKET, DPDK)"
)]
struct Cli {
    /// Transmit port: tap:NAME, af_packet:IFNAME or dpdk:DEVICE.
    #[arg(long, value_name = "SPEC")]
    port: PortSpec,
    /// Receive port (repeatable); default: the transmit port.
    #[arg(long = "rx-port", value_name = "SPEC")]
    rx_ports: Vec<PortSpec>,
    /// DPDK EAL arguments as one string (dpdk ports only), e.g.
    /// "--no-huge --no-pci -l 0 --vdev=net_tap0,iface=pg0".
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    eal_args: Option<String>,
    /// Transport of the stream mode.
    #[arg(long, value_enum)]
    proto: Option<Proto>,
    /// Act as TCP clients (connection-rate test) instead of a packet stream.
    #[arg(long)]
    tcp_handshake: bool,
    /// Client endpoints (source address/port pairs) [default: 1; 60000
    /// with --tcp-handshake].
    #[arg(long)]
    flows: Option<u32>,
    /// Source addresses the flows use [default: as few as fit].
    #[arg(long, value_name = "K")]
    src_ips: Option<u32>,
    /// Frame size in bytes without FCS, 64..=1514 [default: 64].
    #[arg(long, value_name = "BYTES")]
    size: Option<u16>,
    /// Packets (connections) per second, e.g. 20000, 20k, 1.5M [default: as
    /// fast as possible].
    #[arg(long, value_name = "PPS", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Packets (connections) to send.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Seconds to send (at most 300), e.g. 10, 2.5, 500ms.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    duration: Option<f64>,
    /// Source MAC [default: the TX port's].
    #[arg(long, value_name = "MAC")]
    src_mac: Option<EthernetAddress>,
    /// Destination MAC [default: TAP kernel side, else resolved by ARP].
    #[arg(long, value_name = "MAC")]
    dst_mac: Option<EthernetAddress>,
    /// First source address.
    #[arg(long, value_name = "BASE", default_value = "198.18.0.1")]
    src_ip: Ipv4Addr,
    /// First source port.
    #[arg(long, value_name = "BASE", default_value_t = 1024)]
    src_port: u16,
    /// Destination address (the VIP).
    #[arg(long, value_name = "VIP")]
    dst_ip: Ipv4Addr,
    /// Destination port [default: 9; 80 with --tcp-handshake].
    #[arg(long, value_name = "P")]
    dst_port: Option<u16>,
    /// Connections open at once (--tcp-handshake) [default: 256].
    #[arg(long, value_name = "N")]
    concurrency: Option<u32>,
    /// Request sent after the handshake; \r \n \t \\ escapes; "" closes
    /// right after the handshake (--tcp-handshake) [default:
    /// "GET / HTTP/1.0\r\n\r\n"].
    #[arg(long, value_name = "STR")]
    request: Option<String>,
    /// How connections end (--tcp-handshake) [default: rst].
    #[arg(long, value_enum)]
    close: Option<Close>,
    /// Wait for a SYN-ACK or response at most this long (--tcp-handshake)
    /// [default: 1000].
    #[arg(long, value_name = "MS")]
    conn_timeout_ms: Option<u64>,
    /// Keep receiving this long after the last packet was sent [default:
    /// 500; with --tcp-handshake the connection timeout].
    #[arg(long, value_name = "MS")]
    drain_ms: Option<u64>,
    /// Cores to pin to: TX thread first, then the RX threads, e.g. 2,3 or
    /// 2-3.
    #[arg(long, value_name = "LIST")]
    cores: Option<String>,
    /// Check TCP/UDP checksums of received packets.
    #[arg(long)]
    verify_checksums: bool,
    /// Never sleep when idle (lowest latency, burns the cores).
    #[arg(long)]
    busy_poll: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

/// Stream transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    Udp,
    Tcp,
}

/// Connection endings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Close {
    Rst,
    Fin,
}

/// `20000`, `20k`, `1.5M`, `2G` packets per second.
fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("rate {s:?}: expected a number like 20000, 20k or 1.5M"))?;
    let r = v * mult;
    if !r.is_finite() || r <= 0.0 {
        return Err(format!("rate {s:?} must be above 0"));
    }
    Ok(r)
}

/// `10`, `2.5`, `2.5s`, `500ms` → seconds.
fn parse_duration(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("duration {s:?}: expected seconds like 10, 2.5 or 500ms"))?;
    let secs = v * scale;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration {s:?} must be above 0"));
    }
    Ok(secs)
}

/// Resolve `\r`, `\n`, `\t`, `\0`, `\\` in a request string.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some(o) => return Err(format!("--request: unknown escape \\{o}")),
            None => return Err("--request ends with a lone backslash".into()),
        }
    }
    Ok(out)
}

/// `2,3`, `2-3`, `0,2-4` → core ids.
fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("--cores {s:?}: expected a list like 2,3 or 2-3");
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a > b {
                return Err(bad());
            }
            cores.extend(a..=b);
        } else {
            cores.push(part.parse().map_err(|_| bad())?);
        }
    }
    if cores.is_empty() {
        return Err(format!("--cores {s:?} names no core"));
    }
    Ok(cores)
}

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Udp,
    Tcp,
    Handshake,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Udp => "udp",
            Mode::Tcp => "tcp",
            Mode::Handshake => "tcp-handshake",
        }
    }
}

/// The handshake mode's settings.
#[derive(Debug, Clone)]
struct ClientPlan {
    concurrency: u32,
    request: Vec<u8>,
    close: CloseMode,
    timeout_ns: u64,
}

/// A validated command line.
#[derive(Debug, Clone)]
struct Plan {
    tx_port: PortSpec,
    rx_ports: Vec<PortSpec>,
    eal_args: Option<String>,
    mode: Mode,
    flows: FlowSpace,
    /// Frame size (stream modes).
    size: u16,
    rate: Option<f64>,
    count: Option<u64>,
    /// How long to send at most.
    duration_ns: u64,
    src_mac: Option<[u8; 6]>,
    dst_mac: Option<[u8; 6]>,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    dst_port: u16,
    client: Option<ClientPlan>,
    drain_ns: u64,
    cores: Option<Vec<usize>>,
    verify_checksums: bool,
    busy_poll: bool,
    json: bool,
    quiet: bool,
}

impl Plan {
    fn from_cli(cli: Cli) -> anyhow::Result<Plan> {
        if cli.count.is_none() && cli.duration.is_none() {
            bail!("refusing to start without --count or --duration (lbpktgen always runs bounded)");
        }
        if cli.count == Some(0) {
            bail!("--count must be at least 1");
        }
        if let Some(d) = cli.duration {
            if d > MAX_DURATION_SECS {
                bail!("--duration {d} s is above the {MAX_DURATION_SECS} s cap");
            }
        }
        let duration_ns = (cli.duration.unwrap_or(MAX_DURATION_SECS) * 1e9) as u64;

        let mode = match (cli.tcp_handshake, cli.proto) {
            (true, Some(Proto::Udp)) => bail!("--tcp-handshake is TCP: drop --proto udp"),
            (true, _) => Mode::Handshake,
            (false, Some(Proto::Tcp)) => Mode::Tcp,
            (false, _) => Mode::Udp,
        };
        let handshake = mode == Mode::Handshake;
        if !handshake {
            let only = [
                ("--concurrency", cli.concurrency.is_some()),
                ("--request", cli.request.is_some()),
                ("--close", cli.close.is_some()),
                ("--conn-timeout-ms", cli.conn_timeout_ms.is_some()),
            ];
            if let Some((name, _)) = only.iter().find(|(_, given)| *given) {
                bail!("{name} applies only with --tcp-handshake");
            }
        }
        if handshake && cli.size.is_some() {
            bail!("--size applies to the stream modes, not --tcp-handshake");
        }
        let size = cli.size.unwrap_or(MIN_SIZE);
        if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
            bail!("--size {size}: frames are {MIN_SIZE}..={MAX_SIZE} bytes (without FCS)");
        }

        let flows = cli.flows.unwrap_or(if handshake {
            DEFAULT_HANDSHAKE_FLOWS
        } else {
            1
        });
        let flow_space =
            FlowSpace::new(cli.src_ip, cli.src_ips, cli.src_port, flows).map_err(|e| anyhow!(e))?;

        let client = if handshake {
            let timeout_ms = cli.conn_timeout_ms.unwrap_or(1000);
            if timeout_ms == 0 {
                bail!("--conn-timeout-ms must be at least 1");
            }
            let request = unescape(
                cli.request
                    .as_deref()
                    .unwrap_or("GET / HTTP/1.0\\r\\n\\r\\n"),
            )
            .map_err(|e| anyhow!(e))?;
            let max_request = usize::from(MAX_SIZE) - L4_OFFSET - TCP_HEADER;
            if request.len() > max_request {
                bail!(
                    "--request is {} bytes; at most {max_request} fit one frame",
                    request.len()
                );
            }
            let concurrency = cli.concurrency.unwrap_or(DEFAULT_CONCURRENCY.min(flows));
            // Checked here for a precise message before any device opens.
            ClientConfig {
                concurrency,
                flows,
                request_len: request.len() as u32,
                close: CloseMode::Rst,
                timeout_ns: 1,
            }
            .check()
            .map_err(|e| anyhow!(e))?;
            Some(ClientPlan {
                concurrency,
                request,
                close: match cli.close.unwrap_or(Close::Rst) {
                    Close::Rst => CloseMode::Rst,
                    Close::Fin => CloseMode::Fin,
                },
                timeout_ns: timeout_ms * 1_000_000,
            })
        } else {
            None
        };

        let mut rx_ports = cli.rx_ports;
        if rx_ports.is_empty() {
            rx_ports.push(cli.port.clone());
        }
        for (i, p) in rx_ports.iter().enumerate() {
            if rx_ports[..i].contains(p) {
                bail!("--rx-port {p} is given twice");
            }
        }
        let uses_dpdk = cli.port.is_dpdk() || rx_ports.iter().any(PortSpec::is_dpdk);
        if cli.eal_args.is_some() && !uses_dpdk {
            bail!("--eal-args applies only to dpdk: ports");
        }
        let cores = cli
            .cores
            .as_deref()
            .map(parse_cores)
            .transpose()
            .map_err(|e| anyhow!(e))?;
        let drain_ms = cli.drain_ms.unwrap_or(match &client {
            Some(c) => (c.timeout_ns / 1_000_000).max(DEFAULT_DRAIN_MS),
            None => DEFAULT_DRAIN_MS,
        });

        Ok(Plan {
            tx_port: cli.port,
            rx_ports,
            eal_args: cli.eal_args,
            mode,
            flows: flow_space,
            size,
            rate: cli.rate,
            count: cli.count,
            duration_ns,
            src_mac: cli.src_mac.map(|m| m.0),
            dst_mac: cli.dst_mac.map(|m| m.0),
            src_ip: cli.src_ip,
            dst_ip: cli.dst_ip,
            dst_port: cli.dst_port.unwrap_or(if handshake { 80 } else { 9 }),
            client,
            drain_ns: drain_ms * 1_000_000,
            cores,
            verify_checksums: cli.verify_checksums,
            busy_poll: cli.busy_poll,
            json: cli.json,
            quiet: cli.quiet,
        })
    }

    fn uses_dpdk(&self) -> bool {
        self.tx_port.is_dpdk() || self.rx_ports.iter().any(PortSpec::is_dpdk)
    }
}

// ---------------------------------------------------------------------------
// Signals: blocked in every thread, taken by the main loop.

fn block_signals() -> anyhow::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the signal numbers are valid;
    // pthread_sigmask reads `set` and takes a null old-set pointer.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        bail!("pthread_sigmask: {}", std::io::Error::from_raw_os_error(rc));
    }
    Ok(set)
}

/// Wait up to `timeout` for a blocked signal of `set`.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the call; the info pointer may
    // be null.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// The calling thread's CPU affinity mask.
fn current_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the
    // calling thread (pid 0) with the size we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        (rc == 0).then_some(set)
    }
}

// ---------------------------------------------------------------------------
// The run.

struct Threads {
    tx: std::thread::JoinHandle<TxReport>,
    /// Per RX port; `None` where the TX thread is the port's sink.
    rx: Vec<Option<std::thread::JoinHandle<RxReport>>>,
    tx_live: Arc<Live>,
    rx_live: Vec<Arc<Live>>,
}

fn snapshot(clock: &Clock, t: &Threads) -> Snapshot {
    let mut s = Snapshot {
        at_ns: clock.now_ns(),
        tx: t.tx_live.tx_packets.load(Ordering::Relaxed),
        handshakes: t.tx_live.handshakes.load(Ordering::Relaxed),
        ..Snapshot::default()
    };
    for l in std::iter::once(&t.tx_live).chain(&t.rx_live) {
        s.rx += l.rx_packets.load(Ordering::Relaxed);
        s.matched += l.rx_matched.load(Ordering::Relaxed);
    }
    s
}

/// Open the TX port: with two queues when it is also an RX port (one for
/// the TX thread, one for its RX thread). A DPDK device that has only one
/// queue is opened with one, and the TX thread is then its sink too.
fn open_tx_port(plan: &Plan, tx_is_rx: bool, dpdk: &DpdkContext) -> anyhow::Result<Port> {
    let what = || format!("open {}", plan.tx_port);
    if !tx_is_rx {
        return ports::open(&plan.tx_port, 1, dpdk).with_context(what);
    }
    match ports::open(&plan.tx_port, 2, dpdk) {
        Ok(d) => Ok(d),
        Err(e) if plan.tx_port.is_dpdk() => {
            eprintln!(
                "lbpktgen: {}: {e:#}; using one queue (the TX thread receives too)",
                plan.tx_port
            );
            ports::open(&plan.tx_port, 1, dpdk).with_context(what)
        }
        Err(e) => Err(e).with_context(what),
    }
}

fn run(plan: &Plan, signals: &libc::sigset_t) -> anyhow::Result<Summary> {
    // Before the EAL pins this thread to its main lcore.
    let saved_mask = current_affinity();
    // The cores are checked against the CPUs this process may use.
    let core_ids = match &plan.cores {
        Some(list) => {
            let avail = core_affinity::get_core_ids().unwrap_or_default();
            let mut ids = Vec::new();
            for &c in list {
                let id =
                    avail.iter().find(|a| a.id == c).copied().ok_or_else(|| {
                        anyhow!("--cores: core {c} is not available to this process")
                    })?;
                ids.push(id);
            }
            Some(ids)
        }
        None => None,
    };
    let dpdk = DpdkContext::init(plan.uses_dpdk(), plan.eal_args.as_deref())?;

    // Devices: the TX port (two queues if it is also an RX port), then the
    // other RX ports.
    let tx_is_rx = plan.rx_ports.contains(&plan.tx_port);
    let mut tx_dev = open_tx_port(plan, tx_is_rx, &dpdk)?;
    let mut rx_devs: Vec<(PortSpec, Port)> = Vec::new();
    for p in plan.rx_ports.iter().filter(|p| **p != plan.tx_port) {
        let d = ports::open(p, 1, &dpdk).with_context(|| format!("open {p}"))?;
        rx_devs.push((p.clone(), d));
    }
    let mut tx_queues = take_queues(&mut tx_dev)?;

    let src_mac = plan.src_mac.unwrap_or(tx_dev.caps().mac);
    let dst_mac = match plan.dst_mac.or(tx_dev.peer_mac()) {
        Some(m) => m,
        None => {
            resolve_mac(&mut tx_queues, src_mac, plan.src_ip, plan.dst_ip).ok_or_else(|| {
                anyhow!(
                    "no ARP answer for {} on {} (give --dst-mac)",
                    plan.dst_ip,
                    plan.tx_port
                )
            })?
        }
    };

    // Templates.
    let run_tag = signature::new_run_tag();
    let base = TemplateParams {
        src_mac,
        dst_mac,
        dst_ip: plan.dst_ip,
        dst_port: plan.dst_port,
        transport: Transport::Udp,
        payload: Payload::Empty,
    };
    let control = Arc::new(Control::default());
    let events = Arc::new(ArrayQueue::new(EVENT_QUEUE));
    let (traffic, sink_mode) = match (&plan.client, plan.mode) {
        (Some(c), _) => {
            let client = TcpClients::new(ClientConfig {
                concurrency: c.concurrency,
                flows: plan.flows.flows(),
                request_len: c.request.len() as u32,
                close: c.close,
                timeout_ns: c.timeout_ns,
            })
            .map_err(|e| anyhow!(e))?;
            let tcp = |mss, payload| {
                FrameTemplate::new(&TemplateParams {
                    transport: Transport::Tcp { mss },
                    payload,
                    ..base
                })
            };
            (
                Traffic::Handshake {
                    templates: EmitTemplates {
                        syn: tcp(Some(1460), Payload::Empty),
                        bare: tcp(None, Payload::Empty),
                        request: tcp(None, Payload::Bytes(&c.request)),
                    },
                    client: Box::new(client),
                    events: Arc::clone(&events),
                },
                SinkMode::Handshake {
                    vip: plan.dst_ip,
                    vport: plan.dst_port,
                },
            )
        }
        (None, mode) => {
            let (transport, header) = if mode == Mode::Tcp {
                (Transport::Tcp { mss: None }, TCP_HEADER)
            } else {
                (Transport::Udp, UDP_HEADER)
            };
            let len = usize::from(plan.size) - L4_OFFSET - header;
            let data = FrameTemplate::new(&TemplateParams {
                transport,
                payload: Payload::Signed { len, run_tag },
                ..base
            });
            (
                Traffic::Stream {
                    data,
                    tcp: mode == Mode::Tcp,
                },
                SinkMode::Stream { run_tag },
            )
        }
    };
    let new_sink = || Sink::new(sink_mode, plan.flows, plan.verify_checksums);

    // Threads: RX first, so they poll before the first packet leaves.
    let default_affinity = match (plan.uses_dpdk(), saved_mask) {
        (true, Some(m)) => Affinity::Mask(m),
        _ => Affinity::Inherit,
    };
    let affinity = |i: usize| match &core_ids {
        Some(ids) => Affinity::Core(ids[i % ids.len()]),
        None => default_affinity,
    };
    let clock = Clock::start();
    let setup = |live: &Arc<Live>, i: usize, dpdk: bool| ThreadSetup {
        clock,
        control: Arc::clone(&control),
        live: Arc::clone(live),
        affinity: affinity(i),
        dpdk,
        busy_poll: plan.busy_poll,
        src_mac,
    };
    let events_for_rx =
        matches!(sink_mode, SinkMode::Handshake { .. }).then(|| Arc::clone(&events));
    let mut rx_handles = Vec::new();
    let mut rx_live = Vec::new();
    for (i, p) in plan.rx_ports.iter().enumerate() {
        let (q, dpdk_port) = if *p == plan.tx_port {
            if tx_queues.len() < 2 {
                // One queue only: the TX thread is this port's sink.
                rx_handles.push(None);
                continue;
            }
            let q = tx_queues
                .pop()
                .context("internal: TX port has no RX queue")?;
            (q, tx_dev.is_dpdk())
        } else {
            let (_, dev) = rx_devs
                .iter_mut()
                .find(|(s, _)| s == p)
                .context("internal: RX port not opened")?;
            let q = take_queues(dev)?
                .pop()
                .context("internal: RX port without queue")?;
            (q, dev.is_dpdk())
        };
        let live = Arc::new(Live::default());
        let job = RxJob {
            sink: new_sink(),
            events: events_for_rx.clone(),
            setup: setup(&live, i + 1, dpdk_port),
        };
        rx_handles.push(Some(spawn_rx(q, job, i)?));
        rx_live.push(live);
    }
    let tx_q = tx_queues.pop().context("internal: TX port has no queue")?;
    let tx_live = Arc::new(Live::default());
    let deadline_ns = clock.now_ns() + plan.duration_ns;
    let tx_job = TxJob {
        traffic,
        flows: plan.flows,
        rate_pps: plan.rate,
        count: plan.count,
        deadline_ns,
        sink: new_sink(),
        setup: setup(&tx_live, 0, tx_dev.is_dpdk()),
    };
    let threads = Threads {
        tx: spawn_tx(tx_q, tx_job)?,
        rx: rx_handles,
        tx_live,
        rx_live,
    };

    // Watch: progress, signals, end of sending, drain.
    let handshake = plan.mode == Mode::Handshake;
    let mut interrupted = false;
    let mut prev = Snapshot::default();
    let mut drain_until: Option<u64> = None;
    loop {
        if wait_signal(signals, MAIN_TICK).is_some() {
            if interrupted {
                break;
            }
            interrupted = true;
            control.stop_tx.store(true, Ordering::Relaxed);
        }
        let now = clock.now_ns();
        if now.saturating_sub(prev.at_ns) >= PROGRESS_EVERY_NS {
            let snap = snapshot(&clock, &threads);
            if !plan.quiet {
                eprint!("\r{}   ", progress_line(&prev, &snap, handshake));
            }
            prev = snap;
        }
        match drain_until {
            None => {
                let done = control.tx_done.load(Ordering::Acquire);
                let overdue = now > deadline_ns + TX_GRACE_NS;
                if overdue {
                    control.stop_tx.store(true, Ordering::Relaxed);
                }
                if done || overdue {
                    drain_until = Some(now + plan.drain_ns);
                }
            }
            Some(until) => {
                let snap = snapshot(&clock, &threads);
                let all_back = !handshake && snap.tx > 0 && snap.matched >= snap.tx;
                let clients_idle = handshake && control.tx_idle.load(Ordering::Acquire);
                if now >= until || all_back || clients_idle {
                    break;
                }
            }
        }
    }
    control.stop_all.store(true, Ordering::Relaxed);
    if !plan.quiet {
        let snap = snapshot(&clock, &threads);
        eprintln!("\r{}   ", progress_line(&prev, &snap, handshake));
    }

    let tx = threads
        .tx
        .join()
        .map_err(|_| anyhow!("the TX thread panicked"))?;
    let mut rx_reports = Vec::new();
    for h in threads.rx {
        let r = match h {
            Some(h) => Some(h.join().map_err(|_| anyhow!("an RX thread panicked"))?),
            None => None,
        };
        rx_reports.push(r);
    }

    let tx_stats = tx_dev.stats();
    let port_stats = |p: &PortSpec| {
        if *p == plan.tx_port {
            tx_stats.clone()
        } else {
            rx_devs
                .iter()
                .find(|(s, _)| s == p)
                .map(|(_, d)| d.stats())
                .unwrap_or_default()
        }
    };
    Ok(summarize(
        plan,
        interrupted,
        tx,
        rx_reports,
        tx_is_rx,
        port_stats,
    ))
}

fn summarize(
    plan: &Plan,
    interrupted: bool,
    tx: TxReport,
    rx_reports: Vec<Option<RxReport>>,
    tx_is_rx: bool,
    port_stats: impl Fn(&PortSpec) -> rvs::dataplane::driver::PortStats,
) -> Summary {
    let secs = tx.end_ns.saturating_sub(tx.start_ns) as f64 / 1e9;
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let mut rx = Vec::new();
    let mut latency = LatencyHistogram::new();
    let mut matched = 0u64;
    for (p, r) in plan.rx_ports.iter().zip(&rx_reports) {
        let mut sink = SinkReport::empty();
        let (mut arp_replies, mut events_dropped) = (0, 0);
        if let Some(r) = r {
            sink.merge(&r.sink);
            arp_replies += r.arp_replies;
            events_dropped += r.events_dropped;
        }
        if *p == plan.tx_port {
            sink.merge(&tx.sink);
            arp_replies += tx.arp_replies;
        }
        latency.merge(&sink.latency);
        matched += sink.counts.matched;
        let c = &sink.counts;
        rx.push(RxSummary {
            port: p.to_string(),
            packets: c.packets,
            bytes: c.bytes,
            pps: per_sec(c.packets),
            matched: c.matched,
            duplicates: c.duplicates,
            foreign: c.foreign,
            bad_checksums: c.bad_checksums,
            segments: c.segments,
            arp_replies,
            events_dropped,
            device: port_stats(p),
        });
    }
    let stream = plan.mode != Mode::Handshake;
    let lost = tx.packets.saturating_sub(matched);
    let tcp = tx.tcp.as_ref().map(|t| TcpSummary {
        stats: t.stats,
        open_at_end: t.open_at_end,
        handshakes_per_sec: per_sec(t.stats.handshakes),
        completed_per_sec: per_sec(t.stats.completed),
        handshake_latency_ns: LatencySummary::of(&t.handshake_latency),
        response_latency_ns: LatencySummary::of(&t.response_latency),
    });
    Summary {
        mode: plan.mode.name(),
        flows: plan.flows.flows(),
        src_ips: plan.flows.ips(),
        frame_size: stream.then_some(plan.size),
        rate_limit_pps: plan.rate,
        interrupted,
        tx: TxSummary {
            port: plan.tx_port.to_string(),
            packets: tx.packets,
            bytes: tx.bytes,
            seconds: secs,
            pps: per_sec(tx.packets),
            bits_per_sec: per_sec(tx.bytes) * 8.0,
            nobuf: tx.nobuf,
            unsent: tx.unsent,
            arp_replies: if tx_is_rx { 0 } else { tx.arp_replies },
            rx_ignored: if tx_is_rx { 0 } else { tx.sink.counts.packets },
            device: port_stats(&plan.tx_port),
        },
        rx,
        matched: stream.then_some(matched),
        lost: stream.then_some(lost),
        loss_pct: stream.then(|| {
            if tx.packets > 0 {
                lost as f64 * 100.0 / tx.packets as f64
            } else {
                0.0
            }
        }),
        latency_ns: if stream {
            LatencySummary::of(&latency)
        } else {
            None
        },
        tcp,
    }
}

fn main() -> ExitCode {
    // `lbpktgen --generate-docs DIR` (hidden; the package build): man page
    // and completions from this definition (rvs::docs).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == "--generate-docs" {
        use clap::CommandFactory;
        return match rvs::docs::write(Cli::command(), "1", std::path::Path::new(&args[2])) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lbpktgen: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    let plan = match Plan::from_cli(cli) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("lbpktgen: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let signals = match block_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lbpktgen: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match run(&plan, &signals) {
        Ok(summary) => {
            if plan.json {
                match serde_json::to_string_pretty(&summary) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("lbpktgen: cannot encode the summary: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", summary.to_text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lbpktgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &str) -> anyhow::Result<Plan> {
        let argv = std::iter::once("lbpktgen").chain(args.split_whitespace());
        Plan::from_cli(Cli::try_parse_from(argv)?)
    }

    #[test]
    fn refuses_to_run_unbounded() {
        let e = plan("--port tap:pg0 --dst-ip 198.18.1.1").expect_err("unbounded");
        assert!(e.to_string().contains("--count or --duration"), "{e}");
        assert!(plan("--port tap:pg0 --dst-ip 198.18.1.1 --count 10").is_ok());
        assert!(plan("--port tap:pg0 --dst-ip 198.18.1.1 --duration 1").is_ok());
    }

    #[test]
    fn duration_is_capped() {
        let e = plan("--port tap:pg0 --dst-ip 198.18.1.1 --duration 301").expect_err("cap");
        assert!(e.to_string().contains("300"), "{e}");
        let p = plan("--port tap:pg0 --dst-ip 198.18.1.1 --count 5").expect("count only");
        assert_eq!(
            p.duration_ns, 300_000_000_000,
            "a count alone still ends by the cap"
        );
        let p = plan("--port tap:pg0 --dst-ip 198.18.1.1 --duration 500ms").expect("ms");
        assert_eq!(p.duration_ns, 500_000_000);
    }

    #[test]
    fn sizes_rates_and_modes_are_checked() {
        let base = "--port af_packet:veth0 --dst-ip 198.18.1.1 --count 1";
        assert!(plan(&format!("{base} --size 63")).is_err());
        assert!(plan(&format!("{base} --size 1515")).is_err());
        assert!(plan(&format!("{base} --size 1514 --proto tcp")).is_ok());
        assert!(plan(&format!("{base} --rate 0")).is_err());
        assert_eq!(
            plan(&format!("{base} --rate 1.5M")).expect("rate").rate,
            Some(1.5e6)
        );
        assert!(plan(&format!("{base} --tcp-handshake --size 64")).is_err());
        assert!(plan(&format!("{base} --tcp-handshake --proto udp")).is_err());
        assert!(
            plan(&format!("{base} --concurrency 4")).is_err(),
            "handshake-only option"
        );
        assert!(
            plan(&format!("{base} --eal-args -l0")).is_err(),
            "no dpdk port"
        );
        assert!(plan(&format!("{base} --rx-port tap:a --rx-port tap:a")).is_err());
        let p = plan(&format!("{base} --tcp-handshake")).expect("handshake");
        assert_eq!(
            (p.mode, p.dst_port, p.flows.flows()),
            (Mode::Handshake, 80, 60_000)
        );
        let c = p.client.expect("client plan");
        assert_eq!(c.request, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(c.concurrency, 256);
        assert!(plan(&format!(
            "{base} --tcp-handshake --flows 10 --concurrency 11"
        ))
        .is_err());
        let p = plan(base).expect("stream");
        assert_eq!(
            p.rx_ports,
            vec![p.tx_port.clone()],
            "RX defaults to the TX port"
        );
    }

    #[test]
    fn helpers_parse_their_syntax() {
        assert_eq!(parse_rate("20k"), Ok(20_000.0));
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_duration("2.5"), Ok(2.5));
        assert_eq!(parse_duration("250ms"), Ok(0.25));
        assert!(parse_duration("-1").is_err());
        assert_eq!(unescape("a\\r\\n\\\\b"), Ok(b"a\r\n\\b".to_vec()));
        assert!(unescape("\\q").is_err());
        assert_eq!(parse_cores("0,2-4"), Ok(vec![0, 2, 3, 4]));
        assert!(parse_cores("3-1").is_err());
        assert!(parse_cores("").is_err());
    }
}
