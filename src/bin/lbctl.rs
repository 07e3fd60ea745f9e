//! lbctl — ipvsadm for rvs.
//!
//! `lbctl [--socket PATH] <ipvsadm arguments>` parses an ipvsadm 1.31 command
//! line, sends the matching request to `lbd` over its Unix socket, and prints
//! the answer in ipvsadm's formats (or JSON with `-o json`).
//!
//! Rules:
//! * The socket is `--socket PATH` (or `--socket=PATH`, first argument only),
//!   else `$LBCTL_SOCKET`, else `/run/rvs/lbd.sock`.
//! * `-h` and `-v` never touch the socket; command-line errors are reported
//!   before connecting.
//! * Exit status as ipvsadm: 0 success; 2 bad command line or daemon
//!   unreachable; 255 (ipvsadm's -1) unknown option or a change the daemon
//!   refused; 1 a listing the daemon refused. Messages go to stderr without a
//!   prefix, as ipvsadm prints them.
//! * `-R` reads all of stdin, parses every line, and sends one atomic batch.
//! * Invoked as `ipvsadm` (argv[0]'s file name, e.g. through a symlink),
//!   lbctl is ipvsadm 1.31: no `--socket` (the socket is `$LBCTL_SOCKET` or
//!   the default path), no rvs-only option, and `-v`/`-h` print ipvsadm's
//!   version line and usage.
//! * `--reload` (an rvs extension, alone) asks lbd to re-read its
//!   configuration file, as `SIGHUP` does; it prints each change applied,
//!   and on stderr each difference that needs a restart. A refused file
//!   exits 255 with lbd's message (the one `lbd --check-config` prints).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use rvs::ctl::ipvsadm::{self, Command, Dialect};
use rvs::ctl::protocol::{self, Request, Response};

/// How long one request may take (each read and each write).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit statuses (ipvsadm's).
const EXIT_USAGE: u8 = 2;
const EXIT_CHANGE_FAILED: u8 = 255;
const EXIT_LIST_FAILED: u8 = 1;

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("{err:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Splits `--socket PATH` / `--socket=PATH` off the front of the arguments.
fn split_socket(mut args: Vec<String>) -> anyhow::Result<(Option<PathBuf>, Vec<String>)> {
    let Some(first) = args.first() else {
        return Ok((None, args));
    };
    if let Some(path) = first.strip_prefix("--socket=") {
        let path = PathBuf::from(path);
        args.remove(0);
        return Ok((Some(path), args));
    }
    if first == "--socket" {
        if args.len() < 2 {
            bail!("--socket: missing argument");
        }
        let path = PathBuf::from(args.remove(1));
        args.remove(0);
        return Ok((Some(path), args));
    }
    Ok((None, args))
}

fn socket_path(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os(protocol::SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(protocol::DEFAULT_SOCKET_PATH))
}

/// The command language: ipvsadm's when invoked as `ipvsadm`.
fn dialect() -> Dialect {
    let argv0 = std::env::args_os().next().map(PathBuf::from);
    match argv0.as_deref().and_then(std::path::Path::file_name) {
        Some(name) if name == "ipvsadm" => Dialect::Ipvsadm,
        _ => Dialect::Lbctl,
    }
}

fn run() -> anyhow::Result<u8> {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(text) => args.push(text),
            Err(raw) => bail!("argument {raw:?} is not valid UTF-8"),
        }
    }
    let dialect = dialect();
    let (socket, args) = match dialect {
        Dialect::Lbctl => split_socket(args)?,
        Dialect::Ipvsadm => (None, args),
    };
    if dialect == Dialect::Lbctl && args.len() == 1 && args[0] == "--reload" {
        return reload(&socket_path(socket));
    }
    if dialect == Dialect::Lbctl && args.len() == 1 && args[0] == "--announce" {
        return announce(&socket_path(socket), &Request::Announce);
    }
    if dialect == Dialect::Lbctl {
        match rvs::announce::parse_drain_args(&args) {
            Some(Ok(request)) => return announce(&socket_path(socket), &request),
            Some(Err(usage)) => {
                eprintln!("{usage}");
                return Ok(EXIT_USAGE);
            }
            None => {}
        }
    }

    let command = match ipvsadm::parse_args_as(&args, dialect) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("{err}");
            return Ok(u8::try_from(err.exit_code()).unwrap_or(EXIT_CHANGE_FAILED));
        }
    };

    match command {
        Command::Help => {
            print_out(&match dialect {
                Dialect::Lbctl => ipvsadm::usage(),
                Dialect::Ipvsadm => ipvsadm::ipvsadm_usage(),
            })?;
            Ok(0)
        }
        Command::Version => {
            print_out(&match dialect {
                Dialect::Lbctl => ipvsadm::version(),
                Dialect::Ipvsadm => ipvsadm::ipvsadm_version(),
            })?;
            Ok(0)
        }
        Command::Apply(request) => apply(&socket_path(socket), &request),
        Command::Restore => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read restore input from stdin")?;
            let requests = match ipvsadm::parse_restore_as(&input, dialect) {
                Ok(requests) => requests,
                Err(err) => {
                    eprintln!("{err}");
                    return Ok(u8::try_from(err.error.exit_code()).unwrap_or(EXIT_USAGE));
                }
            };
            if requests.is_empty() {
                return Ok(0);
            }
            apply(&socket_path(socket), &Request::Batch { requests })
        }
        Command::List(list) => {
            let response = call(&socket_path(socket), &list.request())?;
            if let Response::Conns {
                truncated: true,
                conns,
            } = &response
            {
                eprintln!(
                    "lbctl: connection list truncated by lbd after {} entries",
                    conns.len()
                );
            }
            match ipvsadm::render(&list, &response) {
                Ok(text) => {
                    print_out(&text)?;
                    Ok(0)
                }
                Err(err) => {
                    eprintln!("{err}");
                    Ok(EXIT_LIST_FAILED)
                }
            }
        }
    }
}

