//! How the process talks to its shards, by message only: each shard has a
//! mailbox (a channel of [`Command`]s plus a doorbell socket its event loop
//! waits on), and a [`Vitals`] it stamps so a watchdog can tell a blocked
//! event loop from a busy one.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use crate::observe::metrics::{self, RouteLabel, Scraped, Snapshot, Supervision};
pub(crate) use crate::observe::vitals::Vitals;
use crate::server::shard::Settings;

/// What a shard is told to do.
pub(crate) enum Command {
    /// Stop accepting, drain, end.
    Stop,
    /// Use these settings for new connections and new responses; say so
    /// on the sender.
    Reload(Box<Settings>, mpsc::Sender<usize>),
    /// Send a snapshot of the shard's metrics.
    Snapshot(mpsc::Sender<(usize, Snapshot)>),
}

/// The sending side of a shard's mailbox.
pub(crate) struct Mailbox {
    commands: mpsc::Sender<Command>,
    bell: UnixStream,
}

/// The receiving side, owned by the shard.
pub(crate) struct Inbox {
    pub(crate) commands: mpsc::Receiver<Command>,
    /// Readable when commands wait; end-of-file when every mailbox is gone.
    pub(crate) bell: UnixStream,
}

/// A new mailbox and its inbox.
pub(crate) fn mailbox() -> std::io::Result<(Mailbox, Inbox)> {
    let (bell, bell_peer) = UnixStream::pair()?;
    bell.set_nonblocking(true)?;
    let (commands, receiver) = mpsc::channel();
    Ok((
        Mailbox { commands, bell },
        Inbox {
            commands: receiver,
            bell: bell_peer,
        },
    ))
}

impl Mailbox {
    /// Queues `command` and rings; false when the shard is gone.
    fn send(&self, command: Command) -> bool {
        if self.commands.send(command).is_err() {
            return false;
        }
        // A full doorbell already has unread rings: the shard will look.
        match (&self.bell).write_all(&[1]) {
            Ok(()) => true,
            Err(error) => error.kind() == std::io::ErrorKind::WouldBlock,
        }
    }
}

/// Every shard's mailbox and vitals, and the route labels metrics use.
pub(crate) struct Control {
    mailboxes: Vec<Mutex<Option<Mailbox>>>,
    /// Called once when the server stops by itself (a shard lost for
    /// good): wakes whoever serves until a signal.
    on_fatal: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    pub(crate) vitals: Vec<Arc<Vitals>>,
    pub(crate) routes: Vec<RouteLabel>,
}

/// How long a scrape waits for the shards' snapshots.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

impl Control {
    /// Control of `shards` shards, none of them started yet.
    pub(crate) fn new(shards: usize, routes: Vec<RouteLabel>) -> Self {
        Self {
            mailboxes: (0..shards).map(|_| Mutex::new(None)).collect(),
            on_fatal: Mutex::new(None),
            vitals: (0..shards).map(|_| Arc::default()).collect(),
            routes,
        }
    }

    /// Sets what to call when the server stops by itself.
    pub(crate) fn on_fatal(&self, call: impl FnOnce() + Send + 'static) {
        *self.on_fatal.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(call));
    }

    /// The server stopped by itself: calls the hook, once.
    pub(crate) fn fatal(&self) {
        let call = self
            .on_fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(call) = call {
            call();
        }
    }

    /// Installs `shard`'s mailbox (when it starts or restarts).
    pub(crate) fn install(&self, shard: usize, mailbox: Mailbox) {
        *self.mailboxes[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(mailbox);
    }

    /// Sends `shard` a command; false when it is not running.
    pub(crate) fn send(&self, shard: usize, command: Command) -> bool {
        self.mailboxes[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|mailbox| mailbox.send(command))
    }

    /// Sends every shard the command `make` builds; how many took it.
    pub(crate) fn broadcast(&self, make: impl Fn() -> Command) -> usize {
        (0..self.mailboxes.len())
            .filter(|&shard| self.send(shard, make()))
            .count()
    }

    /// Every shard's snapshot (`None` for a shard that is down or did not
    /// answer within two seconds) with its supervision counts.
    pub(crate) fn scrape(&self) -> Vec<Scraped> {
        let (reply, replies) = mpsc::channel();
        let asked = self.broadcast(|| Command::Snapshot(reply.clone()));
        drop(reply);
        let mut snapshots: Vec<Option<Snapshot>> = vec![None; self.mailboxes.len()];
        let deadline = Instant::now() + SCRAPE_TIMEOUT;
        for _ in 0..asked {
            let left = deadline.saturating_duration_since(Instant::now());
            match replies.recv_timeout(left) {
                Ok((shard, snapshot)) => snapshots[shard] = Some(snapshot),
                Err(_) => break,
            }
        }
        snapshots
            .into_iter()
            .zip(&self.vitals)
            .map(|(snapshot, vitals)| Scraped {
                snapshot,
                supervision: Supervision {
                    stalls: vitals.stalls.load(Ordering::Relaxed),
                    restarts: vitals.restarts.load(Ordering::Relaxed),
                },
            })
            .collect()
    }

    /// The Prometheus text of a fresh scrape.
    pub(crate) fn metrics_text(&self) -> String {
        metrics::render(&self.routes, &self.scrape())
    }

    /// The label of route `slot`, as `GET /path`.
    pub(crate) fn route_name(&self, slot: usize) -> String {
        self.routes.get(slot).map_or_else(
            || "?".to_owned(),
            |label| {
                format!("{} {}", label.method, label.route)
                    .trim()
                    .to_owned()
            },
        )
    }
}
