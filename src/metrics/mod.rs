//! metrics — `lbd`'s Prometheus exporter: `GET /metrics` on
//! `metrics.listen` (YAML) or `lbd --metrics-listen ADDR:PORT`; off unless
//! one of them is set.
//!
//! Owns the exporter's HTTP listener and thread ([`Exporter`]) and the
//! [`RvsCollector`], which turns what `lbctl` would list into metric
//! families at scrape time.
//!
//! Rules:
//! * The hot path never touches the metrics library. Nothing is registered
//!   or updated while packets flow: on each scrape the collector asks the
//!   [`Control`] the same questions `lbctl` asks (`-Ln --stats --exact`,
//!   `--dataplane-stats`, `--port-stats`, and `--vrrp` when VRRP instances
//!   run), which sum the per-core
//!   counters with relaxed reads, and encodes the answers; the workers'
//!   FULLNAT pool use is read from the per-core counters the same way.
//! * The exposition is written by the `prometheus-client` crate (OpenMetrics
//!   text), never formatted by hand here; HTTP is `tiny_http` on one control
//!   thread (scrapes are served one at a time; a scrape holds the
//!   configuration lock only as long as a listing does).
//! * Names follow Prometheus conventions: `rvs_` prefix, base units
//!   (bytes), counters end in `_total`; labels `proto`, `vip` and `rip`
//!   (`ADDR:PORT`, as `ipvsadm -Ln` prints them), `worker`, `reason`, `port`
//!   (the port's name). The README has the table of names.
//! * The listener is bound before the daemon opens any device (a taken
//!   address fails start-up early, with the address in the message); it is
//!   closed and its thread joined by [`Exporter::stop`].
//! * Health state of real servers is not exported yet: the checker (its own
//!   issue) will add `rvs_real_server_up` in [`encode_real_servers`], from
//!   the same listing.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::ctl::protocol::{PortStatsInfo, Request, Response, ServiceInfo, WorkerStatsInfo};
use crate::ctl::server::Control;

/// The content type of the exposition (OpenMetrics text 1.0.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The path the exporter serves.
pub const METRICS_PATH: &str = "/metrics";

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error("metrics: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server could not be set up on the bound socket.
    #[error("metrics: cannot serve HTTP on {addr}: {message}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// tiny_http's message.
        message: String,
    },
    /// The serving thread could not be started.
    #[error("metrics: cannot start the exporter thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A bound, not yet serving, exporter socket (bound before the daemon
/// opens its devices).
pub struct MetricsListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsListener {
    /// Binds `addr` (port 0: any free port; see [`MetricsListener::local_addr`]).
    pub fn bind(addr: SocketAddr) -> Result<MetricsListener, MetricsError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        Ok(MetricsListener { listener, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts serving `/metrics` for `control` on a control thread.
    pub fn serve(self, control: Arc<Control>) -> Result<Exporter, MetricsError> {
        let addr = self.addr;
        let server = tiny_http::Server::from_listener(self.listener, None).map_err(|e| {
            MetricsError::Http {
                addr,
                message: e.to_string(),
            }
        })?;
        let server = Arc::new(server);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(RvsCollector { control }));
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&serving, &registry))
            .map_err(MetricsError::Thread)?;
        Ok(Exporter {
            server,
            thread: Some(thread),
            addr,
        })
    }
}

