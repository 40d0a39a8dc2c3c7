//! Start-up, configuration errors and graceful shutdown of the real process.
mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use support::{BIN, Gateway, batch};

fn start_error(env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(BIN).env_clear().envs(env.iter().copied()).output().unwrap();
    (output.status.code().unwrap(), String::from_utf8(output.stderr).unwrap())
}

#[test]
fn invalid_configuration_stops_start_up_with_one_line_and_exit_code_2() {
    let cases = [
        (("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "0"), "CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS=\"0\""),
        (("CLIENT_TELEMETRY_TRUSTED_PROXIES", "10.0.0.0/99"), "CLIENT_TELEMETRY_TRUSTED_PROXIES=\"10.0.0.0/99\""),
        (("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "zookeeper"), "CLIENT_TELEMETRY_RATE_LIMIT_BACKEND=\"zookeeper\""),
        (("CLIENT_TELEMETRY_MAX_BODY_BYTES", "lots"), "CLIENT_TELEMETRY_MAX_BODY_BYTES"),
        (("CLIENT_TELEMETRY_BIND", "nowhere"), "CLIENT_TELEMETRY_BIND=\"nowhere\""),
        (("CLIENT_TELEMETRY_LOG_LEVEL", "loud"), "CLIENT_TELEMETRY_LOG_LEVEL=\"loud\""),
    ];
    for ((name, value), expected) in cases {
        let (code, stderr) = start_error(&[(name, value)]);
        assert_eq!(code, 2, "{name}={value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(expected), "{stderr:?} should contain {expected:?}");
    }
}

#[test]
fn sigterm_flips_readiness_then_exits_0() {
    let mut gateway = Gateway::start(&[("CLIENT_TELEMETRY_SHUTDOWN_DELAY_MS", "1500")]);
    assert_eq!(gateway.get(&gateway.url("/readyz")).status, 200);
    gateway.signal("TERM");
    assert!(support::wait_until(Duration::from_secs(1), || gateway.get(&gateway.url("/readyz")).status == 503));
    assert_eq!(gateway.get(&gateway.url("/readyz")).json()["status"], "shutting_down");
    assert_eq!(gateway.get(&gateway.url("/healthz")).status, 200, "still alive while draining");
    assert!(gateway.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn sigint_exits_0_too() {
    let mut gateway = Gateway::start(&[]);
    gateway.signal("INT");
    assert!(gateway.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn an_in_flight_request_finishes_before_exit() {
    let mut gateway = Gateway::start(&[("CLIENT_TELEMETRY_SHUTDOWN_GRACE_MS", "5000")]);
    let body = batch(5);
    let (head, tail) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    write!(
        stream,
        "POST /api/client-telemetry HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    gateway.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    stream.write_all(tail.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).unwrap();
    answer.push_str(&String::from_utf8_lossy(&buf[..n]));
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer:?}; log: {:?}", gateway.log_lines());
    assert!(gateway.wait_exit(Duration::from_secs(10)).success());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(gateway.event_lines().len(), 5, "accepted during shutdown and logged before exit");
}

#[test]
fn an_idle_keep_alive_connection_does_not_hold_up_the_exit() {
    let mut gateway = Gateway::start(&[("CLIENT_TELEMETRY_SHUTDOWN_GRACE_MS", "10000")]);
    let body = batch(1);
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    write!(stream, "POST /api/client-telemetry HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 204"));
    // the connection stays open, idle; a load balancer's pool looks like this
    let started = Instant::now();
    gateway.signal("TERM");
    assert!(gateway.wait_exit(Duration::from_secs(10)).success());
    assert!(started.elapsed() < Duration::from_secs(3), "exit took {:?}", started.elapsed());
}
