//! ctl::ipvsadm::format — daemon responses printed exactly as ipvsadm 1.31
//! prints them, or as JSON.
//!
//! Owns the text of every listing: `-L`/`-Ln` (version header, title, service
//! and real-server lines), `--stats`, `--rate`, `--exact`, `--thresholds`,
//! `--persistent-conn`, `--tun-info`, `-Lc`, `--timeout`, `-S` (which
//! [`super::parse_restore`] reads back), DPVS's `-G` local-address table, and
//! rvs's `--port-stats` and `--dataplane-stats` tables.
//!
//! Rules:
//! * Each format string is ipvsadm's printf format translated one to one
//!   (`%-28s` → `{:<28}`, `%8s` → `{:>8}`; IPv4 names are cut at 33 and 28
//!   characters as ipvsadm cuts them); the originals are quoted next to them.
//! * Addresses are always numeric (ipvsadm without `-n` resolves names).
//! * Services are sorted by (family, protocol, address, port) and real
//!   servers by (family, address, port) unless `--nosort`, as ipvsadm does
//!   (`ipvs_cmp_services`, `ipvs_cmp_dests`), but comparing addresses as
//!   numbers. Connections are printed in the daemon's order.
//! * JSON output is the daemon's response, sorted like the text.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{ListCommand, ListOptions, ListWhat, OutputFormat, IPVS_VERSION};
use crate::conntrack::Fwd;
use crate::ctl::protocol::{
    ConnInfo, DestInfo, ErrorKind, Netmask, PortStatsInfo, Response, ServiceInfo, ServiceKey,
    ServiceLaddrs, SynproxyStats, Timeouts, WorkerStatsInfo,
};

/// Why a response could not be printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The daemon answered with an error; the message is printed as is.
    #[error("{message}")]
    Daemon {
        /// Error class.
        kind: ErrorKind,
        /// The daemon's message.
        message: String,
    },
    /// The daemon answered with the wrong kind of response.
    #[error("unexpected {got} response from lbd to a {expected} request")]
    Unexpected {
        /// Response type the listing needs.
        expected: &'static str,
        /// Response type received.
        got: &'static str,
    },
    /// JSON encoding failed.
    #[error("cannot encode JSON output: {0}")]
    Json(String),
}

/// Prints `response` as the listing `cmd` asks for.
pub fn render(cmd: &ListCommand, response: &Response) -> Result<String, RenderError> {
    if let Response::Error { kind, message } = response {
        return Err(RenderError::Daemon {
            kind: *kind,
            message: message.clone(),
        });
    }
    let expected = expected_response(&cmd.what);
    let got = response_type(response);
    if expected != got {
        return Err(RenderError::Unexpected { expected, got });
    }
    let options = &cmd.options;
    let mut response = response.clone();
    if let Response::Services { services, .. } = &mut response {
        if !options.nosort {
            sort_services(services);
        }
    }
    if options.output == OutputFormat::Json {
        return render_json(&response);
    }
    Ok(match (&cmd.what, &response) {
        (
            ListWhat::All,
            Response::Services {
                services,
                conn_table_size,
            },
        ) => {
            let mut out =
                format!("IP Virtual Server version {IPVS_VERSION} (size={conn_table_size})\n");
            out.push_str(&render_services(services, options));
            out
        }
        (ListWhat::Service(_), Response::Services { services, .. }) => {
            render_services(services, options)
        }
        (ListWhat::Rules, Response::Services { services, .. }) => render_rules(services),
        (ListWhat::Conns, Response::Conns { conns, .. }) => render_conns(conns, options),
        (ListWhat::Timeouts, Response::Timeouts { timeouts }) => render_timeouts(timeouts),
        (ListWhat::Laddrs(_), Response::Laddrs { services }) => render_laddrs(services),
        (ListWhat::PortStats, Response::PortStats { ports }) => {
            render_port_stats(ports, options.exact)
        }
        (ListWhat::DataplaneStats, Response::DataplaneStats { workers }) => {
            render_dataplane_stats(workers, options.exact)
        }
        (ListWhat::Vrrp, Response::Vrrp { instances }) => render_vrrp(instances),
        (ListWhat::Health, Response::Health { servers }) => render_health(servers),
        (ListWhat::Daemon, Response::Daemon { status }) => render_daemon(status, options.exact),
        _ => return Err(RenderError::Unexpected { expected, got }),
    })
}

