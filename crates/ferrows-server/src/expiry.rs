//! Credentials that expire: the deadline of every connection whose token
//! (`exp`) or connect answer (`expire_at`) has one, kept here rather than
//! in the sessions (most have none, and idle sessions wait in the lot
//! without a task). One task per server wakes at the earliest deadline:
//! a connection past its own is refreshed by the refresh proxy where
//! there is one, and closed with 4007 otherwise. A client extends its
//! deadline with the `refresh` command and a new token.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrows_hub::protocol::close;
use ferrows_hub::protocol::proxy::{Caller, ProxyKind, RefreshRequest, RefreshResult};
use serde_json::value::RawValue;

use crate::access::Refusal;
use crate::state::AppState;

/// A refresh the backend could not answer (error 111) is asked again this
/// much later; the connection stays meanwhile.
pub(crate) const REFRESH_RETRY: Duration = Duration::from_secs(10);

/// Seconds since the Unix epoch now.
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Who a deadline is for: what the refresh proxy is told.
#[derive(Debug, Clone)]
pub(crate) struct Holder {
    pub(crate) client_id: String,
    pub(crate) user: String,
    pub(crate) meta: Option<Box<RawValue>>,
}

struct Entry {
    /// Seconds since the Unix epoch.
    at: u64,
    holder: Holder,
}

#[derive(Default)]
struct Deadlines {
    /// The deadline of each client that has one.
    entries: HashMap<u64, Entry>,
    /// Every deadline set, earliest first (those moved since stay until
    /// their time, then are skipped).
    queue: BinaryHeap<Reverse<(u64, u64)>>,
}

/// The deadlines of a server's connections.
#[derive(Default)]
pub(crate) struct Expiries {
    deadlines: Mutex<Deadlines>,
    changed: tokio::sync::Notify,
}

impl Expiries {
    fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        self.deadlines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets (or moves) `client`'s deadline to `at`.
    pub(crate) fn set(&self, client: u64, at: u64, holder: Holder) {
        let mut deadlines = self.lock();
        deadlines.entries.insert(client, Entry { at, holder });
        deadlines.queue.push(Reverse((at, client)));
        drop(deadlines);
        self.changed.notify_one();
    }

    /// `client`'s credentials expire at `at` (seconds since the Unix
    /// epoch; `None`: they do not): sets its deadline, or forgets the one
    /// it had. The seconds left until then, as the client is told them.
    pub(crate) fn expire(&self, client: u64, at: Option<u64>, holder: impl FnOnce() -> Holder) -> Option<u64> {
        match at {
            Some(at) => self.set(client, at, holder()),
            None => self.remove(client),
        }
        at.map(|at| at.saturating_sub(now()))
    }

    /// Forgets `client` (its connection ended).
    pub(crate) fn remove(&self, client: u64) {
        self.lock().entries.remove(&client);
    }

    /// The clients past their deadline at `now`, taken out; and when the
    /// next deadline is.
    fn due(&self, now: u64) -> (Vec<(u64, Holder)>, Option<u64>) {
        let mut deadlines = self.lock();
        let mut due = Vec::new();
        while let Some(&Reverse((at, client))) = deadlines.queue.peek() {
            if at > now {
                return (due, Some(at));
            }
            deadlines.queue.pop();
            // Skipped when the client left, or its deadline moved.
            if deadlines.entries.get(&client).is_some_and(|entry| entry.at == at) {
                let entry = deadlines.entries.remove(&client).expect("just seen");
                due.push((client, entry.holder));
            }
        }
        (due, None)
    }
}

/// Runs the server's expiry task until shutdown.
pub(crate) fn spawn(state: Arc<AppState>) {
    tokio::spawn(async move {
        loop {
            let (due, next) = state.expiries.due(now());
            for (client, holder) in due {
                expired(&state, client, holder);
            }
            // Deadlines are whole seconds: wake at the start of the next
            // one's second, or when one is set.
            let wait = next.map_or(Duration::from_secs(3600), |at| {
                let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                Duration::from_secs(at).saturating_sub(unix)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = state.expiries.changed.notified() => {}
                () = state.shutdown.cancelled() => return,
            }
        }
    });
}

/// `client`'s credentials expired: the refresh proxy decides, or the
/// connection is closed.
fn expired(state: &Arc<AppState>, client: u64, holder: Holder) {
    let refresh = state.backend.as_ref().is_some_and(|backend| backend.has(ProxyKind::Refresh));
    if !refresh {
        state.disconnect(client, close::EXPIRED, "credentials expired");
        return;
    }
    // The refresh runs beside the timer: a slow backend delays no other
    // connection's deadline.
    let state = state.clone();
    tokio::spawn(async move {
        let caller = Caller { client: &holder.client_id, user: &holder.user, meta: holder.meta.as_deref() };
        let request = RefreshRequest { caller };
        let outcome = state.decide::<RefreshResult>(ProxyKind::Refresh, &request).await;
        // The connection may have ended meanwhile: nothing to set then.
        if !state.has_session(client) {
            return;
        }
        match outcome {
            Ok(RefreshResult { expire_at: Some(at) }) => state.expiries.set(client, at, holder),
            Ok(RefreshResult { expire_at: None }) => {}
            Err(Refusal::Disconnect { code, reason }) => drop(state.disconnect(client, code, &reason)),
            Err(Refusal::Error(error)) if error.temporary() => {
                let at = now() + REFRESH_RETRY.as_secs();
                state.expiries.set(client, at, holder);
            }
            Err(Refusal::Error(_)) => drop(state.disconnect(client, close::EXPIRED, "credentials expired")),
        }
    });
}
