//! lbctl command-line parsing, without a socket: every ipvsadm 1.31 option,
//! ipvsadm's defaults and ranges, every kind of illegal combination with
//! ipvsadm's wording, rvs's refusals and extensions, and `-R` input.

use std::net::{IpAddr, Ipv4Addr};

use rvs::conntrack::{Fwd, Proto};
use rvs::ctl::ipvsadm::{
    parse_args, parse_restore, parse_restore_line, Command, ListCommand, ListOptions, ListWhat,
    OutputFormat, ParseError,
};
use rvs::ctl::protocol::{
    DestSpec, LaddrSpec, Netmask, Request, ServiceKey, ServiceSpec, Timeouts, TunType,
};

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn parse(line: &str) -> Result<Command, ParseError> {
    parse_args(&words(line))
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn tcp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey {
        proto: Proto::Tcp,
        addr: ip(addr),
        port,
    }
}

fn udp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey {
        proto: Proto::Udp,
        addr: ip(addr),
        port,
    }
}

fn list(what: ListWhat, tweak: impl FnOnce(&mut ListOptions)) -> Command {
    let mut options = ListOptions::default();
    tweak(&mut options);
    Command::List(ListCommand { what, options })
}

fn add_service(key: ServiceKey, tweak: impl FnOnce(&mut ServiceSpec)) -> Command {
    let mut service = ServiceSpec::new(key);
    tweak(&mut service);
    Command::Apply(Request::AddService { service })
}

fn dest(addr: &str, port: u16, fwd: Fwd, weight: u32) -> DestSpec {
    DestSpec {
        addr: ip(addr),
        port,
        fwd,
        weight,
        u_threshold: 0,
        l_threshold: 0,
        tun_type: TunType::Ipip,
    }
}

fn add_dest(service: ServiceKey, dest: DestSpec) -> Command {
    Command::Apply(Request::AddDest { service, dest })
}

