//! A body that never ends must not hold a connection. More stalled uploads than the server has
//! connection slots (1 worker, 4 connections): each gets its early answer and is closed within the
//! body timeout (for 408) or at once (any other answer) plus actix's one-second linger, and a normal
//! client queued behind them is answered as soon as the first of them are gone — not when the
//! attacker lets go.
mod support;

use std::{
    io::Write,
    net::TcpStream,
    thread,
    time::{Duration, Instant},
};

use support::{Gateway, batch, closed_by_peer, read_raw_response};

const SLOTS: usize = 4;
const STALLED: usize = SLOTS + 2;
const BODY_TIMEOUT: Duration = Duration::from_millis(1000);
/// actix's linger after an answer to an unfinished body (`transport::DISCONNECT_TIMEOUT`).
const LINGER: Duration = Duration::from_secs(1);
const MARGIN: Duration = Duration::from_millis(1500);
/// How long the attacker holds its sockets open if the server does not close them.
const ATTACKER_PATIENCE: Duration = Duration::from_secs(20);

fn gateway() -> Gateway {
    Gateway::start(&[
        ("CLIENT_TELEMETRY_WORKERS", "1"),
        ("CLIENT_TELEMETRY_MAX_CONNECTIONS_PER_WORKER", &SLOTS.to_string()),
        ("CLIENT_TELEMETRY_BODY_READ_TIMEOUT_MS", &BODY_TIMEOUT.as_millis().to_string()),
        ("CLIENT_TELEMETRY_MAX_BODY_BYTES", "2000"),
        ("CLIENT_TELEMETRY_API_KEYS", "k-0123456789abcdef0123"),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "1"),
    ])
}

const KEY: &str = "X-Api-Key: k-0123456789abcdef0123\r\n";
/// Replaced by each connection's own client address: one quota per attacker, except for 429.
const XFF: &str = "X-Forwarded-For: {ip}\r\n";
const SPENT_IP: &str = "198.51.100.9";

/// One kind of stalled upload: the head and first bytes the attacker sends, and the answer expected.
struct Attack {
    head: String,
    first_bytes: Vec<u8>,
    status: u16,
}

fn chunked(path: &str, extra: &str, first_chunk: &[u8]) -> (String, Vec<u8>) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}{XFF}Transfer-Encoding: chunked\r\n\r\n"
    );
    let mut chunk = format!("{:x}\r\n", first_chunk.len()).into_bytes();
    chunk.extend_from_slice(first_chunk);
    chunk.extend_from_slice(b"\r\n");
    (head, chunk) // no terminating 0-chunk: the body never ends
}

fn attack(status: u16) -> Attack {
    let start = br#"{"events":[{"level":"info","#;
    let (head, first_bytes) = match status {
        408 => chunked(support::INGEST, KEY, start),
        413 => chunked(support::INGEST, KEY, &[b' '; 2500]),
        // The attacker's address has spent its one request (see `spend_quota`).
        429 => chunked(support::INGEST, KEY, start).map_head(|h| h.replace("{ip}", SPENT_IP)),
        401 => chunked(support::INGEST, "", start),
        404 => chunked("/no-such-route", KEY, start),
        415 => chunked(support::INGEST, &format!("{KEY}Content-Type: application/xml\r\n"), start)
            .map_head(|h| h.replacen("Content-Type: application/json\r\n", "", 1)),
        _ => unreachable!(),
    };
    Attack { head, first_bytes, status }
}

trait MapHead {
    fn map_head(self, f: impl FnOnce(String) -> String) -> Self;
}

impl MapHead for (String, Vec<u8>) {
    fn map_head(self, f: impl FnOnce(String) -> String) -> Self {
        (f(self.0), self.1)
    }
}

fn spend_quota(gateway: &Gateway) {
    let reply = gateway.post_with(
        &[("content-type", "application/json"), ("x-api-key", "k-0123456789abcdef0123"), ("x-forwarded-for", SPENT_IP)],
        &batch(1),
    );
    assert_eq!(reply.status, 204);
}

