//! A chat room over WebSocket: every text message a client sends goes to
//! every client connected to the same shard (`ws::Broadcast`, one hub per
//! shard in its state; run with `--shards 1` for one room).
//!
//! ```text
//! cargo run --release --example chat -- --shards 1
//! python -m websockets ws://localhost:8080/chat     # in two terminals
//! ```

use percore::ws::{Broadcast, Message, WebSocketUpgrade};
use percore::{App, State};

/// What a chat connection waited for.
enum Next {
    Said(Option<Message>),
    Heard(Message),
}

fn app() -> App<Broadcast> {
    App::with_state(Broadcast::new).get(
        "/chat",
        async |State(room): State<Broadcast>, upgrade: WebSocketUpgrade| {
            upgrade
                .max_message_bytes(4096)
                .on_upgrade(async move |socket| {
                    let heard = room.subscribe();
                    loop {
                        let next = futures_lite::future::or(
                            async { Next::Said(socket.recv().await) },
                            async { Next::Heard(heard.recv().await) },
                        )
                        .await;
                        match next {
                            Next::Said(Some(Message::Text(text))) => {
                                room.send(&Message::Text(text));
                            }
                            Next::Said(Some(_)) => {}
                            Next::Said(None) => break,
                            Next::Heard(message) => {
                                if socket.send(message).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                })
        },
    )
}

fn main() -> std::process::ExitCode {
    percore::main(app)
}
