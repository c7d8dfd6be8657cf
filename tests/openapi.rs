//! The OpenAPI document from outside: what the routes' extractors and
//! return types say, the built-in routes, the documentation page, and the
//! paths they take.

use futures_lite::future::block_on;
use percore::{App, Bearer, Config, Json, Path, Query, Status, TestClient};
use serde_json::{Value, json};

#[derive(serde::Deserialize)]
#[allow(dead_code, reason = "only documented here")]
struct NewNote {
    title: String,
    stars: Option<u8>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code, reason = "only documented here")]
struct Page {
    page: u32,
    #[serde(default)]
    q: Option<String>,
}

fn app() -> App {
    App::new()
        .post("/notes", async |_: Bearer, Json(_): Json<NewNote>| {
            (Status::CREATED, "made")
        })
        .get(
            "/notes/{id}/files/{*rest}",
            async |Path((_, rest)): Path<(u64, String)>| rest,
        )
        .get("/search", async |Query(_): Query<Page>| Json(vec![1]))
}

fn document(client: &TestClient) -> Value {
    block_on(async {
        let reply = client.get("/openapi.json").send().await;
        assert_eq!(reply.status(), Status::OK);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        serde_json::from_str(&reply.text()).unwrap()
    })
}

#[test]
fn the_document_says_what_each_route_takes_and_answers() {
    let client = TestClient::new(app());
    let doc = document(&client);
    assert_eq!(doc["openapi"], "3.1.0");
    let post = &doc["paths"]["/notes"]["post"];
    let body = &post["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["required"], json!(["title"]));
    assert_eq!(body["properties"]["stars"]["anyOf"][0]["maximum"], 255);
    assert_eq!(post["security"], json!([{"bearer": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // (Status, T): the status is chosen at run time.
    assert!(
        post["responses"]["2XX"]["content"]["text/plain"].is_object(),
        "{post}"
    );
    assert!(post["responses"]["default"]["content"]["application/json"].is_object());

    let files = &doc["paths"]["/notes/{id}/files/{rest}"]["get"]["parameters"];
    assert_eq!(files[0]["name"], "id");
    assert_eq!(files[0]["in"], "path");
    assert_eq!(files[0]["schema"]["type"], "integer");
    assert_eq!(files[1]["schema"]["type"], "string");

    let search = &doc["paths"]["/search"]["get"];
    let params = search["parameters"].as_array().unwrap();
    assert_eq!(params.len(), 2);
    assert_eq!(
        (params[0]["name"].as_str(), params[0]["required"].as_bool()),
        (Some("page"), Some(true))
    );
    assert_eq!(
        (params[1]["name"].as_str(), params[1]["required"].as_bool()),
        (Some("q"), Some(false))
    );
    assert!(search["responses"]["200"]["content"]["application/json"].is_object());

    // The built-in health routes are documented too.
    assert!(doc["paths"]["/health"]["get"]["responses"]["200"].is_object());
    assert!(doc["paths"]["/health/ready"]["get"]["responses"]["503"].is_object());

    let page = block_on(client.get("/docs").send());
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.text().contains("url: \"/openapi.json\""),
        "{}",
        page.text()
    );
}

#[test]
fn the_paths_are_configurable_and_a_route_on_one_is_refused() {
    let mut config = Config::default();
    config.openapi.path = "/api/openapi.json".into();
    config.openapi.docs_path = String::new();
    config.openapi.title = "Notes <API>".into();
    let client = TestClient::with_config(app(), config).unwrap();
    let doc = block_on(async { client.get("/api/openapi.json").send().await.text() });
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["info"]["title"], "Notes <API>");
    assert_eq!(
        block_on(client.get("/docs").send()).status(),
        Status::NOT_FOUND
    );
    assert_eq!(
        block_on(client.get("/openapi.json").send()).status(),
        Status::NOT_FOUND
    );

    let error = App::new()
        .get("/docs", async || "mine")
        .start(&Config::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("openapi.docs_path"), "{error}");
}
