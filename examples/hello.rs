//! The smallest percore service: text, a path parameter, a query and JSON.
//!
//! ```text
//! cargo run --release --example hello
//! curl -s localhost:8080/hello/world
//! curl -s 'localhost:8080/add?a=2&b=3'
//! ```

use percore::{App, Config, Json, Path, Query};
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

fn main() -> Result<(), percore::Error> {
    percore::init_logging("info");
    App::new()
        .get("/", async || "percore says hi")
        .get("/hello/{name}", hello)
        .get("/add", add)
        .serve(Config::default())
}
