//! The `announce:` block of lbd's YAML: where the BIRD include goes and
//! how BIRD is told to re-read it. A leaf that `ctl::config` embeds.
//!
//! Rules: every field is checked before lbd opens a device
//! ([`AnnounceConf::validate`]); the protocol name becomes a BIRD symbol,
//! so it is restricted to BIRD's symbol characters.

use std::path::PathBuf;

use serde::Deserialize;

/// `announce: { bird_include: PATH, birdc: [ARGV...], protocol: NAME }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceConf {
    /// The file lbd (re)writes atomically: `protocol static NAME4 { ipv4;
    /// route VIP/32 blackhole; ... }` and `NAME6` for IPv6; BIRD's
    /// configuration `include`s it at top level.
    pub bird_include: PathBuf,
    /// The command that makes BIRD re-read its configuration (run without
    /// a shell, only when the set changes; default `birdc configure`).
    #[serde(default = "default_birdc")]
    pub birdc: Vec<String>,
    /// The static protocols' name prefix (default `rvs_vips`: protocols
    /// `rvs_vips4` and `rvs_vips6`, which BIRD's export filters name).
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_birdc() -> Vec<String> {
    vec!["birdc".to_string(), "configure".to_string()]
}

fn default_protocol() -> String {
    "rvs_vips".to_string()
}

impl AnnounceConf {
    /// An announcement to `bird_include` with the default command and
    /// protocol name.
    pub fn new(bird_include: impl Into<PathBuf>) -> AnnounceConf {
        AnnounceConf {
            bird_include: bird_include.into(),
            birdc: default_birdc(),
            protocol: default_protocol(),
        }
    }

    /// Checks the fields: a non-empty command, an include path with a file
    /// name, a protocol name BIRD accepts as a symbol.
    pub fn validate(&self) -> Result<(), String> {
        if self.birdc.is_empty() || self.birdc[0].is_empty() {
            return Err("birdc: the command is empty".to_string());
        }
        if self.bird_include.file_name().is_none() {
            return Err(format!(
                "bird_include: {} names no file",
                self.bird_include.display()
            ));
        }
        let p = &self.protocol;
        let first_ok = p
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || p.len() > 60 || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "protocol: {p:?} is not a BIRD symbol (a letter or _, then letters, digits, _; at most 60)"
            ));
        }
        Ok(())
    }

    /// The static protocol holding the IPv4 (`v6` false) or IPv6 routes.
    pub fn protocol_name(&self, v6: bool) -> String {
        format!("{}{}", self.protocol, if v6 { 6 } else { 4 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_block_defaults_to_birdc_configure_and_rvs_vips() {
        let c: AnnounceConf =
            serde_yaml_ng::from_str("bird_include: /run/rvs/bird-vips.conf").expect("yaml");
        assert_eq!(c.birdc, ["birdc", "configure"]);
        assert_eq!(c.protocol_name(false), "rvs_vips4");
        assert_eq!(c.protocol_name(true), "rvs_vips6");
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn announce_block_refuses_an_empty_command_and_a_bad_protocol_name() {
        let mut c = AnnounceConf::new("/run/x.conf");
        c.birdc.clear();
        assert!(c.validate().unwrap_err().contains("birdc"));
        let mut c = AnnounceConf::new("/run/x.conf");
        c.protocol = "rvs-vips".into();
        assert!(c.validate().unwrap_err().contains("not a BIRD symbol"));
        let c: Result<AnnounceConf, _> = serde_yaml_ng::from_str("bird_include: /a\nbirc: [x]");
        assert!(c.is_err(), "unknown keys are refused");
    }
}
