//! gen_docs — writes the man pages and shell completions that the Debian
//! package ships, generated from the command-line definitions.
//!
//! ```text
//! cargo run --example gen_docs -- OUT_DIR
//! ```
//!
//! writes `OUT_DIR/man/{lbd.8,lbctl.8}` (clap_mangen) and
//! `OUT_DIR/completions/{bash,zsh,fish}/...` (clap_complete) for `lbd` and
//! `lbctl` through [`rvs::docs::write`]; `lbpktgen --generate-docs
//! OUT_DIR` adds its own (its definition cannot be compiled in here: its
//! modules refer to each other through `crate::`).
//!
//! * `lbd`: its own clap definition, compiled in here from `src/bin/lbd.rs`
//!   (so the page cannot drift from the program).
//! * `lbctl` parses ipvsadm's grammar by hand (clap cannot express
//!   ipvsadm's optional values and command/option matrix), so
//!   [`lbctl_command`] describes it for documentation only: ipvsadm's
//!   commands and options plus rvs's extensions. Every long option it
//!   documents must appear in lbctl's own `-h` text (or be one of the
//!   options lbctl takes before the ipvsadm grammar); generation fails
//!   otherwise, so the page and the parser stay in step.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Arg, ArgAction, Command, CommandFactory};

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../src/bin/lbd.rs"]
mod lbd;

/// A flag (no value) under `heading`.
fn flag(id: &'static str, short: Option<char>, help: &'static str, heading: &'static str) -> Arg {
    let mut arg = Arg::new(id)
        .long(id)
        .action(ArgAction::SetTrue)
        .help(help)
        .help_heading(heading);
    if let Some(c) = short {
        arg = arg.short(c);
    }
    arg
}

/// An option with a value under `heading`.
fn value(
    id: &'static str,
    short: Option<char>,
    name: &'static str,
    help: &'static str,
    heading: &'static str,
) -> Arg {
    let mut arg = Arg::new(id)
        .long(id)
        .value_name(name)
        .action(ArgAction::Set)
        .help(help)
        .help_heading(heading);
    if let Some(c) = short {
        arg = arg.short(c);
    }
    arg
}

const COMMANDS: &str = "Commands";
const SERVICE: &str = "Virtual service";
const OPTIONS: &str = "Options";
const RVS: &str = "rvs extensions";

