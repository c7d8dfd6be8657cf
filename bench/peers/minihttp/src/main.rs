//! may_minihttp, one coroutine worker: GET /plaintext and GET /json
//! (serialized per request straight into the response body).
use std::io;

use may_minihttp::{HttpService, HttpServiceFactory, Request, Response};

#[derive(serde::Serialize)]
struct Message {
    message: &'static str,
}

struct Service;

impl HttpService for Service {
    fn call(&mut self, request: Request, response: &mut Response) -> io::Result<()> {
        match request.path() {
            "/plaintext" => response.header("Content-Type: text/plain; charset=utf-8").body("Hello, World!"),
            "/json" => {
                response.header("Content-Type: application/json");
                let body = response.body_mut();
                let json = serde_json::to_vec(&Message { message: "Hello, World!" })?;
                body.extend_from_slice(&json);
            }
            _ => {
                response.status_code(404, "Not Found");
            }
        }
        Ok(())
    }
}

struct Factory;

impl HttpServiceFactory for Factory {
    type Service = Service;

    fn new_service(&self, _: usize) -> Service {
        Service
    }
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8082".into());
    may::config().set_workers(1).set_pool_capacity(1000).set_stack_size(0x1000);
    Factory.start(addr).unwrap().join().unwrap();
}
