//! The sync daemons' settings, as `lbctl --start-daemon` (ipvsadm's
//! options) and the YAML `sync:` list give them.
//!
//! Rules: defaults are IPVS's (group 224.0.0.81, port 8848, TTL 1, master
//! `sync_maxlen` 1472, syncid 0); a value IPVS would refuse is refused with
//! the option's name; at most one daemon per role. A daemon that follows a
//! VRRP instance (`vrrp_instance`, keepalived's `lvs_sync_daemon IF VI`)
//! runs both roles in turn, so it is the only one.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::wire::ipvs_sync::{
    DEFAULT_GROUP, DEFAULT_MAXLEN, DEFAULT_PORT, HEADER_LEN, HMAC_TRAILER_LEN,
};

/// Which half of the protocol a daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncRole {
    /// Sends this director's connections.
    Master,
    /// Receives and installs a peer's connections.
    Backup,
}

impl SyncRole {
    /// ipvsadm's word.
    pub fn name(self) -> &'static str {
        match self {
            SyncRole::Master => "master",
            SyncRole::Backup => "backup",
        }
    }
}

/// One sync daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConf {
    /// `master` or `backup` (default `backup`). With `vrrp_instance`, the
    /// role it starts in; the instance's state decides from then on.
    #[serde(default = "default_role")]
    pub role: SyncRole,
    /// `--mcast-interface`: the interface the messages leave by (master)
    /// or the group is joined on (backup); a kernel interface of lbd's
    /// namespace (a port's `kernel_if` or any other). Default: the
    /// kernel's choice.
    #[serde(default)]
    pub interface: Option<String>,
    /// `--syncid` (0: a backup accepts every syncid).
    #[serde(default)]
    pub syncid: u8,
    /// `--sync-maxlen`: largest message (UDP payload).
    #[serde(default = "default_maxlen")]
    pub maxlen: u16,
    /// `--mcast-group`.
    #[serde(default = "default_group")]
    pub group: Ipv4Addr,
    /// `--mcast-port`.
    #[serde(default = "default_port")]
    pub port: u16,
    /// `--mcast-ttl`.
    #[serde(default = "default_ttl")]
    pub ttl: u8,
    /// rvs: shared key of the messages' HMAC (`sync::auth`); YAML only,
    /// never listed. `None`: messages are neither signed nor checked.
    #[serde(default, skip_serializing)]
    pub auth_key: Option<String>,
    /// The VRRP instance this daemon follows, as keepalived's
    /// `lvs_sync_daemon IF VI` (`ipvs_syncd_cmd`): master while the
    /// instance is MASTER, backup while it is BACKUP or FAULT. `None`: the
    /// daemon keeps its `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp_instance: Option<String>,
}

fn default_role() -> SyncRole {
    SyncRole::Backup
}

fn default_maxlen() -> u16 {
    DEFAULT_MAXLEN
}
fn default_group() -> Ipv4Addr {
    DEFAULT_GROUP
}
fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_ttl() -> u8 {
    1
}

/// A setting IPVS would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncConfError {
    /// `maxlen` cannot hold a header and one IPv6 entry, or exceeds a UDP
    /// datagram.
    #[error("sync-maxlen {0} out of range 80..=65507")]
    Maxlen(u16),
    /// Not a multicast group.
    #[error("mcast-group {0} is not an IPv4 multicast address")]
    Group(Ipv4Addr),
    /// Port 0.
    #[error("mcast-port 0 is not a port")]
    Port,
    /// TTL 0.
    #[error("mcast-ttl 0 out of range 1..=255")]
    Ttl,
    /// `maxlen` cannot hold a header, one IPv6 entry and the HMAC trailer.
    #[error("sync-maxlen {0} too small for signed messages (at least 152)")]
    MaxlenSigned(u16),
    /// An empty shared key.
    #[error("auth_key is empty")]
    EmptyKey,
    /// Two daemons of one role.
    #[error("a {0} sync daemon is given twice")]
    Twice(&'static str),
    /// A daemon that follows a VRRP instance next to another daemon.
    #[error("the sync daemon following vrrp_instance {0} runs both roles in turn: it must be the only one")]
    FollowerNotAlone(String),
}

