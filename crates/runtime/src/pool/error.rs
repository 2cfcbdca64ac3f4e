//! Why a call into a component did not return a value.

use crate::fault::Fault;
use membrane_manifest::InstanceMode;

/// Calls may nest this deep across links before they are refused.
pub const MAX_CALL_DEPTH: usize = 32;

/// Why a call into a component did not return a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Fault(#[from] Fault),
    #[error(
        "reentrant call into component `{component}` (call chain: {}); a {mode} instance is \
         busy serving the call that led here, so it cannot take another; make `{component}` \
         per-call or break the cycle of links",
        chain.join(" -> ")
    )]
    Reentrant { component: String, mode: InstanceMode, chain: Vec<String> },
    #[error("call chain deeper than {MAX_CALL_DEPTH} components: {}", chain.join(" -> "))]
    TooDeep { chain: Vec<String> },
    #[error(
        "component `{component}` has failed: it trapped again after {restarts} restarts within \
         {window}, its restart budget; fix the cause, then restart it"
    )]
    Failed { component: String, restarts: u32, window: membrane_manifest::Duration },
    #[error(
        "a resource handle passed to `{component}` belongs to an instance that has since \
         been discarded (it trapped or was restarted)"
    )]
    StaleResource { component: String },
    #[error("component `{component}` has no export {export}")]
    NoSuchExport { component: String, export: String },
    #[error(
        "component `{component}` has all {share} of its instance slots in use (one instance takes \
         {memories} memories and {tables} tables of the app's pool); the call is refused so that the \
         other components keep theirs; retry, or raise [app] max_instances"
    )]
    NoSlot { component: String, share: u32, memories: u32, tables: u32 },
}

impl CallError {
    /// One line, for audit records: a fault without its backtrace.
    pub fn summary(&self) -> String {
        match self {
            CallError::Fault(fault) => {
                format!("component `{}` stopped: {}", fault.component, fault.kind)
            }
            other => other.to_string(),
        }
    }
}
