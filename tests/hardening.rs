//! Request-path controls, attacked over real sockets: API key, Origin allow-list, gzip bodies
//! (bombs included), chunked bodies over the limit, slow-loris headers, trickled bodies, connection
//! caps and the maximum connection age. Each limit is pinned from both sides.
mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use flate2::{Compression, write::GzEncoder};
use support::{Gateway, batch, closed_by_peer, post_head, read_raw_response};

const KEY: &str = "k-0123456789abcdef0123";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// `body` padded with trailing spaces (still valid JSON) to exactly `len` bytes.
fn padded(body: &str, len: usize) -> String {
    assert!(body.len() <= len);
    format!("{body}{}", " ".repeat(len - body.len()))
}

fn connect(gateway: &Gateway) -> TcpStream {
    let stream = TcpStream::connect(gateway.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

#[test]
fn an_api_key_is_required_when_configured() {
    let gateway =
        Gateway::start(&[("CLIENT_TELEMETRY_API_KEYS", KEY), ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "2")]);
    let json = [("content-type", "application/json")];

    let missing = gateway.post_with(&json, &batch(1));
    assert_eq!(missing.status, 401);
    assert!(missing.json()["error"].as_str().unwrap().contains("X-Api-Key"), "{}", missing.body);
    assert!(missing.header("www-authenticate").is_some());
    let wrong =
        gateway.post_with(&[("content-type", "application/json"), ("x-api-key", "k-0123456789abcdef0124")], &batch(1));
    assert_eq!((wrong.status, wrong.json()["error"].as_str().unwrap()), (401, "invalid API key"));
    // Refused requests cost no quota: both allowed requests are still there.
    assert_eq!(gateway.post_with(&[("content-type", "application/json"), ("x-api-key", KEY)], &batch(1)).status, 204);
    let beacon = gateway.post_to(&format!("{}?key={KEY}", gateway.url(support::INGEST)), &batch(1));
    assert_eq!(beacon.status, 204);
    assert_eq!(gateway.metric(r#"client_telemetry_requests_total{route="native",status="401"}"#), 2.0);
    assert_eq!(gateway.wait_for_events(2).len(), 2);
}

#[test]
fn origins_outside_the_allow_list_are_refused() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_ALLOWED_ORIGINS", "https://app.example.com")]);
    let allowed = gateway.post_with(&[("origin", "https://app.example.com")], &batch(1));
    assert_eq!(allowed.status, 204);
    let other = gateway.post_with(&[("origin", "https://evil.example")], &batch(1));
    assert_eq!(other.status, 403);
    assert!(other.json()["error"].as_str().unwrap().contains("https://evil.example"), "{}", other.body);
    // Not a browser: no Origin, left to the API key (none configured here).
    assert_eq!(gateway.post_with(&[], &batch(1)).status, 204);
    assert_eq!(gateway.wait_for_events(2).len(), 2);
}

#[test]
fn a_refused_origin_costs_no_quota_writes_no_event_and_is_counted_and_logged_once() {
    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_ALLOWED_ORIGINS", "https://app.example.com"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "2"),
    ]);
    for _ in 0..5 {
        assert_eq!(gateway.post_with(&[("origin", "http://localhost:3000")], &batch(3)).status, 403);
    }
    assert_eq!(gateway.post_with(&[("origin", "https://other.example")], &batch(3)).status, 403);
    assert_eq!(gateway.metric(r#"client_telemetry_requests_total{route="native",status="403"}"#), 6.0);
    // The refusals spent none of the client's quota: its two requests still pass.
    for _ in 0..2 {
        assert_eq!(gateway.post_with(&[("origin", "https://app.example.com")], &batch(1)).status, 204);
    }
    let events = gateway.wait_for_events(2);
    assert_eq!(events.len(), 2, "only the allowed origin's events are written");
    assert_eq!(gateway.metric(r#"client_telemetry_events_total{app="",level="info"}"#), 2.0);
    // The operator is told which origin, once per origin per minute, not once per request.
    let warned: Vec<_> = gateway
        .log_lines()
        .into_iter()
        .filter(|l| l["msg"].as_str().is_some_and(|m| m.starts_with("origin not allowed")))
        .map(|l| l["origin"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(warned, ["http://localhost:3000", "https://other.example"]);
}

#[test]
fn gzip_bodies_are_bounded_by_their_decompressed_size() {
    let limit = 4096;
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_MAX_BODY_BYTES", &limit.to_string())]);
    let gz = |body: &[u8]| gateway.post_bytes(&[("content-encoding", "gzip")], &gzip(body));

    assert_eq!(gz(padded(&batch(2), limit).as_bytes()).status, 204);
    let over = gz(padded(&batch(2), limit + 1).as_bytes());
    assert_eq!(over.status, 413);
    assert!(over.json()["error"].as_str().unwrap().contains("decompressed body exceeds the limit of 4096"));
    assert_eq!(gateway.wait_for_events(2).len(), 2);

    let bomb = gz(&vec![b' '; 50 << 20]);
    assert_eq!(bomb.status, 413, "{}", bomb.body);
    let garbage = gateway.post_bytes(&[("content-encoding", "gzip")], b"\x1f\x8b not really gzip");
    assert_eq!(garbage.status, 400);
    assert!(garbage.json()["error"].as_str().unwrap().contains("not valid gzip"));
    let brotli = gateway.post_bytes(&[("content-encoding", "br")], batch(1).as_bytes());
    assert_eq!(brotli.status, 415);
    assert!(brotli.json()["error"].as_str().unwrap().contains("Content-Encoding"));
}

#[test]
fn the_ratio_cap_refuses_a_bomb_that_fits_the_size_limit() {
    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_MAX_BODY_BYTES", &(64 << 20).to_string()),
        ("CLIENT_TELEMETRY_MAX_GZIP_RATIO", "50"),
    ]);
    let bomb = gateway.post_bytes(&[("content-encoding", "gzip")], &gzip(&vec![b' '; 32 << 20]));
    assert_eq!(bomb.status, 413);
    assert!(bomb.json()["error"].as_str().unwrap().contains("more than 50 times"), "{}", bomb.body);
    // A real batch compresses far less than 50:1.
    assert_eq!(gateway.post_bytes(&[("content-encoding", "gzip")], &gzip(batch(20).as_bytes())).status, 204);

    let off = Gateway::start(&[("CLIENT_TELEMETRY_ACCEPT_GZIP", "false")]);
    assert_eq!(off.post_bytes(&[("content-encoding", "gzip")], &gzip(batch(1).as_bytes())).status, 415);
}

/// A chunked body (no Content-Length) of exactly `len` bytes, in 1 KiB chunks.
fn post_chunked(gateway: &Gateway, body: &[u8]) -> Option<support::RawReply> {
    let mut stream = connect(gateway);
    stream.write_all(post_head("Transfer-Encoding: chunked\r\n").as_bytes()).unwrap();
    for chunk in body.chunks(1024) {
        // The server may answer 413 and close before the last chunk: ignore write errors.
        let _ = stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = stream.write_all(chunk);
        let _ = stream.write_all(b"\r\n");
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    read_raw_response(&mut stream)
}

#[test]
fn a_chunked_body_is_held_to_the_limit_from_both_sides() {
    let limit = 8192;
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_MAX_BODY_BYTES", &limit.to_string())]);
    let exact = post_chunked(&gateway, padded(&batch(3), limit).as_bytes()).unwrap();
    assert_eq!(exact.status, 204);
    let over = post_chunked(&gateway, padded(&batch(3), limit + 1).as_bytes()).unwrap();
    assert_eq!(over.status, 413);
    assert_eq!(over.headers.get("connection").map(String::as_str), Some("close"));
    assert!(over.body.contains("exceeds the limit of 8192"), "{}", over.body);
    assert_eq!(gateway.wait_for_events(3).len(), 3);
}

#[test]
fn slow_loris_headers_are_cut_off_and_slow_but_complete_ones_are_served() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_HEADER_READ_TIMEOUT_MS", "1000")]);
    let body = batch(1);

    // Within the timeout, in pieces: served.
    let mut stream = connect(&gateway);
    let request = format!("{}{body}", post_head(&format!("Content-Length: {}\r\n", body.len())));
    let (head, rest) = request.split_at(40);
    stream.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(rest.as_bytes()).unwrap();
    assert_eq!(read_raw_response(&mut stream).unwrap().status, 204);

    // A header line every 200 ms, never finishing: cut off after about a second.
    let mut loris = connect(&gateway);
    let started = Instant::now();
    loris.write_all(b"POST /api/client-telemetry HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    let mut cut_off = false;
    for i in 0..25 {
        std::thread::sleep(Duration::from_millis(200));
        if loris.write_all(format!("X-Trickle-{i}: x\r\n").as_bytes()).is_err() || closed_by_peer_now(&mut loris) {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "a trickling client kept its connection for {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3), "cut off only after {:?}", started.elapsed());
}

/// Whether the peer has already closed (or answered and closed), without waiting.
fn closed_by_peer_now(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue, // a 408 on its way out; the close follows
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

#[test]
fn a_trickled_body_gets_408_and_a_slow_but_complete_one_is_served() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_BODY_READ_TIMEOUT_MS", "1000")]);
    let body = batch(1);
    let head = post_head(&format!("Content-Length: {}\r\n", body.len()));

    let mut stream = connect(&gateway);
    stream.write_all(head.as_bytes()).unwrap();
    let (first, second) = body.split_at(body.len() / 2);
    stream.write_all(first.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    stream.write_all(second.as_bytes()).unwrap();
    assert_eq!(read_raw_response(&mut stream).unwrap().status, 204);

    // One byte every 100 ms: the whole body would take a minute.
    let mut stream = connect(&gateway);
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let trickler = {
        let mut writer = stream.try_clone().unwrap();
        let bytes = body.into_bytes();
        std::thread::spawn(move || {
            for byte in bytes {
                if writer.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let reply = read_raw_response(&mut stream).expect("a 408 answer");
    let waited = started.elapsed();
    assert_eq!(reply.status, 408, "{}", reply.body);
    assert!(reply.body.contains("not received within 1000 ms"), "{}", reply.body);
    assert_eq!(reply.headers.get("connection").map(String::as_str), Some("close"));
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
    assert!(closed_by_peer(&mut stream, Duration::from_secs(3)));
    drop(stream);
    trickler.join().unwrap();
    assert_eq!(gateway.metric(r#"client_telemetry_requests_total{route="native",status="408"}"#), 1.0);
}

#[test]
fn connections_beyond_the_cap_wait_until_keep_alive_frees_one() {
    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_WORKERS", "1"),
        ("CLIENT_TELEMETRY_MAX_CONNECTIONS_PER_WORKER", "2"),
        ("CLIENT_TELEMETRY_KEEP_ALIVE_MS", "1500"),
    ]);
    let body = batch(1);
    let request = format!("{}{body}", post_head(&format!("Content-Length: {}\r\n", body.len())));
    let send = |stream: &mut TcpStream| stream.write_all(request.as_bytes()).unwrap();

    // Two connections up to the cap, both served and then idle in keep-alive.
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(&gateway)).collect();
    // Keep-alive counts from each answer: the first connection is idle from its own.
    let mut idle_since = None;
    for stream in &mut held {
        send(stream);
        assert_eq!(read_raw_response(stream).unwrap().status, 204);
        idle_since.get_or_insert_with(Instant::now);
    }
    let idle_since = idle_since.unwrap();
    // A third is not served while both are held...
    let mut third = connect(&gateway);
    third.set_read_timeout(Some(Duration::from_millis(800))).unwrap();
    send(&mut third);
    assert!(read_raw_response(&mut third).is_none(), "served beyond the connection cap");
    // ...and is served once keep-alive has closed the idle ones.
    third.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_raw_response(&mut third).unwrap().status, 204);
    let waited = idle_since.elapsed();
    assert!(waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4), "{waited:?}");
    for mut stream in held {
        assert!(closed_by_peer(&mut stream, Duration::from_secs(1)), "idle connection outlived keep-alive");
    }
}

#[test]
fn old_connections_are_closed_after_their_next_answer() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_MAX_CONNECTION_AGE_MS", "600")]);
    let body = batch(1);
    let request = format!("{}{body}", post_head(&format!("Content-Length: {}\r\n", body.len())));
    let mut stream = connect(&gateway);

    stream.write_all(request.as_bytes()).unwrap();
    let young = read_raw_response(&mut stream).unwrap();
    assert_eq!(young.status, 204);
    assert_ne!(young.headers.get("connection").map(String::as_str), Some("close"));

    std::thread::sleep(Duration::from_millis(700));
    stream.write_all(request.as_bytes()).unwrap();
    let old = read_raw_response(&mut stream).unwrap();
    assert_eq!(old.status, 204);
    assert_eq!(old.headers.get("connection").map(String::as_str), Some("close"));
    assert!(closed_by_peer(&mut stream, Duration::from_secs(3)));
}
