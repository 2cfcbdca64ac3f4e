//! The membrane host: the engine and its compile cache, grants turned into WASI contexts,
//! limits enforced in each store, faults made into data, and component inspection.
//!
//! The modules are the crate's own; what other crates use is the short list re-exported
//! below: an [`App`] and the [`Deployment`] that swaps its versions, the one way into a
//! guest ([`Pool`], [`Command`]), the engine, the records (audit, stats, faults) and errors.

mod app;
mod audit;
mod budget;
mod budgeted_wasi;
mod cache;
mod capability;
mod command;
mod deploy;
mod engine;
mod fault;
mod file;
mod http_p3;
mod http_shared;
mod inspect;
mod invocation;
mod latency;
mod limits;
mod link;
mod net;
mod otel;
mod outbound;
mod p3;
mod pool;
mod preview1;
mod routes;
mod sandbox;
mod slots;
mod state;
mod stats;
mod values;
mod wit_compat;

pub use app::check::{Problem, Report, Severity, graph_dot, graph_text};
pub use app::{
    App, AppError, AppStats, Build, HttpHandler, LinkFunction, LinkLatency, LinkStatsEntry, NotReady, Revision,
};
pub use audit::{Audit, AuditEvent};
pub use cache::{CacheOutcome, CompileCache};
pub use command::{Command, RunError, wasi_linker};
pub use deploy::{Change, DeployError, Deployment, RevisionInfo, Source};
pub use engine::{APP_INSTANCE_SLOTS, EngineSettings, MembraneEngine, Pooling};
pub use fault::{Fault, FaultKind};
pub use file::{ComponentFile, LoadError, Origin};
pub use http_p3::{Answer, EndsWithGuest, HandlerCall, Keep, serve as serve_p3};
pub use http_shared::SharedHandler;
pub use inspect::{Inspection, inspect};
pub use latency::{LatencyWindow, WINDOW_SECS, WINDOWS};
pub use link::typed::Crossing;
pub use link::{Injected, LinkFault};
pub use membrane_registry::{self as registry, Sources};
pub use pool::{CallError, Came, Pool};
pub use routes::{Route, Router};
pub use sandbox::{SandboxState, new_store};
pub use state::{ComponentConfig, ComponentState, StateOptions};
pub use stats::ComponentSnapshot;
