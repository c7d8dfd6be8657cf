//! Load from percore's HTTP client on one shard, for
//! `scripts/bench-outbound.sh` (against the same upstream as its reqwest
//! peer): `client_load URL IN_FLIGHT SECONDS` keeps `IN_FLIGHT` GETs of
//! `URL` going for `SECONDS` on one glommio executor and prints
//! `requests cpu_seconds`.

use std::time::{Duration, Instant};

use percore::client::{Client, ClientConfig, PoolConfig};

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

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("URL");
    let in_flight: usize = args.next().map_or(64, |a| a.parse().expect("IN_FLIGHT"));
    let seconds: u64 = args.next().map_or(5, |a| a.parse().expect("SECONDS"));
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .expect("an executor");
    let (total, cpu) = executor.run(async move {
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
        let start_cpu = cpu_seconds();
        let until = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                glommio::spawn_local(async move {
                    let mut done = 0u64;
                    while Instant::now() < until {
                        let reply = client.get(&url).send().await.expect("a response");
                        reply.bytes().await.expect("a body");
                        done += 1;
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
