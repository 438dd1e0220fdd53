//! The latest result of every enabled probe and when it was taken, and the rule turning that
//! into "healthy": the last run succeeded and is no older than `max_age`.
//!
//! Probe loops write here; HTTP handlers only read, so a hanging probe can never block them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One finished probe run.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// `Err(reason)` on failure.
    pub outcome: Result<(), String>,
    /// When the run finished.
    pub at: Instant,
    /// How long it took.
    pub latency: Duration,
}

#[derive(Debug, Default)]
struct Slot {
    last: Option<ProbeResult>,
    last_success: Option<Instant>,
    consecutive_failures: u64,
}

/// Health of one probe as reported by the endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeStatus {
    /// The probe's name.
    pub probe: String,
    /// Whether the last run succeeded and is no older than `max_age`.
    pub healthy: bool,
    /// Why it is unhealthy (`None` when healthy).
    pub reason: Option<String>,
    /// Seconds since the last run finished (`None` before the first run).
    pub age_seconds: Option<f64>,
    /// Duration of the last run.
    pub latency_seconds: Option<f64>,
    /// Seconds since the last successful run.
    pub last_success_seconds_ago: Option<f64>,
    /// Failed runs since the last success.
    pub consecutive_failures: u64,
}

/// Latest results of the enabled probes (cheap to clone, shared by the probe loops and routes).
#[derive(Debug, Clone)]
pub struct State {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_age: Duration,
    slots: BTreeMap<String, Mutex<Slot>>,
}

impl State {
    /// State for the given probe names, each without a result yet.
    pub fn new<I, S>(probes: I, max_age: Duration) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let slots = probes
            .into_iter()
            .map(|p| (p.into(), Mutex::new(Slot::default())))
            .collect();
        Self {
            inner: Arc::new(Inner { max_age, slots }),
        }
    }

    /// How old a success may be and still count.
    pub fn max_age(&self) -> Duration {
        self.inner.max_age
    }

    /// Names of the probes this state tracks (sorted).
    pub fn probes(&self) -> impl Iterator<Item = &str> {
        self.inner.slots.keys().map(String::as_str)
    }

    /// Whether `probe` is one of the tracked probes.
    pub fn has_probe(&self, probe: &str) -> bool {
        self.inner.slots.contains_key(probe)
    }

    /// Store the result of a run. Unknown probe names are ignored.
    pub fn record(&self, probe: &str, result: ProbeResult) {
        let Some(slot) = self.inner.slots.get(probe) else {
            return;
        };
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if result.outcome.is_ok() {
            slot.last_success = Some(result.at);
            slot.consecutive_failures = 0;
        } else {
            slot.consecutive_failures += 1;
        }
        slot.last = Some(result);
    }

    /// Status of one probe as of `now` (`None` if the probe is not tracked).
    pub fn status_at(&self, probe: &str, now: Instant) -> Option<ProbeStatus> {
        let slot = self.inner.slots.get(probe)?;
        let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        let secs = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
        let (healthy, reason) = match &slot.last {
            None => (false, Some("no result yet".to_string())),
            Some(r) => {
                let age = now.saturating_duration_since(r.at);
                match &r.outcome {
                    Err(e) => (false, Some(e.clone())),
                    Ok(()) if age > self.inner.max_age => (
                        false,
                        Some(format!(
                            "last result is {:.1}s old (max-age {:?}): the probe is not running",
                            age.as_secs_f64(),
                            self.inner.max_age
                        )),
                    ),
                    Ok(()) => (true, None),
                }
            }
        };
        Some(ProbeStatus {
            probe: probe.to_string(),
            healthy,
            reason,
            age_seconds: slot.last.as_ref().map(|r| secs(r.at)),
            latency_seconds: slot.last.as_ref().map(|r| r.latency.as_secs_f64()),
            last_success_seconds_ago: slot.last_success.map(secs),
            consecutive_failures: slot.consecutive_failures,
        })
    }

    /// Status of one probe now.
    pub fn status(&self, probe: &str) -> Option<ProbeStatus> {
        self.status_at(probe, Instant::now())
    }

    /// Status of every probe as of `now`.
    pub fn all_at(&self, now: Instant) -> Vec<ProbeStatus> {
        self.inner
            .slots
            .keys()
            .filter_map(|p| self.status_at(p, now))
            .collect()
    }

    /// Status of every probe now.
    pub fn all(&self) -> Vec<ProbeStatus> {
        self.all_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: Result<(), String>, at: Instant) -> ProbeResult {
        ProbeResult {
            outcome,
            at,
            latency: Duration::from_millis(3),
        }
    }

    #[test]
    fn no_result_is_unhealthy() {
        let s = State::new(["skydns"], Duration::from_secs(30));
        let st = s.status("skydns").unwrap();
        assert!(!st.healthy);
        assert_eq!(st.reason.as_deref(), Some("no result yet"));
        assert!(s.status("kube2sky").is_none());
    }

    #[test]
    fn fresh_success_is_healthy_stale_success_is_not() {
        let s = State::new(["skydns"], Duration::from_secs(30));
        let t0 = Instant::now();
        s.record("skydns", result(Ok(()), t0));
        assert!(
            s.status_at("skydns", t0 + Duration::from_secs(30))
                .unwrap()
                .healthy
        );
        let stale = s.status_at("skydns", t0 + Duration::from_secs(31)).unwrap();
        assert!(!stale.healthy);
        assert!(stale.reason.unwrap().contains("old"), "stale reason");
    }

    #[test]
    fn failure_carries_reason_and_counts() {
        let s = State::new(["skydns", "kube2sky"], Duration::from_secs(30));
        let t0 = Instant::now();
        s.record("skydns", result(Ok(()), t0));
        s.record("skydns", result(Err("NXDOMAIN".into()), t0));
        s.record("skydns", result(Err("NXDOMAIN".into()), t0));
        let st = s.status_at("skydns", t0).unwrap();
        assert!(!st.healthy);
        assert_eq!(st.reason.as_deref(), Some("NXDOMAIN"));
        assert_eq!(st.consecutive_failures, 2);
        assert_eq!(st.last_success_seconds_ago, Some(0.0));
        s.record("skydns", result(Ok(()), t0));
        let st = s.status_at("skydns", t0).unwrap();
        assert!(st.healthy);
        assert_eq!(st.consecutive_failures, 0);
        assert_eq!(
            s.all_at(t0)
                .iter()
                .map(|p| p.probe.as_str())
                .collect::<Vec<_>>(),
            ["kube2sky", "skydns"]
        );
    }
}
