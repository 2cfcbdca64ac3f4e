//! The audit trail: one JSON line per event that crossed, or was refused at, a membrane.
//! Every event also goes to the log (target `membrane::audit`).

use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// One audited event.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent<'a> {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u128,
    pub component: &'a str,
    /// What happened: `denied`, `granted`, `trap`, …
    pub event: &'a str,
    /// What it was about: an address, a path, a trap kind.
    pub what: &'a str,
    pub outcome: &'a str,
}

/// Where audit events go. Cloning shares the sink.
#[derive(Clone, Default)]
pub struct Audit {
    file: Option<Arc<Mutex<std::fs::File>>>,
    /// Events so far by (event, component), for metrics.
    counts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
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
        Ok(Audit { file: Some(Arc::new(Mutex::new(file))), counts: Arc::default() })
    }

    /// How many events of each (event, component) were recorded.
    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn record(&self, component: &str, event: &str, what: &str, outcome: &str) {
        let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let entry = AuditEvent { ts_ms, component, event, what, outcome };
        tracing::info!(target: "membrane::audit", component, event, what, outcome);
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((event.to_string(), component.to_string()))
            .or_default() += 1;
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
