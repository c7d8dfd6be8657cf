//! Extractors from outside: async extractors with rejections of their own,
//! twelve arguments, and FastAPI-style validation errors (422, every
//! failing field) through real sockets.

use futures_lite::future::block_on;
use percore::{
    App, Config, Form, FromRequest, HttpError, IntoResponse, Json, Method, Path, Peer, Query,
    Request, Response, ResponseWriter, ShardId, Status, TestClient,
};

/// An extractor that awaits (a timer, as a session lookup would await a
/// store) and rejects with a response of its own: a 401 with a challenge
/// and a body that is not percore's.
struct Session(String);

struct LoginFirst;

impl IntoResponse for LoginFirst {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        Response::new(Status::UNAUTHORIZED)
            .header("WWW-Authenticate", r#"Cookie realm="notes""#)
            .header("Content-Type", "text/plain")
            .body("log in first")
            .write_response(writer);
    }
}

impl<S> FromRequest<S> for Session {
    type Rejection = LoginFirst;

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, LoginFirst> {
        let token = request.header_str("x-session").map(str::to_owned);
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        match token {
            Some(token) if token.starts_with("ok-") => Ok(Session(token[3..].to_owned())),
            _ => Err(LoginFirst),
        }
    }
}

#[derive(serde::Deserialize, serde::Serialize, Debug)]
struct Note {
    title: String,
    stars: u8,
    tags: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Page {
    page: u32,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Signup {
    name: String,
    age: u16,
}

fn app() -> App {
    App::new()
        .get("/me", async |Session(user): Session| user)
        .get("/maybe", async |session: Option<Session>| match session {
            Some(Session(user)) => user,
            None => "anonymous".to_owned(),
        })
        .post("/notes", async |Json(note): Json<Note>| Json(note))
        .post("/signup", async |Form(signup): Form<Signup>| {
            format!("{} {}", signup.name, signup.age)
        })
        .get(
            "/twelve/{a}/{b}",
            async |Path((a, b)): Path<(u32, String)>,
                   Query(page): Query<Page>,
                   method: Method,
                   _peer: Peer,
                   _shard: ShardId,
                   Session(user): Session,
                   _headers: percore::Headers,
                   _: Option<percore::Bearer>,
                   _: percore::LastEventId,
                   _: percore::Shutdown,
                   _: percore::State<()>| {
                format!("{a} {b} {} {} {user}", page.page, method.as_str())
            },
        )
}

#[test]
fn an_extractor_awaits_and_rejects_with_its_own_response() {
    let client = TestClient::new(app());
    block_on(async {
        let reply = client.get("/me").header("x-session", "ok-ada").send().await;
        assert_eq!(
            (reply.status(), reply.text()),
            (Status::OK, "ada".to_owned())
        );
        let reply = client.get("/me").send().await;
        assert_eq!(reply.status(), Status::UNAUTHORIZED);
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"Cookie realm="notes""#)
        );
        assert_eq!(reply.text(), "log in first");
        assert_eq!(client.get("/maybe").send().await.text(), "anonymous");
        let reply = client
            .get("/maybe")
            .header("x-session", "ok-bo")
            .send()
            .await;
        assert_eq!(reply.text(), "bo");
    });
}

#[test]
fn a_handler_takes_twelve_extractors() {
    let client = TestClient::new(app());
    block_on(async {
        let reply = client
            .get("/twelve/7/x?page=3")
            .header("x-session", "ok-cy")
            .send()
            .await;
        assert_eq!(reply.text(), "7 x 3 GET cy");
        // The first rejection answers: the path does not fit.
        let reply = client.get("/twelve/seven/x?page=3").send().await;
        assert_eq!(reply.status(), Status::UNPROCESSABLE_ENTITY);
        let detail: serde_json::Value = serde_json::from_str(&reply.text()).unwrap();
        assert_eq!(detail["detail"][0]["loc"], serde_json::json!(["path", "a"]));
    });
}

#[test]
fn a_body_that_does_not_fit_lists_every_failing_field() {
    let client = TestClient::new(app());
    block_on(async {
        let reply = client
            .post("/notes")
            .header("content-type", "application/json")
            .body(r#"{"title": null, "stars": 500, "tags": ["a", 2]}"#)
            .send()
            .await;
        assert_eq!(reply.status(), Status::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&reply.text()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"detail": [
                {"loc": ["body", "title"], "msg": "Input should be a valid string", "type": "string_type"},
                {"loc": ["body", "stars"], "msg": "Input should be a valid integer from 0 to 255", "type": "int_type"},
                {"loc": ["body", "tags", 1], "msg": "Input should be a valid string", "type": "string_type"},
            ]})
        );
        // Malformed syntax stays 400.
        let reply = client
            .post("/notes")
            .header("content-type", "application/json")
            .body(r#"{"title": "#)
            .send()
            .await;
        assert_eq!(reply.status(), Status::BAD_REQUEST);
        // A form the same way.
        let reply = client
            .post("/signup")
            .body("age=old")
            .header("content-type", "application/x-www-form-urlencoded")
            .send()
            .await;
        assert_eq!(reply.status(), Status::UNPROCESSABLE_ENTITY);
        let body: serde_json::Value = serde_json::from_str(&reply.text()).unwrap();
        let locs: Vec<_> = body["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["loc"].clone())
            .collect();
        assert_eq!(
            locs,
            [
                serde_json::json!(["body", "age"]),
                serde_json::json!(["body", "name"])
            ]
        );
        let reply = client
            .post("/signup")
            .form(&Signup {
                name: "ada".into(),
                age: 36,
            })
            .send()
            .await;
        assert_eq!(reply.text(), "ada 36");
    });
}

#[test]
fn services_that_prefer_400_configure_it() {
    let mut config = Config::default();
    config.limits.validation_status = 400;
    let client = TestClient::with_config(app(), config).unwrap();
    block_on(async {
        let reply = client
            .get("/twelve/1/x?page=-1")
            .header("x-session", "ok-a")
            .send()
            .await;
        assert_eq!(reply.status(), Status::BAD_REQUEST);
        assert!(
            reply.text().contains(r#""loc":["query","page"]"#),
            "{}",
            reply.text()
        );
    });
    let _ = HttpError::not_found();
}