fn expected_response(what: &ListWhat) -> &'static str {
    match what {
        ListWhat::All | ListWhat::Service(_) | ListWhat::Rules => "services",
        ListWhat::Conns => "conns",
        ListWhat::Timeouts => "timeouts",
        ListWhat::Laddrs(_) => "laddrs",
        ListWhat::PortStats => "port_stats",
        ListWhat::DataplaneStats => "dataplane_stats",
        ListWhat::Vrrp => "vrrp",
        ListWhat::Health => "health",
        ListWhat::Daemon => "daemon",
    }
}

fn response_type(response: &Response) -> &'static str {
    match response {
        Response::Ok { .. } => "ok",
        Response::Error { .. } => "error",
        Response::Services { .. } => "services",
        Response::Conns { .. } => "conns",
        Response::Timeouts { .. } => "timeouts",
        Response::Laddrs { .. } => "laddrs",
        Response::Version { .. } => "version",
        Response::PortStats { .. } => "port_stats",
        Response::DataplaneStats { .. } => "dataplane_stats",
        Response::Health { .. } => "health",
        Response::Daemon { .. } => "daemon",
        Response::Reloaded { .. } => "reloaded",
        Response::Vrrp { .. } => "vrrp",
        Response::Announce { .. } => "announce",
    }
}

/// `lbctl --vrrp`: one block per instance (state, priority, master,
/// interval, transitions with time, rejects by reason).
fn render_vrrp(instances: &[crate::ctl::protocol::VrrpInstanceInfo]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if instances.is_empty() {
        out.push_str("no VRRP instance\n");
    }
    for i in instances {
        let vips: Vec<String> = i.vips.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "VRRP instance {} (VRID {}, v{}, {}): {}",
            i.name, i.vrid, i.version, i.interface, i.state
        );
        let _ = writeln!(
            out,
            "  priority {} (effective {}), advert_int {}.{:02} s, master {}",
            i.priority,
            i.effective_priority,
            i.advert_int_cs / 100,
            i.advert_int_cs % 100,
            i.master.map_or_else(|| "-".to_string(), |m| m.to_string())
        );
        let _ = writeln!(out, "  virtual_ipaddress {}", vips.join(" "));
        let _ = writeln!(
            out,
            "  adverts sent {}, received {}, dual-master alarms {}",
            i.adverts_sent, i.adverts_received, i.dual_master_alarms
        );
        let rejects: Vec<String> = i.rejects.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(out, "  rejected: {}", rejects.join(", "));
        for (ms, state) in &i.transitions {
            let _ = writeln!(out, "  {}.{:03} {state}", ms / 1000, ms % 1000);
        }
    }
    out
}

/// `-L --daemon`: ipvsadm's line per running sync daemon; with
/// `--exact` (rvs) the counters follow, one `name value` line each.
fn render_daemon(status: &crate::sync::service::SyncStatus, stats: bool) -> String {
    let mut out = String::new();
    for d in &status.daemons {
        out.push_str(&d.listing());
        out.push('\n');
    }
    if stats {
        for c in &status.counters {
            out.push_str(&format!("{:<22} {}\n", c.name, c.value));
        }
        for p in &status.peers {
            out.push_str(&format!(
                "peer {} messages {} conns {} last {} ms ago\n",
                p.addr, p.messages, p.conns, p.last_ms_ago
            ));
        }
    }
    out
}

