//! Locks taken over when poisoned.
//!
//! entrepot's mutexes guard maps and counters whose critical sections are a single insert,
//! remove or read: a thread that panicked while holding one left the data consistent. A
//! poisoned lock is therefore taken over rather than turned into a second panic in every
//! request that follows.

use std::sync::{Mutex, MutexGuard};

pub trait Locked<T> {
    /// The guard, whether or not another thread panicked while holding the lock.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}
