//! ctl::ipvsadm — ipvsadm 1.31 compatibility: command lines in, listings out.
//!
//! Owns the operator-facing half of the control plane:
//! * [`parse`] turns an ipvsadm command line (or one `-R` restore line) into a
//!   [`Command`], with ipvsadm's option grammar, defaults, ranges, legal
//!   combinations (`commands_v_options`) and error wording;
//! * [`format`](mod@format) prints daemon responses exactly as ipvsadm 1.31
//!   prints them, column for column, or as JSON (`-o json`).
//!
//! Rules and deliberate differences from ipvsadm (see also
//! `reference/ipvsadm.md`):
//! * Addresses and ports are numeric only; host and service names are not
//!   resolved (errors say so). Listings are always numeric, with or without
//!   `-n`; headers and columns are unchanged.
//! * Refused, with a message saying why: `-f/--fwmark-service`, `-6`,
//!   `--sctp-service`, `--pe` other than `none`, `--tun-type gue|gre`,
//!   IPv6 sync groups. The sync daemon (`--start-daemon`, `--stop-daemon`,
//!   `-L --daemon`) is `crate::sync`; `-L --daemon --exact` adds its
//!   counters (rvs).
//! * rvs extensions: `--fullnat` (forwarding method of a real server),
//!   DPVS-style local addresses `-P/--add-laddr`, `-Q/--del-laddr`,
//!   `-G/--get-laddr`, `-z/--laddr ADDR`, `-F/--ifname PORT`, the
//!   `--port-stats` and `--dataplane-stats` listings, and the output format
//!   `-o json` / `--output json`. Unlike DPVS, `-F` is optional (lbd can pick
//!   the port by route) and `-G` accepts `-n`. `-o` keeps ipvsadm's meaning
//!   (`--ops`) with `-A`/`-E`; it takes a format argument only with the
//!   listing commands `-L`/`-l`, `-G`, `--port-stats` and `--dataplane-stats`,
//!   where `--ops` is illegal anyway, so no valid ipvsadm command line changes
//!   meaning.
//! * Thresholds are not saved by `-S` (as in ipvsadm). Restore lines may start
//!   with `ipvsadm` or `lbctl`; `#` starts a comment.
//! * `-S` additionally saves local addresses as `-P` lines (only when a
//!   service has some), so that `-S | -R` round-trips a FULLNAT table.
//! * `-R` parses every line first and sends one atomic batch: a bad line
//!   changes nothing (ipvsadm applies the lines before the bad one). Only
//!   table-changing commands are allowed in restore input.
//! * Invoked as `ipvsadm` (a symlink to lbctl), the command language is
//!   ipvsadm 1.31's alone ([`Dialect::Ipvsadm`]): rvs's options are
//!   unknown options, `-o` is always `--ops`, `-v` and `-h` print
//!   ipvsadm's version line and usage ([`ipvsadm_version`],
//!   [`ipvsadm_usage`]).
//! * Sorting compares addresses as numbers; ipvsadm's comparator subtracts
//!   32-bit values into an `int` and can misorder addresses far apart.

pub mod format;
pub mod parse;

pub use format::{render, RenderError};
pub use parse::{
    parse_args, parse_args_as, parse_restore, parse_restore_as, parse_restore_line,
    parse_restore_line_as, Dialect, ParseError, RestoreError,
};

use crate::ctl::protocol::{Request, ServiceKey};

/// What an lbctl command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A change (`-A -E -D -C -a -e -d -Z --set -P -Q`): send the request,
    /// print nothing on success.
    Apply(Request),
    /// A listing (`-L`, `-S`, `-G`, `--port-stats`, `--dataplane-stats`): send
    /// [`ListCommand::request`], print [`render`] of the answer.
    List(ListCommand),
    /// `-R`: read commands from standard input and apply them as one batch.
    Restore,
    /// `-h`: print [`usage`].
    Help,
    /// `-v`: print [`version`].
    Version,
}