/// The response as pretty-printed JSON, newline-terminated.
pub fn render_json(response: &Response) -> Result<String, RenderError> {
    let mut text =
        serde_json::to_string_pretty(response).map_err(|e| RenderError::Json(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// Address sort key: IPv4 before IPv6, then numerically.
fn addr_order(addr: &IpAddr) -> (u8, u128) {
    match addr {
        IpAddr::V4(a) => (0, u128::from(u32::from(*a))),
        IpAddr::V6(a) => (1, u128::from(*a)),
    }
}

fn service_order(key: &ServiceKey) -> (u8, u8, u128, u16) {
    let (family, addr) = addr_order(&key.addr);
    (family, key.proto.number(), addr, key.port)
}

/// ipvsadm's default order: services by (family, protocol, address, port),
/// each service's real servers by (family, address, port).
pub fn sort_services(services: &mut [ServiceInfo]) {
    services.sort_by_key(|s| service_order(&s.spec.key));
    for service in services.iter_mut() {
        service
            .dests
            .sort_by_key(|d| (addr_order(&d.spec.addr), d.spec.port));
    }
}

/// `addrport_to_anyname` with `FMT_NUMERIC`: `a.b.c.d:port` or `[v6]:port`.
pub fn addr_port(addr: &IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `snprintf(svc_name, "%-4s %s", ...)`, cut at 33 characters for IPv4.
fn service_name(key: &ServiceKey) -> String {
    let mut name = format!("{:<4} {}", key.proto.name(), addr_port(&key.addr, key.port));
    if key.addr.is_ipv4() {
        name.truncate(33);
    }
    name
}

/// Real-server name, cut at 28 characters for IPv4 (`dname[28] = '\0'`).
fn dest_name(addr: &IpAddr, port: u16) -> String {
    let mut name = addr_port(addr, port);
    if addr.is_ipv4() {
        name.truncate(28);
    }
    name
}

/// ipvsadm's `print_largenum`: 9 columns, scaled to K/M/G/T unless `--exact`.
pub fn largenum(n: u64, exact: bool) -> String {
    if exact {
        // printf("%*llu", len <= 8 ? 9 : len + 1, i)
        let len = n.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        return format!("{n:>width$}");
    }
    if n < 100_000_000 {
        format!("{n:>9}")
    } else if n < 1_000_000_000 {
        format!("{:>8}K", n / 1_000)
    } else if n < 100_000_000_000 {
        format!("{:>8}M", n / 1_000_000)
    } else if n < 100_000_000_000_000 {
        format!("{:>8}G", n / 1_000_000_000)
    } else {
        format!("{:>8}T", n / 1_000_000_000_000)
    }
}

/// ipvsadm's `print_title` (precedence: stats, rate, thresholds,
/// persistent-conn, tun-info, plain).
fn title(options: &ListOptions) -> String {
    const PROT: &str = "Prot LocalAddress:Port";
    if options.stats || options.rate {
        // "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n"
        let cols = if options.stats {
            ["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]
        } else {
            ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]
        };
        format!(
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            cols[0], cols[1], cols[2], cols[3], cols[4]
        )
    } else if options.thresholds {
        // "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n"
        format!(
            "{PROT:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if options.persistent_conn {
        // "%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n"
        format!(
            "{PROT:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else if options.tun_info {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n".to_string()
    } else {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string()
    }
}

/// Title plus every service (callers sort first).
fn render_services(services: &[ServiceInfo], options: &ListOptions) -> String {
    let mut out = title(options);
    for service in services {
        service_entry(&mut out, service, options);
    }
    out
}

/// ipvsadm's `print_service_entry` for the listing formats.
fn service_entry(out: &mut String, service: &ServiceInfo, options: &ListOptions) {
    let spec = &service.spec;
    let name = service_name(&spec.key);
    let exact = options.exact;
    if options.stats || options.rate {
        // printf("%-33s", svc_name); print_largenum x5
        let values = if options.stats {
            let s = &service.stats;
            [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes]
        } else {
            let r = &service.rates;
            [r.cps, r.inpps, r.outpps, r.inbps, r.outbps]
        };
        let _ = write!(out, "{name:<33}");
        for v in values {
            out.push_str(&largenum(v, exact));
        }
    } else {
        // printf("%s %s", svc_name, se->sched_name) and the flags
        let _ = write!(out, "{name} {}", spec.scheduler);
        if !spec.sched_flags.is_empty() {
            let _ = write!(out, " ({})", spec.sched_flags.join(","));
        }
        if let Some(timeout) = spec.persistent {
            let _ = write!(out, " persistent {timeout}");
            if !spec.netmask.is_host() {
                let _ = write!(out, " mask {}", netmask_text(&spec.netmask));
            }
            if let Some(pe) = &spec.pe {
                let _ = write!(out, " pe {pe}");
            }
        }
        if spec.ops {
            out.push_str(" ops");
        }
    }
    out.push('\n');
    for dest in &service.dests {
        dest_entry(out, dest, options);
    }
}

fn netmask_text(mask: &Netmask) -> String {
    match mask {
        Netmask::V4(m) => m.to_string(),
        Netmask::V6(prefix) => prefix.to_string(),
    }
}

/// `fwd_tun_info`: "ipip" for tunnel real servers, ipvsadm's NA otherwise.
fn tunnel_info(dest: &DestInfo) -> &'static str {
    match dest.spec.fwd {
        Fwd::Tun => "ipip",
        _ => "n/a",
    }
}

/// One real-server line of a listing.
fn dest_entry(out: &mut String, dest: &DestInfo, options: &ListOptions) {
    let spec = &dest.spec;
    let name = dest_name(&spec.addr, spec.port);
    let exact = options.exact;
    if options.stats {
        // printf("  -> %-28s", dname); print_largenum x5
        let s = &dest.stats;
        let _ = write!(out, "  -> {name:<28}");
        for v in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
            out.push_str(&largenum(v, exact));
        }
        out.push('\n');
    } else if options.rate {
        // "  -> %-28s %8llu %8llu %8llu" then print_largenum x2
        let r = &dest.rates;
        let _ = write!(
            out,
            "  -> {name:<28} {:>8} {:>8} {:>8}",
            r.cps, r.inpps, r.outpps
        );
        out.push_str(&largenum(r.inbps, exact));
        out.push_str(&largenum(r.outbps, exact));
        out.push('\n');
    } else if options.thresholds {
        // "  -> %-28s %-10u %-10u %-10u %-10u\n"
        let _ = writeln!(
            out,
            "  -> {name:<28} {:<10} {:<10} {:<10} {:<10}",
            spec.u_threshold, spec.l_threshold, dest.active_conns, dest.inactive_conns
        );
    } else if options.persistent_conn {
        // "  -> %-28s %-9u %-11u %-10u %-10u\n"
        let _ = writeln!(
            out,
            "  -> {name:<28} {:<9} {:<11} {:<10} {:<10}",
            spec.weight, dest.persist_conns, dest.active_conns, dest.inactive_conns
        );
    } else if options.tun_info {
        // "  -> %-28s %-7s %-13s %-6d %-10u %-10u\n"
        let _ = writeln!(
            out,
            "  -> {name:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
            spec.fwd.name(),
            tunnel_info(dest),
            spec.weight,
            dest.active_conns,
            dest.inactive_conns
        );
    } else {
        // "  -> %-28s %-7s %-6d %-10u %-10u\n"
        let _ = writeln!(
            out,
            "  -> {name:<28} {:<7} {:<6} {:<10} {:<10}",
            spec.fwd.name(),
            spec.weight,
            dest.active_conns,
            dest.inactive_conns
        );
    }
}

/// `-S`: services as `-A`/`-a` rules (ipvsadm's `FMT_RULE`), plus `-P` lines
/// for FULLNAT local addresses. Thresholds are not saved (as in ipvsadm).
pub fn render_rules(services: &[ServiceInfo]) -> String {
    let mut out = String::new();
    for service in services {
        let spec = &service.spec;
        let selector = match spec.key.proto {
            crate::conntrack::Proto::Tcp => "-t",
            crate::conntrack::Proto::Udp => "-u",
        };
        let svc = format!("{selector} {}", addr_port(&spec.key.addr, spec.key.port));
        // printf("-A %s -s %s", svc_name, se->sched_name)
        let _ = write!(out, "-A {svc} -s {}", spec.scheduler);
        if let Some(timeout) = spec.persistent {
            let _ = write!(out, " -p {timeout}");
            if !spec.netmask.is_host() {
                let _ = write!(out, " -M {}", netmask_text(&spec.netmask));
            }
        }
        if let Some(pe) = &spec.pe {
            let _ = write!(out, " --pe {pe}");
        }
        if spec.ops {
            out.push_str(" -o");
        }
        if spec.synproxy {
            out.push_str(" --synproxy");
        }
        if !spec.sched_flags.is_empty() {
            let _ = write!(out, " -b {}", spec.sched_flags.join(","));
        }
        out.push('\n');
        for dest in &service.dests {
            let d = &dest.spec;
            // "-a %s -r %s %s -w %d" (+ " --tun-type ipip" for tunnels)
            let _ = write!(
                out,
                "-a {svc} -r {} {} -w {}",
                addr_port(&d.addr, d.port),
                d.fwd.switch(),
                d.weight
            );
            if d.fwd == Fwd::Tun {
                out.push_str(" --tun-type ipip");
            }
            out.push('\n');
        }
        for laddr in &service.laddrs {
            let _ = write!(out, "-P {svc} -z {}", laddr.addr);
            if let Some(ifname) = &laddr.ifname {
                let _ = write!(out, " -F {ifname}");
            }
            out.push('\n');
        }
    }
    out
}

/// `-Lc`: ipvsadm's `list_conn` / `print_conn` (expiry as `mm:ss`).
pub fn render_conns(conns: &[ConnInfo], options: &ListOptions) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if options.persistent_conn {
        // "pro expire %-11s %-18s %-18s %-18s %-16s %s\n"
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        // "pro expire %-11s %-18s %-18s %s\n"
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    for conn in conns {
        let seconds = conn.expires_ms / 1000;
        let expire = format!("{:02}:{:02}", seconds / 60, seconds % 60);
        let client = addr_port(&conn.client.ip(), conn.client.port());
        let virt = addr_port(&conn.vaddr.ip(), conn.vaddr.port());
        let dest = addr_port(&conn.daddr.ip(), conn.daddr.port());
        // rvs: with --persistent-conn a synced connection without a
        // persistence engine says so in the pe columns ("-", "synced").
        let synced = (conn.synced && conn.pe_name.is_none())
            .then(|| ("-".to_string(), "synced".to_string()));
        let pe = match &synced {
            Some((n, d)) => (Some(n), Some(d)),
            None => (conn.pe_name.as_ref(), conn.pe_data.as_ref()),
        };
        match (pe.0, pe.1, options.persistent_conn) {
            (Some(pe_name), Some(pe_data), true) => {
                // "%-3s %-6s %-11s %-18s %-18s %-16s %-18s %s\n"
                let _ = writeln!(
                    out,
                    "{:<3} {expire:<6} {:<11} {client:<18} {virt:<18} {dest:<16} {pe_name:<18} {pe_data}",
                    conn.proto.name(),
                    conn.state
                );
            }
            _ => {
                // "%-3s %-6s %-11s %-18s %-18s %s\n"
                let _ = writeln!(
                    out,
                    "{:<3} {expire:<6} {:<11} {client:<18} {virt:<18} {dest}",
                    conn.proto.name(),
                    conn.state
                );
            }
        }
    }
    out
}

/// `--timeout`: "Timeout (tcp tcpfin udp): %d %d %d\n".
pub fn render_timeouts(timeouts: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        timeouts.tcp, timeouts.tcpfin, timeouts.udp
    )
}

/// `-G`: DPVS's local-address table (title before the first service only).
pub fn render_laddrs(services: &[ServiceLaddrs]) -> String {
    let mut out = String::new();
    for (index, entry) in services.iter().enumerate() {
        if index == 0 {
            // "%-20s %-8s %-20s %-10s %-10s\n"
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<20} {:<10} {:<10}",
                "VIP:VPORT", "TOTAL", "LADDR", "CONFLICTS", "CONNS"
            );
        }
        // "%-20s %-8u \n"
        let vip = addr_port(&entry.service.addr, entry.service.port);
        let _ = writeln!(out, "{vip:<20} {:<8} ", entry.laddrs.len());
        for laddr in &entry.laddrs {
            // "%-20s %-8s %-20s %-10lu %-10u\n"
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<20} {:<10} {:<10}",
                "",
                "",
                laddr.addr.to_string(),
                laddr.port_conflicts,
                laddr.conns
            );
        }
    }
    out
}

