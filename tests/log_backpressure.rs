//! The local log is the record: an event is answered 2xx only once its line is written. When stdout
//! stops draining (a stuck log shipper), the gateway refuses with 503 instead of accepting events it
//! cannot log, counts the lines it could not take, and recovers by itself.
mod support;

use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    time::Duration,
};

use support::{BIN, batch, metric_value, reply};

#[test]
fn a_stuck_stdout_gets_503_not_silent_loss_and_every_204_event_is_in_the_log() {
    let mut child = Command::new(BIN)
        .env_clear()
        .env("CLIENT_TELEMETRY_BIND", "127.0.0.1:0")
        .env("CLIENT_TELEMETRY_LOG_QUEUE_BYTES", "65536")
        .env("CLIENT_TELEMETRY_LOG_WRITE_TIMEOUT_MS", "300")
        .env("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "100000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let listening: serde_json::Value = serde_json::from_str(&first).unwrap();
    let base = format!("http://{}", listening["addr"].as_str().unwrap());
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
    let post = |body: &str| reply(agent.post(&format!("{base}/api/client-telemetry")).send_string(body));

    // Nobody reads stdout: the pipe and the write buffer fill, requests wait for their lines until
    // the deadline (503), then the queue is full and requests are refused at once (503, counted).
    let body = batch(20);
    let dropped = || {
        metric_value(
            &reply(agent.get(&format!("{base}/metrics")).call()).body,
            "client_telemetry_log_lines_dropped_total",
        )
    };
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..3000 {
        let answer = post(&body);
        match answer.status {
            204 => accepted += 1,
            503 => {
                assert_eq!(answer.header("retry-after"), Some("1"));
                refused += 1;
                if dropped() > 0.0 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    assert!(
        dropped() >= 20.0,
        "after {accepted} accepted and {refused} refused, lines must be refused, not queued without end"
    );
    let metrics = reply(agent.get(&format!("{base}/metrics")).call()).body;
    assert_eq!(
        metric_value(&metrics, r#"client_telemetry_requests_total{route="native",status="503"}"#),
        refused as f64
    );

    // The shipper resumes reading: the gateway accepts again without a restart.
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        rest
    });
    assert!(support::wait_until(Duration::from_secs(10), || post(&body).status == 204));
    accepted += 1;

    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    let log = reader.join().unwrap();
    let logged = log.lines().filter(|l| l.contains(r#""msg":"client event""#)).count();
    // Every event answered 204 is in the log; the refused request's lines may be too, if they were
    // queued before its deadline passed (at least once), but nothing more.
    assert!(logged >= accepted * 20, "{logged} lines for {accepted} accepted requests");
    assert!(logged <= (accepted + refused) * 20, "{logged} lines for {accepted} accepted + {refused} refused");
}
