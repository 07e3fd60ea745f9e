//! Build script. Without the `dpdk` feature it does nothing and needs no
//! DPDK. With it (needs `pkg-config`, `libdpdk-dev` and `libclang-dev`):
//!
//! 1. finds DPDK with `pkg-config libdpdk` and links its shared libraries
//!    (the EAL of a shared build loads its PMD plugins at run time, see
//!    `src/dataplane/driver/dpdk/eal.rs`);
//! 2. compiles `src/dataplane/driver/dpdk/shim.c` (out-of-line wrappers for
//!    DPDK's `static inline` functions) with the cflags pkg-config gives;
//! 3. generates Rust bindings for `shim.h` into `$OUT_DIR/dpdk_bindings.rs`
//!    (never committed), allow-listing the `rte_`/`RTE_` items rvs uses;
//! 4. exports the PMD plugin directory it found as `RVS_DPDK_PMD_DIR`
//!    (empty when none) for `dpdk::eal::default_pmd_dir`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    if let Err(msg) = dpdk::build() {
        eprintln!("error: DPDK build setup failed: {msg}");
        std::process::exit(1);
    }
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::env;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const SHIM_DIR: &str = "src/dataplane/driver/dpdk";

    /// Functions the bindings expose (DPDK's exported API and the shim).
    const FUNCTIONS: &[&str] = &[
        "rvs_.*",
        "rte_eal_init",
        "rte_eal_cleanup",
        "rte_eal_process_type",
        "rte_strerror",
        "rte_socket_count",
        "rte_socket_id_by_idx",
        "rte_lcore_count",
        "rte_thread_register",
        "rte_thread_unregister",
        "rte_dev_probe",
        "rte_pktmbuf_pool_create",
        "rte_mempool_free",
        "rte_mempool_avail_count",
        "rte_mempool_in_use_count",
        "rte_eth_dev_count_avail",
        "rte_eth_dev_get_port_by_name",
        "rte_eth_dev_get_name_by_port",
        "rte_eth_dev_info_get",
        "rte_eth_dev_socket_id",
        "rte_eth_dev_configure",
        "rte_eth_dev_adjust_nb_rx_tx_desc",
        "rte_eth_rx_queue_setup",
        "rte_eth_tx_queue_setup",
        "rte_eth_dev_set_mtu",
        "rte_eth_dev_get_mtu",
        "rte_eth_promiscuous_enable",
        "rte_eth_allmulticast_enable",
        "rte_eth_dev_start",
        "rte_eth_dev_stop",
        "rte_eth_dev_close",
        "rte_eth_link_get_nowait",
        "rte_eth_macaddr_get",
        "rte_eth_stats_get",
        "rte_eth_stats_reset",
        "rte_eth_dev_rss_reta_update",
        "rte_eth_dev_rss_reta_query",
        "rte_eth_dev_rss_hash_conf_get",
        "rte_eth_dev_rss_hash_update",
    ];

    pub fn build() -> Result<(), String> {
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
        println!("cargo:rerun-if-env-changed=PKG_CONFIG");
        let manifest =
            env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("CARGO_MANIFEST_DIR: {e}"))?;
        let shim_dir = Path::new(&manifest).join(SHIM_DIR);
        let shim_c = shim_dir.join("shim.c");
        let shim_h = shim_dir.join("shim.h");
        println!("cargo:rerun-if-changed={}", shim_c.display());
        println!("cargo:rerun-if-changed={}", shim_h.display());

        // Link flags (cargo:rustc-link-lib/-search) for the shared libraries.
        let lib = pkg_config::Config::new()
            .atleast_version("21.11")
            .probe("libdpdk")
            .map_err(|e| format!("pkg-config libdpdk: {e} (install libdpdk-dev and pkg-config)"))?;

        // The raw cflags: `-include rte_config.h` and `-march=...` matter
        // for the headers' inline functions, and the pkg-config crate keeps
        // only -I/-D.
        let cflags = pkg_config_query(&["--cflags", "libdpdk"])?;
        let cflags: Vec<String> = cflags.split_whitespace().map(str::to_owned).collect();

        let mut cc = cc::Build::new();
        cc.file(&shim_c)
            .include(&shim_dir)
            .opt_level(3)
            .warnings(true);
        for inc in &lib.include_paths {
            cc.include(inc);
        }
        for flag in &cflags {
            cc.flag(flag);
        }
        cc.try_compile("rvs_dpdk_shim")
            .map_err(|e| format!("compiling {}: {e}", shim_c.display()))?;

        let mut builder = bindgen::Builder::default()
            .header(shim_h.to_string_lossy())
            .clang_args(cflags.iter())
            .allowlist_var("RTE_.*")
            .allowlist_type("rte_eth_.*|rte_mbuf|rte_mempool|rte_ether_addr|rte_proc_type_t")
            .derive_default(true)
            .derive_debug(false)
            .prepend_enum_name(false)
            .generate_comments(false)
            .layout_tests(true)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
        for f in FUNCTIONS {
            builder = builder.allowlist_function(f);
        }
        let bindings = builder.generate().map_err(|e| {
            format!(
                "bindgen on {}: {e} (install libclang-dev)",
                shim_h.display()
            )
        })?;
        let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
        bindings
            .write_to_file(out.join("dpdk_bindings.rs"))
            .map_err(|e| format!("writing bindings: {e}"))?;

        // Where the PMD plugins are (Debian: <libdir>/dpdk/pmds-<ABI>).
        let libdir = pkg_config_query(&["--variable=libdir", "libdpdk"])?;
        let pmd_dir = find_pmd_dir(Path::new(libdir.trim())).unwrap_or_default();
        println!("cargo:rustc-env=RVS_DPDK_PMD_DIR={pmd_dir}");
        println!("cargo:rustc-env=RVS_DPDK_VERSION={}", lib.version);
        Ok(())
    }

    fn pkg_config_query(args: &[&str]) -> Result<String, String> {
        let exe = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
        let out = Command::new(&exe)
            .args(args)
            .output()
            .map_err(|e| format!("running {exe}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{exe} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        String::from_utf8(out.stdout).map_err(|e| format!("{exe} output: {e}"))
    }

    fn find_pmd_dir(libdir: &Path) -> Option<String> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(libdir.join("dpdk"))
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("pmds-"))
            })
            .collect();
        dirs.sort();
        dirs.pop().map(|p| p.to_string_lossy().into_owned())
    }
}
