//! Agents waiting for a decision, woken the moment it commits.
//!
//! A long-waiting agent registers interest in its request *before* it reads the request's state
//! (so a decision that commits between the read and the wait is not missed), then sleeps on a
//! [`tokio::sync::Notify`] until woken or its wait runs out. Whoever commits a decision calls
//! [`Waiters::wake`] after the commit. Nobody sleeps and re-reads.
//!
//! Across replicas (PostgreSQL), the deciding transaction also runs `pg_notify` on
//! [`CHANNEL`]; PostgreSQL delivers it exactly when that transaction commits, and every replica's
//! [`listen`] task wakes its own local waiters.
//!
//! The same registry tells open browser inboxes that something changed ([`Waiters::subscribe`]):
//! every wake, and every new request that waits for people ([`Waiters::changed`]), is broadcast
//! as a request id. Subscribers that fall behind skip ahead; they only refresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// The PostgreSQL NOTIFY channel carrying ids of requests that changed.
pub const CHANNEL: &str = "countersign_request_changed";

/// The registry of waiting agents, by request id.
#[derive(Debug, Clone)]
pub struct Waiters {
    inner: Arc<Mutex<HashMap<String, Slot>>>,
    changes: tokio::sync::broadcast::Sender<String>,
}

impl Default for Waiters {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            changes: tokio::sync::broadcast::channel(256).0,
        }
    }
}

#[derive(Debug)]
struct Slot {
    notify: Arc<Notify>,
    count: usize,
    /// When the last decision on this request woke its waiters (for the delivery metric).
    woken_at: Option<Instant>,
}

/// One agent's registration; dropping it unregisters.
#[derive(Debug)]
pub struct Registration {
    waiters: Waiters,
    request_id: String,
    notify: Arc<Notify>,
}

impl Registration {
    /// The notifier to wait on. Create the `notified()` future and `enable()` it before
    /// reading the request's state.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }

    /// When this request's waiters were last woken, if they were.
    pub fn woken_at(&self) -> Option<Instant> {
        let map = self.waiters.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&self.request_id).and_then(|s| s.woken_at)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.waiters.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.get_mut(&self.request_id) {
            slot.count -= 1;
            if slot.count == 0 {
                map.remove(&self.request_id);
            }
        }
    }
}

impl Waiters {
    /// Registers interest in a request.
    pub fn register(&self, request_id: &str) -> Registration {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let slot = map.entry(request_id.to_string()).or_insert_with(|| Slot {
            notify: Arc::new(Notify::new()),
            count: 0,
            woken_at: None,
        });
        slot.count += 1;
        Registration {
            waiters: self.clone(),
            request_id: request_id.to_string(),
            notify: slot.notify.clone(),
        }
    }

    /// Wakes everyone waiting on this request in this process.
    pub fn wake(&self, request_id: &str) {
        let notify = {
            let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            map.get_mut(request_id).map(|s| {
                s.woken_at = Some(Instant::now());
                s.notify.clone()
            })
        };
        if let Some(n) = notify {
            n.notify_waiters();
        }
        self.changed(request_id);
    }

    /// Tells inbox subscribers that this request appeared or changed.
    pub fn changed(&self, request_id: &str) {
        // An error only means nobody is subscribed.
        let _ = self.changes.send(request_id.to_string());
    }

    /// Ids of requests as they appear or change, for live inboxes.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// How many agents are waiting right now (for `/metrics`).
    pub fn waiting(&self) -> usize {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(|s| s.count).sum()
    }
}

/// Listens on PostgreSQL for decisions committed by any replica and wakes local waiters.
/// Reconnects after a lost connection; a decision missed while disconnected is still seen by
/// its waiter when its wait times out and it re-reads.
pub async fn listen(url: String, waiters: Waiters) {
    use sqlx::postgres::PgListener;
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for decisions; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        loop {
            match listener.recv().await {
                Ok(n) => waiters.wake(n.payload()),
                Err(e) => {
                    tracing::warn!(error = %e, "decision listener lost its connection");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_registered_waiter_is_woken_and_unregistered_on_drop() {
        let w = Waiters::default();
        let reg = w.register("r1");
        {
            let notified = reg.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            w.wake("r1");
            notified.await;
        }
        assert_eq!(w.waiting(), 1);
        drop(reg);
        assert_eq!(w.waiting(), 0);
    }

    #[tokio::test]
    async fn waking_another_request_does_not_wake_us() {
        let w = Waiters::default();
        let reg = w.register("r1");
        let notified = reg.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        w.wake("r2");
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(20), notified).await;
        assert!(timed_out.is_err());
    }

    #[tokio::test]
    async fn subscribers_hear_of_wakes_and_new_requests() {
        let w = Waiters::default();
        let mut changes = w.subscribe();
        w.changed("new");
        w.wake("decided");
        assert_eq!(changes.recv().await.unwrap(), "new");
        assert_eq!(changes.recv().await.unwrap(), "decided");
    }
}
