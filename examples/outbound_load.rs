//! Load from one shard's outbound clients, for `scripts/bench-outbound.sh`
//! and `scripts/bench-redis.sh`:
//!
//! - `outbound_load http URL IN_FLIGHT SECONDS` keeps `IN_FLIGHT` GETs of
//!   `URL` going through percore's HTTP client;
//! - `outbound_load redis URL IN_FLIGHT SECONDS` keeps `IN_FLIGHT` Redis
//!   commands (SET and GET in turn) going on the shard's one multiplexed
//!   connection;
//!
//! for `SECONDS` on one glommio executor, then prints
//! `operations cpu_seconds`.

use std::time::{Duration, Instant};

use percore::client::{Client, ClientConfig, PoolConfig};
use percore::redis::{Redis, RedisConfig};

/// This process's CPU time (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5): 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// What one in-flight slot does again and again: one operation or more,
/// returning how many.
trait Operation: Clone + 'static {
    async fn once(&self, slot: usize) -> u64;
}

#[derive(Clone)]
struct Http {
    client: Client,
    url: String,
}

impl Operation for Http {
    async fn once(&self, _: usize) -> u64 {
        let reply = self.client.get(&self.url).send().await.expect("a response");
        reply.bytes().await.expect("a body");
        1
    }
}

#[derive(Clone)]
struct Cache {
    redis: Redis,
}

impl Operation for Cache {
    async fn once(&self, slot: usize) -> u64 {
        let key = format!("key:{slot}");
        self.redis.set(&key, "xxx").await.expect("SET");
        let _: Option<Vec<u8>> = self.redis.get(&key).await.expect("GET");
        2
    }
}

/// Runs `op` from `in_flight` slots for `seconds`: operations, CPU seconds.
async fn drive(op: impl Operation, in_flight: usize, seconds: u64) -> (u64, f64) {
    let start_cpu = cpu_seconds();
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..in_flight)
        .map(|slot| {
            let op = op.clone();
            glommio::spawn_local(async move {
                let mut done = 0u64;
                while Instant::now() < until {
                    done += op.once(slot).await;
                }
                done
            })
        })
        .collect();
    let mut total = 0u64;
    for task in tasks {
        total += task.await;
    }
    (total, cpu_seconds() - start_cpu)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().expect("http or redis");
    let url = args.next().expect("URL");
    let in_flight: usize = args.next().map_or(64, |a| a.parse().expect("IN_FLIGHT"));
    let seconds: u64 = args.next().map_or(5, |a| a.parse().expect("SECONDS"));
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .expect("an executor");
    let (total, cpu) = executor.run(async move {
        if mode == "redis" {
            let redis = Redis::connect(RedisConfig::new(&url))
                .await
                .expect("Redis answers");
            drive(Cache { redis }, in_flight, seconds).await
        } else {
            let client = Client::with_config(ClientConfig {
                pool: PoolConfig {
                    max_per_origin: in_flight,
                    max_idle_per_origin: in_flight,
                    ..PoolConfig::default()
                },
                ..ClientConfig::default()
            });
            let warm = client.get(&url).send().await.expect("the upstream answers");
            warm.bytes().await.expect("a body");
            drive(Http { client, url }, in_flight, seconds).await
        }
    });
    println!("{total} {cpu:.6}");
}
