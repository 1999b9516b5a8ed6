//! Loopback ports for the servers a test starts.
//!
//! A port found by binding port 0 and letting go comes from the range the OS also
//! hands out as the local port of outgoing connections, so a client of a test running
//! alongside can take it before the server binds it ("Address already in use"). These
//! ports come from below that range (`net.ipv4.ip_local_port_range`), where only
//! servers that bind them by number live. Each test process takes its own block, by
//! process id, and hands each port of it out once; a port found in use is skipped.

use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out.
const LOW: u32 = 10_000;
/// Ports in one process's block.
const BLOCK: u32 = 1_000;
/// Tries before giving up on finding a free port in the block.
const TRIES_MAX: u32 = BLOCK;

/// Ports handed out by this process so far.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The first port of the range the OS picks local ports from.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// This process's block: `(first port, ports in it)`, or `None` when no block fits
/// below the ephemeral range.
fn block() -> Option<(u32, u32)> {
    let blocks = ephemeral_low().saturating_sub(LOW) / BLOCK;
    (blocks > 0).then(|| (LOW + (std::process::id() % blocks) * BLOCK, BLOCK))
}

/// Whether nothing listens on or is bound to `127.0.0.1:port` now.
fn bindable(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `n` loopback ports that no other test of this process has had and nothing holds
/// now. Panics when none can be found.
pub fn free_ports(n: usize) -> Vec<u16> {
    let Some((first, len)) = block() else {
        return ephemeral_ports(n);
    };
    let mut out = Vec::with_capacity(n);
    let mut tries = 0;
    while out.len() < n {
        assert!(
            tries < TRIES_MAX,
            "no free loopback port in {first}..{}",
            first + len
        );
        tries += 1;
        let port = (first + NEXT.fetch_add(1, Ordering::Relaxed) % len) as u16;
        if bindable(port) && !out.contains(&port) {
            out.push(port);
        }
    }
    out
}

/// Ports from binding port 0, for systems whose ephemeral range leaves no room below.
fn ephemeral_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_distinct_and_bindable() {
        let ports = free_ports(50);
        let low = ephemeral_low();
        let mut seen = std::collections::HashSet::new();
        for p in &ports {
            assert!(
                u32::from(*p) < low,
                "{p} is in the ephemeral range from {low}"
            );
            assert!(seen.insert(*p), "{p} handed out twice");
            assert!(bindable(*p), "{p} is not bindable");
        }
        // Later calls never repeat a port.
        let more = free_ports(10);
        assert!(more.iter().all(|p| !seen.contains(p)), "{more:?} repeats");
    }
}
