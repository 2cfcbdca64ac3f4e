//! The audit trail: one JSON line per event that crossed, or was refused at, a membrane.
//! Every event also goes to the log (target `membrane::audit`) and to a bounded ring of
//! recent events that the admin API and the dashboard read.
//!
//! Each component writes at most [`BURST`] events of a kind (denied, granted, trap, …) at
//! once and [`PER_SECOND`] a second after that; what it makes beyond is written as one
//! `suppressed` event with its next event of that kind that is written, and counted at
//! once in [`Audit::counts`] (denials in `/metrics`). A guest denied in a loop (an
//! outbound request to a host it is not granted, a hundred thousand times a second) would
//! otherwise fill the disk with the audit file and the ring with its own lines, and hold
//! the trail's lock that every neighbour's events wait on.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Recent events kept in memory for the admin API.
pub const RECENT_EVENTS: usize = 1024;
/// Events of a kind a component may write at once.
pub const BURST: u32 = 200;
/// Events of a kind a component may write a second, after a burst.
pub const PER_SECOND: u32 = 100;

/// One audited event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEvent {
    /// Position in this process's audit trail, from 1; `?since=` takes it.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    pub component: String,
    /// What happened: `denied`, `granted`, `trap`, `swap`, …
    pub event: String,
    /// What it was about: an address, a path, a trap kind.
    pub what: String,
    pub outcome: String,
    /// The trace the event happened in, when tracing is on: the log line leads to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[derive(Default)]
struct Trail {
    next_seq: u64,
    recent: VecDeque<AuditEvent>,
    /// Each component's events of each kind, by its name (names an operator wrote: few)
    /// and the kind: found without making a key, as a guest denied in a loop comes here
    /// for every denial.
    tallies: BTreeMap<String, BTreeMap<String, Tally>>,
}

/// A component's events of one kind: how many there were (for metrics), how many it may
/// still write ([`BURST`] at most, [`PER_SECOND`] more each second), and how many it made
/// that were not written.
struct Tally {
    count: u64,
    events: f64,
    at: Instant,
    suppressed: u64,
}

impl Tally {
    fn new(now: Instant) -> Tally {
        Tally { count: 0, events: f64::from(BURST), at: now, suppressed: 0 }
    }

    /// Whether one more event may be written at `now`; counted as suppressed if not.
    fn take(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * f64::from(PER_SECOND);
        self.events = (self.events + earned).min(f64::from(BURST));
        self.at = now;
        if self.events < 1.0 {
            self.suppressed += 1;
            return false;
        }
        self.events -= 1.0;
        true
    }
}

/// Where audit events go. Cloning shares the sink.
#[derive(Clone, Default)]
pub struct Audit {
    file: Option<Arc<Mutex<std::fs::File>>>,
    trail: Arc<Mutex<Trail>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("to_file", &self.file.is_some()).finish()
    }
}

impl Audit {
    /// Appends events to `path` as JSON lines, creating it when missing.
    pub fn to_file(path: &Path) -> std::io::Result<Audit> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Audit { file: Some(Arc::new(Mutex::new(file))), trail: Arc::default() })
    }

    fn trail(&self) -> std::sync::MutexGuard<'_, Trail> {
        self.trail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many events of each (event, component) were recorded.
    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        let trail = self.trail();
        let kinds = trail.tallies.iter().flat_map(|(component, kinds)| kinds.iter().map(move |k| (component, k)));
        kinds.map(|(component, (event, tally))| ((event.clone(), component.clone()), tally.count)).collect()
    }

    /// The recent events after sequence number `since` (0 for all that are kept), oldest
    /// first.
    pub fn since(&self, since: u64) -> Vec<AuditEvent> {
        self.trail().recent.iter().filter(|e| e.seq > since).cloned().collect()
    }

    pub fn record(&self, component: &str, event: &str, what: &str, outcome: &str) {
        self.record_in(None, component, event, what, outcome);
    }

    /// As [`Audit::record`], for an event inside the trace `trace`. Whether the event was
    /// written (else only counted: its component is over its allowance), so that a caller's
    /// own log line about it is bounded alike.
    pub fn record_in(
        &self,
        trace: Option<&membrane_telemetry::Context>,
        component: &str,
        event: &str,
        what: &str,
        outcome: &str,
    ) -> bool {
        let written = {
            let mut trail = self.trail();
            let now = Instant::now();
            let kinds = match trail.tallies.get_mut(component) {
                Some(kinds) => kinds,
                None => trail.tallies.entry(component.to_string()).or_default(),
            };
            let tally = match kinds.get_mut(event) {
                Some(tally) => tally,
                None => kinds.entry(event.to_string()).or_insert(Tally::new(now)),
            };
            tally.count += 1;
            if !tally.take(now) {
                return false;
            }
            let suppressed = std::mem::take(&mut tally.suppressed);
            let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
            let mut written = Vec::with_capacity(2);
            if suppressed > 0 {
                let what = format!("{suppressed} {event} events");
                let outcome = format!("not written: over {PER_SECOND} a second (denials are all counted in /metrics)");
                written.push(trail.push(ts_ms, component, "suppressed", &what, &outcome, None));
            }
            let trace_id = trace.and_then(membrane_telemetry::trace_id);
            written.push(trail.push(ts_ms, component, event, what, outcome, trace_id));
            written
        };
        for entry in written {
            let AuditEvent { component, event, what, outcome, trace_id, .. } = &entry;
            tracing::info!(target: "membrane::audit", component, event, what, outcome, trace_id);
            if let Some(file) = &self.file {
                let mut line = serde_json::to_vec(&entry).expect("audit events serialize");
                line.push(b'\n');
                // One write per line, so concurrent writers never interleave within a line.
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Err(error) = file.write_all(&line) {
                    tracing::error!(%error, "could not write the audit log");
                }
            }
        }
        true
    }
}

