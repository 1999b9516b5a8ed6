//! `$all` filters as KurrentDB clients send them: on the stream name or the event
//! type, by a list of prefixes or by one regular expression.
//!
//! The expressions are .NET regular expressions in KurrentDB, and clients build
//! look-aheads with them: the Python client excludes system events with
//! `^(?!(\$.+$|...))`. They are matched with `fancy-regex`, which has look-around,
//! against the whole name (a match anywhere in it counts, as in .NET's `IsMatch`).
//!
//! A filtered read or subscription also tells the client how far it has looked, every
//! [`Filter::checkpoint_every`] events scanned, so that a client whose filter matches
//! rarely can still save its place.

use fancy_regex::Regex;

use super::proto::event_store::client::streams::read_req::options::filter_options;
use super::proto::event_store::client::streams::read_req::options::FilterOptions;
use crate::types::{EventRecord, StoreError};

/// Longest regular expression accepted, in bytes.
pub const REGEX_BYTES_MAX: usize = 4096;
/// Most prefixes in one filter.
pub const PREFIXES_MAX: usize = 1024;
/// Steps the regex engine may take on one name before it gives up (the name then
/// does not match): a bound on a pathological expression's cost.
pub const REGEX_BACKTRACK_MAX: usize = 1_000_000;
/// The window a filter without one gets (KurrentDB's default).
pub const WINDOW_DEFAULT: u32 = 32;
/// Most events scanned between two checkpoints, whatever the client asks.
pub const CHECKPOINT_EVERY_MAX: u64 = 1_000_000;

/// What a filter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The event's stream name.
    StreamName,
    /// The event's type.
    EventType,
}

/// How a filter matches.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// The name starts with one of these.
    Prefixes(Vec<String>),
    /// The expression matches somewhere in the name.
    Regex(Regex),
}

/// One `$all` filter.
#[derive(Debug, Clone)]
pub struct Filter {
    /// What it looks at.
    pub target: Target,
    /// How it matches.
    pub matcher: Matcher,
    /// Events scanned between two checkpoints (window × multiplier).
    pub checkpoint_every: u64,
}

impl Filter {
    /// The filter the client's options describe; errors name the field at fault.
    pub fn from_options(options: &FilterOptions) -> Result<Filter, StoreError> {
        let (target, expression) = match &options.filter {
            Some(filter_options::Filter::StreamIdentifier(e)) => (Target::StreamName, e),
            Some(filter_options::Filter::EventType(e)) => (Target::EventType, e),
            None => {
                return Err(StoreError::invalid(
                    "filter",
                    "a filter must be on stream_identifier or event_type",
                ))
            }
        };
        let matcher = if !expression.prefix.is_empty() {
            if expression.prefix.len() > PREFIXES_MAX {
                return Err(StoreError::invalid(
                    "filter.prefix",
                    format!(
                        "{} prefixes; at most {PREFIXES_MAX}",
                        expression.prefix.len()
                    ),
                ));
            }
            Matcher::Prefixes(expression.prefix.clone())
        } else if !expression.regex.is_empty() {
            if expression.regex.len() > REGEX_BYTES_MAX {
                return Err(StoreError::invalid(
                    "filter.regex",
                    format!(
                        "{} bytes; at most {REGEX_BYTES_MAX}",
                        expression.regex.len()
                    ),
                ));
            }
            let regex = fancy_regex::RegexBuilder::new(&expression.regex)
                .backtrack_limit(REGEX_BACKTRACK_MAX)
                .build()
                .map_err(|e| {
                    StoreError::invalid(
                        "filter.regex",
                        format!("{:?} is not a regular expression: {e}", expression.regex),
                    )
                })?;
            Matcher::Regex(regex)
        } else {
            return Err(StoreError::invalid(
                "filter",
                "a filter needs a regex or at least one prefix",
            ));
        };
        let window = match options.window {
            Some(filter_options::Window::Max(n)) if n > 0 => n,
            _ => WINDOW_DEFAULT,
        };
        let multiplier = options.checkpoint_interval_multiplier.max(1);
        Ok(Filter {
            target,
            matcher,
            checkpoint_every: (u64::from(window) * u64::from(multiplier)).min(CHECKPOINT_EVERY_MAX),
        })
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &EventRecord) -> bool {
        let name = match self.target {
            Target::StreamName => event.stream_id.as_str(),
            Target::EventType => event.event_type.as_str(),
        };
        match &self.matcher {
            Matcher::Prefixes(prefixes) => prefixes.iter().any(|p| name.starts_with(p.as_str())),
            // An expression that runs out of steps on this name does not match it.
            Matcher::Regex(r) => r.is_match(name).unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests;