/// The running exporter.
pub struct Exporter {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Exporter {
    /// The address it serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: wakes the thread, joins it, closes the listener.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                eprintln!("lbd: the metrics thread panicked");
            }
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The serving loop: one request at a time until [`Exporter::stop`]
/// unblocks it.
fn serve(server: &tiny_http::Server, registry: &Registry) {
    // `recv` fails only when unblocked (or the listener broke): stop then.
    while let Ok(request) = server.recv() {
        let response = answer(request.method(), request.url(), registry);
        // A scraper that hung up is not our problem.
        let _ = request.respond(response);
    }
}

/// The answer to one request: the exposition for `GET /metrics`, a short
/// plain-text error otherwise.
fn answer(
    method: &tiny_http::Method,
    url: &str,
    registry: &Registry,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let path = url.split('?').next().unwrap_or(url);
    let (status, content_type, body) = if path != METRICS_PATH {
        (
            404,
            "text/plain; charset=utf-8",
            format!("not found: try {METRICS_PATH}\n"),
        )
    } else if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        (405, "text/plain; charset=utf-8", "only GET\n".to_string())
    } else {
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, registry) {
            Ok(()) => (200, CONTENT_TYPE, text),
            Err(fmt::Error) => (
                500,
                "text/plain; charset=utf-8",
                "could not encode the metrics\n".to_string(),
            ),
        }
    };
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", content_type) {
        response.add_header(header);
    }
    response
}

/// Renders the exposition for `control` once (what a scrape returns).
pub fn render(control: Arc<Control>) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RvsCollector { control }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// Reads the daemon's listings at scrape time and encodes them.
pub struct RvsCollector {
    control: Arc<Control>,
}

impl fmt::Debug for RvsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RvsCollector")
    }
}

impl Collector for RvsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let (services, table_size) = match self
            .control
            .handle(&Request::ListServices { service: None })
        {
            Response::Services {
                services,
                conn_table_size,
            } => (services, conn_table_size),
            _ => (Vec::new(), 0),
        };
        let workers = match self.control.handle(&Request::DataplaneStats) {
            Response::DataplaneStats { workers } => workers,
            _ => Vec::new(),
        };
        let ports = match self.control.handle(&Request::PortStats) {
            Response::PortStats { ports } => ports,
            _ => Vec::new(),
        };
        gauge(
            &mut encoder,
            "rvs_build_info",
            "rvs version (value 1)",
            None,
            &[(vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1)],
        )?;
        gauge(
            &mut encoder,
            "rvs_config_generation",
            "Generation of the configuration snapshot in force",
            None,
            &[(
                Vec::<(&str, String)>::new(),
                self.control.state().generation(),
            )],
        )?;
        encode_services(&mut encoder, &services)?;
        encode_real_servers(&mut encoder, &services)?;
        if let Response::Health { servers } = self.control.handle(&Request::Health) {
            encode_health(&mut encoder, &servers)?;
        }
        let per_worker = table_size.checked_div(workers.len() as u64).unwrap_or(0);
        let pool_use: Vec<u64> = self
            .control
            .counters()
            .iter()
            .map(|c| c.fullnat_ports_in_use.load(Ordering::Relaxed))
            .collect();
        encode_workers(&mut encoder, &workers, per_worker, &pool_use)?;
        encode_ports(&mut encoder, &ports)?;
        match self.control.handle(&Request::Vrrp) {
            Response::Vrrp { instances } if !instances.is_empty() => {
                encode_vrrp(&mut encoder, &instances)
            }
            _ => Ok(()),
        }
    }
}

