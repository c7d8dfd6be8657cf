//! A per-shard broadcast of messages to every subscribed WebSocket.
//!
//! Each shard keeps its own hub (in its state, built per shard): a message
//! sent reaches the subscribers on that shard, with nothing shared between
//! shards. A subscriber that falls behind by more than its queue loses
//! the oldest messages (counted), so one slow peer never holds the others
//! up or grows without bound.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use slab::Slab;

use super::Message;

/// Messages a subscriber may have waiting before the oldest are dropped.
const QUEUE: usize = 256;

/// A shard's broadcast hub; clones are the same hub.
#[derive(Clone, Default)]
pub struct Broadcast {
    hub: Rc<RefCell<Slab<Subscriber>>>,
}

impl std::fmt::Debug for Broadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("subscribers", &self.subscribers())
            .finish()
    }
}

#[derive(Default)]
struct Subscriber {
    queue: VecDeque<Message>,
    waker: Option<Waker>,
    dropped: u64,
}

impl Broadcast {
    /// A hub with no subscribers.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A new subscription: every message sent from now on.
    #[must_use]
    pub fn subscribe(&self) -> Subscription {
        let key = self.hub.borrow_mut().insert(Subscriber::default());
        Subscription {
            hub: Rc::clone(&self.hub),
            key,
        }
    }

    /// Sends `message` to every subscriber; returns how many.
    pub fn send(&self, message: &Message) -> usize {
        let mut hub = self.hub.borrow_mut();
        for (_, subscriber) in hub.iter_mut() {
            if subscriber.queue.len() == QUEUE {
                subscriber.queue.pop_front();
                subscriber.dropped += 1;
            }
            subscriber.queue.push_back(message.clone());
            if let Some(waker) = subscriber.waker.take() {
                waker.wake();
            }
        }
        hub.len()
    }

    /// Subscribers now.
    #[must_use]
    pub fn subscribers(&self) -> usize {
        self.hub.borrow().len()
    }
}

/// One subscriber's messages; unsubscribes when dropped.
pub struct Subscription {
    hub: Rc<RefCell<Slab<Subscriber>>>,
    key: usize,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next message sent to the hub.
    pub async fn recv(&self) -> Message {
        poll_fn(|cx| {
            let mut hub = self.hub.borrow_mut();
            let subscriber = &mut hub[self.key];
            if let Some(message) = subscriber.queue.pop_front() {
                return Poll::Ready(message);
            }
            subscriber.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Messages this subscriber lost by falling behind.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.hub.borrow()[self.key].dropped
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.borrow_mut().try_remove(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::{Broadcast, Message, QUEUE};

    #[test]
    fn every_subscriber_gets_each_message_and_a_slow_one_loses_the_oldest() {
        let hub = Broadcast::new();
        let fast = hub.subscribe();
        let slow = hub.subscribe();
        assert_eq!(hub.send(&Message::Text("one".into())), 2);
        let got = futures_lite::future::block_on(fast.recv());
        assert_eq!(got, Message::Text("one".into()));
        for i in 0..QUEUE {
            hub.send(&Message::Text(i.to_string()));
        }
        assert_eq!(slow.dropped(), 1);
        let first = futures_lite::future::block_on(slow.recv());
        assert_eq!(first, Message::Text("0".into()));
        drop(fast);
        assert_eq!(hub.subscribers(), 1);
    }
}