/// `--reload`: prints the changes lbd applied and, on stderr, what only a
/// restart applies.
fn reload(socket: &std::path::Path) -> anyhow::Result<u8> {
    match call(socket, &Request::Reload)? {
        Response::Reloaded {
            applied,
            not_applied,
            ..
        } => {
            let mut text = String::new();
            for line in &applied {
                text.push_str(line);
                text.push('\n');
            }
            print_out(&text)?;
            for line in &not_applied {
                eprintln!("lbctl: not applied: {line}");
            }
            Ok(0)
        }
        other => Ok(refused(other)),
    }
}

/// `--announce` and `--drain`: the announcement's state.
fn announce(socket: &std::path::Path, request: &Request) -> anyhow::Result<u8> {
    match call(socket, request)? {
        Response::Announce { status } => {
            print_out(&rvs::announce::render_status(&status))?;
            Ok(0)
        }
        other => Ok(refused(other)),
    }
}

/// Sends a change; prints nothing on success, the daemon's message on error.
fn apply(socket: &std::path::Path, request: &Request) -> anyhow::Result<u8> {
    match call(socket, request)? {
        Response::Ok { .. } => Ok(0),
        other => Ok(refused(other)),
    }
}

/// A response that is not the one asked for: the daemon's message when it
/// refused, else the unexpected response; the exit status of a failed change.
fn refused(response: Response) -> u8 {
    match response {
        Response::Error { message, .. } => eprintln!("{message}"),
        other => eprintln!("unexpected response from lbd: {other:?}"),
    }
    EXIT_CHANGE_FAILED
}

fn call(socket: &std::path::Path, request: &Request) -> anyhow::Result<Response> {
    match protocol::call_unix(socket, request, CALL_TIMEOUT) {
        Ok(response) => Ok(response),
        Err(protocol::ProtocolError::Io(err))
            if matches!(
                err.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            bail!(
                "Can't connect to lbd at {}: {err}\nAre you sure that lbd is running?",
                socket.display()
            )
        }
        Err(err) => bail!("talking to lbd at {}: {err}", socket.display()),
    }
}

/// Writes to stdout; a closed pipe (`lbctl -L | head`) is not an error.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(err).context("cannot write to stdout"),
    }
}
