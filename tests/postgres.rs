//! The PostgreSQL pool against a real server made for each test:
//! queries with cached statements, pipelining, transactions, and the
//! failure paths (down at start, bad login, pool exhausted, a slow query,
//! a backend killed mid-query, the server gone), in a shard and behind
//! a handler.

mod support;

use support::on_shard;

use std::time::Duration;

use percore::postgres::{Pg, PgConfig, PgErrorKind};
use percore::{App, Path, State, Status, TestClient};
use support::servers::Postgres;

#[test]
fn queries_are_prepared_once_pipelined_and_transactions_commit_or_roll_back() {
    let pg = Postgres::start();
    let url = pg.url();
    let socket_url = pg.socket_url();
    let port = pg.port;
    on_shard(move || async move {
        let db = Pg::connect(PgConfig {
            size: 1,
            ..PgConfig::new(&url)
        })
        .await
        .unwrap();
        db.execute(
            "CREATE TABLE notes (id INT PRIMARY KEY, title TEXT NOT NULL)",
            &[],
        )
        .await
        .unwrap();
        for id in 0..10i32 {
            let changed = db
                .execute(
                    "INSERT INTO notes VALUES ($1, $2)",
                    &[&id, &format!("note {id}")],
                )
                .await
                .unwrap();
            assert_eq!(changed, 1);
        }
        let row = db
            .query_one("SELECT title FROM notes WHERE id = $1", &[&3i32])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "note 3");
        assert!(
            db.query_opt("SELECT title FROM notes WHERE id = $1", &[&99i32])
                .await
                .unwrap()
                .is_none()
        );
        // Each statement was prepared once on the one connection.
        let prepared = db
            .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(
            prepared, 4,
            "CREATE, INSERT, SELECT title (run twice) and this count"
        );
        // Fifty concurrent queries on one connection: pipelined, all answered.
        let queries = (0..50i32).map(|i| {
            let db = db.clone();
            async move {
                let row = db.query_one("SELECT $1::INT * 2", &[&i]).await.unwrap();
                row.get::<_, i32>(0)
            }
        });
        let mut answers = Vec::new();
        let tasks: Vec<_> = queries.map(glommio::spawn_local).collect();
        for task in tasks {
            answers.push(task.await);
        }
        assert_eq!(answers, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(db.stats().open, 1);
        // A unique violation names its SQLSTATE.
        let error = db
            .execute("INSERT INTO notes VALUES (1, 'again')", &[])
            .await
            .unwrap_err();
        assert_eq!(error.kind(), PgErrorKind::Query);
        assert_eq!(error.code(), Some("23505"));
        // A committed transaction stays; one dropped midway does not.
        let mut lease = db.lease().await.unwrap();
        let tx = lease.begin().await.unwrap();
        tx.execute("INSERT INTO notes VALUES (100, 'kept')", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        {
            let tx = lease.begin().await.unwrap();
            tx.execute("INSERT INTO notes VALUES (101, 'lost')", &[])
                .await
                .unwrap();
            // Dropped without commit: an early return, a cancelled request.
        }
        drop(lease);
        let kept = db
            .query("SELECT id FROM notes WHERE id >= 100 ORDER BY id", &[])
            .await
            .unwrap();
        let ids: Vec<i32> = kept.iter().map(|r| r.get(0)).collect();
        assert_eq!(ids, [100]);
        // A database that does not exist: refused at connect, naming it.
        let error = Pg::connect(PgConfig::new(&format!(
            "postgres://test@127.0.0.1:{port}/nosuchdb"
        )))
        .await
        .unwrap_err();
        assert_eq!(error.kind(), PgErrorKind::Auth, "{error}");
        assert!(error.to_string().contains("nosuchdb"), "{error}");
        // The same server over its Unix socket.
        let local = Pg::connect(PgConfig::new(&socket_url)).await.unwrap();
        let count = local
            .query_one("SELECT count(*) FROM notes", &[])
            .await
            .unwrap();
        assert_eq!(count.get::<_, i64>(0), 11);
    });
}

#[test]
fn failures_give_a_clear_error_and_never_hang() {
    let mut pg = Postgres::start();
    let url = pg.url();
    let port = pg.port;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let shard = std::thread::spawn(move || {
        on_shard(move || async move {
            let db = Pg::connect(PgConfig {
                size: 1,
                acquire_timeout: Duration::from_millis(200),
                query_timeout: Some(Duration::from_millis(300)),
                ..PgConfig::new(&url)
            })
            .await
            .unwrap();
            assert!(db.is_healthy());
            // The one connection taken: the next query waits, then says why.
            let lease = db.lease().await.unwrap();
            let error = db.query("SELECT 1", &[]).await.unwrap_err();
            assert_eq!(error.kind(), PgErrorKind::PoolTimeout, "{error}");
            drop(lease);
            // A query slower than its timeout.
            let error = db.query("SELECT pg_sleep(5)", &[]).await.unwrap_err();
            assert_eq!(error.kind(), PgErrorKind::Timeout, "{error}");
            // The timed-out query's connection is retired; the pool goes on.
            let row = db.query_one("SELECT 6", &[]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), 6);
            // A backend killed mid-query: that query fails, the pool recovers.
            let other = Pg::connect(PgConfig::new(&url)).await.unwrap();
            let victim = Pg::connect(PgConfig {
                size: 1,
                query_timeout: None,
                ..PgConfig::new(&url)
            })
            .await
            .unwrap();
            let again = victim.clone();
            let slow = glommio::spawn_local(async move {
                again
                    .query(
                        "SELECT pg_sleep(0.2), pg_sleep(0.2) FROM generate_series(1, 10)",
                        &[],
                    )
                    .await
            });
            let mut terminated = 0;
            for _ in 0..100 {
                let rows = other
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE query LIKE 'SELECT pg_sleep(0.2)%' AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .unwrap();
                terminated = rows.len();
                if terminated > 0 {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(terminated, 1, "the slow query's backend was found");
            let error = slow.await.unwrap_err();
            assert!(
                matches!(error.kind(), PgErrorKind::Query | PgErrorKind::Closed),
                "{error}"
            );
            let row = victim.query_one("SELECT 7", &[]).await.unwrap();
            assert_eq!(
                row.get::<_, i32>(0),
                7,
                "a new connection replaced the killed one"
            );
            // The server gone: calls fail at once, readiness says so.
            tx.send(()).unwrap();
            killed_rx.recv().unwrap();
            let error = db.query("SELECT 1", &[]).await.unwrap_err();
            assert!(
                matches!(error.kind(), PgErrorKind::Connect | PgErrorKind::Closed),
                "{error}"
            );
            let error = db.query("SELECT 1", &[]).await.unwrap_err();
            assert_eq!(error.kind(), PgErrorKind::Connect, "{error}");
            assert!(!db.is_healthy());
        });
    });
    rx.recv().unwrap();
    pg.kill();
    killed_tx.send(()).unwrap();
    shard.join().unwrap();
    // Nothing listens any more: a start fails naming the address.
    on_shard(move || async move {
        let error = Pg::connect(PgConfig::new(&format!(
            "postgres://test@127.0.0.1:{port}/postgres"
        )))
        .await
        .unwrap_err();
        assert_eq!(error.kind(), PgErrorKind::Connect, "{error}");
        assert!(
            error.to_string().contains(&format!("127.0.0.1:{port}")),
            "{error}"
        );
    });
}

#[derive(Clone)]
struct Shard {
    db: Pg,
}

#[test]
fn handlers_query_through_the_shard_pool_and_readiness_follows_it() {
    let pg = Postgres::start();
    let url = pg.url();
    let app = App::with_async_state(move |_| {
        let url = url.clone();
        async move {
            let db = Pg::connect(PgConfig::new(&url))
                .await
                .map_err(|e| percore::StartupError::new("postgres", e))?;
            db.execute(
                "CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY, name TEXT)",
                &[],
            )
            .await
            .map_err(|e| percore::StartupError::new("postgres", e))?;
            db.execute(
                "INSERT INTO items VALUES (1, 'tea') ON CONFLICT DO NOTHING",
                &[],
            )
            .await
            .map_err(|e| percore::StartupError::new("postgres", e))?;
            Ok(Shard { db })
        }
    })
    .readiness_check("postgres", |shard: &Shard| shard.db.is_healthy())
    .on_shutdown(|shard: &Shard| {
        let db = shard.db.clone();
        async move { db.close() }
    })
    .get(
        "/items/{id}",
        async |State(shard): State<Shard>, Path(id): Path<i32>| {
            let row = shard
                .db
                .query_one("SELECT name FROM items WHERE id = $1", &[&id])
                .await?;
            Ok::<_, percore::postgres::PgError>(row.get::<_, String>(0))
        },
    );
    let client = TestClient::new(app);
    futures_lite::future::block_on(async {
        let reply = client.get("/items/1").send().await;
        assert_eq!(
            (reply.status(), reply.text()),
            (Status::OK, "tea".to_owned())
        );
        // A missing row is a 404; SQL never reaches the client.
        let reply = client.get("/items/2").send().await;
        assert_eq!(reply.status(), Status::NOT_FOUND);
        assert_eq!(
            client.get("/health/ready").send().await.status(),
            Status::OK
        );
    });
    drop(client);
    drop(pg);
}

#[test]
fn a_database_down_at_start_stops_the_server_naming_it() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = App::with_async_state(move |_| async move {
        Pg::connect(PgConfig::new(&format!(
            "postgres://test@127.0.0.1:{port}/postgres"
        )))
        .await
        .map_err(|e| percore::StartupError::new("postgres", e))
    });
    let error = app.start(&support::config()).unwrap_err().to_string();
    assert!(
        error.contains("postgres") && error.contains(&port.to_string()),
        "{error}"
    );
    assert!(
        error.contains("start postgres or fix its address"),
        "{error}"
    );
}
