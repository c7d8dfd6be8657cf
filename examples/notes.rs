//! A small JSON API with per-shard state: create, list and fetch notes.
//!
//! ```text
//! cargo run --release --example notes
//! curl -s -XPOST localhost:8080/notes -H 'content-type: application/json' -d '{"text":"hi"}'
//! curl -s localhost:8080/notes/1
//! ```
//!
//! Each shard keeps its own notes (share-nothing): a real service would keep
//! them in a database, or steer clients to shards.

use std::cell::RefCell;
use std::rc::Rc;

use percore::{App, Config, HttpError, Json, Path, State, Status};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct NewNote {
    text: String,
}

#[derive(Clone, Serialize)]
struct Note {
    id: usize,
    text: String,
}

type Notes = Rc<RefCell<Vec<Note>>>;

async fn create(State(notes): State<Notes>, Json(new): Json<NewNote>) -> (Status, Json<Note>) {
    let mut notes = notes.borrow_mut();
    let note = Note {
        id: notes.len() + 1,
        text: new.text,
    };
    notes.push(note.clone());
    (Status::CREATED, Json(note))
}

async fn list(State(notes): State<Notes>) -> Json<Vec<Note>> {
    Json(notes.borrow().clone())
}

async fn fetch(State(notes): State<Notes>, Path(id): Path<usize>) -> Result<Json<Note>, HttpError> {
    let notes = notes.borrow();
    let note = notes
        .iter()
        .find(|n| n.id == id)
        .ok_or_else(HttpError::not_found)?;
    Ok(Json(note.clone()))
}

fn main() -> Result<(), percore::Error> {
    percore::init_logging("info");
    App::with_state(Notes::default)
        .post("/notes", create)
        .get("/notes", list)
        .get("/notes/{id}", fetch)
        .serve(Config::default())
}
