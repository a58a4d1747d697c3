//! Single flight: concurrent callers asking for the same key share one run of the work.
//!
//! The work runs in its own task, so a caller that goes away does not cancel it: the cache
//! still fills. Used for manifests, tag resolution, tag lists and referrers, whose results
//! are small; blobs have their own streaming fills (`fill.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::sync::Locked;

pub struct Flights<T> {
    running: Mutex<HashMap<String, watch::Receiver<Option<Result<T>>>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            running: Mutex::new(HashMap::new()),
        }
    }
}

/// Removes the key once the work is over, even if it panicked.
struct Landing<T> {
    flights: Arc<Flights<T>>,
    key: String,
}

impl<T> Drop for Landing<T> {
    fn drop(&mut self) {
        self.flights.running.locked().remove(&self.key);
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Runs `work` for `key`, or joins the run in progress. Returns the result and whether
    /// this caller joined someone else's run.
    pub async fn run<F>(self: &Arc<Self>, key: String, work: F) -> (Result<T>, bool)
    where
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let (mut rx, joined) = {
            let mut running = self.running.locked();
            match running.get(&key) {
                Some(rx) => (rx.clone(), true),
                None => {
                    let (tx, rx) = watch::channel(None);
                    running.insert(key.clone(), rx.clone());
                    let landing = Landing {
                        flights: self.clone(),
                        key,
                    };
                    tokio::spawn(async move {
                        let result = work.await;
                        let _ = tx.send(Some(result));
                        drop(landing);
                    });
                    (rx, false)
                }
            }
        };
        let result = match rx.wait_for(Option::is_some).await {
            Ok(v) => v
                .clone()
                .unwrap_or_else(|| Err(Error::internal("flight ended without a result"))),
            Err(_) => Err(Error::internal("the task fetching this content died")),
        };
        (result, joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights: Arc<Flights<u32>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = watch::channel(false);
        let mut handles = Vec::new();
        for _ in 0..8 {
            let (flights, runs, mut release) = (flights.clone(), runs.clone(), release_rx.clone());
            handles.push(tokio::spawn(async move {
                flights
                    .run("k".into(), async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _ = release.wait_for(|r| *r).await;
                        Ok(7)
                    })
                    .await
            }));
        }
        // On the single-threaded test runtime, a few yields let every caller reach the table.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(flights.running.lock().unwrap().len(), 1);
        release_tx.send(true).unwrap();
        let mut joined = 0;
        for h in handles {
            let (v, j) = h.await.unwrap();
            assert_eq!(v.unwrap(), 7);
            joined += j as usize;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(joined, 7);
        assert!(flights.running.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_panicking_run_fails_its_waiters() {
        let flights: Arc<Flights<u32>> = Arc::default();
        let (r, _) = flights.run("k".into(), async { panic!("boom") }).await;
        assert!(r.is_err());
        let (r, joined) = flights.run("k".into(), async { Ok(1) }).await;
        assert_eq!((r.unwrap(), joined), (1, false));
    }
}
