//! The audit trail: one JSON line per event that crossed, or was refused at, a membrane.
//! Every event also goes to the log (target `membrane::audit`) and to a bounded ring of
//! recent events that the admin API and the dashboard read.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Recent events kept in memory for the admin API.
pub const RECENT_EVENTS: usize = 1024;

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
    /// Events so far by (event, component), for metrics.
    counts: BTreeMap<(String, String), u64>,
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
        self.trail().counts.clone()
    }

    /// The recent events after sequence number `since` (0 for all that are kept), oldest
    /// first.
    pub fn since(&self, since: u64) -> Vec<AuditEvent> {
        self.trail().recent.iter().filter(|e| e.seq > since).cloned().collect()
    }

    pub fn record(&self, component: &str, event: &str, what: &str, outcome: &str) {
        self.record_in(None, component, event, what, outcome);
    }

    /// As [`Audit::record`], for an event inside the trace `trace`.
    pub fn record_in(
        &self,
        trace: Option<&membrane_telemetry::Context>,
        component: &str,
        event: &str,
        what: &str,
        outcome: &str,
    ) {
        let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let trace_id = trace.and_then(membrane_telemetry::trace_id);
        tracing::info!(target: "membrane::audit", component, event, what, outcome, trace_id);
        let entry = {
            let mut trail = self.trail();
            trail.next_seq += 1;
            let entry = AuditEvent {
                seq: trail.next_seq,
                ts_ms,
                component: component.to_string(),
                event: event.to_string(),
                what: what.to_string(),
                outcome: outcome.to_string(),
                trace_id,
            };
            *trail.counts.entry((entry.event.clone(), entry.component.clone())).or_default() += 1;
            if trail.recent.len() == RECENT_EVENTS {
                trail.recent.pop_front();
            }
            trail.recent.push_back(entry.clone());
            entry
        };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_events_are_numbered_and_bounded() {
        let audit = Audit::default();
        for i in 0..RECENT_EVENTS + 10 {
            audit.record("c", "trap", &i.to_string(), "contained");
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
        assert_eq!(audit.counts()[&("trap".to_string(), "c".to_string())], (RECENT_EVENTS + 10) as u64);
    }
}
