//! WebSocket echo: every text or binary message comes back as it was
//! sent. The server `scripts/bench-ws.sh` measures against
//! tokio-tungstenite.
//!
//! ```text
//! cargo run --release --example ws_echo -- --shards 1
//! python -m websockets ws://localhost:8080/ws
//! ```

use percore::App;
use percore::ws::{Message, WebSocketUpgrade};

fn app() -> App {
    App::new().get("/ws", async |upgrade: WebSocketUpgrade| {
        upgrade.on_upgrade(async |socket| {
            while let Some(message) = socket.recv().await {
                if matches!(message, Message::Text(_) | Message::Binary(_))
                    && socket.send(message).await.is_err()
                {
                    break;
                }
            }
        })
    })
}

fn main() -> std::process::ExitCode {
    percore::main(app)
}
