//! actix-web, one worker: GET /plaintext and GET /json (serialized per request).
use actix_web::{App, HttpResponse, HttpServer, http::header::ContentType, web};

#[derive(serde::Serialize)]
struct Message {
    message: &'static str,
}

async fn plaintext() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("Hello, World!")
}

async fn json() -> HttpResponse {
    let body = serde_json::to_vec(&Message { message: "Hello, World!" }).unwrap();
    HttpResponse::Ok().content_type(ContentType::json()).body(body)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8081".into());
    HttpServer::new(|| App::new().route("/plaintext", web::get().to(plaintext)).route("/json", web::get().to(json)))
        .workers(1)
        .bind(addr)?
        .run()
        .await
}
