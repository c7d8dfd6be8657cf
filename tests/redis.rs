//! The Redis client against a real `redis-server` started per test:
//! typed replies, RESP2 and RESP3, multiplexed and pipelined commands,
//! scripts, pub/sub, and the failure paths.

mod support;

use support::on_shard;

use std::time::Duration;

use percore::redis::{Redis, RedisConfig, RedisErrorKind, Script, Value};
use support::servers::Redis as Server;

#[test]
fn commands_with_typed_replies_over_resp2_and_resp3() {
    let server = Server::start();
    let url = server.url();
    on_shard(move || async move {
        for resp3 in [false, true] {
            let redis = Redis::connect(RedisConfig {
                resp3,
                ..RedisConfig::new(&url)
            })
            .await
            .unwrap();
            let key = format!("greeting-{resp3}");
            redis.set(&key, "hello").await.unwrap();
            assert_eq!(
                redis.get::<String>(&key).await.unwrap().as_deref(),
                Some("hello")
            );
            assert_eq!(redis.get::<String>("missing").await.unwrap(), None);
            assert_eq!(redis.incr(&format!("n-{resp3}"), 5).await.unwrap(), 5);
            assert!(redis.del(&key).await.unwrap());
            assert!(!redis.del(&key).await.unwrap());
            // A hash: a flat array in RESP2, a map in RESP3.
            let _: i64 = redis.cmd(["HSET", "h", "a", "1"]).await.unwrap();
            let all: Value = redis.cmd(["HGETALL", "h"]).await.unwrap();
            match (resp3, all) {
                (false, Value::Array(items)) => assert_eq!(items.len(), 2),
                (true, Value::Map(pairs)) => assert_eq!(pairs.len(), 1),
                (_, other) => panic!("HGETALL gave {other:?}"),
            }
            // A server error names itself; the connection goes on.
            let error = redis.cmd::<i64, _>(["INCR", "h"]).await.unwrap_err();
            assert_eq!(error.kind(), RedisErrorKind::Server);
            assert!(
                error.server_message().unwrap().starts_with("WRONGTYPE"),
                "{error}"
            );
            let pong: String = redis.cmd(["PING"]).await.unwrap();
            assert_eq!(pong, "PONG");
            let _: i64 = redis.cmd(["DEL", "h"]).await.unwrap();
        }
    });
}

