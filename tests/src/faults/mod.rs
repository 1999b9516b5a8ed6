//! Support for the fault suite: nodes in network namespaces with faults
//! to inject ([`netns`](crate::faults::netns)), a recorded history of what clients
//! saw ([`history`](crate::faults::history)), the checker that judges it against
//! the final state of every replica ([`checker`](crate::faults::checker)), and
//! reading that state from each node ([`replicas`](crate::faults::replicas)).

pub mod checker;
pub mod history;
pub mod netns;
pub mod replicas;
