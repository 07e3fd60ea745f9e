//! keepalived::to_config — the services of a keepalived.conf as rvs's
//! [`Config`]: one service per virtual address (groups expanded), its real
//! servers, scheduler, forwarding method (`lb_kind NAT|DR|TUN|FNAT`),
//! persistence, weights, thresholds and FULLNAT local addresses
//! (`laddr_group_name` → `local_address_group`). Ports, workers, routes and
//! neighbours come from the YAML given with `--config`; the interface
//! names of the keepalived file (`local_address_group`, `interface`,
//! `dpdk_interface`) must be its port names.
//!
//! Rules: what rvs cannot carry is fatal, never dropped: firewall-mark
//! services, SCTP, tunnel types other than IPIP, weights above 65535, a
//! YAML that has services of its own (one source per fact), an interface
//! that is no port. Checkers and VRRP are typed in the model for their own
//! services; nothing of them is lost here.

use std::net::IpAddr;

use super::diag::{Diag, Diags, Severity};
use super::model::{expand_range, KeepalivedConf, LbKind, Protocol, VsAddr, VsgEntry};
use crate::conntrack::{Fwd, Proto};
use crate::ctl::config::{
    Config, DestConf, Ip, LaddrConf, NetmaskConf, ServiceConf, Threshold, TimeoutsConf, Weight,
};

/// Most services one `virtual_server group` entry may expand to.
pub const MAX_GROUP_EXPANSION: usize = 256;

