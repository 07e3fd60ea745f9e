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
//! that is no port. Checkers are typed in the model for their own service;
//! the VRRP blocks become the YAML `vrrp:` section ([`vrrp_conf`]), keyword
//! for keyword, and what rvs's VRRP cannot do is fatal.

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
    let has_vrrp = !(conf.vrrp_instances.is_empty()
        && conf.vrrp_sync_groups.is_empty()
        && conf.vrrp_scripts.is_empty());
    if has_vrrp && config.vrrp != Default::default() {
        diags.0.push(Diag {
            severity: Severity::Fatal,
            loc: None,
            message: "the --config YAML has a vrrp: section: with --keepalived the VRRP instances come from the keepalived file only".to_string(),
            keepalived_line: false,
        });
    }
    if has_vrrp {
        config.vrrp = vrrp_conf(conf, diags);
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

/// The `vrrp_script`, `vrrp_sync_group` and `vrrp_instance` blocks as the
/// YAML `vrrp:` section (`crate::vrrp::conf`), keyword for keyword. What
/// rvs's VRRP cannot do is fatal: AH authentication, `use_vmac`,
/// `reverse` trackers, `notify_stop`, trackers and notify scripts of a
/// sync group, `init_fail`, `garp_master_refresh_repeat` above 1, scripts
/// run as a user other than root (lbd runs them as itself).
fn vrrp_conf(conf: &KeepalivedConf, diags: &mut Diags) -> crate::vrrp::conf::VrrpConf {
    use super::model::{Auth, Track, VrrpState};
    use crate::vrrp::conf::{
        AuthConf, AuthType, InitialState, InstanceConf, ScriptConf, SyncGroupConf, TrackConf,
        VrrpConf,
    };
    let mut out = VrrpConf::default();
    let not_root = |user: &Option<String>| user.as_deref().is_some_and(|u| u != "root");
    for s in &conf.vrrp_scripts {
        let mut bad = |m: &str| {
            diags.push_rvs(
                Severity::Fatal,
                &s.loc,
                format!("vrrp_script {}: {m}", s.name),
            )
        };
        if s.reverse {
            bad("weight ... reverse is not supported by rvs");
        }
        if s.init_fail {
            bad("init_fail is not supported by rvs (scripts start OK)");
        }
        if s.user.as_ref().is_some_and(|(u, _)| u != "root") {
            bad("user: lbd runs scripts as itself (root)");
        }
        let Some(script) = &s.script else { continue };
        if not_root(&script.user) {
            bad("user: lbd runs scripts as itself (root)");
        }
        out.scripts.push(ScriptConf {
            name: s.name.clone(),
            script: script.command.clone(),
            interval: s.interval.as_secs_f64(),
            timeout: Some(s.timeout.as_secs_f64()),
            weight: s.weight,
            rise: s.rise,
            fall: s.fall,
        });
    }
    for g in &conf.vrrp_sync_groups {
        if !g.track_interface.is_empty()
            || !g.track_script.is_empty()
            || g.notify.scripts().next().is_some()
        {
            diags.push_rvs(
                Severity::Fatal,
                &g.loc,
                format!(
                    "vrrp_sync_group {}: trackers and notify scripts of a sync group are not supported by rvs (put them on the instances)",
                    g.name
                ),
            );
        }
        out.sync_groups.push(SyncGroupConf {
            name: g.name.clone(),
            group: g.group.clone(),
        });
    }
    let tracks = |list: &[Track], what: &str, name: &str, diags: &mut Diags| -> Vec<TrackConf> {
        list.iter()
            .map(|t| {
                if t.reverse {
                    diags.push_rvs(
                        Severity::Fatal,
                        &t.loc,
                        format!("vrrp_instance {name}: {what} {} weight ... reverse is not supported by rvs", t.name),
                    );
                }
                match t.weight {
                    None => TrackConf::Port(t.name.clone()),
                    Some(weight) => TrackConf::Weighted {
                        interface: t.name.clone(),
                        weight,
                    },
                }
            })
            .collect()
    };
    for i in &conf.vrrp_instances {
        let fatal = |diags: &mut Diags, m: &str| {
            diags.push_rvs(
                Severity::Fatal,
                &i.loc,
                format!("vrrp_instance {}: {m}", i.name),
            )
        };
        let authentication = match &i.auth {
            None => None,
            Some(Auth::Ah(_)) => {
                fatal(diags, "auth_type AH is not supported by rvs");
                None
            }
            Some(Auth::Pass(bytes)) => {
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                match std::str::from_utf8(&bytes[..end]) {
                    Ok(pass) => Some(AuthConf {
                        auth_type: AuthType::Pass,
                        auth_pass: pass.to_string(),
                    }),
                    Err(_) => {
                        fatal(diags, "auth_pass: rvs takes a UTF-8 password");
                        None
                    }
                }
            }
        };
        if i.use_vmac.is_some() {
            fatal(
                diags,
                "use_vmac is not supported by rvs (adverts and GARPs use the port's MAC)",
            );
        }
        if i.notify.stop.is_some() {
            fatal(diags, "notify_stop is not supported by rvs");
        }
        if i.notify.scripts().any(|s| not_root(&s.user)) {
            fatal(diags, "notify scripts run as lbd's user (root)");
        }
        if i.garp_master_refresh_repeat > 1 {
            fatal(
                diags,
                "garp_master_refresh_repeat above 1 is not supported by rvs",
            );
        }
        let Some(interface) = i.dpdk_interface.as_ref().or(i.interface.as_ref()) else {
            fatal(diags, "no interface");
            continue;
        };
        let command = |s: &Option<super::model::Script>| s.as_ref().map(|s| s.command.clone());
        out.instances.push(InstanceConf {
            name: i.name.clone(),
            state: match i.state {
                VrrpState::Master => InitialState::Master,
                VrrpState::Backup => InitialState::Backup,
            },
            interface: interface.clone(),
            virtual_router_id: i.virtual_router_id,
            priority: Some(i.priority),
            advert_int: i.advert_int.as_secs_f64(),
            version: i.version,
            authentication,
            virtual_ipaddress: i.virtual_ipaddress.iter().map(|v| v.addr).collect(),
            virtual_ipaddress_excluded: i
                .virtual_ipaddress_excluded
                .iter()
                .map(|v| v.addr)
                .collect(),
            unicast_src_ip: i.src_ip,
            unicast_peer: i.unicast_peer.clone(),
            nopreempt: i.nopreempt,
            preempt_delay: i.preempt_delay.as_secs_f64(),
            track_interface: tracks(&i.track_interface, "track_interface", &i.name, diags),
            track_script: tracks(&i.track_script, "track_script", &i.name, diags),
            notify_master: command(&i.notify.master),
            notify_backup: command(&i.notify.backup),
            notify_fault: command(&i.notify.fault),
            notify: command(&i.notify.any),
            garp_master_delay: i.garp_master_delay.as_secs() as u32,
            garp_master_repeat: i.garp_master_repeat,
            garp_master_refresh: i.garp_master_refresh.as_secs() as u32,
        });
    }
    out
}
