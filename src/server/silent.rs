//! Connections that have not delivered a request yet.
//!
//! hyper times the reading of a request head only once it knows the protocol, and the
//! HTTP/1-or-2 detection in front of it waits for the first bytes without a limit: a
//! client that connects and sends nothing would hold its connection, and its place under
//! `max_connections`, forever. Each connection is registered here from its accept until its
//! first request head, and closed if that takes longer than `header_read_timeout` (after
//! that, hyper's own timer covers the wait for each next request on a kept-alive
//! connection). At the connection cap, the connection that has been silent longest is closed
//! to make room, so clients that send nothing cannot keep out one that does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::sync::Locked;

/// The silent connections, oldest first.
#[derive(Default)]
pub struct Silent {
    next: AtomicU64,
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
}

impl Silent {
    /// Registers a connection just accepted.
    pub fn enter(self: &Arc<Self>) -> Waiting {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        self.lock().insert(id, evict.clone());
        Waiting {
            set: self.clone(),
            id,
            heard: AtomicBool::new(false),
            evict,
        }
    }

    /// Closes the connection silent for longest, if any: a new one needs its place.
    /// Returns whether there was one.
    pub fn evict_oldest(&self) -> bool {
        match self.lock().pop_first() {
            Some((_, evict)) => {
                // `notify_one` keeps the wake-up for a connection not waiting on it yet.
                evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Notify>>> {
        self.waiting.locked()
    }
}

/// One connection's place among the silent ones, until it delivers a request head.
pub struct Waiting {
    set: Arc<Silent>,
    id: u64,
    heard: AtomicBool,
    evict: Arc<Notify>,
}

impl Waiting {
    /// A request head arrived: the connection leaves the silent ones. Cheap after the first.
    pub fn heard(&self) {
        if !self.heard.load(Ordering::Relaxed) && !self.heard.swap(true, Ordering::AcqRel) {
            self.set.lock().remove(&self.id);
        }
    }

    /// Completes when the connection should close for silence: `deadline` passed, or it was
    /// evicted to make room, before any request head. Never completes once one arrived.
    pub async fn silence(&self, deadline: tokio::time::Instant) {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = self.evict.notified() => {}
        }
        if self.heard.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.heard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_silent_connection_is_evicted_and_heard_ones_never() {
        let set = Arc::new(Silent::default());
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        let (a, b, c) = (set.enter(), set.enter(), set.enter());
        a.heard();
        assert!(set.evict_oldest(), "b, silent longest");
        tokio::time::timeout(std::time::Duration::from_secs(1), b.silence(far))
            .await
            .expect("b is told");
        drop(c);
        assert!(!set.evict_oldest(), "a was heard, c is gone");
        let heard_one = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            a.silence(tokio::time::Instant::now()),
        );
        assert!(
            heard_one.await.is_err(),
            "a connection heard from is never closed for silence"
        );
    }
}
