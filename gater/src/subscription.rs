//! Subscriptions as they travel on the wire: named, persistent, filtered, delivered by
//! long-poll and acknowledged.
//!
//! A subscription is identified by a key derived from its type, selector and name, so
//! subscribing twice with the same three gives the same key (and one subscription).
//! Delivery is a long-poll: [`Delivery::next`] is where the next poll starts, so a
//! consumer that passes it back sees every matching event once, in global order,
//! across the catch-up/live seam. A consumer that re-attaches without a position
//! resumes after the subscription's checkpoint (the last acknowledged position):
//! delivery is at-least-once across attachments.

use serde::{Deserialize, Serialize};

use crate::types::EventRecord;

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum StartFrom {
    /// From the first event of the store.
    #[default]
    Beginning,
    /// From the next event appended after the subscription is created.
    End,
    /// From this global position.
    Position(u64),
}

impl std::str::FromStr for StartFrom {
    type Err = String;

    /// Accepts `beginning`, `end` or a position.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "beginning" | "start" => Ok(StartFrom::Beginning),
            "end" => Ok(StartFrom::End),
            n => n.parse().map(StartFrom::Position).map_err(|_| {
                format!("start {s:?} is not beginning, end, or a position (a number >= 0)")
            }),
        }
    }
}

/// Options of a new subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeOptions {
    /// Where delivery starts the first time.
    pub start_from: StartFrom,
    /// Consumers that may share the subscription; each stream goes to one of them.
    pub pool_size: u32,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            start_from: StartFrom::Beginning,
            pool_size: 1,
        }
    }
}

/// A subscription and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    /// Its key.
    pub key: String,
    /// The kind of selector.
    pub kind: crate::types::SubscriptionType,
    /// The selector.
    pub selector: String,
    /// Its name.
    pub name: String,
    /// Where it started.
    pub start_from: StartFrom,
    /// Consumers that may share it.
    pub pool_size: u32,
    /// The first position not yet acknowledged: delivery to a consumer that attaches
    /// without a position starts here.
    pub cursor: u64,
    /// Microseconds since the Unix epoch when it was created.
    pub created_us: u64,
    /// The store's next global position when this was read (for lag).
    pub head: u64,
    /// Consumers attached now (seen within their lease) on the serving node.
    pub consumers: u32,
    /// Events the serving node has delivered for it since that node started.
    pub delivered: u64,
}

impl SubscriptionInfo {
    /// The last acknowledged position, if any.
    pub fn checkpoint(&self) -> Option<u64> {
        self.cursor.checked_sub(1)
    }

    /// Events between the checkpoint and the head of the log (an upper bound of what
    /// is still to be delivered and acknowledged).
    pub fn lag(&self) -> u64 {
        self.head.saturating_sub(self.cursor)
    }
}

/// One long-poll's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Matching events in global order (for a pooled consumer: those of its streams).
    pub events: Vec<EventRecord>,
    /// Where the next poll should start: past every event looked at, matching or not.
    pub next: u64,
    /// The store's next global position when the poll answered.
    pub head: u64,
}