/// Per VRRP instance (`lbctl --vrrp`): mastership, effective priority,
/// adverts sent / received / rejected by reason, dual-master alarms.
fn encode_vrrp(
    enc: &mut DescriptorEncoder,
    instances: &[crate::ctl::protocol::VrrpInstanceInfo],
) -> fmt::Result {
    let rows = |f: fn(&crate::ctl::protocol::VrrpInstanceInfo) -> u64| -> Vec<(Labels, u64)> {
        instances
            .iter()
            .map(|i| (vec![("instance", i.name.clone())], f(i)))
            .collect()
    };
    gauge(
        enc,
        "rvs_vrrp_master",
        "1 while this director is MASTER of the VRRP instance",
        None,
        &rows(|i| u64::from(i.state == "MASTER")),
    )?;
    gauge(
        enc,
        "rvs_vrrp_priority",
        "Effective VRRP priority",
        None,
        &rows(|i| u64::from(i.effective_priority)),
    )?;
    counter(
        enc,
        "rvs_vrrp_adverts_sent",
        "VRRP adverts sent",
        None,
        &rows(|i| i.adverts_sent),
    )?;
    counter(
        enc,
        "rvs_vrrp_adverts_received",
        "Valid VRRP adverts received",
        None,
        &rows(|i| i.adverts_received),
    )?;
    counter(
        enc,
        "rvs_vrrp_dual_master_alarms",
        "Dual-master alarms (another live master, or its adverts rejected while MASTER)",
        None,
        &rows(|i| i.dual_master_alarms),
    )?;
    let rejected: Vec<(Labels, u64)> = instances
        .iter()
        .flat_map(|i| {
            i.rejects.iter().map(|(reason, n)| {
                (
                    vec![("instance", i.name.clone()), ("reason", reason.clone())],
                    *n,
                )
            })
        })
        .collect();
    counter(
        enc,
        "rvs_vrrp_adverts_rejected",
        "VRRP adverts rejected, by keepalived's receive check that failed",
        None,
        &rejected,
    )
}

/// Label set: label names with their values.
type Labels = Vec<(&'static str, String)>;

/// One counter family with its samples.
fn counter<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(L, u64)],
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// One gauge family with its samples.
fn gauge<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(L, u64)],
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// `proto`, `vip` of a service (`vip` as `ADDR:PORT`, IPv6 in brackets).
fn service_labels(s: &ServiceInfo) -> Labels {
    let key = s.spec.key;
    vec![
        ("proto", key.proto.name().to_ascii_lowercase()),
        ("vip", SocketAddr::new(key.addr, key.port).to_string()),
    ]
}

/// Per service: traffic counters and configured FULLNAT local addresses.
fn encode_services(enc: &mut DescriptorEncoder, services: &[ServiceInfo]) -> fmt::Result {
    let bytes = Unit::Bytes;
    let rows = |f: fn(&ServiceInfo) -> u64| -> Vec<(Labels, u64)> {
        services.iter().map(|s| (service_labels(s), f(s))).collect()
    };
    counter(
        enc,
        "rvs_service_connections",
        "Connections scheduled to the service",
        None,
        &rows(|s| s.stats.conns),
    )?;
    counter(
        enc,
        "rvs_service_in_packets",
        "Packets client to server",
        None,
        &rows(|s| s.stats.inpkts),
    )?;
    counter(
        enc,
        "rvs_service_out_packets",
        "Packets server to client",
        None,
        &rows(|s| s.stats.outpkts),
    )?;
    counter(
        enc,
        "rvs_service_in",
        "Bytes client to server",
        Some(&bytes),
        &rows(|s| s.stats.inbytes),
    )?;
    counter(
        enc,
        "rvs_service_out",
        "Bytes server to client",
        Some(&bytes),
        &rows(|s| s.stats.outbytes),
    )?;
    gauge(
        enc,
        "rvs_service_local_addresses",
        "FULLNAT local addresses configured for the service",
        None,
        &rows(|s| s.laddrs.len() as u64),
    )
}

