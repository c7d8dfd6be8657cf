//! The smallest percore service: text, a path parameter, a query and JSON.
//!
//! `percore::main` gives it the whole `percore` command line: `serve`,
//! `check-config`, `doctor`, `--help`, every flag and `PERCORE_*` variable.
//!
//! ```text
//! cargo run --release --example hello
//! curl -s localhost:8080/hello/world
//! curl -s 'localhost:8080/add?a=2&b=3'
//! cargo run --release --example hello -- --listen 127.0.0.1:9000 --shards 1
//! ```

use percore::{App, Json, Path, Query};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Operands {
    a: i64,
    b: i64,
}

#[derive(Serialize)]
struct Sum {
    sum: i64,
}

async fn hello(Path(name): Path<String>) -> String {
    format!("Hello, {name}!")
}

async fn add(Query(operands): Query<Operands>) -> Json<Sum> {
    Json(Sum {
        sum: operands.a + operands.b,
    })
}

fn main() -> std::process::ExitCode {
    percore::main(|| {
        App::new()
            .get("/", async || "percore says hi")
            .get("/hello/{name}", hello)
            .get("/add", add)
    })
}
