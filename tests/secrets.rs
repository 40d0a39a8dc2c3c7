//! Credentials in URL settings (userinfo, secret query parameters) never leave the process: not in
//! log lines, start-up errors, `/readyz` or `/metrics`, whether the URL is valid or not.
mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    process::Command,
    time::Duration,
};

use support::{BIN, Gateway, batch, free_port, wait_until};

/// Every secret a test puts in a URL; none may appear in any output.
const SECRETS: [&str; 6] = ["pw-userinfo", "tok-query", "sig-query", "frag-token", "redis-pw", "base-pw"];

fn assert_no_secret(place: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked in {place}: {text}");
    }
}

#[test]
fn valid_urls_with_credentials_are_masked_in_logs_readyz_and_metrics() {
    // Nothing listens on either port: every export fails and Redis is unreachable, so the failure
    // lines (which name the endpoint and quote the error) are written too.
    let collector = free_port();
    let endpoint = format!(
        "http://user:pw-userinfo@127.0.0.1:{collector}/v1/logs?tenant=t1&api_key=tok-query&X-Amz-Signature=sig-query#access_token=frag-token"
    );
    let redis = format!("redis://default:redis-pw@127.0.0.1:{}/0", free_port());
    let gateway = Gateway::start(&[
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:base-pw@127.0.0.1:1"),
        ("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", "10"),
        ("CLIENT_TELEMETRY_OTLP_RETRY_MAX_ELAPSED_MS", "0"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", &redis),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS", "200"),
        ("CLIENT_TELEMETRY_LOG_LEVEL", "debug"),
    ]);
    assert_eq!(gateway.post(&batch(2)).status, 204);
    assert!(
        wait_until(Duration::from_secs(10), || gateway.log_lines().iter().any(|l| l["msg"] == "otlp export failed")),
        "no export failure line: {:?}",
        gateway.log_lines()
    );

    let lines = gateway.log_lines();
    let forwarding = lines.iter().find(|l| l["msg"] == "otlp forwarding on").expect("forwarding line");
    let shown = forwarding["endpoint"].as_str().unwrap();
    assert_eq!(
        shown,
        format!("http://***@127.0.0.1:{collector}/v1/logs?tenant=t1&api_key=***&X-Amz-Signature=***#access_token=***"),
        "the masked endpoint still says where it points"
    );
    let failure = lines.iter().find(|l| l["msg"] == "otlp export failed").unwrap();
    assert_eq!(failure["endpoint"], shown);

    for line in &lines {
        assert_no_secret("stdout", &line.to_string());
    }
    assert_no_secret("stderr", &gateway.stderr());
    assert_no_secret("/readyz", &gateway.get(&gateway.admin_url("/readyz")).body);
    assert_no_secret("/metrics", &gateway.get(&gateway.admin_url("/metrics")).body);
}

#[test]
fn invalid_urls_with_credentials_are_refused_without_echoing_them() {
    let cases = [
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "ftp://user:pw-userinfo@collector/v1/logs"),
        ("OTEL_COLLECTOR_ENDPOINT", "http://user:pw-userinfo@ho st/v1/logs?token=tok-query"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http//u:base-pw@collector:4318?sig=sig-query"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://collector:4318/v1/logs?api_key=tok-query bad"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "redis://:redis-pw@redis:6379/not-a-db"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "http://:redis-pw@redis:6379"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "redis://u:redis-pw/x@redis:6379"),
    ];
    for (name, value) in cases {
        let output = Command::new(BIN)
            .env_clear()
            .env("CLIENT_TELEMETRY_BIND", "127.0.0.1:0")
            .env(name, value)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(2), "{name}={value} must be refused: {stderr}");
        assert!(stderr.contains(name), "the error names the setting: {stderr}");
        assert!(stderr.contains("***"), "the error shows the masked URL: {stderr}");
        assert_no_secret("stderr", &stderr);
        assert_no_secret("stdout", &stdout);
    }
}

/// A proxy in front of the collector that refuses the request and quotes it back, as some do.
fn echoing_proxy() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer = format!("invalid credentials in {}", request_line.trim());
            let mut stream = stream;
            let head =
                format!("HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", answer.len());
            let _ = stream.write_all(format!("{head}{answer}").as_bytes());
        }
    });
    port
}

#[test]
fn a_collector_answer_quoting_the_url_does_not_leak_its_credentials() {
    let port = echoing_proxy();
    let endpoint = format!("http://127.0.0.1:{port}/v1/logs?api_key=tok-query&tenant=t1");
    let gateway = Gateway::start(&[
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint),
        ("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", "10"),
    ]);
    assert_eq!(gateway.post(&batch(1)).status, 204);
    let failure = || gateway.log_lines().into_iter().find(|l| l["msg"] == "otlp export failed");
    assert!(wait_until(Duration::from_secs(10), || failure().is_some()), "{:?}", gateway.log_lines());
    let error = failure().unwrap()["error"].as_str().unwrap().to_string();
    assert!(error.contains("invalid credentials in POST /v1/logs?api_key=***&tenant=t1"), "{error}");
    for line in gateway.log_lines() {
        assert_no_secret("stdout", &line.to_string());
    }
}