/// lbctl's command line as documentation: ipvsadm 1.31's grammar and rvs's
/// extensions. Not used for parsing.
fn lbctl_command() -> Command {
    Command::new("lbctl")
        .version(env!("CARGO_PKG_VERSION"))
        .about("ipvsadm for rvs: administer the rvs load balancer (lbd)")
        .long_about(
            "lbctl speaks ipvsadm 1.31's command language to lbd over its Unix socket and \
             prints ipvsadm's formats, so LVS scripts and habits keep working. Installed as \
             the `ipvsadm` alternative by the rvs package. The socket is --socket PATH, else \
             $LBCTL_SOCKET, else /run/rvs/lbd.sock. Every change is validated, built into one \
             snapshot and acknowledged by every worker before lbctl returns. Options rvs \
             cannot honour (-f firewall marks, --sctp-service, the sync daemon, --pe, GUE/GRE \
             tunnels) are refused with a message. Exit status as ipvsadm: 0 success, 2 bad \
             command line or lbd unreachable, 255 a refused change, 1 a refused listing.",
        )
        .override_usage(
            "lbctl [--socket PATH] -A|E -t|u service-address [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]\n\
             lbctl -D -t|u service-address\n\
             lbctl -C | -R | -S [-n]\n\
             lbctl -a|e -t|u service-address -r server-address [-g|i|m|--fullnat] [-w weight] [-x upper] [-y lower]\n\
             lbctl -d -t|u service-address -r server-address\n\
             lbctl -L|l [-t|u service-address] [-c] [-n] [--stats|--rate|--thresholds|--persistent-conn|--timeout] [--exact] [-o json]\n\
             lbctl -Z [-t|u service-address]\n\
             lbctl --set tcp tcpfin udp\n\
             lbctl -P|Q -t|u service-address -z local-address [-F ifname]\n\
             lbctl -G | --port-stats | --dataplane-stats [-o json]\n\
             lbctl --reload",
        )
        .disable_help_flag(true)
        .disable_version_flag(true)
        .args([
            flag("add-service", Some('A'), "add a virtual service with options", COMMANDS),
            flag("edit-service", Some('E'), "edit a virtual service with options", COMMANDS),
            flag("delete-service", Some('D'), "delete a virtual service", COMMANDS),
            flag("clear", Some('C'), "clear the whole table", COMMANDS),
            flag("restore", Some('R'), "restore rules from stdin (applied atomically: all or none)", COMMANDS),
            flag("save", Some('S'), "save rules to stdout in a form -R reads", COMMANDS),
            flag("add-server", Some('a'), "add a real server with options", COMMANDS),
            flag("edit-server", Some('e'), "edit a real server with options", COMMANDS),
            flag("delete-server", Some('d'), "delete a real server", COMMANDS),
            flag("list", Some('L'), "list the table (also -l)", COMMANDS),
            flag("zero", Some('Z'), "zero the counters of one service or of all", COMMANDS),
            value("set", None, "TCP TCPFIN UDP", "set the connection timeouts in seconds (0: unchanged)", COMMANDS),
            flag("help", Some('h'), "print the help", COMMANDS),
            flag("version", Some('v'), "print the version", COMMANDS),
            value("tcp-service", Some('t'), "ADDRESS[:PORT]", "a TCP virtual service; IPv6 addresses in brackets", SERVICE),
            value("udp-service", Some('u'), "ADDRESS[:PORT]", "a UDP virtual service", SERVICE),
            value("scheduler", Some('s'), "SCHEDULER", "rr, wrr, lc, wlc (default), lblc, lblcr, dh, sh, sed, nq, fo, ovf or mh", OPTIONS),
            value("persistent", Some('p'), "TIMEOUT", "persistent service (default timeout 300 s)", OPTIONS),
            value("netmask", Some('M'), "NETMASK", "persistence granularity", OPTIONS),
            value("sched-flags", Some('b'), "FLAGS", "scheduler flags, comma-separated (sh-fallback, sh-port, mh-fallback, mh-port, ...)", OPTIONS),
            flag("ops", Some('o'), "one-packet scheduling (UDP)", OPTIONS),
            value("real-server", Some('r'), "ADDRESS[:PORT]", "the real server", OPTIONS),
            flag("gatewaying", Some('g'), "direct routing (default)", OPTIONS),
            flag("ipip", Some('i'), "IP-in-IP tunnelling", OPTIONS),
            flag("masquerading", Some('m'), "NAT", OPTIONS),
            value("tun-type", None, "ipip", "tunnel type (only ipip)", OPTIONS),
            value("weight", Some('w'), "WEIGHT", "capacity of the real server", OPTIONS),
            value("u-threshold", Some('x'), "N", "upper connection threshold", OPTIONS),
            value("l-threshold", Some('y'), "N", "lower connection threshold", OPTIONS),
            flag("connection", Some('c'), "list connections and persistence templates", OPTIONS),
            flag("timeout", None, "list the timeouts (tcp tcpfin udp)", OPTIONS),
            flag("stats", None, "list with statistics", OPTIONS),
            flag("rate", None, "list with rates", OPTIONS),
            flag("exact", Some('X'), "exact numbers", OPTIONS),
            flag("thresholds", None, "list with thresholds", OPTIONS),
            flag("persistent-conn", None, "list with persistent connections", OPTIONS),
            flag("tun-info", None, "list with tunnel information", OPTIONS),
            flag("nosort", None, "do not sort services and servers", OPTIONS),
            flag("sort", None, "does nothing (compatibility)", OPTIONS),
            flag("numeric", Some('n'), "numeric output (always on)", OPTIONS),
            value("socket", None, "PATH", "lbd's control socket (first argument only; default $LBCTL_SOCKET, else /run/rvs/lbd.sock)", RVS),
            flag("fullnat", None, "full NAT through the service's local addresses", RVS),
            flag("add-laddr", Some('P'), "add a FULLNAT local address", RVS),
            flag("del-laddr", Some('Q'), "delete a FULLNAT local address", RVS),
            flag("get-laddr", Some('G'), "list FULLNAT local addresses", RVS),
            value("laddr", Some('z'), "ADDRESS", "the FULLNAT local address", RVS),
            value("ifname", Some('F'), "PORT", "the port owning the local address", RVS),
            flag("port-stats", None, "list the NIC ports' counters", RVS),
            flag("dataplane-stats", None, "list per-worker counters and drops by reason", RVS),
            value("output", None, "json|text", "output format of -L, -G, --port-stats, --dataplane-stats (also -o json)", RVS),
            flag("reload", None, "make lbd re-read its configuration file and apply the difference (as SIGHUP); prints each change", RVS),
        ])
}

/// Long options lbctl takes before the ipvsadm grammar (not in `-h`).
const OUTSIDE_GRAMMAR: &[&str] = &["socket", "reload"];

/// Fails if `cmd` documents a long option lbctl's help does not know.
fn check_lbctl(cmd: &Command) -> anyhow::Result<()> {
    let usage = rvs::ctl::ipvsadm::usage();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if OUTSIDE_GRAMMAR.contains(&long) {
            continue;
        }
        if !usage.contains(&format!("--{long}")) {
            bail!("lbctl.8 documents --{long}, which lbctl -h does not list");
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        bail!("usage: cargo run --example gen_docs -- OUT_DIR");
    };
    let lbctl = lbctl_command();
    check_lbctl(&lbctl)?;
    for cmd in [lbd::Args::command(), lbctl] {
        let page = rvs::docs::write(cmd, "8", &out).context("generating the docs")?;
        println!("{}", page.display());
    }
    Ok(())
}
