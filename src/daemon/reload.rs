//! daemon::reload — `SIGHUP` and `lbctl --reload`: re-read lbd's
//! configuration file (the YAML of `-c`, or under `--keepalived` the
//! keepalived.conf onto the ports YAML) and apply the difference.
//!
//! Owns the comparison of the file with what runs. The file is the truth
//! for the tables: after a reload the services, their real servers, local
//! addresses and the timeouts are what the file says (changes made with
//! `lbctl` since are undone, as a keepalived reload does).
//!
//! Rules:
//! * A file `lbd --check-config` would refuse is refused with the same
//!   message and changes nothing.
//! * The table difference is applied as ONE batch: one generation, one
//!   snapshot, all or nothing ([`Control::change_planned`]). Services and
//!   real servers that did not change are not touched: they keep their
//!   slots (so their counters and rates), their scheduler state and their
//!   connections. An edited real server keeps its slot and connections too.
//! * What only a restart can change — the socket, workers (count, cores,
//!   table size, idle policy), ports, DPDK arguments, routes, neighbours,
//!   settings — is reported line by line and not applied at all; the table
//!   difference still is.
//! * The plan is made from the configuration in force under the
//!   configuration lock, so an `lbctl` change cannot slip in between.

use std::error::Error;
use std::path::PathBuf;

use crate::ctl::apply::ControlState;
use crate::ctl::config::Config;
use crate::ctl::protocol::{ErrorKind, LaddrSpec, Request, Response};
use crate::ctl::server::Control;
use crate::daemon::check_config;

/// Where lbd's configuration comes from: the file and the command-line
/// override that applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The YAML file (`lbd -c FILE`); with [`ConfigSource::keepalived`],
    /// the keepalived.conf (`lbd --keepalived FILE`).
    pub path: PathBuf,
    /// `lbd --workers N`.
    pub workers: Option<u16>,
    /// `lbd --keepalived`: the services come from `path`, read as
    /// keepalived.conf, onto the ports YAML.
    pub keepalived: Option<KeepalivedSource>,
}

/// What `lbd --keepalived FILE` adds to its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepalivedSource {
    /// The ports YAML (`-c PORTS.yaml`), if any.
    pub ports: Option<PathBuf>,
    /// `--config-id` (keepalived's `-i`) for `@ID` lines.
    pub config_id: String,
}

impl ConfigSource {
    /// Reads the file and applies the command-line override; the error is
    /// the message `lbd --check-config` prints (without `lbd: `).
    pub fn load(&self) -> Result<Config, String> {
        if let Some(k) = &self.keepalived {
            return self.load_keepalived(k);
        }
        self.load_yaml(&self.path)
    }

    /// A YAML file with the `--workers` override.
    fn load_yaml(&self, path: &std::path::Path) -> Result<Config, String> {
        let mut config = Config::load(path).map_err(|e| message(path, &e, None))?;
        if let Some(n) = self.workers {
            config
                .set_workers(n)
                .map_err(|e| message(path, &e, Some(n)))?;
        }
        Ok(config)
    }

    /// keepalived.conf onto the ports YAML, as `lbd --keepalived` starts:
    /// refused when the reader refuses it (its fatal diagnostics, with
    /// file and line, are the message).
    fn load_keepalived(&self, k: &KeepalivedSource) -> Result<Config, String> {
        let ports = k.ports.as_deref().map(|p| self.load_yaml(p)).transpose()?;
        let opts = crate::keepalived::lexer::LexOptions {
            config_id: k.config_id.clone(),
            includes: true,
        };
        let import = crate::keepalived::import(&self.path, &opts, ports);
        import.config.ok_or_else(|| {
            let why: Vec<String> = import
                .diags
                .at_least(crate::keepalived::diag::Severity::StrictInclude)
                .map(ToString::to_string)
                .collect();
            format!(
                "{}: refused (keepalived -t exit {}): {}",
                self.path.display(),
                import.diags.exit_code(),
                why.join("; ")
            )
        })
    }

    /// Loads and validates the file as `lbd --check-config` does.
    pub fn check(&self) -> Result<(Config, ControlState), String> {
        let config = self.load()?;
        check_config(&config).map_err(|e| self.message(&e, None))?;
        let state = config.check().map_err(|e| self.message(&e, None))?;
        Ok((config, state))
    }