fn accepted_cases() -> Vec<(&'static str, Command)> {
    let vip = tcp("10.0.0.1", 80);
    vec![
        // Listing (-L / -l / --list) and its print options.
        ("", list(ListWhat::All, |_| {})),
        ("-L", list(ListWhat::All, |_| {})),
        ("-l", list(ListWhat::All, |_| {})),
        ("--list", list(ListWhat::All, |_| {})),
        ("-Ln", list(ListWhat::All, |o| o.numeric = true)),
        ("-L -n", list(ListWhat::All, |o| o.numeric = true)),
        ("-l --numeric", list(ListWhat::All, |o| o.numeric = true)),
        ("-Lnc", list(ListWhat::Conns, |o| o.numeric = true)),
        ("-L --connection --persistent-conn", list(ListWhat::Conns, |o| o.persistent_conn = true)),
        ("-L -t 10.0.0.1:80", list(ListWhat::Service(vip), |_| {})),
        (
            "-Ln -u [2001:db8::1]:53 --stats --exact",
            list(ListWhat::Service(udp("2001:db8::1", 53)), |o| {
                o.numeric = true;
                o.stats = true;
                o.exact = true;
            }),
        ),
        ("-L --rate", list(ListWhat::All, |o| o.rate = true)),
        ("-L --stats -X", list(ListWhat::All, |o| {
            o.stats = true;
            o.exact = true;
        })),
        ("-L --stats --rate", list(ListWhat::All, |o| {
            o.stats = true;
            o.rate = true;
        })),
        ("-L --thresholds --nosort", list(ListWhat::All, |o| {
            o.thresholds = true;
            o.nosort = true;
        })),
        ("-L --persistent-conn", list(ListWhat::All, |o| o.persistent_conn = true)),
        ("-L --tun-info", list(ListWhat::All, |o| o.tun_info = true)),
        ("-L --sort", list(ListWhat::All, |_| {})),
        ("-L --timeout", list(ListWhat::Timeouts, |_| {})),
        ("-Ln -o json", list(ListWhat::All, |o| {
            o.numeric = true;
            o.output = OutputFormat::Json;
        })),
        ("-Lno json", list(ListWhat::All, |o| {
            o.numeric = true;
            o.output = OutputFormat::Json;
        })),
        ("-L -ojson", list(ListWhat::All, |o| o.output = OutputFormat::Json)),
        ("-L --output=json --stats", list(ListWhat::All, |o| {
            o.output = OutputFormat::Json;
            o.stats = true;
        })),
        ("-L --output text", list(ListWhat::All, |_| {})),
        ("-L --timeout -o json", list(ListWhat::Timeouts, |o| o.output = OutputFormat::Json)),
        // Save.
        ("-S", list(ListWhat::Rules, |_| {})),
        ("-S -n", list(ListWhat::Rules, |o| o.numeric = true)),
        ("--save", list(ListWhat::Rules, |_| {})),
        // Services: defaults are wlc, not persistent, host mask.
        ("-A -t 10.0.0.1:80", add_service(vip, |_| {})),
        ("-A -t 10.0.0.1:80 -s rr", add_service(vip, |s| s.scheduler = "rr".into())),
        (
            "--add-service --tcp-service=10.0.0.1:80 --scheduler=wrr",
            add_service(vip, |s| s.scheduler = "wrr".into()),
        ),
        ("-At 10.0.0.1:80 -s lc", add_service(vip, |s| s.scheduler = "lc".into())),
        ("-A -t10.0.0.1:80", add_service(vip, |_| {})),
        ("-A -t=10.0.0.1:80", add_service(vip, |_| {})),
        ("-A -s sed -t 10.0.0.1:80", add_service(vip, |s| s.scheduler = "sed".into())),
        ("-A -t 10.0.0.1:80 -p", add_service(vip, |s| s.persistent = Some(300))),
        (
            "-A -t 10.0.0.1:80 -p -s rr",
            add_service(vip, |s| {
                s.persistent = Some(300);
                s.scheduler = "rr".into();
            }),
        ),
        ("-A -t 10.0.0.1:80 -p 600", add_service(vip, |s| s.persistent = Some(600))),
        ("-A -t 10.0.0.1:80 -p600", add_service(vip, |s| s.persistent = Some(600))),
        ("-A -t 10.0.0.1:80 --persistent=1", add_service(vip, |s| s.persistent = Some(1))),
        ("-A -t 10.0.0.1:80 --persistent", add_service(vip, |s| s.persistent = Some(300))),
        ("-A -t 10.0.0.1:80 -p 2678400", add_service(vip, |s| s.persistent = Some(2_678_400))),
        (
            "-A -t 10.0.0.1:80 -p 600 -M 255.255.255.0",
            add_service(vip, |s| {
                s.persistent = Some(600);
                s.netmask = Netmask::V4(Ipv4Addr::new(255, 255, 255, 0));
            }),
        ),
        (
            "-A -t 10.0.0.1:80 -M 255.255.0.0 -p",
            add_service(vip, |s| {
                s.persistent = Some(300);
                s.netmask = Netmask::V4(Ipv4Addr::new(255, 255, 0, 0));
            }),
        ),
        ("-A -t 10.0.0.1:0 -p", add_service(tcp("10.0.0.1", 0), |s| s.persistent = Some(300))),
        ("-A -t 10.0.0.1 -p 60", add_service(tcp("10.0.0.1", 0), |s| s.persistent = Some(60))),
        (
            "-A -t [2001:db8::1]:443 -p -M 64",
            add_service(tcp("2001:db8::1", 443), |s| {
                s.persistent = Some(300);
                s.netmask = Netmask::V6(64);
            }),
        ),
        ("-A -t 2001:db8::1 -p", add_service(tcp("2001:db8::1", 0), |s| s.persistent = Some(300))),
        ("-A -u 10.0.0.1:53 -o", add_service(udp("10.0.0.1", 53), |s| s.ops = true)),
        ("-A -u 10.0.0.1:53 --ops", add_service(udp("10.0.0.1", 53), |s| s.ops = true)),
        (
            "-A -t 10.0.0.1:80 -s sh -b sh-port,sh-fallback",
            add_service(vip, |s| {
                s.scheduler = "sh".into();
                s.sched_flags = vec!["sh-fallback".into(), "sh-port".into()];
            }),
        ),
        (
            "-A -t 10.0.0.1:80 -s mh --sched-flags mh-port",
            add_service(vip, |s| {
                s.scheduler = "mh".into();
                s.sched_flags = vec!["mh-port".into()];
            }),
        ),
        (
            "-A -t 10.0.0.1:80 -s sh -b flag-2",
            add_service(vip, |s| {
                s.scheduler = "sh".into();
                s.sched_flags = vec!["sh-port".into()];
            }),
        ),
        (
            "-A -t 10.0.0.1:80 -b flag-3,flag-1",
            add_service(vip, |s| s.sched_flags = vec!["flag-1".into(), "flag-3".into()]),
        ),
        ("-A -t 10.0.0.1:80 --pe none", add_service(vip, |_| {})),
        (
            "-E -t 10.0.0.1:80 -s rr",
            Command::Apply(Request::EditService {
                service: ServiceSpec { scheduler: "rr".into(), ..ServiceSpec::new(vip) },
            }),
        ),
        ("-E -t 10.0.0.1:80", Command::Apply(Request::EditService { service: ServiceSpec::new(vip) })),
        ("-D -t 10.0.0.1:80", Command::Apply(Request::DeleteService { service: vip })),
        ("--delete-service -u 10.0.0.1:53", Command::Apply(Request::DeleteService { service: udp("10.0.0.1", 53) })),
        ("-C", Command::Apply(Request::Clear)),
        ("--clear", Command::Apply(Request::Clear)),
        // Real servers: -g (Route) is the default, weight 1, port = service port.
        ("-a -t 10.0.0.1:80 -r 192.168.10.1", add_dest(vip, dest("192.168.10.1", 80, Fwd::Dr, 1))),
        (
            "-a -t 10.0.0.1:80 -r 192.168.10.1:8080 -m -w 5",
            add_dest(vip, dest("192.168.10.1", 8080, Fwd::Nat, 5)),
        ),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -m", add_dest(vip, dest("192.168.10.1", 80, Fwd::Nat, 1))),
        (
            "-a -t 10.0.0.1:80 -r 192.168.10.1:8080 -g",
            add_dest(vip, dest("192.168.10.1", 80, Fwd::Dr, 1)),
        ),
        (
            "-a -t 10.0.0.1:80 -r 192.168.10.1:8080 -i --tun-type ipip",
            add_dest(vip, dest("192.168.10.1", 80, Fwd::Tun, 1)),
        ),
        (
            "-a -t 10.0.0.1:80 -r 192.168.10.1:8080 --ipip",
            add_dest(vip, dest("192.168.10.1", 80, Fwd::Tun, 1)),
        ),
        (
            "-a -t 10.0.0.1:80 -r 192.168.10.1:8080 --fullnat -w 0",
            add_dest(vip, dest("192.168.10.1", 8080, Fwd::FullNat, 0)),
        ),
        (
            "-a -t 10.0.0.1:80 -r 192.168.10.1 -m -x 100 -y 50",
            add_dest(vip, DestSpec { u_threshold: 100, l_threshold: 50, ..dest("192.168.10.1", 80, Fwd::Nat, 1) }),
        ),
        (
            "--add-server -t 10.0.0.1:80 --real-server=192.168.10.1 --masquerading --weight=65535 --u-threshold=2147483647 --l-threshold 0",
            add_dest(vip, DestSpec { u_threshold: 2_147_483_647, ..dest("192.168.10.1", 80, Fwd::Nat, 65535) }),
        ),
        (
            "-a -t [2001:db8::1]:80 -r 192.168.10.1 -i",
            add_dest(tcp("2001:db8::1", 80), dest("192.168.10.1", 80, Fwd::Tun, 1)),
        ),
        (
            "-a -u [2001:db8::1]:53 -r [2001:db8::10]:5353 -m",
            add_dest(udp("2001:db8::1", 53), dest("2001:db8::10", 5353, Fwd::Nat, 1)),
        ),
        (
            "-e -t 10.0.0.1:80 -r 192.168.10.1:80 -m -w 3",
            Command::Apply(Request::EditDest { service: vip, dest: dest("192.168.10.1", 80, Fwd::Nat, 3) }),
        ),
        (
            "-d -t 10.0.0.1:80 -r 192.168.10.1",
            Command::Apply(Request::DeleteDest { service: vip, addr: ip("192.168.10.1"), port: 80 }),
        ),
        (
            "-d -t 10.0.0.1:80 -r 192.168.10.1:8080",
            Command::Apply(Request::DeleteDest { service: vip, addr: ip("192.168.10.1"), port: 8080 }),
        ),
        // Zero, timeouts.
        ("-Z", Command::Apply(Request::Zero { service: None })),
        ("-Z -t 10.0.0.1:80", Command::Apply(Request::Zero { service: Some(vip) })),
        (
            "--set 900 120 300",
            Command::Apply(Request::SetTimeouts { timeouts: Timeouts { tcp: 900, tcpfin: 120, udp: 300 } }),
        ),
        (
            "--set 0 0 2678400",
            Command::Apply(Request::SetTimeouts { timeouts: Timeouts { tcp: 0, tcpfin: 0, udp: 2_678_400 } }),
        ),
        // rvs / DPVS local addresses.
        (
            "-P -t 10.0.0.1:80 -z 192.168.100.1 -F dpdk0",
            Command::Apply(Request::AddLaddr {
                laddr: LaddrSpec { service: vip, addr: ip("192.168.100.1"), ifname: Some("dpdk0".into()) },
            }),
        ),
        (
            "--add-laddr -t 10.0.0.1:80 --laddr=192.168.100.2",
            Command::Apply(Request::AddLaddr {
                laddr: LaddrSpec { service: vip, addr: ip("192.168.100.2"), ifname: None },
            }),
        ),
        (
            "-Q -t 10.0.0.1:80 -z 192.168.100.1 --ifname dpdk1",
            Command::Apply(Request::DeleteLaddr {
                laddr: LaddrSpec { service: vip, addr: ip("192.168.100.1"), ifname: Some("dpdk1".into()) },
            }),
        ),
        ("-G", list(ListWhat::Laddrs(None), |_| {})),
        ("-G -t 10.0.0.1:80 -o json", list(ListWhat::Laddrs(Some(vip)), |o| o.output = OutputFormat::Json)),
        ("--port-stats", list(ListWhat::PortStats, |_| {})),
        ("--port-stats -o json --exact", list(ListWhat::PortStats, |o| {
            o.output = OutputFormat::Json;
            o.exact = true;
        })),
        ("--dataplane-stats", list(ListWhat::DataplaneStats, |_| {})),
        ("--dataplane-stats -X", list(ListWhat::DataplaneStats, |o| o.exact = true)),
        ("--dataplane-stats --output=text", list(ListWhat::DataplaneStats, |_| {})),
        ("--dataplane-stats -o json --exact", list(ListWhat::DataplaneStats, |o| {
            o.output = OutputFormat::Json;
            o.exact = true;
        })),
        // Local actions.
        ("-h", Command::Help),
        ("--help", Command::Help),
        ("-v", Command::Version),
        ("--version", Command::Version),
        ("-R", Command::Restore),
        ("--restore", Command::Restore),
    ]
}

