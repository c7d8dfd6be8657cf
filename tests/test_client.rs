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

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Signup {
    name: String,
    age: u8,
}

#[test]
fn forms_twelve_arguments_and_server_sent_events() {
    use percore::{Event, Form, LastEventId, Method, ShardId, Sse};
    use std::time::Duration;
    let app = App::new()
        .post("/signup", async |Form(signup): Form<Signup>| {
            format!("{} is {}", signup.name, signup.age)
        })
        .get(
            "/many",
            async |_: Method,
                   _: ShardId,
                   _: Headers,
                   _: LastEventId,
                   _: Method,
                   _: ShardId,
                   _: Headers,
                   _: LastEventId,
                   _: Method,
                   _: ShardId,
                   _: Headers,
                   LastEventId(last): LastEventId| last.unwrap_or_default(),
        )
        .get("/events", async |LastEventId(last): LastEventId| {
            let start: u32 = last.and_then(|id| id.parse().ok()).unwrap_or(0);
            let events = futures_lite::stream::iter(
                (start + 1..=start + 2)
                    .map(|n| Event::data(format!("tick {n}")).id(&n.to_string())),
            );
            // Then quiet for 1.5 s (keep-alive comments every 0.5 s), then the end.
            let quiet = futures_lite::stream::once_future(async {
                glommio::timer::sleep(Duration::from_millis(1500)).await;
                Event::data("bye").event("end")
            });
            Sse::new(futures_lite::StreamExt::chain(events, quiet))
                .keep_alive(Duration::from_millis(500))
        });
    let client = TestClient::new(app);
    block_on(async {
        let signed = client
            .post("/signup")
            .form(&Signup {
                name: "Ada".into(),
                age: 36,
            })
            .send()
            .await;
        assert_eq!(signed.text(), "Ada is 36");
        let not_a_form = client.post("/signup").json(&1).send().await;
        assert_eq!(not_a_form.status(), Status::UNSUPPORTED_MEDIA_TYPE);
        let bad_age = client
            .post("/signup")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("name=Ada&age=old")
            .send()
            .await;
        assert_eq!(bad_age.status(), Status::UNPROCESSABLE_ENTITY);
        let many = client
            .get("/many")
            .header("Last-Event-ID", "12")
            .send()
            .await;
        assert_eq!(many.text(), "12");
        let events = client
            .get("/events")
            .header("Last-Event-ID", "7")
            .send()
            .await;
        assert_eq!(events.header("content-type"), Some("text/event-stream"));
        assert_eq!(events.header("cache-control"), Some("no-cache"));
        let text = events.text();
        assert!(
            text.starts_with("id: 8\ndata: tick 8\n\nid: 9\ndata: tick 9\n\n"),
            "{text}"
        );
        assert!(text.contains(": keep-alive\n\n"), "{text}");
        assert!(text.ends_with("event: end\ndata: bye\n\n"), "{text}");
    });
}

#[test]
fn auth_extractors_challenge_and_a_route_timeout_answers_504() {
    use percore::{Basic, Bearer, Scope, timeout};
    use std::time::Duration;
    let app = App::new()
        .get("/token", async |Bearer(token): Bearer| token)
        .get("/user", async |login: Basic| {
            format!("{}:{}", login.user, login.password)
        })
        .nest(
            "/slow",
            Scope::new()
                .get("", async || {
                    glommio::timer::sleep(Duration::from_secs(5)).await;
                    "too late"
                })
                .get("/quick", async || "in time")
                .layer(timeout(Duration::from_millis(300))),
        );
    let client = TestClient::new(app);
    block_on(async {
        let missing = client.get("/token").send().await;
        assert_eq!(missing.status(), Status::UNAUTHORIZED);
        assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
        assert!(
            missing.text().contains("bearer token"),
            "{}",
            missing.text()
        );
        let bad = client
            .get("/token")
            .header("Authorization", "Bearer a b")
            .send()
            .await;
        assert_eq!(
            bad.header("www-authenticate"),
            Some(r#"Bearer error="invalid_request""#)
        );
        assert_eq!(
            client.get("/token").bearer("t0k3n").send().await.text(),
            "t0k3n"
        );
        let basic = client.get("/user").send().await;
        assert_eq!(basic.status(), Status::UNAUTHORIZED);
        assert!(
            basic
                .header("www-authenticate")
                .unwrap()
                .starts_with("Basic realm=")
        );
        let user = client
            .get("/user")
            .header("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
            .send()
            .await;
        assert_eq!(user.text(), "Aladdin:open sesame");
        let slow = client.get("/slow").send().await;
        assert_eq!(slow.status(), Status::GATEWAY_TIMEOUT);
        assert!(
            slow.text().contains("longer than this route allows"),
            "{}",
            slow.text()
        );
        assert_eq!(client.get("/slow/quick").send().await.text(), "in time");
    });
}
