//! actix-web, one worker, tokio-postgres: GET /db, /queries?q=N, /fortunes,
//! /updates?q=N, by TechEmpower's rules (the same work as percore's
//! examples/techempower.rs).
use std::rc::Rc;

use actix_web::{App, HttpResponse, HttpServer, web};
use futures_util::future::try_join_all;
use tokio_postgres::{Client, NoTls, Statement};

struct Db {
    client: Client,
    world: Statement,
    fortune: Statement,
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

fn count(q: &Count) -> usize {
    q.q.as_deref().and_then(|q| q.parse::<usize>().ok()).unwrap_or(1).clamp(1, 500)
}

fn random_id() -> i32 {
    fastrand::i32(1..=10_000)
}

async fn world(db: &Db, id: i32) -> Result<World, tokio_postgres::Error> {
    let row = db.client.query_one(&db.world, &[&id]).await?;
    Ok(World { id: row.get(0), random_number: row.get(1) })
}

fn json<T: serde::Serialize>(value: &T) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(serde_json::to_vec(value).unwrap())
}

async fn single(db: web::Data<Rc<Db>>) -> HttpResponse {
    match world(&db, random_id()).await {
        Ok(w) => json(&w),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

async fn worlds(db: &Db, n: usize) -> Result<Vec<World>, tokio_postgres::Error> {
    try_join_all((0..n).map(|_| world(db, random_id()))).await
}

async fn queries(db: web::Data<Rc<Db>>, q: web::Query<Count>) -> HttpResponse {
    match worlds(&db, count(&q)).await {
        Ok(w) => json(&w),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

async fn updates(db: web::Data<Rc<Db>>, q: web::Query<Count>) -> HttpResponse {
    let Ok(mut ws) = worlds(&db, count(&q)).await else {
        return HttpResponse::InternalServerError().finish();
    };
    for w in &mut ws {
        w.random_number = random_id();
    }
    let mut sql = String::from("UPDATE world SET randomnumber = v.r FROM (VALUES ");
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${}::INT, ${}::INT)", 2 * i + 1, 2 * i + 2));
        params.push(&w.id);
        params.push(&w.random_number);
    }
    sql.push_str(") AS v(id, r) WHERE world.id = v.id");
    match db.client.execute(sql.as_str(), &params).await {
        Ok(_) => json(&ws),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
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

async fn fortunes(db: web::Data<Rc<Db>>) -> HttpResponse {
    let Ok(rows) = db.client.query(&db.fortune, &[]).await else {
        return HttpResponse::InternalServerError().finish();
    };
    let mut all: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    all.push((0, "Additional fortune added at request time.".to_owned()));
    all.sort_by(|a, b| a.1.cmp(&b.1));
    let mut html = String::with_capacity(2048);
    html.push_str("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr>");
    for (id, message) in &all {
        html.push_str("<tr><td>");
        html.push_str(&id.to_string());
        html.push_str("</td><td>");
        escape(message, &mut html);
        html.push_str("</td></tr>");
    }
    html.push_str("</table></body></html>");
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8082".into());
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://bench@127.0.0.1/bench".into());
    HttpServer::new(move || {
        let url = url.clone();
        App::new()
            .data_factory(move || {
                let url = url.clone();
                async move {
                    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
                    actix_web::rt::spawn(async move {
                        let _ = connection.await;
                    });
                    let world = client.prepare("SELECT id, randomnumber FROM world WHERE id = $1").await?;
                    let fortune = client.prepare("SELECT id, message FROM fortune").await?;
                    Ok::<_, tokio_postgres::Error>(Rc::new(Db { client, world, fortune }))
                }
            })
            .route("/db", web::get().to(single))
            .route("/queries", web::get().to(queries))
            .route("/updates", web::get().to(updates))
            .route("/fortunes", web::get().to(fortunes))
    })
    .workers(1)
    .bind(addr)?
    .run()
    .await
}
