//! Per-client sliding-window limit (memory backend), as clients see it over HTTP.
mod support;

use std::time::{Duration, Instant};

use support::{Gateway, batch};

fn limited(window_ms: &str, max: &str, trusted: bool) -> Gateway {
    let mut env =
        vec![("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", window_ms), ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", max)];
    if trusted {
        env.push(("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1/32"));
    }
    Gateway::start(&env)
}

#[test]
fn over_the_limit_is_429_with_retry_after_and_ratelimit_headers() {
    let gateway = limited("60000", "3", false);
    for remaining in [2, 1, 0] {
        let reply = gateway.post(&batch(1));
        assert_eq!(reply.status, 204);
        assert_eq!(reply.header("ratelimit-policy"), Some(r#""ip";q=3;w=60"#));
        assert!(reply.header("ratelimit").unwrap().starts_with(&format!(r#""ip";r={remaining};t="#)));
    }
    let refused = gateway.post(&batch(1));
    assert_eq!(refused.status, 429);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((60..=62).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(refused.header("ratelimit"), Some(format!(r#""ip";r=0;t={retry_after}"#).as_str()));
    assert_eq!(refused.json()["retryAfter"], retry_after);
    assert_eq!(gateway.metric(r#"client_telemetry_requests_total{status="429"}"#), 1.0);
    assert_eq!(
        gateway.metric(r#"client_telemetry_rate_limit_decisions_total{backend="memory",decision="limited"}"#),
        1.0
    );
    // nothing of a refused request is logged
    assert_eq!(gateway.wait_for_events(3).len(), 3);
}

#[test]
fn the_window_slides_a_second_burst_inside_it_is_refused_and_quota_returns_after_it() {
    let gateway = limited("2000", "3", false);
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(gateway.post(&batch(1)).status, 204);
    }
    assert_eq!(gateway.post(&batch(1)).status, 429);
    // a second burst half-way through the window: a fixed window that rolled over would admit it
    std::thread::sleep(Duration::from_millis(1000).saturating_sub(start.elapsed()));
    for _ in 0..5 {
        assert_eq!(gateway.post(&batch(1)).status, 429, "inside the window");
    }
    // once the first burst has left the window (plus one sub-window), exactly the limit returns
    std::thread::sleep(Duration::from_millis(2150).saturating_sub(start.elapsed()));
    for _ in 0..3 {
        assert_eq!(gateway.post(&batch(1)).status, 204, "quota returned");
    }
    assert_eq!(gateway.post(&batch(1)).status, 429, "refused requests did not cost quota, nor did they add any");
}

#[test]
fn an_untrusted_peer_cannot_change_its_key_with_x_forwarded_for() {
    let gateway = limited("60000", "2", false);
    assert_eq!(gateway.post_as("198.51.100.1", &batch(1)).status, 204);
    assert_eq!(gateway.post_as("198.51.100.2", &batch(1)).status, 204);
    assert_eq!(gateway.post_as("198.51.100.3", &batch(1)).status, 429, "spoofed header ignored: one client");
}

#[test]
fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let gateway = limited("60000", "2", true);
    for client in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(gateway.post_as(client, &batch(1)).status, 204);
        assert_eq!(gateway.post_as(client, &batch(1)).status, 204);
        assert_eq!(gateway.post_as(client, &batch(1)).status, 429, "{client}");
    }
    // the right-most untrusted hop is the client: a spoofed left part changes nothing
    assert_eq!(gateway.post_as("6.6.6.6, 198.51.100.1", &batch(1)).status, 429);
}

#[test]
fn ipv6_clients_are_limited_by_their_64() {
    let gateway = limited("60000", "2", true);
    assert_eq!(gateway.post_as("2001:db8:0:1::1", &batch(1)).status, 204);
    assert_eq!(gateway.post_as("2001:db8:0:1::ffff", &batch(1)).status, 204);
    assert_eq!(gateway.post_as("2001:db8:0:1:abcd::2", &batch(1)).status, 429, "same /64");
    assert_eq!(gateway.post_as("2001:db8:0:2::1", &batch(1)).status, 204, "another /64");
}