/// Per real server: traffic counters, connection counts, weight.
fn encode_real_servers(enc: &mut DescriptorEncoder, services: &[ServiceInfo]) -> fmt::Result {
    let bytes = Unit::Bytes;
    let rows = |f: fn(&crate::ctl::protocol::DestInfo) -> u64| -> Vec<(Labels, u64)> {
        services
            .iter()
            .flat_map(|s| {
                s.dests.iter().map(move |d| {
                    let mut labels = service_labels(s);
                    labels.push(("rip", SocketAddr::new(d.spec.addr, d.spec.port).to_string()));
                    (labels, f(d))
                })
            })
            .collect()
    };
    counter(
        enc,
        "rvs_real_server_connections",
        "Connections scheduled to the real server",
        None,
        &rows(|d| d.stats.conns),
    )?;
    counter(
        enc,
        "rvs_real_server_in_packets",
        "Packets client to real server",
        None,
        &rows(|d| d.stats.inpkts),
    )?;
    counter(
        enc,
        "rvs_real_server_out_packets",
        "Packets real server to client",
        None,
        &rows(|d| d.stats.outpkts),
    )?;
    counter(
        enc,
        "rvs_real_server_in",
        "Bytes client to real server",
        Some(&bytes),
        &rows(|d| d.stats.inbytes),
    )?;
    counter(
        enc,
        "rvs_real_server_out",
        "Bytes real server to client",
        Some(&bytes),
        &rows(|d| d.stats.outbytes),
    )?;
    gauge(
        enc,
        "rvs_real_server_active_connections",
        "Active connections (ipvsadm ActiveConn)",
        None,
        &rows(|d| d.active_conns),
    )?;
    gauge(
        enc,
        "rvs_real_server_inactive_connections",
        "Inactive connections (ipvsadm InActConn)",
        None,
        &rows(|d| d.inactive_conns),
    )?;
    gauge(
        enc,
        "rvs_real_server_persistent_connections",
        "Persistence templates pointing at the real server",
        None,
        &rows(|d| d.persist_conns),
    )?;
    gauge(
        enc,
        "rvs_real_server_weight",
        "Configured weight (0: quiesced)",
        None,
        &rows(|d| u64::from(d.spec.weight)),
    )
}

/// Per checked real server: the health checker's verdict (1 alive, 0
/// dead; a dead server without `inhibit_on_failure` is absent from the
/// other real-server families, as from `-Ln`).
fn encode_health(
    enc: &mut DescriptorEncoder,
    servers: &[crate::ctl::protocol::HealthInfo],
) -> fmt::Result {
    let rows: Vec<(Labels, u64)> = servers
        .iter()
        .map(|h| {
            let key = h.service;
            let labels = vec![
                ("proto", key.proto.name().to_ascii_lowercase()),
                ("vip", SocketAddr::new(key.addr, key.port).to_string()),
                ("rip", SocketAddr::new(h.addr, h.port).to_string()),
            ];
            (labels, u64::from(h.alive))
        })
        .collect();
    gauge(
        enc,
        "rvs_real_server_up",
        "Health checker verdict: 1 alive (every checker up), 0 dead",
        None,
        &rows,
    )
}