    /// `PATH: error: cause: ...` for the file lbd was started with.
    fn message(&self, err: &(dyn Error + 'static), workers: Option<u16>) -> String {
        message(&self.path, err, workers)
    }
}

/// `PATH: error: cause: ...`, as lbd's command line reports a file error
/// (the error and each of its sources, joined by `: `).
fn message(path: &std::path::Path, err: &(dyn Error + 'static), workers: Option<u16>) -> String {
    let what = match workers {
        Some(n) => format!("{} with --workers {n}", path.display()),
        None => path.display().to_string(),
    };
    let mut texts = vec![what];
    let mut cause: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cause {
        texts.push(e.to_string());
        cause = e.source();
    }
    super::log::causes_once(texts)
}

/// What a reload would do to the tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TablePlan {
    /// The changes, in the order they are applied (one batch).
    pub requests: Vec<Request>,
    /// One line per change, for the log and `lbctl --reload`.
    pub lines: Vec<String>,
}

impl TablePlan {
    fn push(&mut self, line: String, request: Request) {
        self.lines.push(line);
        self.requests.push(request);
    }
}

/// The requests that turn the tables of `current` into those of `wanted`
/// (both built by [`ControlState::apply`], so their entries compare in the
/// same normalised form): services that went away are deleted first, then
/// each wanted service is added, or edited where its settings, real servers
/// or local addresses differ; the timeouts last. Unchanged entries get no
/// request.
pub fn plan_tables(current: &ControlState, wanted: &ControlState) -> TablePlan {
    let mut plan = TablePlan::default();
    for s in current.services() {
        if wanted.service(&s.spec.key).is_none() {
            plan.push(
                format!("delete service {}", s.spec.key),
                Request::DeleteService {
                    service: s.spec.key,
                },
            );
        }
    }
    for w in wanted.services() {
        let key = w.spec.key;
        let laddr = |l: &crate::ctl::apply::LaddrEntry| LaddrSpec {
            service: key,
            addr: l.addr,
            ifname: l.ifname.clone(),
        };
        let Some(c) = current.service(&key) else {
            plan.push(
                format!("add service {key} (scheduler {})", w.spec.scheduler),
                Request::AddService {
                    service: w.spec.clone(),
                },
            );
            for l in &w.laddrs {
                plan.push(
                    format!("add local address {} to {key}", l.addr),
                    Request::AddLaddr { laddr: laddr(l) },
                );
            }
            for d in &w.dests {
                plan.push(
                    format!(
                        "add real server {} to {key} (weight {})",
                        std::net::SocketAddr::new(d.spec.addr, d.spec.port),
                        d.spec.weight
                    ),
                    Request::AddDest {
                        service: key,
                        dest: d.spec.clone(),
                    },
                );
            }
            continue;
        };
        if c.spec != w.spec {
            plan.push(
                format!("edit service {key} (scheduler {})", w.spec.scheduler),
                Request::EditService {
                    service: w.spec.clone(),
                },
            );
        }
        for l in &c.laddrs {
            if !w.laddrs.contains(l) {
                plan.push(
                    format!("delete local address {} from {key}", l.addr),
                    Request::DeleteLaddr { laddr: laddr(l) },
                );
            }
        }
        for d in &c.dests {
            if w.dest(&d.spec.addr, d.spec.port).is_none() {
                plan.push(
                    format!(
                        "delete real server {} from {key}",
                        std::net::SocketAddr::new(d.spec.addr, d.spec.port)
                    ),
                    Request::DeleteDest {
                        service: key,
                        addr: d.spec.addr,
                        port: d.spec.port,
                    },
                );
            }
        }
        for l in &w.laddrs {
            if !c.laddrs.contains(l) {
                plan.push(
                    format!("add local address {} to {key}", l.addr),
                    Request::AddLaddr { laddr: laddr(l) },
                );
            }
        }
        for d in &w.dests {
            let rs = std::net::SocketAddr::new(d.spec.addr, d.spec.port);
            match c.dest(&d.spec.addr, d.spec.port) {
                None => plan.push(
                    format!("add real server {rs} to {key} (weight {})", d.spec.weight),
                    Request::AddDest {
                        service: key,
                        dest: d.spec.clone(),
                    },
                ),
                Some(old) if old.spec != d.spec => plan.push(
                    format!(
                        "edit real server {rs} of {key} (weight {} -> {})",
                        old.spec.weight, d.spec.weight
                    ),
                    Request::EditDest {
                        service: key,
                        dest: d.spec.clone(),
                    },
                ),
                Some(_) => {}
            }
        }
    }
    if current.timeouts() != wanted.timeouts() {
        let t = wanted.timeouts();
        plan.push(
            format!(
                "set timeouts tcp {} tcpfin {} udp {}",
                t.tcp, t.tcpfin, t.udp
            ),
            Request::SetTimeouts { timeouts: t },
        );
    }
    plan
}

/// The differences between the configuration lbd started with and a new
/// one that only a restart applies, one line each.
pub fn restart_only(running: &Config, next: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut differs = |what: &str, changed: bool| {
        if changed {
            out.push(format!("{what} changed: restart lbd to apply it"));
        }
    };
    differs("socket", running.socket != next.socket);
    differs(
        "workers (count)",
        running.worker_count() != next.worker_count(),
    );
    differs(
        "workers (cores)",
        running.workers.cores != next.workers.cores,
    );
    differs(
        "workers (conn_capacity, idle, tx_flush_us)",
        running.workers.conn_capacity != next.workers.conn_capacity
            || running.workers.idle != next.workers.idle
            || running.workers.idle_after != next.workers.idle_after
            || running.workers.idle_sleep_us != next.workers.idle_sleep_us
            || running.workers.tx_flush_us != next.workers.tx_flush_us,
    );
    differs("ports", running.ports != next.ports);
    differs("dpdk", running.dpdk != next.dpdk);
    differs("routes", running.routes != next.routes);
    differs("neighbours", running.neighbours != next.neighbours);
    differs("settings", running.settings != next.settings);
    differs("vrrp", running.vrrp != next.vrrp);
    differs("sync", running.sync != next.sync);
    differs("announce", running.announce != next.announce);
    out
}

/// Reloads `source` into `control`, `running` being the configuration lbd
/// started with: refuses a bad file with `--check-config`'s message,
/// applies the table difference as one change, reports what needs a
/// restart. Answers [`Response::Reloaded`] or an error.
pub fn reload(control: &Control, source: &ConfigSource, running: &Config) -> Response {
    let (next, wanted) = match source.check() {
        Ok(checked) => checked,
        Err(message) => {
            return Response::error(
                ErrorKind::Invalid,
                format!("{message}; nothing was changed"),
            )
        }
    };
    let not_applied = restart_only(running, &next);
    let mut lines = Vec::new();
    let answer = control.change_planned(|current| {
        let plan = plan_tables(current, &wanted);
        lines = plan.lines;
        Ok((!plan.requests.is_empty()).then_some(Request::Batch {
            requests: plan.requests,
        }))
    });
    match answer {
        Response::Ok { generation } => Response::Reloaded {
            generation,
            applied: lines,
            not_applied,
        },
        Response::Error { kind, message } => {
            Response::error(kind, format!("{}: {message}", source.path.display()))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::{Daemon, DaemonOptions};
    use std::path::Path;

    const PORTS: &str = "workers: { count: 2 }\n\
        ports:\n\
        \x20 - { name: ext, driver: mem, addrs: [10.0.0.2/24] }\n\
        \x20 - { name: int, driver: mem, addrs: [192.168.10.254/24] }\n";

    const WEB: &str = "services:\n\
        \x20 - proto: tcp\n\
        \x20   vip: 10.0.0.100\n\
        \x20   port: 80\n\
        \x20   scheduler: wrr\n\
        \x20   dests:\n\
        \x20     - { addr: 192.168.10.1, port: 8080, fwd: masq, weight: 1 }\n\
        \x20     - { addr: 192.168.10.2, port: 8080, fwd: masq, weight: 1 }\n";

    fn write(path: &Path, socket: &Path, body: &str) {
        let text = format!("socket: {}\n{PORTS}{body}", socket.display());
        std::fs::write(path, text).expect("write the configuration");
    }

    fn start(dir: &Path, body: &str) -> (Daemon, PathBuf) {
        let file = dir.join("lbd.yaml");
        let socket = dir.join("lbd.sock");
        write(&file, &socket, body);
        let source = ConfigSource {
            path: file.clone(),
            workers: None,
            keepalived: None,
        };
        let config = source.load().expect("valid");
        let options = DaemonOptions {
            source: Some(source),
            ..DaemonOptions::default()
        };
        (Daemon::start(&config, options).expect("start"), file)
    }

    #[test]
    fn reload_applies_a_weight_change_and_a_new_service_as_one_generation_keeping_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (daemon, file) = start(dir.path(), WEB);
        let before = daemon.control().state();
        let socket = daemon.socket_path().to_path_buf();
        let edited = WEB.replace(
            "192.168.10.2, port: 8080, fwd: masq, weight: 1",
            "192.168.10.2, port: 8080, fwd: masq, weight: 3",
        ) + "  - proto: udp\n    vip: 10.0.0.100\n    port: 53\n    scheduler: rr\n    dests:\n      - { addr: 192.168.10.1, fwd: masq }\n";
        write(&file, &socket, &edited);
        let answer = daemon.reload();
        let Response::Reloaded {
            generation,
            applied,
            not_applied,
        } = answer
        else {
            panic!("unexpected answer {answer:?}");
        };
        assert_eq!(generation, before.generation() + 1, "one generation");
        assert_eq!(
            applied,
            [
                "edit real server 192.168.10.2:8080 of TCP 10.0.0.100:80 (weight 1 -> 3)",
                "add service UDP 10.0.0.100:53 (scheduler rr)",
                "add real server 192.168.10.1:53 to UDP 10.0.0.100:53 (weight 1)",
            ]
        );
        assert!(not_applied.is_empty(), "{not_applied:?}");
        let after = daemon.control().state();
        let web = |s: &ControlState| s.services()[0].clone();
        assert_eq!(
            web(&before).id,
            web(&after).id,
            "the service keeps its slot"
        );
        assert_eq!(
            web(&before).dests[0],
            web(&after).dests[0],
            "the untouched real server is unchanged"
        );
        assert_eq!(web(&before).dests[1].id, web(&after).dests[1].id);
        assert_eq!(web(&after).dests[1].spec.weight, 3);
        assert_eq!(after.services().len(), 2);
        // The same file again changes nothing.
        match daemon.reload() {
            Response::Reloaded {
                generation: g,
                applied,
                ..
            } => {
                assert_eq!(g, generation);
                assert!(applied.is_empty(), "{applied:?}");
            }
            other => panic!("unexpected answer {other:?}"),
        }
        daemon.stop().expect("stopped");
    }

    /// A keepalived.conf of one NAT service on `int`'s network, with one
    /// TCP_CHECK'd real server per weight.
    fn ka(weights: &[u32]) -> String {
        let mut t = String::from(
            "virtual_server 10.0.0.100 80 {\n protocol TCP\n lb_algo wrr\n lb_kind NAT\n delay_loop 60\n",
        );
        for (i, w) in weights.iter().enumerate() {
            t.push_str(&format!(
                " real_server 192.168.10.{} 8080 {{\n  weight {w}\n  TCP_CHECK {{\n  }}\n }}\n",
                i + 1
            ));
        }
        t + "}\n"
    }

    #[test]
    fn reload_under_keepalived_rereads_the_keepalived_file_and_refuses_what_it_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = dir.path().join("ports.yaml");
        let socket = dir.path().join("lbd.sock");
        write(&ports, &socket, "");
        let conf = dir.path().join("keepalived.conf");
        std::fs::write(&conf, ka(&[1, 1])).expect("write");
        let source = ConfigSource {
            path: conf.clone(),
            workers: None,
            keepalived: Some(KeepalivedSource {
                ports: Some(ports),
                config_id: "main".to_string(),
            }),
        };
        let config = source.load().expect("valid");
        assert_eq!(config.ports.len(), 2, "the ports come from the YAML");
        let options = DaemonOptions {
            source: Some(source),
            ..DaemonOptions::default()
        };
        let daemon = Daemon::start(&config, options).expect("start");
        std::fs::write(&conf, ka(&[1, 3, 2])).expect("write");
        let answer = daemon.reload();
        let Response::Reloaded { applied, .. } = answer else {
            panic!("unexpected answer {answer:?}");
        };
        assert_eq!(
            applied,
            [
                "edit real server 192.168.10.2:8080 of TCP 10.0.0.100:80 (weight 1 -> 3)",
                "add real server 192.168.10.3:8080 to TCP 10.0.0.100:80 (weight 2)",
            ]
        );
        let generation = daemon.control().state().generation();
        // Several keywords on one line: refused with the line, nothing changes.
        std::fs::write(
            &conf,
            ka(&[1]).replace(" lb_algo wrr", " lb_algo wrr lb_kind DR"),
        )
        .expect("write");
        let Response::Error { message, .. } = daemon.reload() else {
            panic!("a refused keepalived.conf was applied");
        };
        assert!(
            message.starts_with(&format!(
                "{}: refused (keepalived -t exit 4): {}:3: fatal: ",
                conf.display(),
                conf.display()
            )),
            "{message}"
        );
        assert_eq!(daemon.control().state().generation(), generation);
        assert_eq!(daemon.control().state().services()[0].dests.len(), 3);
        daemon.stop().expect("stopped");
    }

    #[test]
    fn a_broken_file_is_refused_with_the_check_config_message_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (daemon, file) = start(dir.path(), WEB);
        let before = daemon.control().state();
        let socket = daemon.socket_path().to_path_buf();
        let broken = WEB.replace("weight: 1 }\n    ", "weight: -4 }\n    ");
        assert_ne!(broken, WEB);
        write(
            &file,
            &socket,
            &format!("{broken}  - proto: tcp\n    vip: 10.0.0.101\n    port: 80\n"),
        );
        let source = ConfigSource {
            path: file.clone(),
            workers: None,
            keepalived: None,
        };
        let expected = source.check().expect_err("the file is invalid");
        assert!(
            expected.starts_with(&format!("{}: ", file.display())),
            "{expected}"
        );
        match daemon.reload() {
            Response::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::Invalid);
                assert_eq!(message, format!("{expected}; nothing was changed"));
            }
            other => panic!("unexpected answer {other:?}"),
        }
        let after = daemon.control().state();
        assert_eq!(after.generation(), before.generation());
        assert_eq!(after.services(), before.services());
        daemon.stop().expect("stopped");
    }

    #[test]
    fn what_needs_a_restart_is_reported_and_not_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (daemon, file) = start(dir.path(), WEB);
        let text = std::fs::read_to_string(&file).expect("read");
        let text = text
            .replace("count: 2", "count: 1")
            .replace("10.0.0.2/24", "10.0.0.3/24")
            .replace("weight: 1 }\n    ", "weight: 2 }\n    ");
        std::fs::write(&file, text).expect("write");
        match daemon.reload() {
            Response::Reloaded {
                applied,
                not_applied,
                ..
            } => {
                assert_eq!(applied.len(), 1, "{applied:?}");
                assert_eq!(
                    not_applied,
                    [
                        "workers (count) changed: restart lbd to apply it",
                        "ports changed: restart lbd to apply it"
                    ]
                );
            }
            other => panic!("unexpected answer {other:?}"),
        }
        assert_eq!(daemon.dataplane().workers(), 2);
        assert_eq!(
            daemon.control().state().ports()[0].addrs[0].0,
            "10.0.0.2".parse::<std::net::IpAddr>().expect("ip")
        );
        daemon.stop().expect("stopped");
    }

    #[test]
    fn without_a_file_reload_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = DaemonOptions {
            socket: Some(dir.path().join("s.sock")),
            ..DaemonOptions::default()
        };
        let daemon = Daemon::start(&Config::default(), options).expect("start");
        match daemon.reload() {
            Response::Error { kind, .. } => assert_eq!(kind, ErrorKind::Unsupported),
            other => panic!("unexpected answer {other:?}"),
        }
        daemon.stop().expect("stopped");
    }
}
