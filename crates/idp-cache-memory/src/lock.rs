//! Taking the `std::sync` locks, recovering from poisoning (also used by the
//! in-process wrappers of `idp-port-wrappers`, under the same reasoning).
//!
//! A lock is poisoned when a thread panicked while holding it. Recovering with
//! [`PoisonError::into_inner`] is safe for the state of this crate because:
//!
//! * every critical section is a handful of operations on std collections
//!   (push, pop, insert, remove, retain) with no caller code and no `.await`
//!   inside; each operation leaves its collection structurally valid even if
//!   a later one never runs (and allocation failure aborts rather than
//!   unwinds);
//! * the data hold no invariant spanning several operations: a request logged
//!   but not reported, a counter incremented once, or an expired entry not yet
//!   swept are all states the adapters already meet in normal operation, and
//!   in the worst case are off by the one call that panicked.
//!
//! Propagating the poison instead would turn one bug into a permanent outage:
//! every later token request would fail until the process restarted.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, recovering it if poisoned.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `rwlock`, recovering it if poisoned.
pub fn read<T>(rwlock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rwlock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `rwlock`, recovering it if poisoned.
pub fn write<T>(rwlock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rwlock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_poisoned_lock_is_recovered_with_its_data() {
        let mutex = Arc::new(Mutex::new(vec![1]));
        let rwlock = Arc::new(RwLock::new(7));
        let (m, r) = (Arc::clone(&mutex), Arc::clone(&rwlock));
        let poisoner = std::thread::spawn(move || {
            let _m = m.lock().unwrap();
            let _r = r.write().unwrap();
            panic!("poison both locks");
        });
        assert!(poisoner.join().is_err());
        assert!(mutex.is_poisoned() && rwlock.is_poisoned());
        lock(&mutex).push(2);
        assert_eq!(*lock(&mutex), vec![1, 2]);
        *write(&rwlock) += 1;
        assert_eq!(*read(&rwlock), 8);
    }
}