#[test]
fn concurrent_commands_share_one_connection_pipelined() {
    let server = Server::start();
    let url = server.url();
    on_shard(move || async move {
        let redis = Redis::connect(RedisConfig::new(&url)).await.unwrap();
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let redis = redis.clone();
                glommio::spawn_local(async move { redis.incr("counter", 1).await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for task in tasks {
            seen.push(task.await);
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (1..=500).collect::<Vec<_>>(),
            "each INCR got its own reply"
        );
        let clients: String = redis.cmd(["CLIENT", "LIST"]).await.unwrap();
        assert_eq!(clients.lines().count(), 1, "one connection: {clients}");
        // An explicit pipeline: one write, replies in order, an error in place.
        let commands = vec![
            vec![b"SET".to_vec(), b"p".to_vec(), b"1".to_vec()],
            vec![b"INCR".to_vec(), b"p".to_vec()],
            vec![b"LPUSH".to_vec(), b"p".to_vec(), b"x".to_vec()],
            vec![b"GET".to_vec(), b"p".to_vec()],
        ];
        let replies = redis.pipeline(&commands).await.unwrap();
        assert_eq!(replies[0], Value::Status("OK".into()));
        assert_eq!(replies[1], Value::Int(2));
        assert!(matches!(&replies[2], Value::Error(e) if e.contains("WRONGTYPE")));
        assert_eq!(replies[3], Value::Bulk("2".into()));
        // A script, by digest once the server knows it.
        let script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
        let first: i64 = redis.eval(&script, &["s"], &[&10]).await.unwrap();
        let second: i64 = redis.eval(&script, &["s"], &[&10]).await.unwrap();
        assert_eq!((first, second), (10, 20));
    });
}

#[test]
fn published_messages_reach_a_subscription() {
    let server = Server::start();
    let url = server.url();
    on_shard(move || async move {
        let redis = Redis::connect(RedisConfig::new(&url)).await.unwrap();
        let mut subscription = redis.subscribe(&["news", "other"]).await.unwrap();
        let receivers: i64 = redis.cmd(["PUBLISH", "news", "hello"]).await.unwrap();
        assert_eq!(receivers, 1);
        let message = subscription.next().await.unwrap();
        assert_eq!(message.channel, "news");
        assert_eq!(&message.payload[..], b"hello");
        let _: i64 = redis.cmd(["PUBLISH", "other", "second"]).await.unwrap();
        assert_eq!(&subscription.next().await.unwrap().payload[..], b"second");
        drop(subscription);
        // The subscriber's connection closed with it.
        let mut left = 2;
        for _ in 0..100 {
            let clients: String = redis.cmd(["CLIENT", "LIST"]).await.unwrap();
            left = clients.lines().count();
            if left == 1 {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(left, 1);
    });
}

#[test]
fn failures_give_a_clear_error_and_never_hang() {
    let mut server = Server::start();
    let url = server.url();
    let port = server.port;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let shard = std::thread::spawn(move || {
        on_shard(move || async move {
            let redis = Redis::connect(RedisConfig {
                command_timeout: Duration::from_millis(100),
                ..RedisConfig::new(&url)
            })
            .await
            .unwrap();
            // A reply slower than the timeout; later replies still match
            // their commands.
            let error = redis
                .cmd::<(), _>(["DEBUG", "SLEEP", "0.3"])
                .await
                .unwrap_err();
            assert_eq!(error.kind(), RedisErrorKind::Timeout, "{error}");
            let patient = Redis::connect(RedisConfig::new(&url)).await.unwrap();
            patient.set("k", "v").await.unwrap();
            let mut value = None;
            for _ in 0..20 {
                match redis.get::<String>("k").await {
                    Ok(v) => {
                        value = v;
                        break;
                    }
                    Err(e) => assert_eq!(e.kind(), RedisErrorKind::Timeout),
                }
            }
            assert_eq!(value.as_deref(), Some("v"));
            assert!(redis.is_healthy());
            // The server killed mid-command: the command fails at once.
            let blocked = {
                let patient = patient.clone();
                glommio::spawn_local(async move {
                    patient.cmd::<Value, _>(["BLPOP", "never", "0"]).await
                })
            };
            // Until the server reports the BLPOP blocked.
            let mut blocked_now = false;
            for _ in 0..200 {
                let info: String = redis.cmd(["INFO", "clients"]).await.unwrap();
                if info.contains("blocked_clients:1") {
                    blocked_now = true;
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            assert!(blocked_now, "the BLPOP reached the server");
            ready_tx.send(()).unwrap();
            killed_rx.recv().unwrap();
            let error = blocked.await.unwrap_err();
            assert_eq!(error.kind(), RedisErrorKind::Closed, "{error}");
            // The next command tries to reconnect and says it cannot.
            let error = patient.get::<String>("k").await.unwrap_err();
            assert_eq!(error.kind(), RedisErrorKind::Connect, "{error}");
            assert!(!patient.is_healthy());
        });
    });
    ready_rx.recv().unwrap();
    server.kill();
    killed_tx.send(()).unwrap();
    shard.join().unwrap();
    on_shard(move || async move {
        let error = Redis::connect(RedisConfig::new(&format!("redis://127.0.0.1:{port}")))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), RedisErrorKind::Connect);
        assert!(
            error.to_string().contains(&format!("127.0.0.1:{port}")),
            "{error}"
        );
        let error = Redis::connect(RedisConfig::new("http://x"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), RedisErrorKind::Config);
    });
}
