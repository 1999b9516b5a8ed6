//! Polling for a condition with a bound, instead of sleeping and hoping.

use std::time::{Duration, Instant};

/// How often [`wait_until`] polls.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// Polls `f` until it is true; panics naming `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}
