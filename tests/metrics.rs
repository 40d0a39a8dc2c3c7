//! A fresh gateway's `/metrics`: every labelled counter whose label values are known up front shows
//! each of them at 0 before the first request, so a new deployment's dashboards and `rate()` see 0,
//! not "No data".
mod support;

use support::{Gateway, RedisServer, metric_value};

/// `name{labels}` must be a sample of `exposition`, at 0.
fn assert_zero(exposition: &str, sample: &str) {
    assert!(exposition.lines().any(|line| line == format!("{sample} 0")), "{sample} is not at 0 in:\n{exposition}");
    assert_eq!(metric_value(exposition, sample), 0.0);
}

#[test]
fn every_known_label_value_of_every_labelled_counter_starts_at_0() {
    let redis = RedisServer::start();
    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", &redis.url()),
        ("CLIENT_TELEMETRY_ALLOWED_APPS", "shop,admin"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:9/v1/logs"),
        ("CLIENT_TELEMETRY_CHALLENGE_ENABLED", "true"),
        ("CLIENT_TELEMETRY_CHALLENGE_SECRETS", "0123456789abcdef0123456789abcdef"),
    ]);
    let exposition = gateway.get(&gateway.admin_url("/metrics")).body;

    for route in ["native", "otlp", "faro"] {
        for status in ["200", "202", "204", "400", "401", "403", "408", "413", "415", "429", "503"] {
            let sample = format!(r#"client_telemetry_requests_total{{route="{route}",status="{status}"}}"#);
            assert_zero(&exposition, &sample);
        }
    }
    for app in ["", "shop", "admin"] {
        for level in ["info", "warn", "error"] {
            assert_zero(&exposition, &format!(r#"client_telemetry_events_total{{app="{app}",level="{level}"}}"#));
        }
    }
    for reason in ["schema", "field_too_long", "invalid_field", "invalid_timestamp", "invalid_context"] {
        assert_zero(&exposition, &format!(r#"client_telemetry_events_rejected_total{{reason="{reason}"}}"#));
    }
    for kind in [
        "email",
        "jwt",
        "bearer",
        "api_key",
        "secret",
        "card",
        "iban",
        "phone",
        "ipv4",
        "ipv6",
        "sensitive_key",
        "custom",
    ] {
        assert_zero(&exposition, &format!(r#"client_telemetry_redactions_total{{kind="{kind}"}}"#));
    }
    for decision in ["allowed", "limited", "session_limited", "dry_run_limited", "exempt"] {
        let sample = format!(r#"client_telemetry_rate_limit_decisions_total{{backend="redis",decision="{decision}"}}"#);
        assert_zero(&exposition, &sample);
    }
    for kind in ["timeout", "connection", "server", "reply", "circuit_open"] {
        let sample = format!(r#"client_telemetry_rate_limiter_errors_total{{backend="redis",kind="{kind}"}}"#);
        assert_zero(&exposition, &sample);
    }
    for result in ["success", "failure"] {
        assert_zero(&exposition, &format!(r#"client_telemetry_otlp_exports_total{{result="{result}"}}"#));
    }
    for result in ["exported", "failed", "dropped"] {
        assert_zero(&exposition, &format!(r#"client_telemetry_otlp_events_total{{result="{result}"}}"#));
    }
    for result in ["token", "solved"] {
        assert_zero(&exposition, &format!(r#"client_telemetry_challenge_proofs_total{{result="{result}"}}"#));
    }
}
