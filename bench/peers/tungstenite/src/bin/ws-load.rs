//! WebSocket echo load from one thread: CONNECTIONS clients, each keeping
//! IN_FLIGHT messages of SIZE bytes (text) in flight for SECONDS; prints
//! the echoes received in that time.
//!
//!     ws-load ws://127.0.0.1:PORT/ws CONNECTIONS IN_FLIGHT SECONDS SIZE

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, connections, in_flight, seconds, size] = &args[..] else {
        panic!("usage: ws-load URL CONNECTIONS IN_FLIGHT SECONDS SIZE");
    };
    let connections: usize = connections.parse().unwrap();
    let in_flight: usize = in_flight.parse().unwrap();
    let seconds: u64 = seconds.parse().unwrap();
    let text: String = "x".repeat(size.parse().unwrap());
    let local = tokio::task::LocalSet::new();
    let echoed = Rc::new(Cell::new(0u64));
    let counting = Rc::new(Cell::new(false));
    local
        .run_until(async {
            let mut clients = Vec::new();
            for _ in 0..connections {
                let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .expect("connect");
                clients.push(ws);
            }
            let end = Instant::now() + Duration::from_secs(seconds);
            counting.set(true);
            for ws in clients {
                let (echoed, counting, text) = (echoed.clone(), counting.clone(), text.clone());
                tokio::task::spawn_local(async move {
                    let (mut sink, mut stream) = ws.split();
                    for _ in 0..in_flight {
                        sink.feed(Message::text(text.clone())).await.expect("send");
                    }
                    sink.flush().await.expect("flush");
                    loop {
                        // Flush the replies only when no echo is waiting.
                        let next = match stream.next().now_or_never() {
                            Some(next) => next,
                            None => {
                                if sink.flush().await.is_err() {
                                    return;
                                }
                                stream.next().await
                            }
                        };
                        match next {
                            Some(Ok(message)) if message.is_text() => {
                                if counting.get() {
                                    echoed.set(echoed.get() + 1);
                                }
                                if sink.feed(message).await.is_err() {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => return,
                        }
                    }
                });
            }
            tokio::time::sleep_until(end.into()).await;
            counting.set(false);
        })
        .await;
    println!("{}", echoed.get());
}
