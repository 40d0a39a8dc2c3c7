//! TLS with a private certificate authority, made by the test with `openssl`: a redis-server with
//! only a `tls-port` (once requiring client certificates), and a TLS collector stand-in. The gateway
//! trusts the CA its settings name; a wrong CA fails every handshake, which is counted and degrades
//! like any other error, and a file that cannot be loaded stops start-up naming its setting.
mod support;

use std::{process::Command, time::Duration};

use support::{BIN, Gateway, batch, certs::TestCa, collector::Collector, redis_topology::TlsRedis, wait_until};

const LIMIT: usize = 5;

fn gateway_on(redis: &TlsRedis, tls: &[(&str, String)]) -> Gateway {
    let url = redis.url();
    let mut env: Vec<(&str, &str)> = vec![
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", &url),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS", "2000"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "5"),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1"),
    ];
    env.extend(tls.iter().map(|(name, value)| (*name, value.as_str())));
    Gateway::start(&env)
}

fn statuses(gateway: &Gateway, client: &str, n: usize) -> Vec<u16> {
    (0..n).map(|_| gateway.post_as(client, &batch(1)).status).collect()
}

fn redis_errors(gateway: &Gateway, kind: &str) -> f64 {
    gateway.metric(&format!(r#"client_telemetry_rate_limiter_errors_total{{backend="redis",kind="{kind}"}}"#))
}

#[test]
fn redis_over_tls_is_reached_with_the_private_ca_and_the_limit_is_kept_there() {
    let ca = TestCa::generate("redis");
    let redis = TlsRedis::start(&ca, false);
    let gateway = gateway_on(&redis, &[("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CA_FILE", ca.path("ca.crt"))]);
    let answers = statuses(&gateway, "198.51.100.1", LIMIT + 2);
    assert_eq!(answers, [204, 204, 204, 204, 204, 429, 429]);
    assert!(redis.dbsize() > 0, "the count is kept on the TLS redis");
    assert_eq!(redis_errors(&gateway, "connection"), 0.0);
    assert_eq!(gateway.metric("client_telemetry_rate_limiter_degraded"), 0.0);
}

#[test]
fn a_redis_requiring_client_certificates_admits_the_gateway_with_one_and_refuses_it_without() {
    let ca = TestCa::generate("mtls");
    let redis = TlsRedis::start(&ca, true);
    let with = gateway_on(
        &redis,
        &[
            ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CA_FILE", ca.path("ca.crt")),
            ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CLIENT_CERT_FILE", ca.path("client.crt")),
            ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CLIENT_KEY_FILE", ca.path("client.key")),
        ],
    );
    assert_eq!(statuses(&with, "198.51.100.2", LIMIT + 1), [204, 204, 204, 204, 204, 429]);
    assert_eq!(redis_errors(&with, "connection"), 0.0);

    let without = gateway_on(&redis, &[("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CA_FILE", ca.path("ca.crt"))]);
    let answers = statuses(&without, "198.51.100.3", LIMIT + 1);
    assert!(answers.iter().all(|s| [204, 429].contains(s)), "the failure policy answers: {answers:?}");
    assert!(wait_until(Duration::from_secs(5), || redis_errors(&without, "connection")
        + redis_errors(&without, "server")
        >= 1.0));
    assert_eq!(without.metric("client_telemetry_rate_limiter_degraded"), 1.0);
    assert!(!without.stderr().contains("panicked"), "{}", without.stderr());
}

#[test]
fn a_redis_certificate_from_another_ca_fails_every_handshake_counted_never_a_panic() {
    let (ca, other) = (TestCa::generate("right"), TestCa::generate("wrong"));
    let redis = TlsRedis::start(&ca, false);
    let gateway = gateway_on(&redis, &[("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CA_FILE", other.path("ca.crt"))]);
    let answers = statuses(&gateway, "198.51.100.4", LIMIT + 1);
    assert_eq!(answers, [204, 204, 204, 204, 204, 429], "the local limiter decides");
    assert!(redis_errors(&gateway, "connection") >= 1.0);
    assert_eq!(gateway.metric("client_telemetry_rate_limiter_degraded"), 1.0);
    assert_eq!(redis.dbsize(), 0, "nothing reached the untrusted server");
    assert!(!gateway.stderr().contains("panicked"), "{}", gateway.stderr());
}

fn forwarding_to(collector: &Collector, tls: &[(&str, String)]) -> Gateway {
    let endpoint = collector.endpoint();
    let mut env: Vec<(&str, &str)> =
        vec![("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &endpoint), ("CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS", "10")];
    env.extend(tls.iter().map(|(name, value)| (*name, value.as_str())));
    Gateway::start(&env)
}

#[test]
fn the_collector_over_tls_is_reached_with_the_otel_certificate_variables_once_with_a_client_certificate() {
    let ca = TestCa::generate("collector");
    let collector = Collector::start_tls(ca.server_config(false));
    let gateway = forwarding_to(&collector, &[("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.path("ca.crt"))]);
    assert_eq!(gateway.post(&batch(3)).status, 204);
    assert!(wait_until(Duration::from_secs(10), || collector.delivered() == 3), "delivered over TLS");

    let mutual = Collector::start_tls(ca.server_config(true));
    let gateway = forwarding_to(
        &mutual,
        &[
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", ca.path("ca.crt")),
            ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE", ca.path("client.crt")),
            ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", ca.path("client.key")),
        ],
    );
    assert_eq!(gateway.post(&batch(2)).status, 204);
    assert!(wait_until(Duration::from_secs(10), || mutual.delivered() == 2), "delivered with a client certificate");
}

#[test]
fn a_collector_certificate_from_another_ca_is_counted_as_a_failed_export_never_a_panic() {
    let (ca, other) = (TestCa::generate("collector-right"), TestCa::generate("collector-wrong"));
    let collector = Collector::start_tls(ca.server_config(false));
    let gateway = forwarding_to(
        &collector,
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", other.path("ca.crt")),
            ("CLIENT_TELEMETRY_OTLP_RETRY_MAX_ELAPSED_MS", "200".into()),
        ],
    );
    assert_eq!(gateway.post(&batch(2)).status, 204, "accepting never waits on the collector");
    assert!(wait_until(Duration::from_secs(10), || gateway.otlp_counts().failed == 2), "{:?}", gateway.otlp_counts());
    assert_eq!(collector.delivered(), 0);
    assert!(!gateway.stderr().contains("panicked"), "{}", gateway.stderr());
}

#[test]
fn a_certificate_file_that_cannot_be_loaded_stops_start_up_naming_its_setting() {
    let ca = TestCa::generate("files");
    let not_pem = ca.path("server.csr.missing");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CA_FILE", "/nonexistent/ca.pem".into())],
            "CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CA_FILE",
        ),
        (
            vec![("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CA_FILE", not_pem.clone())],
            "CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CA_FILE",
        ),
        (
            vec![("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CLIENT_CERT_FILE", ca.path("client.crt"))],
            "CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CLIENT_KEY_FILE",
        ),
        (
            vec![
                ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CLIENT_CERT_FILE", ca.path("client.crt")),
                ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CLIENT_KEY_FILE", ca.path("server.key")),
            ],
            "CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CLIENT_KEY_FILE",
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318".into()),
                ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", not_pem.clone()),
            ],
            "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318".into()),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", ca.path("client.key")),
            ],
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ),
    ];
    for (env, named) in cases {
        let output = Command::new(BIN).env_clear().envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(named), "{env:?}: {stderr:?} should name {named}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
