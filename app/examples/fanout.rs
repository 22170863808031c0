//! WebSocket fan-out load for `bench/app.sh`: `ROOMS` rooms of `MEMBERS` members
//! each, members alternating between two server instances, every member sending
//! `RATE` chat messages a second for `SECONDS` seconds. Each chat carries its send
//! time; every member counts what it receives and how long it took. Prints one JSON
//! line: events sent, deliveries, deliveries per second, and the delivery latency's
//! percentiles. With `FANOUT_READY=<path>`, it creates that file once every member is
//! connected and waits for it to be removed before sending.
//!
//! ```text
//! cargo run --release -p watch-together --example fanout -- \
//!     http://127.0.0.1:3000 http://127.0.0.1:3001 [ROOMS MEMBERS RATE SECONDS]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (a, b) = (args[1].clone(), args[2].clone());
    let num = |i: usize, default: u64| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (rooms, members, rate, seconds) = (num(3, 10), num(4, 10), num(5, 8), num(6, 20));
    let http = reqwest::Client::new();
    let setup = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let send_until = Duration::from_secs(seconds);
    let mut sockets = Vec::new();
    for r in 0..rooms {
        let room: Value = http
            .post(format!("{a}/api/rooms"))
            .json(&json!({"name": format!("fanout {r}"), "media": {"title": "bench"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = room["id"].as_i64().unwrap();
        for m in 0..members {
            let base = if m % 2 == 0 { &a } else { &b };
            let seat: Value = http
                .post(format!("{base}/api/rooms/{id}/join"))
                .json(&json!({"display_name": format!("m{m}")}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let token = seat["token"].as_str().unwrap().to_string();
            let url = format!(
                "{}/api/rooms/{id}/ws?token={token}",
                base.replace("http://", "ws://")
            );
            let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
                .await
                .unwrap();
            sockets.push(ws);
        }
    }
    let connected = setup.elapsed();
    // With FANOUT_READY set, announce that every member is connected by creating that
    // file, and send nothing until it is removed: bench/app.sh starts counting the
    // servers' instructions in between, so that the setup is not counted.
    if let Ok(path) = std::env::var("FANOUT_READY") {
        std::fs::write(&path, b"connected\n").unwrap();
        while std::path::Path::new(&path).exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds + 5);
    let mut tasks = Vec::new();
    let period = Duration::from_micros(1_000_000 / rate);
    let count = sockets.len() as u32;
    for (i, ws) in sockets.into_iter().enumerate() {
        {
            // Spread the senders over the period, as independent viewers would be,
            // rather than all sending in the same instant.
            let first = tokio::time::Instant::from_std(start) + period * i as u32 / count.max(1);
            let (mut tx, mut rx) = ws.split();
            let (sent, delivered, errors, latencies) = (
                sent.clone(),
                delivered.clone(),
                errors.clone(),
                latencies.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(first, period);
                let mut mine = Vec::new();
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if start.elapsed() < send_until {
                                let at = start.elapsed().as_micros().to_string();
                                let msg = json!({"type": "chat", "text": at}).to_string();
                                if tx.send(Message::Text(msg.into())).await.is_ok() {
                                    sent.fetch_add(1, Ordering::Relaxed);
                                }
                            } else if Instant::now() > end {
                                break;
                            }
                        }
                        m = rx.next() => match m {
                            Some(Ok(Message::Text(t))) => {
                                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                                match v["type"].as_str() {
                                    Some("chat") => {
                                        delivered.fetch_add(1, Ordering::Relaxed);
                                        if let Some(at) = v["text"].as_str().and_then(|s| s.parse::<u128>().ok()) {
                                            let us = start.elapsed().as_micros().saturating_sub(at);
                                            mine.push(u32::try_from(us).unwrap_or(u32::MAX));
                                        }
                                    }
                                    Some("error") => { errors.fetch_add(1, Ordering::Relaxed); }
                                    _ => {}
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map(|&us| f64::from(us) / 1000.0)
            .unwrap_or(f64::NAN)
    };
    let delivered = delivered.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "rooms": rooms, "members": members, "rate": rate, "seconds": seconds,
            "setup_seconds": connected.as_secs_f64(),
            "sent": sent.load(Ordering::Relaxed),
            "delivered": delivered,
            "expected": sent.load(Ordering::Relaxed) * members,
            "errors": errors.load(Ordering::Relaxed),
            "deliveries_per_second": delivered as f64 / seconds as f64,
            "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
        })
    );
}
