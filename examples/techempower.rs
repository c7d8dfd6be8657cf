//! `TechEmpower`'s database endpoints on percore's PostgreSQL pool, for
//! `scripts/bench-db.sh` (against actix-web with tokio-postgres,
//! `bench/peers/actix-pg`): `/db`, `/queries?q=N`, `/fortunes` and
//! `/updates?q=N`, by the benchmark's rules (random ids, one query per
//! row, fortunes sorted and HTML-escaped at request time).
//!
//! ```text
//! DATABASE_URL=postgres://bench@127.0.0.1:5432/bench \
//!   cargo run --release --example techempower -- --shards 1
//! ```

use std::fmt::Write;

use percore::postgres::{Pg, PgConfig, PgError};
use percore::{App, Json, Query, Response, StartupError, State, Status};

#[derive(Clone)]
struct Shard {
    db: Pg,
}

#[derive(serde::Serialize)]
struct World {
    id: i32,
    #[serde(rename = "randomNumber")]
    random_number: i32,
}

#[derive(serde::Deserialize)]
struct Count {
    q: Option<String>,
}

/// `q` clamped to 1..=500 as the rules say (anything unparsable is 1).
fn count(query: &Count) -> usize {
    query
        .q
        .as_deref()
        .and_then(|q| q.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 500)
}

fn random_id() -> i32 {
    fastrand::i32(1..=10_000)
}

async fn world(db: &Pg, id: i32) -> Result<World, PgError> {
    let row = db
        .query_one("SELECT id, randomnumber FROM world WHERE id = $1", &[&id])
        .await?;
    Ok(World {
        id: row.get(0),
        random_number: row.get(1),
    })
}

async fn single(State(shard): State<Shard>) -> Result<Json<World>, PgError> {
    world(&shard.db, random_id()).await.map(Json)
}

/// `n` worlds, their queries all in flight at once (pipelined on the
/// shard's connections).
async fn worlds(db: &Pg, n: usize) -> Result<Vec<World>, PgError> {
    futures_util::future::try_join_all((0..n).map(|_| world(db, random_id()))).await
}

async fn queries(
    State(shard): State<Shard>,
    Query(q): Query<Count>,
) -> Result<Json<Vec<World>>, PgError> {
    worlds(&shard.db, count(&q)).await.map(Json)
}

async fn updates(
    State(shard): State<Shard>,
    Query(q): Query<Count>,
) -> Result<Json<Vec<World>>, PgError> {
    let mut worlds = worlds(&shard.db, count(&q)).await?;
    for world in &mut worlds {
        world.random_number = random_id();
    }
    // One statement for the batch, as the peers do.
    let mut sql = String::from("UPDATE world SET randomnumber = v.r FROM (VALUES ");
    let mut params: Vec<&(dyn percore::postgres::ToSql + Sync)> =
        Vec::with_capacity(worlds.len() * 2);
    for (i, world) in worlds.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "(${}::INT, ${}::INT)", 2 * i + 1, 2 * i + 2);
        params.push(&world.id);
        params.push(&world.random_number);
    }
    sql.push_str(") AS v(id, r) WHERE world.id = v.id");
    shard.db.execute(&sql, &params).await?;
    Ok(Json(worlds))
}

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

async fn fortunes(State(shard): State<Shard>) -> Result<Response, PgError> {
    let rows = shard
        .db
        .query("SELECT id, message FROM fortune", &[])
        .await?;
    let mut all: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    all.push((0, "Additional fortune added at request time.".to_owned()));
    all.sort_by(|a, b| a.1.cmp(&b.1));
    let mut html = String::with_capacity(2048);
    html.push_str("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr>");
    for (id, message) in &all {
        html.push_str("<tr><td>");
        let _ = write!(html, "{id}");
        html.push_str("</td><td>");
        escape(message, &mut html);
        html.push_str("</td></tr>");
    }
    html.push_str("</table></body></html>");
    Ok(Response::new(Status::OK)
        .header("Content-Type", "text/html; charset=utf-8")
        .body(html))
}

fn app() -> App<Shard> {
    App::with_async_state(|_| async {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://bench@127.0.0.1/bench".into());
        let size = std::env::var("DB_POOL")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4);
        let db = Pg::connect(PgConfig {
            size,
            min_idle: size,
            ..PgConfig::new(&url)
        })
        .await
        .map_err(|e| StartupError::new("postgres", e))?;
        Ok(Shard { db })
    })
    .get("/db", single)
    .get("/queries", queries)
    .get("/updates", updates)
    .get("/fortunes", fortunes)
}

fn main() -> std::process::ExitCode {
    percore::main(app)
}
