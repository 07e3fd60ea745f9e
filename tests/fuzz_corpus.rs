//! Replays every fuzz target's corpus (`fuzz/corpus/NAME/`, minimised with
//! `cargo fuzz cmin`, regression inputs of fixed crashes included) through
//! the same target bodies the libFuzzer harnesses run
//! (`rvs::fuzz_targets`), on the stable toolchain: what fuzzing found stays
//! fixed, and every invariant the targets assert is checked in CI.

use std::fs;
use std::path::{Path, PathBuf};

use rvs::fuzz_targets::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (every target needs a corpus)", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(name: &str) {
    let (_, body) = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    let files = inputs(name);
    assert!(!files.is_empty(), "the {name} corpus is empty");
    for path in &files {
        let data = fs::read(path).expect("read a corpus input");
        let outcome = std::panic::catch_unwind(|| body(&data));
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{name}: {} fails: {msg}", path.display());
        }
    }
    eprintln!("{name}: {} inputs replayed", files.len());
}

#[test]
fn every_target_has_a_small_corpus_and_a_harness() {
    for (name, _) in TARGETS {
        let n = inputs(name).len();
        assert!(
            (1..=500).contains(&n),
            "{name}: {n} corpus inputs (keep 1..=500: cargo fuzz cmin)"
        );
        let harness = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(harness.is_file(), "{} is missing", harness.display());
    }
}

#[test]
fn wire_corpus_replays() {
    replay("wire");
}

#[test]
fn worker_burst_corpus_replays() {
    replay("worker_burst");
}

#[test]
fn ipvsadm_corpus_replays() {
    replay("ipvsadm");
}

#[test]
fn protocol_corpus_replays() {
    replay("protocol");
}

#[test]
fn config_corpus_replays() {
    replay("config");
}

#[test]
fn keepalived_corpus_replays() {
    replay("keepalived");
}

#[test]
fn ipvs_sync_corpus_replays() {
    replay("ipvs_sync");
}

#[test]
fn vrrp_corpus_replays() {
    replay("vrrp");
}

/// The VRRP corpus reaches past the checks: its seed adverts are accepted
/// by the target's v2 (IPv4) and v3 (IPv6) instances, so fuzzing starts
/// from packets that reach the state machine, not only from rejects.
#[test]
fn vrrp_corpus_holds_an_advert_each_instance_accepts() {
    use rvs::vrrp::state::{Instance, Received};
    let src = "fe80::22".parse().expect("addr");
    let dst = rvs::wire::vrrp::MCAST_V6;
    for spec in rvs::fuzz_targets::vrrp_instances() {
        let accepted = inputs("vrrp").iter().any(|path| {
            let data = fs::read(path).expect("read a corpus input");
            let mut inst = Instance::new(spec.clone());
            inst.start(0);
            let got = if spec.version == 2 {
                inst.receive(1_000, &data)
            } else {
                inst.receive_v6(1_000, src, dst, 255, &data)
            };
            matches!(got, Received::Advert(_))
        });
        assert!(accepted, "no corpus advert is accepted by {}", spec.name);
    }
}
