//! WebSocket echo on one thread: tokio's current-thread runtime and
//! tokio-tungstenite with its defaults, as its own echo example does it
//! (text and binary messages forwarded back, batched flushes).
//!
//!     peer-ws-echo 127.0.0.1:PORT

use futures_util::{StreamExt, TryStreamExt};
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args().nth(1).expect("usage: peer-ws-echo ADDR");
    let listener = TcpListener::bind(&addr).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let (write, read) = ws.split();
            let _ = read
                .try_filter(|m| std::future::ready(m.is_text() || m.is_binary()))
                .forward(write)
                .await;
        });
    }
}
