//! Connections by address, shared by every clone of a pool: the one pool of the
//! gateway (to workers), the client library (to gaters) and the node's Raft network
//! (to peers).
//!
//! A connection is dialled on first use and reused until a call on it fails, when
//! the caller [`forget`](Pool::forget)s it. Dialling happens outside the pool's lock,
//! so that an address that does not answer (packets dropped, a paused process: a
//! connect may take its whole timeout) holds up only the calls to it. Two calls that
//! dial the same address at once keep one connection; the other is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

/// A pool of connections `C` (cheap to clone: tarpc clients are) by address.
pub struct Pool<C> {
    conns: Arc<Mutex<HashMap<String, C>>>,
}

impl<C> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            conns: self.conns.clone(),
        }
    }
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Pool {
            conns: Default::default(),
        }
    }
}

impl<C: Clone> Pool<C> {
    fn conns(&self) -> MutexGuard<'_, HashMap<String, C>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pooled connection to `addr`, if any.
    pub fn get(&self, addr: &str) -> Option<C> {
        self.conns().get(addr).cloned()
    }

    /// The connection to `addr`, dialled with `dial` when there is none (outside the
    /// lock), and whether it came from the pool (it may then be stale: the process
    /// behind it may have restarted since).
    pub async fn get_or_dial<E, Fut>(
        &self,
        addr: &str,
        dial: impl FnOnce() -> Fut,
    ) -> Result<(C, bool), E>
    where
        Fut: Future<Output = Result<C, E>>,
    {
        if let Some(c) = self.get(addr) {
            return Ok((c, true));
        }
        let dialled = dial().await?;
        let mut conns = self.conns();
        Ok((
            conns.entry(addr.to_string()).or_insert(dialled).clone(),
            false,
        ))
    }

    /// Drops the connection to `addr`: the next call dials again.
    pub fn forget(&self, addr: &str) {
        self.conns().remove(addr);
    }

    /// Keeps only the connections whose address `keep` accepts.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.conns().retain(|addr, _| keep(addr));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_slow_dial_holds_up_only_its_own_address() {
        let pool: Pool<u32> = Pool::default();
        let slow = pool.clone();
        let stuck = tokio::spawn(async move {
            slow.get_or_dial("10.0.0.1:1", || async {
                std::future::pending::<Result<u32, ()>>().await
            })
            .await
        });
        tokio::task::yield_now().await;
        let fast = tokio::time::timeout(
            Duration::from_secs(5),
            pool.get_or_dial("127.0.0.1:1", || async { Ok::<_, ()>(7) }),
        )
        .await;
        assert_eq!(fast, Ok(Ok((7, false))), "not held up by the stuck dial");
        stuck.abort();
    }

    #[tokio::test]
    async fn a_connection_is_reused_until_forgotten() {
        let pool: Pool<u32> = Pool::default();
        let dials = AtomicU32::new(0);
        let dial = || async { Ok::<_, ()>(dials.fetch_add(1, Ordering::SeqCst)) };
        assert_eq!(pool.get_or_dial("a", dial).await, Ok((0, false)));
        assert_eq!(pool.get_or_dial("a", dial).await, Ok((0, true)));
        pool.forget("a");
        assert_eq!(pool.get_or_dial("a", dial).await, Ok((1, false)));
        pool.retain(|addr| addr != "a");
        assert_eq!(pool.get("a"), None);
    }
}
