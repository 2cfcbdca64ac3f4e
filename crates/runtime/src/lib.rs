//! The membrane host: the engine and its compile cache, grants turned into WASI contexts,
//! limits enforced in each store, faults made into data, and component inspection.

pub mod app;
pub mod audit;
pub mod budget;
mod budgeted_wasi;
pub mod cache;
pub mod capability;
pub mod command;
pub mod deploy;
pub mod engine;
pub mod fault;
pub mod inspect;
pub mod invocation;
pub mod limits;
pub mod link;
pub mod load;
pub mod outbound;
pub mod pool;
pub mod preview1;
pub mod routes;
pub mod sandbox;
pub mod slots;
pub mod state;
pub mod stats;
mod values;
pub mod wit_compat;

pub use app::{App, AppError};
pub use audit::Audit;
pub use cache::{CacheOutcome, CompileCache};
pub use command::{Command, RunError};
pub use engine::{EngineSettings, MembraneEngine};
pub use fault::{Fault, FaultKind};
pub use load::{ComponentFile, LoadError, Origin};
pub use membrane_registry::{self as registry, Sources};