/// A listing command with its print options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCommand {
    /// What to list.
    pub what: ListWhat,
    /// How to print it.
    pub options: ListOptions,
}

/// The object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListWhat {
    /// `-L`: every service, with the version header.
    All,
    /// `-L -t|-u service`: one service, no version header.
    Service(ServiceKey),
    /// `-L -c`: connections.
    Conns,
    /// `-L --timeout`.
    Timeouts,
    /// `-S`: every service as `-A`/`-a` (and `-P`) rules.
    Rules,
    /// `-G [service]`: FULLNAT local addresses.
    Laddrs(Option<ServiceKey>),
    /// `--port-stats`: NIC port counters.
    PortStats,
    /// `--dataplane-stats`: per-worker counters, drops by reason.
    DataplaneStats,
    /// `--vrrp`: VRRP instances.
    Vrrp,
    /// `--health`: every checked real server and its checkers (rvs).
    Health,
    /// `-L --daemon`: the connection sync daemons.
    Daemon,
}

/// Print options of a listing (ipvsadm's `FMT_*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListOptions {
    /// `-n` (accepted; rvs always prints numerically).
    pub numeric: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--rate`.
    pub rate: bool,
    /// `--thresholds`.
    pub thresholds: bool,
    /// `--persistent-conn`.
    pub persistent_conn: bool,
    /// `--tun-info`.
    pub tun_info: bool,
    /// `--exact` / `-X`.
    pub exact: bool,
    /// `--nosort`.
    pub nosort: bool,
    /// `-o json` / `--output json`.
    pub output: OutputFormat,
}

/// Text (ipvsadm's formats) or JSON (the daemon's response, sorted like the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// ipvsadm's printf formats.
    #[default]
    Text,
    /// Pretty-printed JSON of the response.
    Json,
}

impl ListCommand {
    /// The request that fetches what this listing prints.
    pub fn request(&self) -> Request {
        match &self.what {
            ListWhat::All | ListWhat::Rules => Request::ListServices { service: None },
            ListWhat::Service(key) => Request::ListServices {
                service: Some(*key),
            },
            ListWhat::Conns => Request::ListConns,
            ListWhat::Timeouts => Request::GetTimeouts,
            ListWhat::Laddrs(service) => Request::GetLaddrs { service: *service },
            ListWhat::PortStats => Request::PortStats,
            ListWhat::DataplaneStats => Request::DataplaneStats,
            ListWhat::Vrrp => Request::Vrrp,
            ListWhat::Health => Request::Health,
            ListWhat::Daemon => Request::ListDaemon,
        }
    }
}

/// IPVS version whose formats lbctl reproduces (printed in the `-L` header).
pub const IPVS_VERSION: &str = "1.2.1";

/// ipvsadm release whose command line lbctl accepts.
pub const IPVSADM_VERSION: &str = "1.31";

/// The `-v` text.
pub fn version() -> String {
    format!(
        "lbctl (rvs) {} (ipvsadm v{IPVSADM_VERSION} compatible, protocol version {}, IPVS v{IPVS_VERSION})\n",
        env!("CARGO_PKG_VERSION"),
        crate::ctl::protocol::PROTOCOL_VERSION
    )
}

/// ipvsadm 1.31's release date, as its version line prints it.
pub const IPVSADM_VERSION_DATE: &str = "2019/12/24";

/// `ipvsadm -v` (lbctl invoked as `ipvsadm`): ipvsadm 1.31's version line.
pub fn ipvsadm_version() -> String {
    format!(
        "ipvsadm v{IPVSADM_VERSION} {IPVSADM_VERSION_DATE} (compiled with popt and IPVS v{IPVS_VERSION})\n"
    )
}

/// `ipvsadm -h` (lbctl invoked as `ipvsadm`): ipvsadm 1.31's usage text,
/// unchanged (what rvs refuses is refused when used, with a message).
pub fn ipvsadm_usage() -> String {
    let p = "ipvsadm";
    let mut text = ipvsadm_version();
    text.push_str(&format!(
        "Usage:
  {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]
  {p} -D virtual-service
  {p} -C
  {p} -R
  {p} -S [-n]
  {p} -a|e virtual-service -r server-address [options]
  {p} -d virtual-service -r server-address
  {p} -L|l [virtual-service] [options]
  {p} -Z [virtual-service]
  {p} --set tcp tcpfin udp
  {p} --start-daemon {{master|backup}} [daemon-options]
  {p} --stop-daemon {{master|backup}}
  {p} -h

"
    ));
    text.push_str(
        "Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon              start connection sync daemon
  --stop-daemon               stop connection sync daemon
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --sctp-service    service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,
                                      the default scheduler is wlc.
  --pe            engine              alternate persistence engine may be sip,
                                      not set by default.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                tunnel destination port
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --tun-remcsum                       tunnel encapsulation with remote checksum
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
Daemon Options:
  --syncid sid                        syncid for connection sync (default=255)
  --sync-maxlen length                Max sync message length (default=1472)
  --mcast-interface interface         multicast interface for connection sync
  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)
  --mcast-port port                   UDP port (default=8848)
  --mcast-ttl ttl                     Multicast TTL (default=1)
",
    );
    text
}

/// The `-h` text: ipvsadm 1.31's usage with rvs's extensions and refusals.
pub fn usage() -> String {
    let program = "lbctl";
    let mut text = version();
    text.push_str(&format!(
        "Usage:
  {program} [--socket PATH] <command> [options]
  {program} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags] [-o]
  {program} -D virtual-service
  {program} -C
  {program} -R
  {program} -S [-n]
  {program} -a|e virtual-service -r server-address [options]
  {program} -d virtual-service -r server-address
  {program} -L|l [virtual-service] [options]
  {program} -Z [virtual-service]
  {program} --set tcp tcpfin udp
  {program} -P|Q virtual-service -z local-address [-F ifname]
  {program} -G [virtual-service] [-o json]
  {program} --port-stats [-o json]
  {program} --dataplane-stats [-o json]
  {program} --vrrp [-o json]
  {program} --health [-n] [-o json]
  {program} -h

"
    ));
    text.push_str(
        "Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin (applied atomically)
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --add-laddr       -P        add a FULLNAT local address (rvs)
  --del-laddr       -Q        delete a FULLNAT local address (rvs)
  --get-laddr       -G        list FULLNAT local addresses (rvs)
  --port-stats                list NIC port counters (rvs)
  --dataplane-stats           list per-worker counters and drops by reason (rvs)
  --vrrp                      list VRRP instances: state, priority, master, rejects (rvs)
  --health                    list checked real servers: state, checker, last
                              result and reason, latency, flaps, next check (rvs)
  --help            -h        display this help message
  --version         -v        display the version

virtual-service:
  --tcp-service|-t  service-address   service-address is address[:port]
  --udp-service|-u  service-address   service-address is address[:port]
  addresses and ports are numeric; IPv6 addresses go in brackets: [2001:db8::1]:80

Options:
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,
                                      the default scheduler is wlc.
  --persistent   -p [timeout]         persistent service (default timeout 300)
  --netmask      -M netmask           persistent granularity mask
  --sched-flags  -b flags             scheduler flags (comma-separated)
  --ops          -o                   one-packet scheduling (UDP)
  --real-server  -r server-address    server-address is address (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --fullnat                           full NAT through local addresses (rvs)
  --tun-type      ipip                tunnel type (only ipip)
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --laddr        -z local-address     FULLNAT local address (rvs)
  --ifname       -F ifname            port owning the local address (rvs)
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact        -X                   expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --numeric      -n                   numeric output (always on in lbctl)
  --output       -o json|text         output format of -L, -G, --port-stats,
                                      --dataplane-stats, --health, --vrrp (rvs)

  -L --daemon --exact                 sync daemons and their counters (rvs)

Not supported by rvs (refused): --fwmark-service/-f, --ipv6/-6, --sctp-service,
  --pe (other than none), --tun-type gue|gre, IPv6 --mcast-group.
",
    );
    text
}
