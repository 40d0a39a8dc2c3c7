//! `Expect: 100-continue` with a body announced over the limit: 413 at once, never `100 Continue`
//! first, without waiting for the body, and the connection closes, so the client never has to
//! send it. Within the limit, `100 Continue` and the body is read.
mod support;

use std::{
    io::Write,
    net::TcpStream,
    time::{Duration, Instant},
};

use support::{Gateway, closed_by_peer, post_head, read_raw_response};

#[test]
fn an_announced_body_over_the_limit_gets_413_without_being_read() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_MAX_BODY_BYTES", "1000")]);
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    stream.write_all(post_head("Expect: 100-continue\r\nContent-Length: 1001\r\n").as_bytes()).unwrap();
    let first = read_raw_response(&mut stream).expect("an answer without the body");
    assert_eq!(first.status, 413, "413 at once, not 100 Continue first: {first:?}");
    assert!(first.body.contains("limit of 1000 bytes"), "{}", first.body);
    assert!(started.elapsed() < Duration::from_secs(2), "answered at once: {:?}", started.elapsed());
    assert!(closed_by_peer(&mut stream, Duration::from_secs(3)), "the unread body cannot follow on this connection");
    assert_eq!(gateway.metric(r#"client_telemetry_requests_total{route="native",status="413"}"#), 1.0, "counted");
}

#[test]
fn an_announced_body_within_the_limit_is_read_after_100_continue() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_MAX_BODY_BYTES", "1000")]);
    let body = support::batch(1);
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = post_head(&format!("Expect: 100-continue\r\nContent-Length: {}\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_raw_response(&mut stream).expect("100 Continue").status, 100);
    stream.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_raw_response(&mut stream).expect("the answer").status, 204);
}