/// Per worker: rx/tx, steering, connections, table occupancy, FULLNAT
/// pool use (`pool_use[i]`: worker i's local ports in use), drops, SYN
/// proxy events.
fn encode_workers(
    enc: &mut DescriptorEncoder,
    workers: &[WorkerStatsInfo],
    capacity: u64,
    pool_use: &[u64],
) -> fmt::Result {
    let labels = |w: &WorkerStatsInfo| -> Labels { vec![("worker", w.worker.to_string())] };
    let rows = |f: fn(&WorkerStatsInfo) -> u64| -> Vec<(Labels, u64)> {
        workers.iter().map(|w| (labels(w), f(w))).collect()
    };
    counter(
        enc,
        "rvs_worker_rx_packets",
        "Packets the worker received from devices",
        None,
        &rows(|w| w.rx_packets),
    )?;
    counter(
        enc,
        "rvs_worker_tx_packets",
        "Packets the worker handed to devices",
        None,
        &rows(|w| w.tx_packets),
    )?;
    counter(
        enc,
        "rvs_worker_steered_in_packets",
        "Packets received from another worker's steering ring",
        None,
        &rows(|w| w.steered_in),
    )?;
    counter(
        enc,
        "rvs_worker_steered_out_packets",
        "Packets handed to the owning worker's steering ring",
        None,
        &rows(|w| w.steered_out),
    )?;
    counter(
        enc,
        "rvs_worker_connections_created",
        "Connections the worker created",
        None,
        &rows(|w| w.conns_created),
    )?;
    counter(
        enc,
        "rvs_worker_connections_expired",
        "Connections the worker expired",
        None,
        &rows(|w| w.conns_expired),
    )?;
    gauge(
        enc,
        "rvs_worker_connections",
        "Entries in the worker's connection table",
        None,
        &rows(|w| w.conns_now),
    )?;
    let cap: Vec<(Labels, u64)> = workers.iter().map(|w| (labels(w), capacity)).collect();
    gauge(
        enc,
        "rvs_worker_connection_table_capacity",
        "Capacity of the worker's connection table",
        None,
        &cap,
    )?;
    let pool: Vec<(Labels, u64)> = workers
        .iter()
        .map(|w| {
            let used = pool_use.get(usize::from(w.worker)).copied().unwrap_or(0);
            (labels(w), used)
        })
        .collect();
    gauge(
        enc,
        "rvs_worker_fullnat_ports_in_use",
        "FULLNAT local ports held by the worker's connections",
        None,
        &pool,
    )?;
    let drops: Vec<(Labels, u64)> = workers
        .iter()
        .flat_map(|w| {
            w.drops.iter().map(move |d| {
                (
                    vec![
                        ("worker", w.worker.to_string()),
                        ("reason", d.reason.clone()),
                    ],
                    d.packets,
                )
            })
        })
        .collect();
    counter(
        enc,
        "rvs_worker_dropped_packets",
        "Packets the worker dropped, by reason (every drop has one)",
        None,
        &drops,
    )?;
    let synproxy: Vec<(Labels, u64)> = workers
        .iter()
        .flat_map(|w| {
            w.synproxy.named().into_iter().map(move |(event, n)| {
                (
                    vec![
                        ("worker", w.worker.to_string()),
                        ("event", event.to_string()),
                    ],
                    n,
                )
            })
        })
        .collect();
    counter(
        enc,
        "rvs_worker_synproxy_events",
        "SYN proxy events, by the name --dataplane-stats gives them",
        None,
        &synproxy,
    )
}

/// Per port: the device's counters.
fn encode_ports(enc: &mut DescriptorEncoder, ports: &[PortStatsInfo]) -> fmt::Result {
    let bytes = Unit::Bytes;
    let rows = |f: fn(&PortStatsInfo) -> u64| -> Vec<(Labels, u64)> {
        ports
            .iter()
            .map(|p| (vec![("port", p.name.clone())], f(p)))
            .collect()
    };
    counter(
        enc,
        "rvs_port_rx_packets",
        "Packets the device received",
        None,
        &rows(|p| p.rx_packets),
    )?;
    counter(
        enc,
        "rvs_port_rx",
        "Bytes the device received",
        Some(&bytes),
        &rows(|p| p.rx_bytes),
    )?;
    counter(
        enc,
        "rvs_port_tx_packets",
        "Packets the device sent",
        None,
        &rows(|p| p.tx_packets),
    )?;
    counter(
        enc,
        "rvs_port_tx",
        "Bytes the device sent",
        Some(&bytes),
        &rows(|p| p.tx_bytes),
    )?;
    counter(
        enc,
        "rvs_port_rx_missed_packets",
        "Packets the device dropped for lack of room in its receive queues (imissed)",
        None,
        &rows(|p| p.rx_missed),
    )?;
    counter(
        enc,
        "rvs_port_rx_errors",
        "Erroneous received packets (ierrors)",
        None,
        &rows(|p| p.rx_errors),
    )?;
    counter(
        enc,
        "rvs_port_tx_errors",
        "Failed transmissions (oerrors)",
        None,
        &rows(|p| p.tx_errors),
    )?;
    counter(
        enc,
        "rvs_port_rx_no_buffer",
        "Receive buffer allocation failures (rx_nombuf)",
        None,
        &rows(|p| p.rx_nombuf),
    )
}
