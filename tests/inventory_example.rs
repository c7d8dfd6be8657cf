//! `examples/inventory.rs` against real PostgreSQL and Redis servers and a
//! pricing service: items through the cache, quotes through the HTTP
//! client (retrying the pricing service's 503), readiness naming the
//! dependency that went down. (`cargo test` builds examples.)

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use percore::{App, Path, Response, Status, TestClient};
use support::servers::{Postgres, Redis};
use support::{Client, get, post_json};

static PRICE_CALLS: AtomicU32 = AtomicU32::new(0);

/// The pricing service: answers 503 to every other call.
fn pricing() -> TestClient {
    TestClient::new(App::new().get("/prices/{id}", async |Path(id): Path<i64>| {
        if PRICE_CALLS.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            Response::new(Status::SERVICE_UNAVAILABLE).body("busy")
        } else {
            Response::new(Status::OK)
                .header("Content-Type", "application/json")
                .body(format!(r#"{{"cents":{},"currency":"EUR"}}"#, 100 + id))
        }
    }))
}

#[test]
fn the_inventory_service_works_against_real_servers() {
    let pg = Postgres::start();
    let mut redis = Redis::start();
    let prices = pricing();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_percore"))
        .parent()
        .unwrap()
        .join("examples")
        .join("inventory");
    assert!(binary.exists(), "{} not built", binary.display());
    let mut command = Command::new(&binary);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "2"])
        .env("INVENTORY_DATABASE_URL", pg.url())
        .env("INVENTORY_REDIS_URL", redis.url())
        .env("INVENTORY_PRICING_URL", format!("http://{}", prices.addr()));
    let spawned = support::spawn_ready(command);
    let _child = support::KillOnDrop(spawned.child);
    let mut client = Client::connect(spawned.addrs[0]);
    let created = client.request(&post_json("/items", r#"{"name":"tea","stock":3}"#));
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(created.text().contains(r#""id":1"#), "{}", created.text());
    let item = client.request(&get("/items/1"));
    assert_eq!(item.status, 200);
    assert_eq!(item.text(), r#"{"id":1,"name":"tea","stock":3}"#);
    // Changed behind the service's back: the cached copy is served.
    let url = pg.url();
    support::on_shard(move || async move {
        let db = percore::postgres::Pg::connect(percore::postgres::PgConfig::new(&url))
            .await
            .unwrap();
        db.execute("UPDATE items SET stock = 0 WHERE id = 1", &[])
            .await
            .unwrap();
    });
    let again = client.request(&get("/items/1"));
    assert_eq!(
        again.text(),
        r#"{"id":1,"name":"tea","stock":3}"#,
        "from Redis"
    );
    // A quote: the pricing service's first answer is a 503, retried.
    let quote = client.request(&get("/items/1/quote"));
    assert_eq!(quote.status, 200, "{}", quote.text());
    assert!(
        quote
            .text()
            .contains(r#""price":{"cents":101,"currency":"EUR"}"#),
        "{}",
        quote.text()
    );
    assert_eq!(PRICE_CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(client.request(&get("/items/9")).status, 404);
    assert_eq!(client.request(&get("/health/ready")).status, 200);
    // Redis gone: readiness names it (once the shard has seen the close).
    redis.kill();
    let mut ready = None;
    for _ in 0..100 {
        let reply = client.request(&get("/health/ready"));
        if reply.status == 503 {
            ready = Some(reply.text().to_owned());
            break;
        }
        // Each shard learns of the close when its connection reads it.
        let _ = client.request(&get("/items/1"));
    }
    let ready = ready.expect("readiness noticed Redis was gone");
    assert!(ready.contains(r#""redis""#), "{ready}");
    assert!(!ready.contains(r#""postgres""#), "{ready}");
    // Reading an item needs the cache: 503 without it, and no SQL leaks.
    let reply = client.request(&get("/items/1"));
    assert_eq!(reply.status, 503, "{}", reply.text());
    drop(pg);
}