/// Opens `STALLED` uploads that never finish, then a normal request; returns when every stalled
/// socket has been answered and closed, asserting the bounds on each.
fn stalled_uploads_do_not_hold_connections(attack: Attack) {
    let gateway = gateway();
    if attack.status == 429 {
        spend_quota(&gateway);
    }
    let started = Instant::now();
    let attackers: Vec<_> = (0..STALLED)
        .map(|i| {
            let mut stream = TcpStream::connect(gateway.addr).unwrap();
            stream.write_all(attack.head.replace("{ip}", &format!("203.0.113.{i}")).as_bytes()).unwrap();
            stream.write_all(&attack.first_bytes).unwrap();
            let status = attack.status;
            thread::spawn(move || {
                stream.set_read_timeout(Some(ATTACKER_PATIENCE)).unwrap();
                let reply = read_raw_response(&mut stream).expect("an answer to the stalled upload");
                let answered = Instant::now();
                assert_eq!(reply.status, status, "{reply:?}");
                assert_eq!(reply.headers.get("connection").map(String::as_str), Some("close"));
                assert!(closed_by_peer(&mut stream, LINGER + MARGIN), "a stalled socket was left open");
                answered.elapsed()
            })
        })
        .collect();
    // Behind all of them, a normal client, as a browser would send it.
    thread::sleep(Duration::from_millis(100));
    let normal = gateway.post_with(
        &[
            ("content-type", "application/json"),
            ("x-api-key", "k-0123456789abcdef0123"),
            ("x-forwarded-for", "192.0.2.1"),
        ],
        &batch(1),
    );
    let normal_waited = started.elapsed();
    assert_eq!(normal.status, 204, "{}", normal.body);
    // At most two rounds of the slots: the first stalled uploads, then the rest beside it.
    let answer_after = if attack.status == 408 { BODY_TIMEOUT } else { Duration::ZERO };
    let bound = (answer_after + LINGER) * 2 + MARGIN;
    assert!(normal_waited < bound, "the normal client waited {normal_waited:?} (bound {bound:?})");
    for attacker in attackers {
        let open_after_answer = attacker.join().unwrap();
        assert!(open_after_answer <= LINGER + MARGIN, "{open_after_answer:?}");
    }
    assert!(started.elapsed() < ATTACKER_PATIENCE / 2, "closed only when the attacker gave up");
}

#[test]
fn stalled_chunked_uploads_answered_408_are_closed() {
    stalled_uploads_do_not_hold_connections(attack(408));
}

#[test]
fn stalled_chunked_uploads_answered_413_are_closed() {
    stalled_uploads_do_not_hold_connections(attack(413));
}

#[test]
fn stalled_chunked_uploads_answered_429_are_closed() {
    stalled_uploads_do_not_hold_connections(attack(429));
}

#[test]
fn stalled_chunked_uploads_answered_401_are_closed() {
    stalled_uploads_do_not_hold_connections(attack(401));
}

#[test]
fn stalled_chunked_uploads_answered_404_are_closed() {
    stalled_uploads_do_not_hold_connections(attack(404));
}

#[test]
fn stalled_chunked_uploads_answered_415_are_closed() {
    stalled_uploads_do_not_hold_connections(attack(415));
}

#[test]
fn a_stalled_chunked_body_on_a_health_check_is_closed() {
    let (head, first_bytes) = chunked("/healthz", "", b"x");
    stalled_uploads_do_not_hold_connections(Attack { head: head.replacen("POST", "GET", 1), first_bytes, status: 200 });
}

#[test]
fn stalled_content_length_uploads_are_closed() {
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{KEY}{XFF}Content-Length: 1000\r\n\r\n",
        support::INGEST
    );
    stalled_uploads_do_not_hold_connections(Attack {
        head,
        first_bytes: br#"{"events":[{"level":"info","#.to_vec(),
        status: 408,
    });
}

#[test]
fn a_finished_chunked_upload_keeps_its_connection() {
    let gateway = gateway();
    let body = batch(1);
    let (head, _) = chunked(support::INGEST, KEY, b"");
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..2 {
        let request =
            format!("{}{:x}\r\n{body}\r\n0\r\n\r\n", head.replace("{ip}", &format!("192.0.2.{i}")), body.len());
        stream.write_all(request.as_bytes()).unwrap();
        let reply = read_raw_response(&mut stream).expect("an answer on the same connection");
        assert_eq!(reply.status, 204, "{reply:?}");
        assert_ne!(reply.headers.get("connection").map(String::as_str), Some("close"));
    }
}
