//! Support for the fault suite (issue 11): nodes in network namespaces with faults
//! to inject ([`netns`]), a recorded history of what clients saw ([`history`]), the
//! checker that judges it against the final state of every replica ([`checker`]),
//! and reading that state from each node ([`replicas`]).

pub mod checker;
pub mod history;
pub mod netns;
pub mod replicas;