impl SyncConf {
    /// IPVS's defaults for `role`.
    pub fn new(role: SyncRole) -> SyncConf {
        SyncConf {
            role,
            interface: None,
            syncid: 0,
            maxlen: DEFAULT_MAXLEN,
            group: DEFAULT_GROUP,
            port: DEFAULT_PORT,
            ttl: 1,
            auth_key: None,
            vrrp_instance: None,
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), SyncConfError> {
        if usize::from(self.maxlen) < HEADER_LEN + 72 || self.maxlen > 65507 {
            return Err(SyncConfError::Maxlen(self.maxlen));
        }
        if !self.group.is_multicast() {
            return Err(SyncConfError::Group(self.group));
        }
        if self.port == 0 {
            return Err(SyncConfError::Port);
        }
        if self.ttl == 0 {
            return Err(SyncConfError::Ttl);
        }
        if self.auth_key.as_deref() == Some("") {
            return Err(SyncConfError::EmptyKey);
        }
        let signed_min = HEADER_LEN + 72 + HMAC_TRAILER_LEN;
        if self.auth_key.is_some() && usize::from(self.maxlen) < signed_min {
            return Err(SyncConfError::MaxlenSigned(self.maxlen));
        }
        Ok(())
    }

    /// ipvsadm's `-L --daemon` line.
    pub fn listing(&self) -> String {
        let ifname = self.interface.as_deref().unwrap_or("");
        let mut s = format!(
            "{} sync daemon (mcast={}, syncid={}, maxlen={}, group={}, port={}",
            self.role.name(),
            ifname,
            self.syncid,
            self.maxlen,
            self.group,
            self.port
        );
        if self.role == SyncRole::Master {
            s.push_str(&format!(", ttl={}", self.ttl));
        }
        s.push(')');
        s
    }
}

/// Checks a list of daemons (the YAML `sync:`): each valid, one per role.
pub fn validate_all(list: &[SyncConf]) -> Result<(), SyncConfError> {
    for (i, c) in list.iter().enumerate() {
        c.validate()?;
        if let (Some(name), true) = (&c.vrrp_instance, list.len() > 1) {
            return Err(SyncConfError::FollowerNotAlone(name.clone()));
        }
        if list[..i].iter().any(|o| o.role == c.role) {
            return Err(SyncConfError::Twice(c.role.name()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_ipvs_and_listing_reads_like_ipvsadm() {
        let mut c = SyncConf::new(SyncRole::Master);
        c.interface = Some("eth0".into());
        c.syncid = 1;
        assert_eq!(
            c.listing(),
            "master sync daemon (mcast=eth0, syncid=1, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"
        );
        c.role = SyncRole::Backup;
        assert_eq!(
            c.listing(),
            "backup sync daemon (mcast=eth0, syncid=1, maxlen=1472, group=224.0.0.81, port=8848)"
        );
    }

    #[test]
    fn the_yaml_sync_list_is_read_and_checked_with_the_configuration() {
        use crate::ctl::config::Config;
        let c = Config::from_yaml(
            "sync:\n  - {role: master, interface: sync0, syncid: 14}\n  - {role: backup}\n",
        )
        .expect("valid");
        assert_eq!(c.sync.len(), 2);
        assert_eq!(c.sync[0].interface.as_deref(), Some("sync0"));
        assert_eq!(c.sync[1], SyncConf::new(SyncRole::Backup));
        let err = Config::from_yaml("sync:\n  - {role: master, maxlen: 20}\n").expect_err("maxlen");
        assert_eq!(
            err.to_string(),
            "sync: sync-maxlen 20 out of range 80..=65507"
        );
        let err =
            Config::from_yaml("sync:\n  - {role: master, colour: red}\n").expect_err("unknown key");
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let mut c = SyncConf::new(SyncRole::Backup);
        c.group = "10.0.0.1".parse().unwrap();
        assert_eq!(c.validate(), Err(SyncConfError::Group(c.group)));
        let c = SyncConf {
            maxlen: 20,
            ..SyncConf::new(SyncRole::Master)
        };
        assert_eq!(c.validate(), Err(SyncConfError::Maxlen(20)));
        let c = SyncConf {
            maxlen: 100,
            auth_key: Some("k".into()),
            ..SyncConf::new(SyncRole::Master)
        };
        assert_eq!(c.validate(), Err(SyncConfError::MaxlenSigned(100)));
        let c = SyncConf {
            auth_key: Some(String::new()),
            ..SyncConf::new(SyncRole::Master)
        };
        assert_eq!(c.validate(), Err(SyncConfError::EmptyKey));
        let two = [
            SyncConf::new(SyncRole::Master),
            SyncConf::new(SyncRole::Master),
        ];
        assert_eq!(validate_all(&two), Err(SyncConfError::Twice("master")));
    }

    #[test]
    fn a_daemon_following_a_vrrp_instance_starts_as_backup_and_is_the_only_one() {
        use crate::ctl::config::Config;
        let c: SyncConf =
            serde_yaml_ng::from_str("{interface: sync0, syncid: 51, vrrp_instance: VI_1}")
                .expect("valid");
        assert_eq!(c.role, SyncRole::Backup);
        assert_eq!(c.vrrp_instance.as_deref(), Some("VI_1"));
        let err = Config::from_yaml("sync:\n  - {interface: sync0, vrrp_instance: VI_1}\n")
            .expect_err("no such instance");
        assert_eq!(
            err.to_string(),
            "sync: vrrp_instance VI_1 is not an instance of the vrrp: section"
        );
        let mut two = [
            SyncConf::new(SyncRole::Backup),
            SyncConf::new(SyncRole::Master),
        ];
        two[0].vrrp_instance = Some("VI_1".into());
        assert_eq!(
            validate_all(&two),
            Err(SyncConfError::FollowerNotAlone("VI_1".into()))
        );
    }
}
