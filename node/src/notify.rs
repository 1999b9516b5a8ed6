//! The systemd notification protocol: `READY=1` once the node serves, `WATCHDOG=1`
//! every half of `WATCHDOG_USEC` when the unit sets a watchdog, and `STOPPING=1` on
//! shutdown. Without `NOTIFY_SOCKET` (not under systemd) nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification; errors are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &path)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, state, "cannot notify systemd");
    }
}

/// The watchdog interval systemd asked for, if any (`WATCHDOG_USEC`).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog every half interval until the task is dropped.
pub async fn run_watchdog(interval: Duration) {
    let mut t = tokio::time::interval(interval / 2);
    loop {
        t.tick().await;
        notify("WATCHDOG=1");
    }
}
