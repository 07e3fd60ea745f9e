//! keepalived::to_config — the services of a keepalived.conf as rvs's
//! [`Config`]: one service per virtual address (groups expanded), its real
//! servers, scheduler, forwarding method (`lb_kind NAT|DR|TUN|FNAT`),
//! persistence, weights, thresholds and FULLNAT local addresses
//! (`laddr_group_name` → `local_address_group`). Ports, workers, routes and
//! neighbours come from the YAML given with `--config`; the interface
//! names of the keepalived file (`local_address_group`, `interface`,
//! `dpdk_interface`) must be its port names.
//!
//! The checkers and their keywords map one to one onto the health side's
//! YAML types (`crate::health::conf`): each checker carries its effective
//! timing written out (the model already resolved keepalived's
//! inheritance checker ← real server ← virtual server ← checker default),
//! so the health side runs exactly keepalived's values; the real server's
//! `weight`, `inhibit_on_failure`, `notify_up/down` and `alpha`, the
//! virtual server's `quorum`, `hysteresis`, `quorum_up/down`, `omega`,
//! `virtualhost` and `sorry_server` (forwarded as the virtual server's
//! `lb_kind`, as keepalived) go with them.
//!
//! Rules: what rvs cannot carry is fatal, never dropped: firewall-mark
//! services, SCTP, tunnel types other than IPIP, weights above 65535, a
//! YAML that has services of its own (one source per fact), an interface
//! that is no port, and a checker condition the health side would judge
//! more leniently than keepalived (a `require_reply` pattern, urls of one
//! checker with different `virtualhost`s). What keepalived does and rvs
//! does not, without changing a verdict (`bind_if`, `fwmark`, `fast_recovery`,
//! `http_protocol`, script `user`s, `ha_suspend`, ...), is a warning with
//! its line. The VRRP blocks become the YAML `vrrp:` section ([`vrrp_conf`]),
//! keyword for keyword, and what rvs's VRRP cannot do is fatal.

use std::net::IpAddr;

use super::diag::Loc;
use super::diag::{Diag, Diags, Severity};
use super::model::{expand_range, KeepalivedConf, LbKind, Protocol, VsAddr, VsgEntry};
use super::model::{Checker, CheckerKind, RealServer, Script, VirtualServer};
use crate::conntrack::{Fwd, Proto};
use crate::ctl::config::{
    Config, DestConf, Ip, LaddrConf, NetmaskConf, ServiceConf, SorryConf, Threshold, TimeoutsConf,
    Weight,
};
use crate::health::conf::{CheckBody, CheckConf, Secs, UrlConf};

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
        // VRRP adverts and GARPs leave and arrive through the port's kernel
        // interface: without one the instance cannot run.
        if let Some(port) = main.and_then(|m| config.ports.iter().find(|p| &p.name == m)) {
            if check_ports && port.kernel_if.is_none() {
                diags.push_rvs(
                    Severity::Fatal,
                    &i.loc,
                    format!("vrrp_instance {}: port '{}' has no kernel_if; VRRP adverts and GARPs go through the port's kernel interface (ports[].kernel_if in the --config YAML)", i.name, port.name),
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
    if let Some((args, loc)) = &conf.global.lvs_sync_daemon {
        if !config.sync.is_empty() {
            diags.push_rvs(
                Severity::Fatal,
                loc,
                "lvs_sync_daemon: the --config YAML has a sync: section: with --keepalived the sync daemon comes from the keepalived file only".to_string(),
            );
        }
        config.sync = lvs_sync_daemon(args, loc, conf, &config, diags);
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
            let (checks, alpha) = checks_of(rs, vs.virtualhost.as_deref(), diags);
            dests.push(DestConf {
                addr: Ip(rs.addr),
                port: rs.port,
                fwd,
                weight: Weight(rs.weight),
                u_threshold: Threshold(rs.uthreshold),
                l_threshold: Threshold(rs.lthreshold),
                checks,
                inhibit_on_failure: Some(rs.inhibit_on_failure),
                notify_up: script(rs.notify_up.as_ref(), "notify_up", diags),
                notify_down: script(rs.notify_down.as_ref(), "notify_down", diags),
                alpha,
                ..DestConf::default()
            });
        }
        let quorum_up = script(vs.quorum_up.as_ref(), "quorum_up", diags);
        let quorum_down = script(vs.quorum_down.as_ref(), "quorum_down", diags);
        let sorry = vs.sorry_server.map(|(addr, port)| SorryConf {
            addr: Ip(addr),
            port,
            fwd: vs_fwd,
        });
        service_notices(vs, addrs.len(), diags);
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
                virtualhost: vs.virtualhost.clone(),
                alpha: vs.alpha,
                omega: vs.omega,
                inhibit_on_failure: vs.inhibit_on_failure,
                quorum: Some(vs.quorum),
                hysteresis: Some(vs.hysteresis),
                quorum_up: quorum_up.clone(),
                quorum_down: quorum_down.clone(),
                sorry_server: sorry.clone(),
                ..ServiceConf::default()
            });
        }
    }
    config
}

