//! The services a connection asks for in its preamble ([`crate::transport`]), apart
//! from the transport so that the TLS rules ([`crate::tls`]) can name them without
//! the two importing each other.

/// The services a connection can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// A node's [worker service](crate::worker).
    Worker,
    /// The [gater service](crate::api).
    Gater,
    /// The node-to-node Raft service (internal to the node).
    Raft,
}

impl Service {
    /// The preamble's byte for the service.
    pub fn byte(self) -> u8 {
        match self {
            Service::Worker => b'W',
            Service::Gater => b'G',
            Service::Raft => b'R',
        }
    }

    /// The service a preamble's byte asks for, if any.
    pub fn from_byte(b: u8) -> Option<Service> {
        match b {
            b'W' => Some(Service::Worker),
            b'G' => Some(Service::Gater),
            b'R' => Some(Service::Raft),
            _ => None,
        }
    }
}
