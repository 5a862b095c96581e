//! hello-stateful: a tiny HTTP service that shows what a Kubernetes StatefulSet gives each
//! replica. Each module is one concern; `main.rs` wires them together.

pub mod accept;
pub mod app;
pub mod budgets;
pub mod clock;
pub mod cluster;
pub mod conditional;
pub mod config;
pub mod connections;
pub mod deadline;
pub mod decimal;
pub mod dns;
pub mod framing;
pub mod front;
pub mod json;
pub mod lifecycle;
pub mod lineage;
pub mod metrics;
pub mod readiness;
pub mod routes;
pub mod storage;
pub mod sync;

/// The integration tests' temporary folder, so the unit tests use the same one.
#[cfg(test)]
#[path = "../tests/support/temp_dir.rs"]
mod temp_dir;