/// A warning that keepalived would act on `what` and rvs does not.
fn not_carried(diags: &mut Diags, loc: &Loc, what: String) {
    diags.push_rvs(Severity::Warning, loc, what);
}

/// A script's command line for the health side; its `user`/`group` are not
/// carried (rvs runs scripts as lbd's own user) and say so.
fn script(s: Option<&Script>, keyword: &str, diags: &mut Diags) -> Option<String> {
    let s = s?;
    if let Some(user) = &s.user {
        not_carried(
            diags,
            &s.loc,
            format!("{keyword}: user {user}: rvs runs scripts as lbd's own user"),
        );
    }
    Some(s.command.clone())
}

/// What a virtual server asks for that the health side does not do.
fn service_notices(vs: &VirtualServer, addresses: usize, diags: &mut Diags) {
    if vs.ha_suspend {
        not_carried(
            diags,
            &vs.loc,
            "ha_suspend: rvs runs the checkers whether or not the VIP is local".into(),
        );
    }
    if vs.sorry_server_inhibit {
        not_carried(
            diags,
            &vs.loc,
            "sorry_server_inhibit: rvs removes the sorry server when the quorum is back".into(),
        );
    }
    let checked = vs.real_servers.iter().any(|r| !r.checkers.is_empty());
    if addresses > 1 && checked {
        not_carried(
            diags,
            &vs.loc,
            format!("virtual_server group: rvs runs the checkers once for each of its {addresses} addresses (keepalived once per real server)"),
        );
    }
}

fn secs(d: std::time::Duration) -> Option<Secs> {
    Some(Secs(d))
}

/// The checkers of `rs` as the health side's [`CheckConf`], each with its
/// effective timing written out (the model resolved keepalived's
/// inheritance), and the real server's `alpha` (keepalived's is per
/// checker: the server starts down if any of its checkers has it).
fn checks_of(
    rs: &RealServer,
    vs_virtualhost: Option<&str>,
    diags: &mut Diags,
) -> (Vec<CheckConf>, Option<bool>) {
    let mut out = Vec::new();
    for ch in &rs.checkers {
        if let Some(c) = check_of(rs, vs_virtualhost, ch, diags) {
            out.push(c);
        }
    }
    let alphas: Vec<bool> = rs.checkers.iter().map(|c| c.common.alpha).collect();
    let alpha = alphas.iter().any(|a| *a);
    if alpha && !alphas.iter().all(|a| *a) {
        not_carried(
            diags,
            &rs.loc,
            "alpha on some checkers only: rvs starts the whole real server down until every checker has passed once".into(),
        );
    }
    (out, (!rs.checkers.is_empty()).then_some(alpha))
}

