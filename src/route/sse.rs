//! Server-sent events: a stream of [`Event`]s as a `text/event-stream`
//! response, with keep-alive comments while the stream is quiet, and the
//! [`LastEventId`] a reconnecting browser sends.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::Stream;

use super::extract::FromRequest;
use crate::http::request::Request;
use crate::http::response::{HttpError, IntoResponse};
use crate::http::status::Status;
use crate::http::write::ResponseWriter;

/// One server-sent event.
///
/// ```
/// use percore::Event;
/// let event = Event::data("line one\nline two").event("note").id("42");
/// assert_eq!(event.to_bytes(), b"event: note\nid: 42\ndata: line one\ndata: line two\n\n");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    kind: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    data: String,
}

/// Drops CR and LF, which would end a field early.
fn one_line(text: &str) -> String {
    text.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

impl Event {
    /// An event carrying `data` (several lines become several `data:` fields).
    #[must_use]
    pub fn data(data: impl Into<String>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// The event's type (`event:`), which `EventSource.addEventListener` keys on.
    #[must_use]
    pub fn event(mut self, name: &str) -> Self {
        self.kind = Some(one_line(name));
        self
    }

    /// The event's id (`id:`), sent back as `Last-Event-ID` on reconnection.
    #[must_use]
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(one_line(id).replace('\0', ""));
        self
    }

    /// How long the browser waits before reconnecting (`retry:`).
    #[must_use]
    pub fn retry(mut self, after: Duration) -> Self {
        self.retry = Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// The event as the stream carries it.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.data.len() + 32);
        if let Some(kind) = &self.kind {
            out.push_str("event: ");
            out.push_str(kind);
            out.push('\n');
        }
        if let Some(id) = &self.id {
            out.push_str("id: ");
            out.push_str(id);
            out.push('\n');
        }
        if let Some(retry) = self.retry {
            out.push_str("retry: ");
            out.push_str(&retry.to_string());
            out.push('\n');
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line.strip_suffix('\r').unwrap_or(line));
            out.push('\n');
        }
        out.push('\n');
        out.into_bytes()
    }
}

/// A `text/event-stream` response from a stream of events:
///
/// ```no_run
/// use percore::{App, Event, Sse};
/// use std::time::Duration;
///
/// let app = App::new().get("/ticks", async || {
///     let ticks = futures_lite::stream::iter((1..=3).map(|n| Event::data(n.to_string()).id(&n.to_string())));
///     Sse::new(ticks).keep_alive(Duration::from_secs(15))
/// });
/// ```
pub struct Sse<St> {
    events: St,
    keep_alive: Option<Duration>,
    until: Option<super::shutdown::Shutdown>,
}

impl<St> std::fmt::Debug for Sse<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sse")
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl<St: Stream<Item = Event> + 'static> Sse<St> {
    /// The events of `events`, each sent as it comes.
    pub fn new(events: St) -> Self {
        Self {
            events,
            keep_alive: None,
            until: None,
        }
    }

    /// Ends the stream when `shutdown` resolves (the shard drains), so the
    /// client sees a clean end and reconnects to another server.
    #[must_use]
    pub fn until(mut self, shutdown: super::shutdown::Shutdown) -> Self {
        self.until = Some(shutdown);
        self
    }

    /// Sends a comment line when no event came for `every`, so proxies and
    /// browsers keep a quiet stream open (on a shard; not under
    /// [`LocalService`](crate::LocalService), which has no timers).
    #[must_use]
    pub fn keep_alive(mut self, every: Duration) -> Self {
        self.keep_alive = Some(every);
        self
    }
}

impl<St: Stream<Item = Event> + 'static> IntoResponse for Sse<St> {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        let body = Body {
            events: Box::pin(self.events),
            keep_alive: self.keep_alive,
            timer: None,
            until: self.until.map(|shutdown| {
                let ended: Pin<Box<dyn Future<Output = ()>>> =
                    Box::pin(async move { shutdown.wait().await });
                ended
            }),
        };
        writer.send_stream(
            Status::OK,
            Some("text/event-stream"),
            [
                ("Cache-Control", &b"no-cache"[..]),
                // A proxy in front (nginx) must not buffer the stream.
                ("X-Accel-Buffering", &b"no"[..]),
            ],
            Box::pin(body),
        );
    }

    fn describe(operation: &mut crate::http::describe::Operation) {
        operation.response("200", Some("text/event-stream"), serde_json::json!({}));
    }
}

/// The response body: events as they come, comments while quiet.
struct Body {
    events: Pin<Box<dyn Stream<Item = Event>>>,
    keep_alive: Option<Duration>,
    /// Armed while waiting for an event; fires the keep-alive comment.
    timer: Option<glommio::timer::Timer>,
    /// Resolves when the stream must end (the shard drains).
    until: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl Stream for Body {
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        if let Some(until) = self.until.as_mut()
            && until.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        match self.events.as_mut().poll_next(cx) {
            Poll::Ready(Some(event)) => {
                self.timer = None;
                return Poll::Ready(Some(event.to_bytes()));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let Some(every) = self.keep_alive.filter(|_| super::shutdown::on_shard()) else {
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| glommio::timer::Timer::new(every));
        if Pin::new(timer).poll(cx).is_ready() {
            self.timer = None;
            return Poll::Ready(Some(b": keep-alive\n\n".to_vec()));
        }
        Poll::Pending
    }
}

/// The `Last-Event-ID` a reconnecting `EventSource` sends (`None` on the
/// first connection).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastEventId(pub Option<String>);

impl<S> FromRequest<S> for LastEventId {
    type Rejection = HttpError;

    fn describe(operation: &mut crate::http::describe::Operation) {
        operation.header_param(
            "Last-Event-ID",
            serde_json::json!({"type": "string"}),
            false,
        );
    }

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, HttpError> {
        Ok(LastEventId(
            request.header_str("last-event-id").map(str::to_owned),
        ))
    }
}
