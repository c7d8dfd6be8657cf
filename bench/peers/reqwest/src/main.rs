//! reqwest, one thread: `peer-reqwest URL IN_FLIGHT SECONDS` keeps IN_FLIGHT
//! GETs of URL going for SECONDS and prints `requests cpu_seconds`.
use std::time::{Duration, Instant};

/// This process's CPU time (user + system), from /proc/self/stat, read
/// the same way as percore's examples/outbound_load.rs.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("URL");
    let in_flight: usize = args.next().map_or(64, |a| a.parse().unwrap());
    let seconds: u64 = args.next().map_or(5, |a| a.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let client = reqwest::Client::builder().pool_max_idle_per_host(in_flight).build().unwrap();
        let _ = client.get(&url).send().await.unwrap().bytes().await.unwrap();
        let start_cpu = cpu_seconds();
        let until = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut done = 0u64;
                    while Instant::now() < until {
                        let reply = client.get(&url).send().await.unwrap();
                        let _ = reply.bytes().await.unwrap();
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut total = 0u64;
        for task in tasks {
            total += task.await.unwrap();
        }
        println!("{total} {:.6}", cpu_seconds() - start_cpu);
    });
}
