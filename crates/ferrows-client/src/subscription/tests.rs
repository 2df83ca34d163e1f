//! The recovery rules: each publication once, in order, across
//! resubscriptions and pushes that come while a subscribe is in flight.

use bytes::Bytes;
use ferrows_hub::protocol::{Data, Event as Wire, Position, Positioned, Pub};
use tokio::sync::{mpsc, oneshot};

use super::{Event, Recovery, SubState};

fn position(offset: u64, epoch: &str) -> Position {
    Position { offset, epoch: epoch.into() }
}

fn publication(offset: u64) -> Pub {
    Pub { offset, data: Data(Bytes::from(offset.to_string())), info: None }
}

fn reply(offset: u64, epoch: &str, recovered: Option<bool>, publications: &[u64]) -> Positioned {
    Positioned {
        position: position(offset, epoch),
        recovered,
        publications: recovered.map(|_| publications.iter().map(|o| publication(*o)).collect()),
    }
}

/// A subscription subscribed at `offset` of epoch `e`, and its events.
fn subscribed(offset: u64) -> (SubState, mpsc::UnboundedReceiver<Event>) {
    let (events, receiver) = mpsc::unbounded_channel();
    let (ready, mut first) = oneshot::channel();
    let mut sub = SubState::new(1, events, ready);
    let (subscribe, _) = sub.subscribing("c");
    assert_eq!(subscribe.since, None);
    sub.subscribed(reply(offset, "e", None, &[]), None);
    assert_eq!(first.try_recv().unwrap().unwrap(), position(offset, "e"));
    (sub, receiver)
}

fn drain(receiver: &mut mpsc::UnboundedReceiver<Event>) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        seen.push(match event {
            Event::Publication(p) => format!("pub {}", p.offset),
            Event::Resubscribed(Recovery { recovered, missed, position }) => {
                format!("resubscribed {recovered} {missed} {}", position.offset)
            }
            Event::Reset(p) => format!("reset {}", p.offset),
            other => format!("{other:?}"),
        });
    }
    seen
}

#[test]
fn pushes_held_during_a_resubscribe_follow_the_recovered_ones_once() {
    let (mut sub, mut events) = subscribed(3);
    sub.push(Wire::Pub(publication(4)));
    sub.idle();
    // Made while away: 5 and 6; 7 arrives while the subscribe is in flight
    // (and 6 again, as a late push of the same publication).
    let (subscribe, _) = sub.subscribing("c");
    assert_eq!(subscribe.since, Some(position(4, "e")));
    sub.push(Wire::Pub(publication(6)));
    sub.push(Wire::Pub(publication(7)));
    sub.subscribed(reply(6, "e", Some(true), &[5, 6]), Some(position(4, "e")));
    sub.push(Wire::Pub(publication(7)));
    sub.push(Wire::Pub(publication(8)));
    assert_eq!(drain(&mut events), ["pub 4", "resubscribed true 2 6", "pub 5", "pub 6", "pub 7", "pub 8"]);
}

#[test]
fn a_gap_that_cannot_be_filled_is_said_and_the_stream_goes_on_from_the_new_position() {
    let (mut sub, mut events) = subscribed(10);
    sub.idle();
    let (subscribe, _) = sub.subscribing("c");
    // Another epoch: the history was lost.
    sub.subscribed(reply(2, "f", Some(false), &[]), subscribe.since);
    sub.push(Wire::Pub(publication(2)));
    sub.push(Wire::Pub(publication(3)));
    assert_eq!(drain(&mut events), ["resubscribed false 0 2", "pub 3"]);
    // The same epoch but `recovered` with another epoch is not trusted.
    sub.idle();
    let (subscribe, _) = sub.subscribing("c");
    assert_eq!(subscribe.since, Some(position(3, "f")));
    sub.subscribed(reply(5, "g", Some(true), &[4, 5]), subscribe.since);
    assert_eq!(drain(&mut events), ["resubscribed false 0 5"]);
}

#[test]
fn a_reset_moves_the_position_and_is_told() {
    let (mut sub, mut events) = subscribed(7);
    sub.push(Wire::Reset { position: position(0, "new") });
    sub.push(Wire::Pub(publication(1)));
    sub.idle();
    let (subscribe, _) = sub.subscribing("c");
    assert_eq!(subscribe.since, Some(position(1, "new")));
    assert_eq!(drain(&mut events), ["reset 0", "pub 1"]);
}

#[test]
fn pushes_of_an_idle_subscription_and_stale_ones_are_dropped() {
    let (mut sub, mut events) = subscribed(2);
    sub.push(Wire::Pub(publication(2)));
    sub.idle();
    sub.push(Wire::Pub(publication(3)));
    assert!(drain(&mut events).is_empty());
}

#[test]
fn a_refused_first_subscribe_answers_the_caller() {
    let (events, mut receiver) = mpsc::unbounded_channel();
    let (ready, mut first) = oneshot::channel();
    let sub = SubState::new(1, events, ready);
    sub.failed(crate::Error::Timeout);
    assert_eq!(first.try_recv().unwrap(), Err(crate::Error::Timeout));
    assert!(receiver.try_recv().is_err());
}
