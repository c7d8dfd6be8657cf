//! The reference app `percore serve` runs: the TechEmpower-style endpoints
//! used by benchmarks and a JSON echo (health routes are the server's).

use serde::{Deserialize, Serialize};

use crate::{App, Json};

/// The body of `GET /json`, serialized per request.
#[derive(Debug, Serialize)]
pub struct Message {
    /// Always `Hello, World!`.
    pub message: &'static str,
}

/// The body `POST /echo` takes and returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    /// Any text.
    pub message: String,
    /// An optional number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Optional tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

async fn plaintext() -> &'static str {
    "Hello, World!"
}

async fn json() -> Json<Message> {
    Json(Message {
        message: "Hello, World!",
    })
}

async fn echo(Json(body): Json<Echo>) -> Json<Echo> {
    Json(body)
}

/// The reference app: `GET /plaintext`, `GET /json`, `POST /echo`; the
/// server adds `GET /health` and `GET /health/ready` itself.
#[must_use]
pub fn app() -> App {
    App::new()
        .get("/plaintext", plaintext)
        .get("/json", json)
        .post("/echo", echo)
}
