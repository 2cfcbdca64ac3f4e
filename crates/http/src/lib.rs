//! membrane's HTTP ingress: `wasi:http/incoming-handler` components served over HTTP/1.1
//! and HTTP/2 (h2c), one fresh isolated instance per request, routed by host and path
//! prefix, behind limits that keep hostile clients and guests from spending the host.

mod access;
mod body;
mod framing;
mod handler;
mod ingress;
mod metrics;
mod p3;
mod reuse;
mod server;
mod shared;
mod spares;
mod tenants;

pub use ingress::IngressLimits;
pub use membrane_runtime::{Route, Router};
pub use metrics::Metrics;
pub use server::{Server, ServerError};