#[test]
fn every_accepted_command_line_parses_to_its_request() {
    let cases = accepted_cases();
    assert!(cases.len() >= 60, "only {} accepted cases", cases.len());
    for (line, expected) in cases {
        assert_eq!(parse(line), Ok(expected), "command line: `{line}`");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TryHelp,
    Popt,
    Fail,
    Refused,
}

fn kind_of(err: &ParseError) -> Kind {
    match err {
        ParseError::TryHelp => Kind::TryHelp,
        ParseError::Popt { .. } => Kind::Popt,
        ParseError::Fail(_) => Kind::Fail,
        ParseError::Refused(_) => Kind::Refused,
    }
}

const NUMERIC: &str = " (lbctl accepts numeric addresses and ports only)";

fn rejected_cases() -> Vec<(&'static str, Kind, String)> {
    use Kind::*;
    let s = |text: &str| text.to_string();
    vec![
        // popt: the first option must be a command.
        ("-t 10.0.0.1:80 -A", TryHelp, s("Try `lbctl -h' or 'lbctl --help' for more information.")),
        ("foo", TryHelp, s("Try `lbctl -h' or 'lbctl --help' for more information.")),
        ("-n -L", TryHelp, s("Try `lbctl -h' or 'lbctl --help' for more information.")),
        ("--frobnicate", TryHelp, s("Try `lbctl -h' or 'lbctl --help' for more information.")),
        ("-L --frobnicate", Popt, s("--frobnicate: unknown option")),
        ("-Lq", Popt, s("-Lq: unknown option")),
        ("-L --list-all", Popt, s("--list-all: unknown option")),
        ("-A -t", Popt, s("-t: missing argument")),
        ("-A --tcp-service", Popt, s("--tcp-service: missing argument")),
        ("-L --numeric=yes", Popt, s("--numeric: option does not take an argument")),
        ("-L -o", Popt, s("-o: missing argument")),
        ("-A -t 10.0.0.1:80 -E", Fail, s("invalid option `-E'")),
        ("-L -h", Fail, s("invalid option `-h'")),
        ("-L -Z", Fail, s("invalid option `-Z'")),
        // commands_v_options: compulsory options.
        ("-A", Fail, s("You need to supply the 'service-address' option for the 'add-service' command")),
        ("-E -s rr", Fail, s("You need to supply the 'service-address' option for the 'edit-service' command")),
        ("-D", Fail, s("You need to supply the 'service-address' option for the 'delete-service' command")),
        ("-a -t 10.0.0.1:80", Fail, s("You need to supply the 'real-server' option for the 'add-server' command")),
        ("-e -t 10.0.0.1:80 -w 3", Fail, s("You need to supply the 'real-server' option for the 'edit-server' command")),
        ("-d -r 192.168.10.1", Fail, s("You need to supply the 'service-address' option for the 'delete-server' command")),
        ("-P -t 10.0.0.1:80", Fail, s("You need to supply the 'local-address' option for the 'add-laddr' command")),
        ("-Q -z 192.168.100.1", Fail, s("You need to supply the 'service-address' option for the 'del-laddr' command")),
        // commands_v_options: illegal options.
        ("-A -t 10.0.0.1:80 -r 192.168.10.1", Fail, s("Illegal 'real-server' option with the 'add-service' command")),
        ("-A -t 10.0.0.1:80 -w 1", Fail, s("Illegal 'weight' option with the 'add-service' command")),
        ("-A -t 10.0.0.1:80 -m", Fail, s("Illegal 'forwarding-method' option with the 'add-service' command")),
        ("-E -t 10.0.0.1:80 -n", Fail, s("Illegal 'numeric' option with the 'edit-service' command")),
        ("-D -t 10.0.0.1:80 -s rr", Fail, s("Illegal 'scheduler' option with the 'delete-service' command")),
        ("-C -t 10.0.0.1:80", Fail, s("Illegal 'service-address' option with the 'flush' command")),
        ("-L -s rr", Fail, s("Illegal 'scheduler' option with the 'list' command")),
        ("-L -p", Fail, s("Illegal 'persistent' option with the 'list' command")),
        ("-L --tun-type ipip", Fail, s("Illegal 'tun-type' option with the 'list' command")),
        ("-L --mcast-interface eth0", Fail, s("Illegal 'mcast-interface' option with the 'list' command")),
        ("-S --stats", Fail, s("Illegal 'stats' option with the 'save' command")),
        ("-S -t 10.0.0.1:80", Fail, s("Illegal 'service-address' option with the 'save' command")),
        ("-S -o", Fail, s("Illegal 'ops' option with the 'save' command")),
        ("-S -o json", Fail, s("unexpected argument json")),
        ("-Z -n", Fail, s("Illegal 'numeric' option with the 'zero' command")),
        ("-R -n", Fail, s("Illegal 'numeric' option with the 'restore' command")),
        ("--set 900 120 300 -n", Fail, s("Illegal 'numeric' option with the 'set' command")),
        ("-d -t 10.0.0.1:80 -r 192.168.10.1 -w 2", Fail, s("Illegal 'weight' option with the 'delete-server' command")),
        ("-d -t 10.0.0.1:80 -r 192.168.10.1 -m", Fail, s("Illegal 'forwarding-method' option with the 'delete-server' command")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -s rr", Fail, s("Illegal 'scheduler' option with the 'add-server' command")),
        ("-A -t 10.0.0.1:80 --syncid 5", Fail, s("Illegal 'syncid' option with the 'add-service' command")),
        ("-A -t 10.0.0.1:80 -z 192.168.100.1", Fail, s("Illegal 'local-address' option with the 'add-service' command")),
        ("-L -z 192.168.100.1", Fail, s("Illegal 'local-address' option with the 'list' command")),
        ("-G -c", Fail, s("Illegal 'connection' option with the 'get-laddr' command")),
        ("-A -t 10.0.0.1:80 --output json", Fail, s("Illegal 'output' option with the 'add-service' command")),
        ("--port-stats -n", Fail, s("Illegal 'numeric' option with the 'port-stats' command")),
        ("--dataplane-stats -n", Fail, s("Illegal 'numeric' option with the 'dataplane-stats' command")),
        ("--dataplane-stats -t 10.0.0.1:80", Fail, s("Illegal 'service-address' option with the 'dataplane-stats' command")),
        ("--dataplane-stats -c", Fail, s("Illegal 'connection' option with the 'dataplane-stats' command")),
        ("--dataplane-stats --stats", Fail, s("Illegal 'stats' option with the 'dataplane-stats' command")),
        ("--dataplane-stats --ops", Fail, s("Illegal 'ops' option with the 'dataplane-stats' command")),
        ("--dataplane-stats -o yaml", Fail, s("illegal output format `yaml' specified (json or text)")),
        ("--dataplane-stats 0", Fail, s("unexpected argument 0")),
        ("-L --dataplane-stats", Fail, s("invalid option `--dataplane-stats'")),
        ("--dataplane-stats --port-stats", Fail, s("invalid option `--port-stats'")),
        ("--dataplane-stats=all", TryHelp, s("Try `lbctl -h' or 'lbctl --help' for more information.")),
        // commands_v_options: exclusive list options.
        ("-L -c -t 10.0.0.1:80", Fail, s("The option 'service-address' conflicts with the 'connection' option in the 'list' command")),
        ("-L -t 10.0.0.1:80 -c", Fail, s("The option 'service-address' conflicts with the 'connection' option in the 'list' command")),
        ("-L -c --timeout", Fail, s("The option 'timeout' conflicts with the 'connection' option in the 'list' command")),
        ("-L --timeout -t 10.0.0.1:80", Fail, s("The option 'timeout' conflicts with the 'service-address' option in the 'list' command")),
        // The list command's own conflict check.
        ("-L -c --stats", Fail, s("options conflicts in the list command")),
        ("-L --timeout --rate", Fail, s("options conflicts in the list command")),
        ("-L -c --thresholds", Fail, s("options conflicts in the list command")),
        ("-L --timeout --persistent-conn", Fail, s("options conflicts in the list command")),
        // Duplicates.
        ("-A -t 10.0.0.1:80 -t 10.0.0.2:80", Fail, s("multiple 'service-address' options specified")),
        ("-A -t 10.0.0.1:80 -u 10.0.0.1:80", Fail, s("multiple 'service-address' options specified")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -m -g", Fail, s("multiple 'forwarding-method' options specified")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 --fullnat -m", Fail, s("multiple 'forwarding-method' options specified")),
        ("-Lnn", Fail, s("multiple 'numeric' options specified")),
        ("-A -t 10.0.0.1:80 -p -p", Fail, s("multiple 'persistent' options specified")),
        // --set and positional arguments.
        ("--set 900 120", Fail, s("--set option requires 3 timeout values")),
        ("--set", Fail, s("--set option requires 3 timeout values")),
        ("--set 900 120 300 60", Fail, s("unexpected argument 60")),
        ("--set 900 x 300", Fail, s("invalid timeout value `x' specified")),
        ("--set 900 120 2678401", Fail, s("invalid timeout value `2678401' specified")),
        ("-L foo", Fail, s("unexpected argument foo")),
        ("-A -u 10.0.0.1:53 -o json", Fail, s("unexpected argument json")),
        // Service semantics.
        ("-A -t 10.0.0.1", Fail, s("Zero port specified for non-persistent service")),
        ("-E -t 10.0.0.1:0 -s rr", Fail, s("Zero port specified for non-persistent service")),
        ("-A -t 10.0.0.1:80 -o", Fail, s("One-Packet Scheduling is only for UDP virtual services")),
        ("-A -t 10.0.0.1:80 -p 0", Fail, s("invalid timeout value `0' specified")),
        ("-A -t 10.0.0.1:80 -p 2678401", Fail, s("invalid timeout value `2678401' specified")),
        ("-A -t 10.0.0.1:80 -p abc", Fail, s("invalid timeout value `abc' specified")),
        ("-A -t 10.0.0.1:80 -p -M 24", Fail, format!("illegal virtual server persistent mask specified{NUMERIC}")),
        ("-A -t [2001:db8::1]:80 -p -M 129", Fail, s("illegal ipv6 netmask specified")),
        ("-A -t [2001:db8::1]:80 -p -M 0", Fail, s("illegal ipv6 netmask specified")),
        ("-A -t 10.0.0.1:80 -b foo", Fail, s("invalid scheduler flag `foo'")),
        ("-A -t 10.0.0.1:80 -b ,", Fail, s("invalid scheduler flag `,'")),
        ("-A -t 10.0.0.1:80 -b sh-port", Fail, s("incompatible scheduler flag `sh-port'")),
        ("-A -t 10.0.0.1:80 -s sh -b mh-fallback", Fail, s("incompatible scheduler flag `mh-fallback'")),
        ("-E -t 10.0.0.1:80 -b mh-port", Fail, s("incompatible scheduler flag `mh-port'")),
        // Addresses (numeric only).
        ("-A -t 10.0.0.1:99999", Fail, format!("illegal virtual server address[:port] specified{NUMERIC}")),
        ("-A -t www.example.com:80", Fail, format!("illegal virtual server address[:port] specified{NUMERIC}")),
        ("-A -t 10.0.0.1:http", Fail, format!("illegal virtual server address[:port] specified{NUMERIC}")),
        ("-A -t [2001:db8::1] -p", Fail, format!("illegal virtual server address[:port] specified{NUMERIC}")),
        ("-A -t 8080", Fail, format!("illegal virtual server address[:port] specified{NUMERIC}")),
        ("-a -t 10.0.0.1:80 -r server1", Fail, format!("illegal real server address[:port] specified{NUMERIC}")),
        ("-P -t 10.0.0.1:80 -z bogus", Fail, format!("illegal local address{NUMERIC}")),
        // Real-server ranges and semantics.
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -w 65536", Fail, s("illegal weight specified")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -w -1", Fail, s("illegal weight specified")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -x 2147483648", Fail, s("illegal u_threshold specified")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -y abc", Fail, s("illegal l_threshold specified")),
        ("-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -m", Fail, s("Different address family is allowed only for tunneling servers")),
        ("-a -t 10.0.0.1:80 -r [2001:db8::2]:80 --fullnat", Fail, s("Different address family is allowed only for tunneling servers")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -m --tun-type ipip", Fail, s("Tunnel options conflict with forward method")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 --tun-nocsum", Fail, s("Tunnel options conflict with forward method")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -i --tun-port 6080", Fail, s("Illegal 'tun-port' option with the 'ipip' tunnel type")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -i --tun-csum", Fail, s("Illegal 'tun-csum' option with the 'ipip' tunnel type")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -i --tun-type vxlan", Fail, s("illegal tunnel type specified")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -i --tun-port 0", Fail, s("illegal tunnel port specified")),
        // Local addresses and output format.
        ("-P -t 10.0.0.1:80 -z 192.168.100.1 -F averyveryverylongname", Fail, s("illegal ifname `averyveryverylongname' specified")),
        ("-L -o yaml", Fail, s("illegal output format `yaml' specified (json or text)")),
        ("-L -o json --output json", Fail, s("multiple 'output' options specified")),
        // Daemon options are validated even though they can never be legal.
        ("-L --syncid 300", Fail, s("illegal syncid specified")),
        ("-L --mcast-group 10.0.0.1", Fail, s("invalid IPv4 mcast-group `10.0.0.1'")),
        ("-L --mcast-port 0", Fail, s("illegal mcast-port specified")),
        // What rvs cannot honour.
        ("-A -f 1", Refused, s("-f: firewall-mark services are not supported by rvs (a kernel-bypass data plane sees no netfilter marks)")),
        ("-A --fwmark-service 1 -s rr", Refused, s("--fwmark-service: firewall-mark services are not supported by rvs (a kernel-bypass data plane sees no netfilter marks)")),
        ("-A --sctp-service 10.0.0.1:80", Refused, s("--sctp-service: SCTP virtual services are not supported by rvs")),
        ("--start-daemon primary", Fail, s("illegal start-daemon parameter specified")),
        ("--start-daemon master --sync-maxlen 20", Fail, s("sync-maxlen 20 out of range 80..=65507")),
        ("--start-daemon master --mcast-group ff02::1", Refused, s("--mcast-group ff02::1: IPv6 sync groups are not supported by rvs")),
        ("-A -t 10.0.0.1:80 -p --pe sip", Refused, s("--pe sip: persistence engines are not supported by rvs")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -i --tun-type gue --tun-port 6080", Refused, s("--tun-type gue: only ipip tunnels are supported by rvs")),
        ("-a -t 10.0.0.1:80 -r 192.168.10.1 -i --tun-type gre", Refused, s("--tun-type gre: only ipip tunnels are supported by rvs")),
        ("-A -t 10.0.0.1:80 -6", Fail, s("-6 used before -f")),
    ]
}

#[test]
fn every_rejected_command_line_fails_with_ipvsadms_meaning() {
    let cases = rejected_cases();
    assert!(cases.len() >= 60, "only {} rejected cases", cases.len());
    for (line, kind, message) in cases {
        match parse(line) {
            Ok(command) => panic!("`{line}` was accepted as {command:?}"),
            Err(err) => {
                assert_eq!(err.to_string(), message, "command line: `{line}`");
                assert_eq!(kind_of(&err), kind, "command line: `{line}`");
            }
        }
    }
}

#[test]
fn exit_codes_follow_ipvsadm() {
    let code = |line: &str| parse(line).map(|_| 0).unwrap_or_else(|e| e.exit_code());
    assert_eq!(code("-t 10.0.0.1:80"), 255, "tryhelp_exit(-1)");
    assert_eq!(code("-L --bogus"), 255, "popt error returns -1");
    assert_eq!(code("-A"), 2, "fail(2, ...)");
    assert_eq!(code("-A -f 1"), 2, "refusals are command-line errors");
    assert_eq!(code("-L"), 0);
}

#[test]
fn non_option_words_anywhere_are_positional_and_double_dash_ends_options() {
    let set = Command::Apply(Request::SetTimeouts {
        timeouts: Timeouts {
            tcp: 1,
            tcpfin: 2,
            udp: 3,
        },
    });
    assert_eq!(parse("--set 1 2 3"), Ok(set.clone()));
    assert_eq!(parse_args(&["--set", "1", "--", "2", "3"]), Ok(set));
    assert_eq!(
        parse_args(&["-L", "--", "-n"]),
        Err(ParseError::Fail("unexpected argument -n".into()))
    );
}

#[test]
fn restore_input_skips_comments_blank_lines_and_a_leading_ipvsadm() {
    let input = "\
# saved by ipvsadm -S
-A -t 10.0.0.1:80 -s wlc -p 300 -M 255.255.255.0

ipvsadm -a -t 10.0.0.1:80 -r 192.168.10.1:80 -m -w 1   # first server
lbctl -a -t 10.0.0.1:80 -r 192.168.10.2:80 -m -w 2
   -P -t 10.0.0.1:80 -z 192.168.100.1 -F dpdk0
ipvsadm
";
    let vip = tcp("10.0.0.1", 80);
    let requests = parse_restore(input).expect("valid restore input");
    assert_eq!(
        requests,
        vec![
            Request::AddService {
                service: ServiceSpec {
                    persistent: Some(300),
                    netmask: Netmask::V4(Ipv4Addr::new(255, 255, 255, 0)),
                    ..ServiceSpec::new(vip)
                },
            },
            Request::AddDest {
                service: vip,
                dest: dest("192.168.10.1", 80, Fwd::Nat, 1)
            },
            Request::AddDest {
                service: vip,
                dest: dest("192.168.10.2", 80, Fwd::Nat, 2)
            },
            Request::AddLaddr {
                laddr: LaddrSpec {
                    service: vip,
                    addr: ip("192.168.100.1"),
                    ifname: Some("dpdk0".into())
                },
            },
        ]
    );
}

#[test]
fn a_bad_restore_line_fails_the_whole_restore_with_its_line_number() {
    let input =
        "-C\n-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 192.168.10.1 -w 70000\n-D -t 10.0.0.1:80\n";
    let err = parse_restore(input).expect_err("line 3 is bad");
    assert_eq!(err.line, 3);
    assert_eq!(err.to_string(), "line 3: illegal weight specified");
}

#[test]
fn restore_lines_may_only_change_the_table() {
    assert_eq!(parse_restore_line("   # only a comment"), Ok(None));
    assert_eq!(parse_restore_line(""), Ok(None));
    assert_eq!(parse_restore_line("-C"), Ok(Some(Request::Clear)));
    for line in ["-L", "-Ln", "-S", "-h", "-v", "-G", "--dataplane-stats"] {
        let err = parse_restore_line(line).expect_err(line);
        assert!(
            err.to_string()
                .starts_with("only commands that change the table"),
            "{line}: {err}"
        );
    }
    assert_eq!(
        parse_restore_line("ipvsadm -R"),
        Err(ParseError::Fail(
            "-R is not allowed in restore input".into()
        ))
    );
}

#[test]
fn parsing_never_panics_on_odd_words() {
    let odd = [
        "-",
        "--",
        "---",
        "-\u{e9}",
        "--=",
        "-t=",
        "-A -t []:80",
        "-A -t [",
        "-A -t ]:",
        "-A -t 10.0.0.1:80 -p=",
        "-L -o=",
        "--set \u{1F600} 1 2",
        "-A -t 1.2.3.4:+80",
        "-A -t 1.2.3.4:-1",
        "-A -t :::80",
        "-P -t 10.0.0.1:80 -z [::1",
        "-Lc\u{e9}",
    ];
    for line in odd {
        let _ = parse(line);
    }
}
