//! Load from percore's Redis client on one shard, for
//! `scripts/bench-redis.sh`: `redis_load URL IN_FLIGHT SECONDS` keeps
//! `IN_FLIGHT` commands (SET and GET in turn) going on the shard's one
//! multiplexed connection for `SECONDS` and prints `commands cpu_seconds`.

use std::time::{Duration, Instant};

use percore::redis::{Redis, RedisConfig};

/// This process's CPU time (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("URL");
    let in_flight: usize = args.next().map_or(64, |a| a.parse().expect("IN_FLIGHT"));
    let seconds: u64 = args.next().map_or(5, |a| a.parse().expect("SECONDS"));
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .expect("an executor");
    let (total, cpu) = executor.run(async move {
        let redis = Redis::connect(RedisConfig::new(&url))
            .await
            .expect("Redis answers");
        let start_cpu = cpu_seconds();
        let until = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..in_flight)
            .map(|i| {
                let redis = redis.clone();
                glommio::spawn_local(async move {
                    let key = format!("key:{i}");
                    let mut done = 0u64;
                    while Instant::now() < until {
                        redis.set(&key, "xxx").await.expect("SET");
                        let _: Option<Vec<u8>> = redis.get(&key).await.expect("GET");
                        done += 2;
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
    });
    println!("{total} {cpu:.6}");
}
