//! A client's bounded request loop through the director, for the health
//! and keepalived end-to-end tests: a curl every 50 ms (each bounded by
//! `--max-time 2`), each answer recorded with its start and end time, the
//! client port and the answering server (or curl's exit code); and the
//! bounded wait that measures how long a condition took.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::process::poll_until;

/// One request of the client loop: start and end time (s since the loop
/// began), the client port, the answering server or the curl exit code.
pub type Answer = (f64, f64, u16, Result<String, i32>);

/// A curl every 50 ms from the client to `url` until stopped (each bounded
/// by `--max-time 2`: a SYN lost on the shared test machine is retransmitted
/// after 1 s and must not count as an error of the checker); the answers.
pub struct ClientLoop {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    thread: Option<thread::JoinHandle<()>>,
    start: Instant,
}

impl ClientLoop {
    pub fn start(cli: &str, url: &str) -> ClientLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let (ns, url) = (cli.to_string(), url.to_string());
        let (s, a) = (stop.clone(), answers.clone());
        let thread = thread::spawn(move || {
            // Bounded: at most 60 s of requests whatever happens.
            while !s.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
                let at = start.elapsed().as_secs_f64();
                let out = Command::new("ip")
                    .args(["netns", "exec", &ns, "curl", "-s", "-m", "2"])
                    .args(["-w", "\n%{local_port}", &url])
                    .output();
                let (answer, port) = match out {
                    Ok(o) => {
                        let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
                        let (body, port) = text.rsplit_once('\n').unwrap_or(("", &text));
                        let port = port.trim().parse().unwrap_or(0);
                        if o.status.success() {
                            (Ok(body.trim().to_string()), port)
                        } else {
                            (Err(o.status.code().unwrap_or(-1)), port)
                        }
                    }
                    Err(_) => (Err(-2), 0),
                };
                let end = start.elapsed().as_secs_f64();
                a.lock().expect("answers").push((at, end, port, answer));
                thread::sleep(Duration::from_millis(50));
            }
        });
        ClientLoop {
            stop,
            answers,
            thread: Some(thread),
            start,
        }
    }

    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn finish(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("client loop");
        }
        std::mem::take(&mut *self.answers.lock().expect("answers"))
    }
}

impl Drop for ClientLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Seconds from `since` until `cond` holds (polled every 20 ms, bounded).
pub fn seconds_until(limit: f64, since: Instant, mut cond: impl FnMut() -> bool) -> Option<f64> {
    poll_until(
        Duration::from_secs_f64(limit),
        Duration::from_millis(20),
        || cond().then(|| since.elapsed().as_secs_f64()),
    )
}

/// The moments (s since the client loop began) of a stop/start scenario:
/// the server was stopped at `stop`, left the table at `down`, was started
/// at `start` and was back in the table at `back`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub stop: f64,
    pub down: f64,
    pub start: f64,
    pub back: f64,
}

/// Prints the client's answers (relative to the stop) and asserts what
/// keepalived's operators expect of them: errors only inside [stop, down]
/// (a request in flight at the stop counts), only `survivor` answering
/// between the removal and the start, and both `survivor` and `restarted`
/// answering once the server is back.
pub fn assert_answers_follow(
    what: &str,
    answers: &[Answer],
    w: Window,
    survivor: &str,
    restarted: &str,
) {
    let shown: Vec<String> = answers
        .iter()
        .map(|(at, _, port, a)| match a {
            Ok(name) => format!("{:.2}:{name}", at - w.stop),
            Err(code) => format!("{:.2}:E{code}@{port}", at - w.stop),
        })
        .collect();
    println!(
        "{what} client answers (s after the stop): {}",
        shown.join(" ")
    );
    let failed: Vec<String> = answers
        .iter()
        .filter(|(.., a)| a.is_err())
        .map(|(at, ..)| format!("{:.2}", at - w.stop))
        .collect();
    println!(
        "{what} client loop: {} requests, {} failed at {failed:?}",
        answers.len(),
        failed.len()
    );
    for (at, end, _, a) in answers {
        if a.is_err() {
            assert!(
                *end >= w.stop && *at <= w.down + 0.1,
                "{what}: error outside [stop, removal] at {:.2}: {a:?}",
                at - w.stop
            );
        }
        if *at > w.down + 0.1 && *at < w.start {
            assert_eq!(a.as_deref(), Ok(survivor), "{what}: at {:.2}", at - w.stop);
        }
    }
    let after: Vec<&str> = answers
        .iter()
        .filter(|(at, ..)| *at > w.back + 0.2)
        .filter_map(|(.., a)| a.as_deref().ok())
        .collect();
    assert!(
        after.contains(&survivor) && after.contains(&restarted),
        "{what}: after the restart: {after:?}"
    );
}
