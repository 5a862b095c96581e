//! The readiness switch: `POST /readyz/disable` takes this pod out of service on purpose, as
//! Kubernetes' own StatefulSet tests do by breaking a pod's readiness probe, and
//! `POST /readyz/enable` puts it back. Its Service then drops it from the DNS records its peers
//! and the ingress use, and a StatefulSet holds an ordered scale-up or a rolling update behind
//! it. The switch lives in memory only: a restarted pod is ready again.

use std::sync::Mutex;

use crate::sync::lock;

#[derive(Default)]
pub struct Readiness {
    /// When readiness was disabled (RFC 3339); None while enabled.
    disabled_at: Mutex<Option<String>>,
}

impl Readiness {
    /// Disables readiness at `now`, or keeps the earlier time when it already is. Returns the
    /// time it has been disabled since.
    pub fn disable(&self, now: &str) -> String {
        lock(&self.disabled_at)
            .get_or_insert_with(|| now.to_string())
            .clone()
    }

    /// Enables readiness; returns since when it was disabled, if it was.
    pub fn enable(&self) -> Option<String> {
        lock(&self.disabled_at).take()
    }

    /// Why readiness is off by hand, if it is.
    pub fn disabled_because(&self) -> Option<String> {
        lock(&self.disabled_at)
            .as_ref()
            .map(|at| format!("readiness disabled by POST /readyz/disable at {at}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_keeps_its_first_time_until_enabled() {
        let r = Readiness::default();
        assert_eq!(r.disabled_because(), None);
        assert_eq!(r.disable("T1"), "T1");
        assert_eq!(r.disable("T2"), "T1");
        assert_eq!(
            r.disabled_because().as_deref(),
            Some("readiness disabled by POST /readyz/disable at T1")
        );
        assert_eq!(r.enable().as_deref(), Some("T1"));
        assert_eq!(r.enable(), None);
        assert_eq!(r.disabled_because(), None);
    }
}
