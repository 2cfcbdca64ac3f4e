//! A link's circuit breaker: after enough consecutive failures, calls fail fast for a
//! cooldown, then one probe decides whether it closes again.

use super::LinkCause;
use crate::audit::Audit;
use membrane_manifest::CircuitSpec;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// A circuit breaker: open after `failures` consecutive failures; while open, calls fail
/// fast; after `cooldown` one probe goes through and its outcome closes or reopens it.
pub(super) struct Circuit {
    spec: CircuitSpec,
    state: Mutex<CircuitState>,
    opened: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
enum CircuitState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

impl Circuit {
    pub(super) fn new(spec: CircuitSpec) -> Circuit {
        Circuit { spec, state: Mutex::new(CircuitState::Closed { failures: 0 }), opened: AtomicU64::new(0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CircuitState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn state_name(&self) -> &'static str {
        match *self.lock() {
            CircuitState::Closed { .. } => "closed",
            CircuitState::Open { .. } => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }

    pub(super) fn admit(&self, audit: &Audit, consumer: &str, import: &str) -> Result<(), LinkCause> {
        let mut state = self.lock();
        match *state {
            CircuitState::Closed { .. } => Ok(()),
            CircuitState::Open { until } if Instant::now() >= until => {
                *state = CircuitState::HalfOpen;
                audit.record(consumer, "circuit", import, "half-open: letting one probe through");
                Ok(())
            }
            CircuitState::Open { .. } | CircuitState::HalfOpen => {
                Err(LinkCause::CircuitOpen { failures: self.spec.failures, cooldown: self.spec.cooldown })
            }
        }
    }

    pub(super) fn success(&self, audit: &Audit, consumer: &str, import: &str) {
        let mut state = self.lock();
        if matches!(*state, CircuitState::HalfOpen) {
            audit.record(consumer, "circuit", import, "closed: the probe succeeded");
        }
        *state = CircuitState::Closed { failures: 0 };
    }

    pub(super) fn failure(&self, audit: &Audit, consumer: &str, import: &str) {
        let mut state = self.lock();
        let open = match *state {
            CircuitState::Closed { failures } if failures + 1 >= self.spec.failures => true,
            CircuitState::Closed { failures } => {
                *state = CircuitState::Closed { failures: failures + 1 };
                false
            }
            CircuitState::HalfOpen => true,
            CircuitState::Open { .. } => false,
        };
        if open {
            *state = CircuitState::Open { until: Instant::now() + self.spec.cooldown.std() };
            self.opened.fetch_add(1, Relaxed);
            audit.record(consumer, "circuit", import, &format!("open for {}", self.spec.cooldown));
        }
    }
}
