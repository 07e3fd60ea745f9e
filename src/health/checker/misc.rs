//! health::checker::misc — MISC_CHECK: runs the operator's script as a
//! child process on the async runtime (never blocking the health thread or
//! the state machine) and reads its exit status as keepalived does
//! (`check_misc.c`): 0 up, 1 down, with `misc_dynamic` 2..=255 up at weight
//! `code − 2`; killed when `misc_timeout` passes, which is a failure. The
//! child is killed (SIGKILL) and reaped when the check is dropped (daemon
//! stop). stdin/stdout/stderr go to /dev/null.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::Outcome;
use crate::health::state::misc_result;

/// Runs `argv` within `limit`.
pub async fn check(argv: &[String], dynamic: bool, limit: Duration) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return Outcome::fail("empty command");
    };
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Outcome::fail(format!("cannot run {program}: {e}")),
    };
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Outcome::fail(format!("wait: {e}")),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Outcome::fail("timed out, killed");
        }
    };
    let code = status.code();
    let (ok, weight) = misc_result(code, dynamic);
    let reason = match code {
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".to_string(),
    };
    Outcome { ok, reason, weight }
}