/// `--port-stats` (rvs): one line per port, counters as `print_largenum`;
/// a port whose interface vanished is named `NAME (gone)`.
pub fn render_port_stats(ports: &[PortStatsInfo], exact: bool) -> String {
    let mut out = format!(
        "{:<6} {:<16}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}\n",
        "Port",
        "Name",
        "RxPkts",
        "RxBytes",
        "TxPkts",
        "TxBytes",
        "RxMissed",
        "RxErrors",
        "TxErrors",
        "RxNoMbuf"
    );
    for port in ports {
        let name = if port.link_gone {
            format!("{} (gone)", port.name)
        } else {
            port.name.clone()
        };
        let _ = write!(out, "{:<6} {:<16}", port.port, name);
        for v in [
            port.rx_packets,
            port.rx_bytes,
            port.tx_packets,
            port.tx_bytes,
            port.rx_missed,
            port.rx_errors,
            port.tx_errors,
            port.rx_nombuf,
        ] {
            out.push_str(&largenum(v, exact));
        }
        out.push('\n');
    }
    out
}

/// `--dataplane-stats` (rvs): one table, one row per counter, one column
/// per worker (`worker<N>`, N as the daemon numbers it) and a `total`.
///
/// Rows, in this order: `rx`, `tx`, `steered_in`, `steered_out`,
/// `conns_created`, `conns_expired`, `conns_now`, then `to_kernel`,
/// `from_kernel`, `kernel_drop` when any of them is not zero (the kernel
/// path), then the SYN proxy's counters ([`SynproxyStats::named`]) when
/// any of them is not zero, then `drop:<reason>` for
/// every reason whose total is not zero, in the daemon's order (JSON output
/// lists every reason, zeros included). Numbers are scaled to K/M/G/T as
/// ipvsadm's `print_largenum` scales them unless `--exact`, and
/// right-aligned; the counter names are left-aligned. Every value column has
/// the same width: at least 8, widened to the longest header or value.
pub fn render_dataplane_stats(workers: &[WorkerStatsInfo], exact: bool) -> String {
    let per_worker =
        |get: fn(&WorkerStatsInfo) -> u64| -> Vec<u64> { workers.iter().map(get).collect() };
    let mut rows: Vec<(String, Vec<u64>)> = vec![
        ("rx".to_string(), per_worker(|w| w.rx_packets)),
        ("tx".to_string(), per_worker(|w| w.tx_packets)),
        ("steered_in".to_string(), per_worker(|w| w.steered_in)),
        ("steered_out".to_string(), per_worker(|w| w.steered_out)),
        ("conns_created".to_string(), per_worker(|w| w.conns_created)),
        ("conns_expired".to_string(), per_worker(|w| w.conns_expired)),
        ("conns_now".to_string(), per_worker(|w| w.conns_now)),
    ];
    // The kernel path's rows when it carried anything (a port has a
    // kernel interface).
    type Get = fn(&WorkerStatsInfo) -> u64;
    let kernel: [(&str, Get); 3] = [
        ("to_kernel", |w| w.to_kernel),
        ("from_kernel", |w| w.from_kernel),
        ("kernel_drop", |w| w.kernel_drop),
    ];
    if workers
        .iter()
        .any(|w| kernel.iter().any(|(_, get)| get(w) != 0))
    {
        for (name, get) in kernel {
            rows.push((name.to_string(), per_worker(get)));
        }
    }
    // SYN proxy rows only where the proxy ran.
    if workers.iter().any(|w| !w.synproxy.is_zero()) {
        let named: Vec<_> = workers.iter().map(|w| w.synproxy.named()).collect();
        for (i, (name, _)) in SynproxyStats::default().named().iter().enumerate() {
            rows.push((name.to_string(), named.iter().map(|n| n[i].1).collect()));
        }
    }
    // Reasons in order of first appearance: the daemon lists the same ones
    // for every worker, but a reason missing somewhere counts as zero.
    let mut reasons: Vec<&str> = Vec::new();
    for drop in workers.iter().flat_map(|w| &w.drops) {
        if !reasons.contains(&drop.reason.as_str()) {
            reasons.push(&drop.reason);
        }
    }
    for reason in reasons {
        let values: Vec<u64> = workers
            .iter()
            .map(|w| {
                w.drops
                    .iter()
                    .filter(|d| d.reason == reason)
                    .fold(0u64, |sum, d| sum.saturating_add(d.packets))
            })
            .collect();
        if values.iter().any(|&v| v != 0) {
            rows.push((format!("drop:{reason}"), values));
        }
    }

    let number = |n: u64| largenum(n, exact).trim_start().to_string();
    let mut headers: Vec<String> = workers
        .iter()
        .map(|w| format!("worker{}", w.worker))
        .collect();
    headers.push("total".to_string());
    let cells: Vec<(String, Vec<String>)> = rows
        .into_iter()
        .map(|(name, values)| {
            let total = values.iter().fold(0u64, |sum, &v| sum.saturating_add(v));
            let mut texts: Vec<String> = values.into_iter().map(number).collect();
            texts.push(number(total));
            (name, texts)
        })
        .collect();
    let name_width = cells
        .iter()
        .map(|(name, _)| name.len())
        .chain(["Counter".len()])
        .max()
        .unwrap_or(0);
    let width = cells
        .iter()
        .flat_map(|(_, texts)| texts)
        .chain(&headers)
        .map(String::len)
        .chain([8])
        .max()
        .unwrap_or(8);

    let mut out = format!("{:<name_width$}", "Counter");
    for header in &headers {
        let _ = write!(out, " {header:>width$}");
    }
    out.push('\n');
    for (name, texts) in &cells {
        let _ = write!(out, "{name:<name_width$}");
        for text in texts {
            let _ = write!(out, " {text:>width$}");
        }
        out.push('\n');
    }
    out
}

