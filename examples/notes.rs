//! A notes service as a team would ship it: bearer-token auth, validated
//! JSON (422 with every failing field), file attachments streamed to disk,
//! a live feed of new notes over server-sent events, an audit line written
//! after each response, and its own settings in the `[app]` table.
//!
//! ```text
//! NOTES_TOKEN=secret cargo run --release --example notes -- --listen 127.0.0.1:8080
//! curl -s localhost:8080/
//! curl -s -XPOST localhost:8080/notes -H 'authorization: Bearer secret' \
//!      -H 'content-type: application/json' -d '{"title":"hi","body":"first","tags":["a"]}'
//! curl -s 'localhost:8080/notes?tag=a'
//! curl -s localhost:8080/notes/1
//! curl -s -XPOST localhost:8080/notes -H 'authorization: Bearer secret' \
//!      -H 'content-type: application/json' -d '{"title":5}'            # 422, two fields
//! curl -s -T README.md localhost:8080/notes/1/attachment -H 'authorization: Bearer secret'
//! curl -sN localhost:8080/events                                      # live feed
//! ```
//!
//! Settings: `[app]` in the file given with `--config`, or `NOTES_*`
//! variables: `token` (required), `title` (default "Notes"), `upload_dir`
//! (default the system's temporary directory), `max_notes` (default 10000).
//!
//! Consistency across shards: the notes live in one store every shard
//! shares (a mutex around a vector), so whichever shard answers sees every
//! note; the feed on each shard follows the store's sequence. That is the
//! right size for an example; a production service keeps its notes in
//! `PostgreSQL`, which percore's outbound I/O (on its way) will reach from
//! each shard.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use percore::{
    App, Background, Bearer, Body, BodyError, Event, HttpError, Json, LastEventId, Loc, Path,
    Query, Scope, Settings, Shutdown, Sse, State, Status, ValidationError,
};
use serde::{Deserialize, Serialize};

/// `[app]`: this service's own settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotesSettings {
    /// The bearer token that may write.
    token: String,
    #[serde(default = "default_title")]
    title: String,
    #[serde(default = "std::env::temp_dir")]
    upload_dir: PathBuf,
    #[serde(default = "default_max_notes")]
    max_notes: usize,
}

fn default_title() -> String {
    "Notes".to_owned()
}

fn default_max_notes() -> usize {
    10_000
}

#[derive(Deserialize)]
struct NewNote {
    title: String,
    body: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Clone, Serialize)]
struct Note {
    id: u64,
    title: String,
    body: String,
    tags: Vec<String>,
    attachment_bytes: Option<u64>,
}

#[derive(Deserialize)]
struct Filter {
    tag: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

/// The notes every shard shares.
#[derive(Default)]
struct Store {
    notes: Mutex<Vec<Note>>,
}

type Shared = Arc<Store>;

/// The writer: the request's bearer token is the configured one.
struct Writer;

impl<S> percore::FromRequest<S> for Writer {
    type Rejection = HttpError;