// `..Default::default()` on DestConf/ServiceConf is deliberate: a field
// added to them later (with its serde default) must not break this file.
#[allow(clippy::needless_update)]
/// Converts `conf` onto `base` (the `--config` YAML, or an empty one).
/// Problems are pushed as fatal diagnostics; the result is meaningful only
/// when `diags.can_start()`.
pub fn to_config(
    conf: &KeepalivedConf,
    base: Config,
    check_ports: bool,
    diags: &mut Diags,
) -> Config {
    let mut config = base;
    if !config.services.is_empty() {
        diags.0.push(Diag {
            severity: Severity::Fatal,
            loc: None,
            message: "the --config YAML has services: with --keepalived the services come from the keepalived file only".to_string(),
            keepalived_line: false,
        });
        config.services.clear();
    }
    let ports: Vec<String> = config.ports.iter().map(|p| p.name.clone()).collect();
    let port_ok = |name: &str| !check_ports || ports.iter().any(|p| p == name);
    let t = conf.global.lvs_timeouts;
    if t != Default::default() {
        config.timeouts = Some(TimeoutsConf {
            tcp: t.tcp,
            tcpfin: t.tcpfin,
            udp: t.udp,
        });
    }
    for i in &conf.vrrp_instances {
        // The instance's interface, its addresses' `dev` and its tracked
        // interfaces all name ports.
        let main = i.dpdk_interface.as_ref().or(i.interface.as_ref());
        let vips = i
            .virtual_ipaddress
            .iter()
            .chain(&i.virtual_ipaddress_excluded)
            .filter_map(|v| v.dev.as_ref().map(|d| (d, &v.loc)));
        let tracked = i.track_interface.iter().map(|t| (&t.name, &t.loc));
        for (ifname, loc) in main
            .map(|m| (m, &i.loc))
            .into_iter()
            .chain(vips)
            .chain(tracked)
        {
            if !port_ok(ifname) {
                diags.push_rvs(
                    Severity::Fatal,
                    loc,
                    format!("vrrp_instance {}: interface '{ifname}' is not a port of the --config YAML (ports: {})", i.name, ports.join(", ")),
                );
            }
        }
    }
    for vs in &conf.virtual_servers {
        let fatal = |diags: &mut Diags, m: String| diags.push_rvs(Severity::Fatal, &vs.loc, m);
        let proto = match vs.protocol {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp => Proto::Udp,
            Protocol::Sctp => {
                fatal(diags, "protocol SCTP: rvs balances TCP and UDP only".into());
                continue;
            }
        };
        let addrs: Vec<(IpAddr, u16)> = match &vs.addr {
            VsAddr::Ip { addr, port } => vec![(*addr, *port)],
            VsAddr::Fwmark(m) => {
                fatal(
                    diags,
                    format!("virtual_server fwmark {m}: rvs has no firewall-mark services"),
                );
                continue;
            }
            VsAddr::Group(name) => {
                let Some(g) = conf.virtual_server_groups.iter().find(|g| &g.name == name) else {
                    fatal(
                        diags,
                        format!(
                            "virtual_server group {name}: no virtual_server_group of that name"
                        ),
                    );
                    continue;
                };
                let mut out = Vec::new();
                for e in &g.entries {
                    match e {
                        VsgEntry::Range { first, last, port, loc } => {
                            match expand_range(*first, *last, MAX_GROUP_EXPANSION) {
                                Some(a) => out.extend(a.into_iter().map(|a| (a, *port))),
                                None => diags.push_rvs(
                                    Severity::Fatal,
                                    loc,
                                    format!("range {first}-{last} has more than {MAX_GROUP_EXPANSION} addresses"),
                                ),
                            }
                        }
                        VsgEntry::Fwmark(m, loc) => diags.push_rvs(
                            Severity::Fatal,
                            loc,
                            format!("fwmark {m}: rvs has no firewall-mark services"),
                        ),
                    }
                }
                out
            }
        };
        let fwd_of = |k: &LbKind, diags: &mut Diags| -> Option<Fwd> {
            Some(match k {
                LbKind::Nat => Fwd::Nat,
                LbKind::Dr => Fwd::Dr,
                LbKind::Fnat => Fwd::FullNat,
                LbKind::Tun(args) => {
                    if !(args.is_empty() || args == &["type".to_string(), "ipip".to_string()]) {
                        diags.push_rvs(
                            Severity::Fatal,
                            &vs.loc,
                            format!("lb_kind TUN {}: rvs tunnels with IPIP only", args.join(" ")),
                        );
                        return None;
                    }
                    Fwd::Tun
                }
            })
        };
        let Some(vs_fwd) = fwd_of(&vs.lb_kind, diags) else {
            continue;
        };
        let mut laddrs = Vec::new();
        if let Some(name) = &vs.laddr_group_name {
            match conf.local_address_groups.iter().find(|g| &g.name == name) {
                Some(g) => {
                    for (addr, ifname) in &g.addrs {
                        if let Some(i) = ifname {
                            if !port_ok(i) {
                                diags.push_rvs(
                                    Severity::Fatal,
                                    &g.loc,
                                    format!("local_address_group {name}: interface '{i}' is not a port of the --config YAML (ports: {})", ports.join(", ")),
                                );
                            }
                        }
                        laddrs.push(LaddrConf {
                            addr: *addr,
                            ifname: ifname.clone(),
                        });
                    }
                }
                None => fatal(
                    diags,
                    format!("laddr_group_name {name}: no local_address_group of that name"),
                ),
            }
        }
        let netmask = match vs.persistence_granularity.as_deref() {
            None => None,
            Some(g) => {
                match (g.parse::<std::net::Ipv4Addr>(), g.parse::<u8>()) {
                    (Ok(m), _) => Some(NetmaskConf::Dotted(m)),
                    (_, Ok(p)) => Some(NetmaskConf::Prefix(p)),
                    _ => {
                        fatal(diags, format!("persistence_granularity '{g}': expected a netmask or a prefix length"));
                        continue;
                    }
                }
            }
        };
        let mut dests = Vec::new();
        for rs in &vs.real_servers {
            let fwd = match &rs.lb_kind {
                Some(k) => match fwd_of(k, diags) {
                    Some(f) => f,
                    None => continue,
                },
                None => vs_fwd,
            };
            if rs.weight > crate::sched::MAX_WEIGHT {
                diags.push_rvs(
                    Severity::Fatal,
                    &rs.loc,
                    format!(
                        "weight {} is above rvs's largest weight {}",
                        rs.weight,
                        crate::sched::MAX_WEIGHT
                    ),
                );
                continue;
            }
            dests.push(DestConf {
                addr: Ip(rs.addr),
                port: rs.port,
                fwd,
                weight: Weight(rs.weight),
                u_threshold: Threshold(rs.uthreshold),
                l_threshold: Threshold(rs.lthreshold),
                ..DestConf::default()
            });
        }
        for (addr, port) in addrs {
            config.services.push(ServiceConf {
                proto,
                vip: Ip(addr),
                port,
                scheduler: vs.lb_algo.clone(),
                sched_flags: vs.sched_flags.clone(),
                persistent: vs.persistence_timeout,
                netmask,
                ops: vs.ops,
                synproxy: vs.syn_proxy,
                laddrs: laddrs.clone(),
                dests: dests.clone(),
                ..ServiceConf::default()
            });
        }
    }
    config
}
