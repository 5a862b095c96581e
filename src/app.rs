//! The state every request handler reads: settings, the data file, the resolver, identity.

use std::sync::Arc;

use crate::config::Config;
use crate::dns::Resolver;
use crate::json::Json;
use crate::lifecycle::Lifecycle;
use crate::lineage::Lineage;
use crate::readiness::Readiness;
use crate::storage::Storage;

pub struct App {
    pub config: Config,
    pub storage: Storage,
    pub resolver: Arc<Resolver>,
    pub lifecycle: Arc<Lifecycle>,
    pub readiness: Readiness,
    /// The pod's hostname: the StatefulSet's stable `<name>-<ordinal>`.
    pub hostname: String,
    /// `hello from v2:<hostname>`: the seed's reply to `/store`, and what an empty body stores.
    pub greeting: String,
    /// When this process started (RFC 3339, and seconds since the epoch).
    pub started_at: String,
    pub started_secs: u64,
    /// The volume's lineage, this start included.
    pub lineage: Lineage,
}

impl App {
    /// Why this pod should get no traffic, or None when it is ready: a shutdown under way, a
    /// data file that no longer takes writes, or readiness disabled by hand.
    pub fn not_ready_because(&self) -> Option<String> {
        if self.lifecycle.is_stopping() {
            Some("shutting down".into())
        } else if !self.storage.is_open() {
            Some("data file is not writable".into())
        } else {
            self.readiness.disabled_because()
        }
    }

    /// `/info`: who and where this pod is, and the state of its volume, as one JSON object.
    pub fn info(&self) -> Json {
        let config = &self.config;
        let why = self.not_ready_because();
        Json::object([
            ("hostname", Json::String(self.hostname.clone())),
            (
                "ordinal",
                ordinal(&self.hostname).map_or(Json::Null, Json::Number),
            ),
            ("namespace", Json::text(config.pod_namespace.clone())),
            ("pod_ip", Json::text(config.pod_ip.map(|ip| ip.to_string()))),
            ("node", Json::text(config.node_name.clone())),
            ("version", Json::String(env!("CARGO_PKG_VERSION").into())),
            ("started_at", Json::String(self.started_at.clone())),
            ("ready", Json::Bool(why.is_none())),
            ("not_ready_because", Json::text(why)),
            (
                "data_file",
                Json::String(config.data_file.display().to_string()),
            ),
            ("data_bytes", Json::Number(self.storage.durable_len())),
            ("volume", {
                let mut volume = self.lineage.to_json();
                if let Json::Object(members) = &mut volume {
                    members.push(("summary".into(), Json::String(self.lineage.summary())));
                }
                volume
            }),
        ])
    }
}

/// The ordinal of a StatefulSet pod's name: the number after its last `-`.
pub fn ordinal(name: &str) -> Option<u64> {
    let (_, digits) = name.rsplit_once('-')?;
    crate::decimal::parse_decimal(digits)
        .ok()
        .filter(|_| digits.len() == 1 || !digits.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_the_last_dash() {
        assert_eq!(ordinal("hello-stateful-2"), Some(2));
        assert_eq!(ordinal("web-10"), Some(10));
        assert_eq!(ordinal("web-0"), Some(0));
        assert_eq!(ordinal("web-01"), None);
        assert_eq!(ordinal("hello-stateful"), None);
        assert_eq!(ordinal("vm"), None);
        assert_eq!(ordinal("web-"), None);
    }
}