    async fn from_request(
        request: &mut percore::Request<'_>,
        state: &S,
    ) -> Result<Self, HttpError> {
        let Bearer(token) = Bearer::from_request(request, state).await?;
        let Settings(settings) = Settings::<NotesSettings>::from_request(request, state).await?;
        if token == settings.token {
            Ok(Writer)
        } else {
            Err(
                HttpError::new(Status::FORBIDDEN, "this token may not write")
                    .with_header("WWW-Authenticate", r#"Bearer error="invalid_token""#),
            )
        }
    }
}

async fn home(Settings(settings): Settings<NotesSettings>) -> String {
    format!("{}: POST /notes, GET /notes, GET /events\n", settings.title)
}

async fn create(
    _: Writer,
    State(store): State<Shared>,
    Settings(settings): Settings<NotesSettings>,
    background: Background,
    Json(new): Json<NewNote>,
) -> Result<(Status, Json<Note>), percore::InputError> {
    // Rules the type cannot say, reported the same way as type errors.
    let mut invalid = Vec::new();
    if new.title.trim().is_empty() || new.title.len() > 200 {
        invalid.push(percore::FieldError {
            loc: vec![Loc::Key("body".into()), Loc::Key("title".into())],
            msg: "String should have 1 to 200 characters".into(),
            kind: "string_length",
        });
    }
    if new.tags.len() > 10 {
        invalid.push(percore::FieldError {
            loc: vec![Loc::Key("body".into()), Loc::Key("tags".into())],
            msg: "List should have at most 10 items".into(),
            kind: "too_long",
        });
    }
    if !invalid.is_empty() {
        return Err(ValidationError { errors: invalid }.into());
    }
    let note = {
        let mut notes = store
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if notes.len() >= settings.max_notes {
            return Err(HttpError::new(Status::INSUFFICIENT_STORAGE, "the store is full").into());
        }
        let note = Note {
            id: notes.len() as u64 + 1,
            title: new.title,
            body: new.body,
            tags: new.tags,
            attachment_bytes: None,
        };
        notes.push(note.clone());
        note
    };
    let id = note.id;
    // The audit line is written after the client has its answer.
    background.run(async move {
        tracing::info!(note = id, "audit: note created");
    });
    Ok((Status::CREATED, Json(note)))
}

async fn list(State(store): State<Shared>, Query(filter): Query<Filter>) -> Json<Vec<Note>> {
    let notes = store
        .notes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(
        notes
            .iter()
            .filter(|note| {
                filter
                    .tag
                    .as_ref()
                    .is_none_or(|tag| note.tags.contains(tag))
            })
            .take(filter.limit)
            .cloned()
            .collect(),
    )
}

async fn fetch(State(store): State<Shared>, Path(id): Path<u64>) -> Result<Json<Note>, HttpError> {
    let notes = store
        .notes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let note = notes
        .iter()
        .find(|n| n.id == id)
        .ok_or_else(HttpError::not_found)?;
    Ok(Json(note.clone()))
}

/// `PUT /notes/{id}/attachment`: the body, streamed to a file (up to the
/// route's 64 MiB, past `limits.max_body_bytes`).
async fn attach(
    _: Writer,
    State(store): State<Shared>,
    Settings(settings): Settings<NotesSettings>,
    Path(id): Path<u64>,
    body: Body,
) -> Result<String, HttpError> {
    if !store
        .notes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|n| n.id == id)
    {
        return Err(HttpError::not_found());
    }
    let path = settings.upload_dir.join(format!("note-{id}.attachment"));
    let stored = body
        .to_file(&path)
        .await
        .map_err(|error: BodyError| HttpError::new(Status::BAD_REQUEST, error.to_string()))?;
    let mut notes = store
        .notes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(note) = notes.iter_mut().find(|n| n.id == id) {
        note.attachment_bytes = Some(stored);
    }
    Ok(format!("{stored} bytes\n"))
}

/// `GET /events`: each new note as an event whose id is the note's, from
/// the one after `Last-Event-ID` (a reconnecting browser misses nothing);
/// ends when the server drains.
async fn events(
    State(store): State<Shared>,
    LastEventId(last): LastEventId,
    shutdown: Shutdown,
) -> Sse<impl futures_lite::Stream<Item = Event>> {
    let after: u64 = last.and_then(|id| id.parse().ok()).unwrap_or(0);
    let feed = futures_lite::stream::unfold((store, after), |(store, mut after)| async move {
        loop {
            let next = {
                let notes = store
                    .notes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                notes.iter().find(|n| n.id > after).cloned()
            };
            if let Some(note) = next {
                after = note.id;
                let data = simd_json::to_string(&note).unwrap_or_default();
                let event = Event::data(data).event("note").id(&note.id.to_string());
                return Some((event, (store, after)));
            }
            // The store is shared by every shard: look again shortly.
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
    });
    Sse::new(feed)
        .keep_alive(Duration::from_secs(15))
        .until(shutdown)
}

fn app() -> App<Shared> {
    let store: Shared = Arc::default();
    let writes = Scope::new()
        .put("/notes/{id}/attachment", attach)
        .max_body_bytes(64 << 20);
    App::with_state(move || Arc::clone(&store))
        .settings::<NotesSettings>("NOTES")
        .get("/", home)
        .post("/notes", create)
        .get("/notes", list)
        .get("/notes/{id}", fetch)
        .get("/events", events)
        .nest("", writes)
}

fn main() -> std::process::ExitCode {
    percore::main(app)
}
