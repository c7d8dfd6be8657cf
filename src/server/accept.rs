//! The accept loop of one listener on one shard.

use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpListener;

use super::connection;
use super::transport::Transport;
use crate::runtime::shard::ShardContext;

/// Pause after a failed accept (such as EMFILE), so a shard out of file
/// descriptors does not spin while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections forever, serving each in its own task.
pub(crate) async fn accept_loop<S: 'static>(listener: TcpListener, shard: Rc<ShardContext<S>>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let peer = stream.peer_addr().ok();
                let shard = Rc::clone(&shard);
                glommio::spawn_local(async move {
                    connection::serve(&shard, Transport::new(stream), peer).await;
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(shard = shard.index, %error, "accept failed");
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
