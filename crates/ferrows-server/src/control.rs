//! The server API's orders about users (subscribe or unsubscribe a user's
//! connections, disconnect a user), carried to every node of the service
//! by the broker, and handed to the user's sessions on each.
//!
//! An order is a publication into [`CONTROL_CHANNEL`], a name no client
//! may use (it is not a valid channel name), which every node subscribes
//! to with a queue of its own. A node hands an order to each session of
//! the user it holds: a disconnect closes the session's queue with the
//! chosen code; a subscribe or an unsubscribe goes to the session's
//! mailbox, and a signal wakes it (from the lot too) to read it.
//!
//! Best effort across nodes, like a publication without history: a node
//! whose broker connection is down when the order is published does not
//! get it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferrows::PreparedMessage;
use ferrows_hub::HistoryLimits;
use ferrows_hub::protocol::{Encoding, Error, Event, Push};
use ferrows_hub::queue::ClientQueue;
use serde::{Deserialize, Serialize};

use crate::state::{AppState, broker_error};

/// The channel orders travel in: `#` makes it no valid client channel.
pub(crate) const CONTROL_CHANNEL: &str = "#control";

/// Orders a node's control queue holds before it is behind (and starts
/// again): far more than the API sends at once.
const CONTROL_QUEUE_MESSAGES: usize = 100_000;

/// An order of the server API, as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Order {
    /// Subscribe the user's connections to a channel (a server-side
    /// subscription).
    Subscribe { user: String, channel: String },
    /// Unsubscribe the user's connections from a channel.
    Unsubscribe { user: String, channel: String },
    /// Close the user's connections.
    Disconnect { user: String, code: u16, reason: String },
}

/// What a session is told to do besides its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mail {
    Subscribe(String),
    Unsubscribe(String),
}

/// Client numbers of each user's sessions and streams, with whether each
/// reads mail.
type UserSessions = HashMap<Box<str>, Vec<(u64, bool)>>;

/// The sessions of each user on this node, and their mailboxes.
#[derive(Default)]
pub(crate) struct Users {
    /// Client numbers of each authenticated user's sessions and event
    /// streams (anonymous clients are nobody to address), and whether each
    /// reads mail (streams do not: only a disconnect reaches them).
    sessions: Mutex<UserSessions>,
    mail: Mutex<HashMap<u64, Vec<Mail>>>,
}

impl Users {
    fn sessions(&self) -> std::sync::MutexGuard<'_, UserSessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mailboxes(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<Mail>>> {
        self.mail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Session (or stream) `client` is `user`'s; `reads_mail`: it takes
    /// subscribe and unsubscribe orders.
    pub(crate) fn joined(&self, user: &str, client: u64, reads_mail: bool) {
        if !user.is_empty() {
            self.sessions().entry(user.into()).or_default().push((client, reads_mail));
        }
    }

    /// Session `client` of `user` ended.
    pub(crate) fn left(&self, user: &str, client: u64) {
        let mut sessions = self.sessions();
        if let Some(clients) = sessions.get_mut(user) {
            clients.retain(|(c, _)| *c != client);
            if clients.is_empty() {
                sessions.remove(user);
            }
        }
        drop(sessions);
        self.mailboxes().remove(&client);
    }

    /// `user`'s sessions and streams on this node (`mail`: only those
    /// that read mail).
    pub(crate) fn of(&self, user: &str, mail: bool) -> Vec<u64> {
        let sessions = self.sessions();
        let clients = sessions.get(user).map(Vec::as_slice).unwrap_or_default();
        clients.iter().filter(|(_, reads)| *reads || !mail).map(|(client, _)| *client).collect()
    }

    /// What session `client` was told, taken.
    pub(crate) fn take_mail(&self, client: u64) -> Vec<Mail> {
        self.mailboxes().remove(&client).unwrap_or_default()
    }

    fn post(&self, client: u64, mail: Mail) {
        self.mailboxes().entry(client).or_default().push(mail);
    }
}

/// Publishes `order` to every node (this one included).
pub(crate) async fn send(state: &AppState, order: &Order) -> Result<(), Error> {
    let data = Bytes::from(serde_json::to_vec(order).expect("orders serialize"));
    let limits = HistoryLimits { max_count: 0, max_bytes: 0, max_age: std::time::Duration::ZERO };
    state.broker().publish(CONTROL_CHANNEL, data, None, limits).await.map_err(|e| broker_error(&e))?;
    Ok(())
}

/// Carries out `order` on this node.
fn carry_out(state: &AppState, order: Order) {
    match order {
        Order::Disconnect { user, code, reason } => {
            for client in state.users.of(&user, false) {
                state.disconnect(client, code, &reason);
            }
        }
        Order::Subscribe { user, channel } => tell(state, &user, Mail::Subscribe(channel)),
        Order::Unsubscribe { user, channel } => tell(state, &user, Mail::Unsubscribe(channel)),
    }
}

fn tell(state: &AppState, user: &str, mail: Mail) {
    for client in state.users.of(user, true) {
        state.users.post(client, mail.clone());
        state.signal_session(client);
    }
}

/// Subscribes this node to the orders and carries them out, until
/// shutdown.
pub(crate) fn spawn(state: Arc<AppState>) {
    tokio::spawn(async move {
        loop {
            let queue = ClientQueue::new(CONTROL_QUEUE_MESSAGES, usize::MAX);
            let client = state.next_client_id();
            let empty = |_: &_| PreparedMessage::binary(Bytes::new());
            let node = state.node.clone();
            if let Err(e) = node.subscribe(CONTROL_CHANNEL, client, &queue, None, 1, empty).await {
                tracing::warn!("the server API's orders: {e:?}; subscribing again in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    () = state.shutdown.cancelled() => return,
                }
            }
            let mut batch = Vec::new();
            loop {
                batch.clear();
                let taken = tokio::select! {
                    taken = queue.pop_all(&mut batch) => taken,
                    () = state.shutdown.cancelled() => return,
                };
                for message in &batch {
                    if let Some(order) = order_of(message.payload()) {
                        carry_out(&state, order);
                    }
                }
                if taken.is_none() {
                    break;
                }
            }
            tracing::warn!("the server API's orders fell behind; subscribing again");
            node.unsubscribe(CONTROL_CHANNEL, client).await;
        }
    });
}

/// The order a control publication's push carries.
fn order_of(message: &[u8]) -> Option<Order> {
    let push: Push = Encoding::Json.decode(message).ok()?;
    let Event::Pub(publication) = push.event else { return None };
    serde_json::from_slice(&publication.data.0).ok()
}
