//! The whole request path (decode → route → handler → encode) through
//! `LocalService`: the same bytes, whole or split at a point chosen by the
//! input, produce the same response bytes (Date masked) and close decision.
#![no_main]

mod limits;

use futures_lite::future::block_on;
use libfuzzer_sys::fuzz_target;
use limits::limits;
use percore::{App, Bytes, Json, LocalService, Path, Query};

#[derive(serde::Deserialize, serde::Serialize)]
struct Item {
    name: String,
    #[serde(default)]
    tags: Vec<String>,
}

fn app() -> App {
    percore::reference::app()
        .post("/raw", async |Bytes(body): Bytes| body)
        .post("/item", async |Json(item): Json<Item>| Json(item))
        .get("/users/{id}", async |Path(id): Path<u64>| id.to_string())
        .get("/q", async |Query(item): Query<Item>| item.name)
}


/// Serves `input` fed in two pieces split at `cut`, as a connection would.
fn run(input: &[u8], cut: usize) -> (Vec<u8>, bool) {
    let mut service = LocalService::with_limits(app(), limits());
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut close = false;
    for piece in [&input[..cut], &input[cut..]] {
        buf.extend_from_slice(piece);
        let (consumed, closing) = block_on(service.serve(&buf[start..], &mut out));
        start += consumed;
        if closing {
            close = true;
            break;
        }
    }
    mask_dates(&mut out);
    (out, close)
}

/// Overwrites every `Date` value, which depends on the clock.
fn mask_dates(out: &mut [u8]) {
    const DATE: &[u8] = b"\r\nDate: ";
    let mut at = 0;
    while let Some(found) = out[at..].windows(DATE.len()).position(|w| w == DATE) {
        let value = at + found + DATE.len();
        let end = (value + 29).min(out.len());
        out[value..end].fill(b'X');
        at = end;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let input = &data[1..];
    let cut = usize::from(data[0]) * input.len() / 256;
    assert_eq!(run(input, input.len()), run(input, cut), "split at {cut}");
});