/// `lbctl --health`: one line per checker of every checked real server
/// (rvs; no ipvsadm counterpart). Times: latency of the last check, time to
/// the next one.
pub fn render_health(servers: &[crate::ctl::protocol::HealthInfo]) -> String {
    let mut out = format!(
        "{:<4} {:<22} {:<22} {:<5} {:<10} {:<22} {:<4} {:<28} {:>9} {:>5} {:>7}\n",
        "Prot",
        "LocalAddress:Port",
        "RemoteAddress:Port",
        "State",
        "Checker",
        "Target",
        "Last",
        "Reason",
        "Latency",
        "Flaps",
        "Next"
    );
    for s in servers {
        for c in &s.checkers {
            let last = match c.last_ok {
                None => "-",
                Some(true) => "ok",
                Some(false) => "fail",
            };
            let latency = c
                .latency_us
                .map_or("-".to_string(), |us| format!("{:.1}ms", us as f64 / 1000.0));
            let _ = writeln!(
                out,
                "{:<4} {:<22} {:<22} {:<5} {:<10} {:<22} {:<4} {:<28} {:>9} {:>5} {:>6.1}s",
                s.service.proto.name(),
                addr_port(&s.service.addr, s.service.port),
                addr_port(&s.addr, s.port),
                if s.alive { "UP" } else { "DOWN" },
                c.checker,
                c.target,
                last,
                c.reason,
                latency,
                c.flaps,
                c.next_check_ms as f64 / 1000.0
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largenum_follows_print_largenum_thresholds() {
        assert_eq!(largenum(0, false), "        0");
        assert_eq!(largenum(99_999_999, false), " 99999999");
        assert_eq!(largenum(100_000_000, false), "  100000K");
        assert_eq!(largenum(999_999_999, false), "  999999K");
        assert_eq!(largenum(1_000_000_000, false), "    1000M");
        assert_eq!(largenum(99_999_999_999, false), "   99999M");
        assert_eq!(largenum(100_000_000_000, false), "     100G");
        assert_eq!(largenum(99_999_999_999_999, false), "   99999G");
        assert_eq!(largenum(100_000_000_000_000, false), "     100T");
        assert_eq!(largenum(12, true), "       12");
        assert_eq!(largenum(123_456_789, true), " 123456789");
        assert_eq!(largenum(u64::MAX, true), format!(" {}", u64::MAX));
    }

    #[test]
    fn ipv4_names_are_cut_like_ipvsadm() {
        let key = ServiceKey {
            proto: crate::conntrack::Proto::Tcp,
            addr: "255.255.255.255".parse().expect("addr"),
            port: 65535,
        };
        assert_eq!(service_name(&key), "TCP  255.255.255.255:65535");
        assert!(service_name(&key).len() <= 33);
        assert_eq!(
            dest_name(&"255.255.255.255".parse().expect("addr"), 65535).len(),
            21
        );
    }
}
