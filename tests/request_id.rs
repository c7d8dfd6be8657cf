//! Request IDs: the client's or a generated one, echoed, readable by the
//! handler, and carried by every log line the handler writes (a `request`
//! span with method, route and ID).

mod support;

use futures_lite::future::block_on;
use percore::{App, Config, RequestId, Status, TestClient};

#[test]
fn every_request_has_an_id_its_handler_and_its_log_lines_share() {
    let captured = support::Captured::install();
    let app = || {
        App::new().get("/who", async |RequestId(id): RequestId| {
            tracing::info!("handling it");
            id
        })
    };
    let mut config = Config::default();
    config.log.request_id = true;
    let client = TestClient::with_config(app(), config).unwrap();
    block_on(async {
        let given = client
            .get("/who")
            .header("X-Request-ID", "abc-123")
            .send()
            .await;
        assert_eq!(given.text(), "abc-123");
        assert_eq!(given.header("x-request-id"), Some("abc-123"));
        let generated = client.get("/who").send().await;
        let id = generated.text();
        assert!(id.len() > 10, "{id}");
        assert_eq!(generated.header("x-request-id"), Some(id.as_str()));
        let another = client.get("/who").send().await.text();
        assert_ne!(another, id, "IDs are unique");
    });
    let logged = captured.text();
    let line = logged
        .lines()
        .find(|line| line.contains("handling it") && line.contains("abc-123"))
        .unwrap_or_else(|| panic!("no handler line with the request's ID in:\n{logged}"));
    assert!(line.contains("request{"), "{line}");
    assert!(line.contains(r#"route="/who""#), "{line}");
    assert!(
        line.contains("method=\"GET\"") || line.contains("method=GET"),
        "{line}"
    );
    // Off by default: a handler that reads the ID says which key to set.
    let off = TestClient::new(app());
    block_on(async {
        let reply = off.get("/who").send().await;
        assert_eq!(reply.status(), Status::INTERNAL_SERVER_ERROR);
        assert!(reply.text().contains("log.request_id"), "{}", reply.text());
        assert_eq!(reply.header("x-request-id"), None);
    });
}