/// One checker; `None` (with a fatal diagnostic) when the health side
/// would judge the server differently.
fn check_of(
    rs: &RealServer,
    vs_virtualhost: Option<&str>,
    ch: &Checker,
    diags: &mut Diags,
) -> Option<CheckConf> {
    let c = &ch.common;
    let kw = match &ch.kind {
        CheckerKind::Tcp => "TCP_CHECK",
        CheckerKind::Http(_) => "HTTP_GET",
        CheckerKind::Ssl(_) => "SSL_GET",
        CheckerKind::Misc(_) => "MISC_CHECK",
        CheckerKind::Udp(_) => "UDP_CHECK",
        CheckerKind::Dns(_) => "DNS_CHECK",
    };
    let is_misc = matches!(ch.kind, CheckerKind::Misc(_));
    let mut b = CheckBody {
        retry: Some(c.retry),
        delay_before_retry: secs(c.delay_before_retry),
        warmup: secs(c.warmup),
        delay_loop: secs(c.delay_loop),
        ..CheckBody::default()
    };
    if !is_misc {
        b.connect_ip = c.connect_ip;
        // keepalived connects to the real server's own port, which the
        // health side would replace by the service port for DR/TUN.
        b.connect_port = c.connect_port.or(rs.port);
        b.bindto = c.bindto;
        b.bind_port = c.bind_port;
        b.connect_timeout = secs(c.connect_timeout);
    }
    if let Some(i) = &c.bind_if {
        not_carried(
            diags,
            &ch.loc,
            format!("{kw} bind_if {i}: rvs's checks leave by the director's routes"),
        );
    }
    if let Some(m) = c.fwmark {
        not_carried(
            diags,
            &ch.loc,
            format!("{kw} fwmark {m}: rvs does not mark its check packets"),
        );
    }
    if c.log_all_failures {
        not_carried(
            diags,
            &ch.loc,
            format!(
                "{kw} log_all_failures: rvs logs state changes; every result is in lbctl --health"
            ),
        );
    }
    let conf = match &ch.kind {
        CheckerKind::Tcp => CheckConf::Tcp(b),
        CheckerKind::Http(h) | CheckerKind::Ssl(h) => {
            b.virtualhost = h.virtualhost.clone();
            // A url's own virtualhost: carried when every url has the same
            // (it then is the checker's Host), else refused.
            let hosts: Vec<&Option<String>> = h.urls.iter().map(|u| &u.virtualhost).collect();
            if let Some(first) = hosts.first().filter(|h| h.is_some()) {
                if hosts.iter().all(|h| h == first) {
                    b.virtualhost = (*first).clone();
                } else {
                    diags.push_rvs(Severity::Fatal, &ch.loc, format!("{kw}: urls with different virtualhost: rvs sends one Host per checker (split them into one {kw} per virtualhost)"));
                    return None;
                }
            } else if hosts.iter().any(|h| h.is_some()) {
                diags.push_rvs(Severity::Fatal, &ch.loc, format!("{kw}: a virtualhost on some urls only: rvs sends one Host per checker (split them into one {kw} per virtualhost)"));
                return None;
            }
            b.url = h
                .urls
                .iter()
                .map(|u| UrlConf {
                    path: u.path.clone(),
                    status_code: u
                        .status_codes
                        .iter()
                        .map(|&(lo, hi)| crate::health::conf::StatusCode(lo, hi))
                        .collect(),
                    digest: u.digest.clone(),
                })
                .collect();
            if h.http_protocol != "1.0" {
                not_carried(diags, &ch.loc, format!("{kw} http_protocol {}: rvs sends HTTP/1.0 requests (the server closes after the answer)", h.http_protocol));
            }
            if h.fast_recovery {
                not_carried(
                    diags,
                    &ch.loc,
                    format!("{kw} fast_recovery: rvs checks a down server every delay_loop"),
                );
            }
            if let Some(n) = &h.sni_name {
                not_carried(
                    diags,
                    &ch.loc,
                    format!("{kw} sni_name {n}: rvs sends the virtualhost as SNI"),
                );
            }
            let host = b.virtualhost.as_deref().or(vs_virtualhost);
            let named = host.is_some_and(|h| h.parse::<IpAddr>().is_err());
            if matches!(ch.kind, CheckerKind::Ssl(_)) && !h.enable_sni && named {
                not_carried(diags, &ch.loc, format!("SSL_GET without enable_sni: rvs sends the virtualhost {} as SNI (keepalived sends none)", host.unwrap_or_default()));
            }
            if matches!(ch.kind, CheckerKind::Http(_)) {
                CheckConf::Http(b)
            } else {
                CheckConf::Ssl(b)
            }
        }
        CheckerKind::Misc(m) => {
            let path = m.path.as_ref()?;
            b.misc_path = script(Some(path), "misc_path", diags);
            b.misc_timeout = secs(m.timeout);
            b.misc_dynamic = m.dynamic;
            if let Some((user, _)) = &m.user {
                not_carried(
                    diags,
                    &ch.loc,
                    format!("MISC_CHECK user {user}: rvs runs scripts as lbd's own user"),
                );
            }
            CheckConf::Misc(b)
        }
        CheckerKind::Udp(u) => {
            if u.require_reply.as_ref().is_some_and(|p| !p.is_empty()) {
                diags.push_rvs(Severity::Fatal, &ch.loc, "UDP_CHECK require_reply HEX: rvs checks that a reply comes and its length, not its bytes (use require_reply without a pattern)");
                return None;
            }
            b.payload = u
                .payload
                .as_ref()
                .map(|p| p.iter().map(|x| format!("{x:02x}")).collect());
            b.require_reply = u.require_reply.is_some();
            b.min_reply_length = Some(u.min_reply_length as usize);
            b.max_reply_length = Some(u.max_reply_length as usize);
            CheckConf::Udp(b)
        }
        CheckerKind::Dns(d) => {
            b.dns_type = Some(d.qtype.clone());
            b.name = Some(d.name.clone());
            CheckConf::Dns(b)
        }
    };
    let zero = c.delay_loop.is_zero() || (!is_misc && c.connect_timeout.is_zero());
    if zero {
        diags.push_rvs(
            Severity::Fatal,
            &ch.loc,
            format!("{kw}: delay_loop and connect_timeout must be above 0"),
        );
        return None;
    }
    if let Err(e) = conf.validate() {
        diags.push_rvs(Severity::Fatal, &ch.loc, format!("{kw}: {e}"));
        return None;
    }
    Some(conf)
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

/// `global_defs { lvs_sync_daemon IF [[inst] VI] [id N] [maxlen L] [port P]
/// [ttl T] [group G] }` as the YAML `sync:` list (keepalived
/// `ipvs_syncd_cmd`): with an instance, one daemon that follows it (master
/// while MASTER, backup otherwise; `id` defaults to its VRID); without,
/// a master and a backup that both run all the time. `IF` is a kernel
/// interface: a port's name stands for its `kernel_if`.
fn lvs_sync_daemon(
    args: &[String],
    loc: &Loc,
    conf: &KeepalivedConf,
    config: &Config,
    diags: &mut Diags,
) -> Vec<crate::sync::conf::SyncConf> {
    use crate::sync::conf::{SyncConf, SyncRole};
    let mut fatal =
        |m: String| diags.push_rvs(Severity::Fatal, loc, format!("lvs_sync_daemon: {m}"));
    let Some((ifname, rest)) = args.split_first() else {
        fatal("no interface".into());
        return Vec::new();
    };
    let interface = config
        .ports
        .iter()
        .find(|p| &p.name == ifname)
        .map_or(ifname.clone(), |p| {
            p.kernel_if.clone().unwrap_or(ifname.clone())
        });
    let mut base = SyncConf::new(SyncRole::Backup);
    base.interface = Some(interface);
    let mut instance = None;
    let mut id = None;
    let mut words = rest.iter();
    while let Some(w) = words.next() {
        let keyword = matches!(w.as_str(), "id" | "maxlen" | "port" | "ttl" | "group");
        if !keyword {
            let name = if w == "inst" { words.next() } else { Some(w) };
            match name {
                Some(n) if instance.is_none() => instance = Some(n.clone()),
                _ => fatal(format!("unexpected '{w}'")),
            }
            continue;
        }
        let Some(v) = words.next() else {
            fatal(format!("{w}: no value"));
            break;
        };
        let bad = |fatal: &mut dyn FnMut(String)| fatal(format!("{w}: invalid value '{v}'"));
        match w.as_str() {
            "id" => match v.parse::<u8>() {
                Ok(n) => id = Some(n),
                Err(_) => bad(&mut fatal),
            },
            "maxlen" => match v.parse() {
                Ok(n) => base.maxlen = n,
                Err(_) => bad(&mut fatal),
            },
            "port" => match v.parse() {
                Ok(n) => base.port = n,
                Err(_) => bad(&mut fatal),
            },
            "ttl" => match v.parse() {
                Ok(n) => base.ttl = n,
                Err(_) => bad(&mut fatal),
            },
            _ => match v.parse() {
                Ok(g) => base.group = g,
                Err(_) => bad(&mut fatal),
            },
        }
    }
    if let Some(name) = &instance {
        match conf.vrrp_instances.iter().find(|i| &i.name == name) {
            Some(i) => base.syncid = id.unwrap_or(i.virtual_router_id),
            None => fatal(format!("{name} is not a vrrp_instance")),
        }
        base.vrrp_instance = instance;
        if let Err(e) = base.validate() {
            fatal(e.to_string());
        }
        return vec![base];
    }
    base.syncid = id.unwrap_or(0);
    if let Err(e) = base.validate() {
        fatal(e.to_string());
    }
    vec![
        SyncConf {
            role: SyncRole::Master,
            ..base.clone()
        },
        base,
    ]
}