impl Trail {
    /// Numbers an event and keeps it with the recent ones.
    fn push(
        &mut self,
        ts_ms: u64,
        component: &str,
        event: &str,
        what: &str,
        outcome: &str,
        trace_id: Option<String>,
    ) -> AuditEvent {
        self.next_seq += 1;
        let entry = AuditEvent {
            seq: self.next_seq,
            ts_ms,
            component: component.to_string(),
            event: event.to_string(),
            what: what.to_string(),
            outcome: outcome.to_string(),
            trace_id,
        };
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(entry.clone());
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_events_are_numbered_and_bounded() {
        let audit = Audit::default();
        // From several components, each within its burst.
        for i in 0..RECENT_EVENTS + 10 {
            audit.record(["c", "d", "e", "f", "g", "h"][i % 6], "trap", &i.to_string(), "contained");
        }
        let all = audit.since(0);
        assert_eq!(all.len(), RECENT_EVENTS);
        assert_eq!(all.first().unwrap().seq, 11);
        assert_eq!(all.last().unwrap().seq, (RECENT_EVENTS + 10) as u64);
        let tail = audit.since(all.last().unwrap().seq - 2);
        assert_eq!(
            tail.iter().map(|e| e.what.as_str()).collect::<Vec<_>>(),
            [(RECENT_EVENTS + 8).to_string(), (RECENT_EVENTS + 9).to_string()]
        );
        assert_eq!(audit.counts().values().sum::<u64>(), (RECENT_EVENTS + 10) as u64);
    }

    #[test]
    fn a_component_denied_in_a_loop_writes_a_burst_then_a_count_and_leaves_room_for_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::to_file(&path).unwrap();
        let flood = 100_000;
        for _ in 0..flood {
            audit.record("evil", "denied", "http://elsewhere.example/", "no grants.outbound rule matches");
        }
        audit.record("neighbour", "trap", "unreachable", "contained");
        audit.record("evil", "trap", "unreachable", "contained");
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        // The burst, and whatever the time the loop took earned (a few at most).
        assert!(lines < BURST as usize + 50, "{lines} lines written");
        let last: Vec<_> =
            audit.since(0).iter().rev().take(2).map(|e| (e.component.clone(), e.event.clone())).collect();
        assert_eq!(
            last,
            [("evil".into(), "trap".into()), ("neighbour".into(), "trap".into())],
            "the neighbour's events are written, and the component's events of another kind"
        );
        assert_eq!(audit.counts()[&("denied".to_string(), "evil".to_string())], flood, "every event is counted");
        // A second later, the next event is written with the count of those that were not.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        audit.record("evil", "denied", "http://elsewhere.example/", "no grants.outbound rule matches");
        let recent = audit.since(0);
        let [.., suppressed, last] = recent.as_slice() else { panic!("events are kept") };
        assert_eq!((suppressed.event.as_str(), last.event.as_str()), ("suppressed", "denied"));
        // Events the loop earned while it ran were written each with the count before it.
        let evil = || recent.iter().filter(|e| e.component == "evil");
        let written = evil().filter(|e| e.event == "denied").count() as u64;
        let counted: u64 = evil()
            .filter(|e| e.event == "suppressed")
            .map(|e| e.what.trim_end_matches(" denied events").parse::<u64>().unwrap())
            .sum();
        assert_eq!(written + counted, flood + 1, "what was written and what was counted are every event");
    }
}
