//! `TestClient`: an app on a real one-shard server, driven by request
//! builders with typed responses and a cookie jar.

use futures_lite::future::block_on;
use percore::{App, Headers, Json, Response, Status, TestClient};

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Note {
    title: String,
}

fn app() -> App {
    App::new()
        .post("/notes", async |Json(note): Json<Note>| {
            (Status::CREATED, Json(note))
        })
        .get("/whoami", async |headers: Headers| {
            headers.get("authorization").unwrap_or("nobody").to_owned()
        })
        .get("/login", async || {
            Response::new(Status::OK)
                .header("Set-Cookie", "session=abc; Path=/; HttpOnly")
                .body("in")
        })
        .get("/logout", async || {
            Response::new(Status::OK)
                .header("Set-Cookie", "session=; Max-Age=0")
                .body("out")
        })
        .get("/cookie", async |headers: Headers| {
            headers.get("cookie").unwrap_or("none").to_owned()
        })
        .get("/hashed", async || {
            // Blocking work runs on the shard's pool: the shard is real.
            percore::blocking(|| (1..=10u64).product::<u64>().to_string()).await
        })
        .get("/stream", async || {
            let pieces = vec![b"a".to_vec(), b"bc".to_vec()];
            Response::new(Status::OK).stream(futures_lite::stream::iter(pieces))
        })
}

#[test]
fn json_in_and_out_with_a_typed_response() {
    let client = TestClient::new(app());
    block_on(async {
        let reply = client
            .post("/notes")
            .json(&Note { title: "hi".into() })
            .send()
            .await;
        assert_eq!(reply.status(), Status::CREATED);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.json::<Note>().unwrap(), Note { title: "hi".into() });
        // A bad body: the app's 4xx, readable as JSON.
        let bad = client
            .post("/notes")
            .body("{")
            .header("Content-Type", "application/json")
            .send()
            .await;
        assert_eq!(bad.status().code() / 100, 4);
        assert!(bad.text().contains("detail"), "{}", bad.text());
    });
}

#[test]
fn bearer_tokens_and_cookies_kept_between_requests() {
    let client = TestClient::new(app());
    block_on(async {
        let who = client.get("/whoami").bearer("t0k3n").send().await;
        assert_eq!(who.text(), "Bearer t0k3n");
        assert_eq!(client.get("/cookie").send().await.text(), "none");
        client.get("/login").send().await;
        assert_eq!(client.get("/cookie").send().await.text(), "session=abc");
        client.get("/logout").send().await;
        assert_eq!(client.get("/cookie").send().await.text(), "none");
    });
}

#[test]
fn the_app_runs_on_a_real_shard() {
    let client = TestClient::new(app());
    block_on(async {
        assert_eq!(client.get("/hashed").send().await.text(), "3628800");
        let streamed = client.get("/stream").send().await;
        assert_eq!(streamed.header("transfer-encoding"), Some("chunked"));
        assert_eq!(streamed.text(), "abc");
        // The built-in routes are there too, and HEAD has no body.
        assert_eq!(client.get("/health").send().await.status(), Status::OK);
        let head = client.request("HEAD", "/whoami").send().await;
        assert_eq!(head.status(), Status::OK);
        assert!(head.bytes().is_empty());
        assert_eq!(
            client.get("/nowhere").send().await.status(),
            Status::NOT_FOUND
        );
    });
}
