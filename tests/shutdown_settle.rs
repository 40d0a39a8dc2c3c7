//! A request cancelled by the server's forced worker stop while it waits for its lines to be
//! written: the lines are written all the same (the writer empties its queue before exit), so its
//! events must be settled too, forwarded or counted as dropped, for the drain's accounting
//! (accepted = exported + failed + dropped) to hold.
mod support;

use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use support::{BIN, INGEST, collector::Collector, event};

const EVENTS_PER_REQUEST: usize = 20;

fn batch_of(request: usize) -> String {
    let events: Vec<Value> = (0..EVENTS_PER_REQUEST)
        .map(|i| event("info", &format!("request {request} event {i} {}", "x".repeat(200))))
        .collect();
    json!({ "events": events }).to_string()
}

#[test]
fn events_of_a_request_cancelled_by_the_forced_worker_stop_are_forwarded_or_counted_dropped() {
    let collector = Collector::start();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("CLIENT_TELEMETRY_BIND", "127.0.0.1:0")
        .env("CLIENT_TELEMETRY_WORKERS", "1")
        .env("OTEL_COLLECTOR_ENDPOINT", collector.endpoint())
        .env("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", "10")
        // The request waits for its lines far longer than the shutdown grace: the worker is stopped
        // by force (after actix's own second) while it waits.
        .env("CLIENT_TELEMETRY_LOG_WRITE_TIMEOUT_MS", "60000")
        .env("CLIENT_TELEMETRY_SHUTDOWN_GRACE_MS", "300")
        .env("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "100000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let listening: Value = loop {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let line: Value = serde_json::from_str(&line).unwrap();
        if line["msg"] == "listening" {
            break line;
        }
    };
    let url = format!("http://{}{INGEST}", listening["addr"].as_str().unwrap());

    // Nobody reads stdout: the pipe fills, and one request ends up waiting for its lines.
    let answered = Arc::new(AtomicUsize::new(0));
    let sender_answered = answered.clone();
    let sender = std::thread::spawn(move || {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
        for request in 0.. {
            // The stuck request gets no answer: its connection is closed by the forced stop.
            match agent.post(&url).set("content-type", "application/json").send_string(&batch_of(request)) {
                Ok(answer) if answer.status() == 204 => {}
                _ => return,
            }
            sender_answered.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut last = usize::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let now = answered.load(Ordering::SeqCst);
        if now == last {
            break; // no answer for a second and a half (even on a loaded machine): stuck on the log
        }
        last = now;
    }
    assert!(last > 0, "the pipe took some requests before filling");
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    // Grace (0.3 s), then actix's one second for the worker, then the forced stop and the drain.
    std::thread::sleep(Duration::from_secs(3));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    sender.join().unwrap();

    let lines: Vec<Value> = rest.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let logged = lines.iter().filter(|l| l["msg"] == "client event").count();
    assert!(logged > last * EVENTS_PER_REQUEST, "the stuck request's lines were written at exit: {logged}");
    let dropped: usize = lines
        .iter()
        .filter(|l| l["msg"] == "otlp forwarder: shutdown deadline reached, unsent events dropped")
        .map(|l| l["dropped"].as_u64().unwrap() as usize)
        .sum();
    let exported = collector.delivered();
    // An export cut off by the drain deadline may have reached the collector and be counted dropped
    // as well: at most the stuck request's events are counted twice, none are missing.
    assert!(
        (logged..=logged + EVENTS_PER_REQUEST).contains(&(exported + dropped)),
        "logged {logged}, exported {exported} + dropped {dropped}"
    );
}
