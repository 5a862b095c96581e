//! hello-stateful: a tiny HTTP service that shows what a Kubernetes StatefulSet gives each
//! replica. The binary in `main.rs` wires these modules together.

pub mod dns;
