//! Per-client sliding-window limit (memory backend), as clients see it over HTTP.
mod support;

use std::{
    io::Write,
    time::{Duration, Instant},
};

use support::{Gateway, INGEST, batch, post_head, read_raw_response};

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
    assert_eq!(gateway.metric(r#"client_telemetry_requests_total{route="native",status="429"}"#), 1.0);
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

// --- Per-session limits: one runaway tab does not spend its whole network's quota.

fn with_sessions(ip_max: &str, session_max: &str) -> Gateway {
    Gateway::start(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", ip_max),
        ("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", session_max),
    ])
}

fn from_session(gateway: &Gateway, session: &str) -> support::Reply {
    gateway.post_with(&[("content-type", "application/json"), ("x-session-id", session)], &batch(1))
}

#[test]
fn a_runaway_session_is_refused_while_other_sessions_behind_the_same_ip_go_on() {
    let gateway = with_sessions("5", "2");
    for remaining in [1, 0] {
        let reply = from_session(&gateway, "tab-a");
        assert_eq!(reply.status, 204);
        assert_eq!(reply.header("ratelimit-policy"), Some(r#""ip";q=5;w=60, "session";q=2;w=60"#));
        let expected = format!(r#""ip";r={};t="#, 3 + remaining);
        assert!(reply.header("ratelimit").unwrap().starts_with(&expected), "{:?}", reply.header("ratelimit"));
        assert!(reply.header("ratelimit").unwrap().contains(&format!(r#", "session";r={remaining};t="#)));
    }
    let refused = from_session(&gateway, "tab-a");
    assert_eq!(refused.status, 429);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((60..=62).contains(&retry_after), "Retry-After {retry_after}");
    assert!(refused.header("ratelimit").unwrap().starts_with(r#""ip";r=3;"#), "the refusal cost the IP nothing");

    // Another tab behind the same address (a sendBeacon names its session in the query string)…
    let beacon = gateway.url("/api/client-telemetry?session=tab-b");
    assert_eq!(gateway.post_to(&beacon, &batch(1)).status, 204);
    // …and a request naming no session, limited by its IP alone, share what is left of the IP's 5.
    assert_eq!(gateway.post(&batch(1)).status, 204);
    assert_eq!(gateway.post(&batch(1)).status, 204);
    assert_eq!(from_session(&gateway, "tab-c").status, 429, "the IP's 5 are spent");

    let decided = |d: &str| {
        gateway.metric(&format!(r#"client_telemetry_rate_limit_decisions_total{{backend="memory",decision="{d}"}}"#))
    };
    assert_eq!((decided("allowed"), decided("session_limited"), decided("limited")), (5.0, 1.0, 1.0));
    assert_eq!(gateway.wait_for_events(5).len(), 5);
}

#[test]
fn an_invalid_session_id_is_a_clear_400_that_costs_no_quota() {
    let gateway = with_sessions("1", "1");
    for bad in ["{ip:1.2.3.4}", "a b", &"x".repeat(129)] {
        let reply = from_session(&gateway, bad);
        assert_eq!(reply.status, 400, "{bad:?}");
        let error = reply.json()["error"].as_str().unwrap().to_string();
        assert!(error.starts_with("invalid session id: use 1 to 128 characters"), "{error}");
    }
    assert_eq!(from_session(&gateway, "ok").status, 204, "nothing was spent");
}

/// `?session=a&session=b` names two sessions: refused, naming the parameter, instead of dropping both.
#[test]
fn an_id_given_twice_is_a_400_naming_the_parameter() {
    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "1"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "1"),
        ("CLIENT_TELEMETRY_DEDUP_WINDOW_MS", "60000"),
    ]);
    for (query, what) in [("session=a&session=b", "session"), ("batch=b-1&x=1&batch=b-2", "batch")] {
        let reply = gateway.post_to(&gateway.url(&format!("{INGEST}?{query}")), &batch(1));
        assert_eq!(reply.status, 400, "{query}");
        let error = reply.json()["error"].as_str().unwrap().to_string();
        assert!(error.starts_with(&format!("the `{what}` query parameter")), "{error}");
    }
    for header in ["X-Session-Id", "X-Batch-Id"] {
        let body = batch(1);
        let head = post_head(&format!("{header}: a\r\n{header}: b\r\nContent-Length: {}\r\n", body.len()));
        let mut stream = std::net::TcpStream::connect(gateway.addr).unwrap();
        stream.write_all(format!("{head}{body}").as_bytes()).unwrap();
        let reply = read_raw_response(&mut stream).expect("an answer");
        assert_eq!(reply.status, 400, "{header} twice");
        assert!(reply.body.contains("given more than once"), "{}", reply.body);
    }
    assert_eq!(gateway.post_to(&gateway.url(&format!("{INGEST}?session=a&batch=b-1")), &batch(1)).status, 204);
    assert_eq!(gateway.wait_for_events(1).len(), 1, "the refused requests cost no quota and logged nothing");
}

#[test]
fn without_a_session_limit_session_ids_are_not_read() {
    let gateway = limited("60000", "2", false);
    assert_eq!(from_session(&gateway, "not a valid id").status, 204);
    assert_eq!(gateway.post(&batch(1)).header("ratelimit-policy"), Some(r#""ip";q=2;w=60"#));
}

// --- De-duplication: a retried batch is accepted once.

fn with_batch_id(gateway: &Gateway, id: &str, body: &str) -> support::Reply {
    gateway.post_with(&[("content-type", "application/json"), ("x-batch-id", id)], body)
}

#[test]
fn a_retried_batch_is_logged_once_and_answered_as_a_duplicate() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_RATE_LIMIT_DEDUP_WINDOW_MS", "60000")]);
    assert_eq!(with_batch_id(&gateway, "b-1", &batch(3)).status, 204);
    let retry = with_batch_id(&gateway, "b-1", &batch(3));
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json(), serde_json::json!({ "accepted": 0, "duplicate": true }));
    // sendBeacon's retry path: the id in the query string
    let duplicate = gateway.post_to(&gateway.url("/api/client-telemetry?batch=b-1"), &batch(3));
    assert_eq!(duplicate.json()["duplicate"], true);
    assert_eq!(with_batch_id(&gateway, "b-2", &batch(2)).status, 204, "another id is another batch");
    assert_eq!(gateway.post(&batch(1)).status, 204, "no id: never a duplicate");
    assert_eq!(gateway.post(&batch(1)).status, 204);

    assert_eq!(gateway.metric("client_telemetry_duplicate_batches_total"), 2.0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gateway.wait_for_events(7).len(), 7, "3 + 2 + 1 + 1: the duplicates were not logged");
    assert!(gateway.metric(r#"client_telemetry_requests_total{route="native",status="200"}"#) == 2.0);
}

#[test]
fn a_batch_that_was_refused_is_not_a_duplicate_when_sent_again() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_RATE_LIMIT_DEDUP_WINDOW_MS", "60000")]);
    assert_eq!(with_batch_id(&gateway, "b-1", "{\"events\":[{}]}").status, 400);
    assert_eq!(with_batch_id(&gateway, "b-1", &batch(1)).status, 204, "only accepted batches are remembered");
    assert_eq!(with_batch_id(&gateway, "b-1", &batch(1)).status, 200);
}

#[test]
fn batch_ids_are_remembered_for_the_dedup_window_only() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_RATE_LIMIT_DEDUP_WINDOW_MS", "300")]);
    assert_eq!(with_batch_id(&gateway, "b-1", &batch(1)).status, 204);
    assert_eq!(with_batch_id(&gateway, "b-1", &batch(1)).status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(with_batch_id(&gateway, "b-1", &batch(1)).status, 204, "forgotten after the window");
}

// --- Per-network overrides: a customer's NAT, an office, a partner's proxy gets its own limit.

fn with_overrides(overrides: &str, extra: &[(&str, &str)]) -> Gateway {
    let mut env = vec![
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "2"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_OVERRIDES", overrides),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "127.0.0.1"),
    ];
    env.extend_from_slice(extra);
    Gateway::start(&env)
}

#[test]
fn a_listed_network_gets_its_own_limit_per_address_and_its_policy_says_so() {
    let gateway = with_overrides("203.0.113.0/24=4, 203.0.113.7=6", &[]);
    for remaining in [3, 2, 1, 0] {
        let reply = gateway.post_as("203.0.113.9", &batch(1));
        assert_eq!(reply.status, 204);
        assert_eq!(reply.header("ratelimit-policy"), Some(r#""ip";q=4;w=60"#));
        assert!(reply.header("ratelimit").unwrap().starts_with(&format!(r#""ip";r={remaining};t="#)));
    }
    let refused = gateway.post_as("203.0.113.9", &batch(1));
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("ratelimit-policy"), Some(r#""ip";q=4;w=60"#));

    // Each address of the network has its own 4; the most specific entry wins.
    let statuses =
        |client: &str, n: usize| (0..n).map(|_| gateway.post_as(client, &batch(1)).status).collect::<Vec<_>>();
    assert_eq!(statuses("203.0.113.10", 5), [204, 204, 204, 204, 429]);
    assert_eq!(statuses("203.0.113.7", 7), [204, 204, 204, 204, 204, 204, 429]);
    // Everyone else keeps the default, and says so.
    let other = gateway.post_as("198.51.100.1", &batch(1));
    assert_eq!(other.header("ratelimit-policy"), Some(r#""ip";q=2;w=60"#));
    assert_eq!(statuses("198.51.100.1", 2), [204, 429]);
    assert_eq!(gateway.wait_for_events(4 + 4 + 6 + 2).len(), 16);
}

#[test]
fn within_an_override_each_session_keeps_its_own_limit() {
    let gateway = with_overrides("203.0.113.0/24=5", &[("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "2")]);
    let from_tab = |tab: &str| {
        let headers = [("content-type", "application/json"), ("x-forwarded-for", "203.0.113.9"), ("x-session-id", tab)];
        gateway.post_with(&headers, &batch(1))
    };
    let first = from_tab("tab-a");
    assert_eq!(first.header("ratelimit-policy"), Some(r#""ip";q=5;w=60, "session";q=2;w=60"#));
    assert_eq!(from_tab("tab-a").status, 204);
    assert_eq!(from_tab("tab-a").status, 429, "the tab's 2");
    assert_eq!([from_tab("tab-b").status, from_tab("tab-b").status, from_tab("tab-c").status], [204; 3]);
    assert_eq!(from_tab("tab-d").status, 429, "the network's 5 for this address are spent");
}

#[test]
fn an_exempt_address_inside_a_listed_network_stays_exempt() {
    let gateway = with_overrides("10.0.0.0/8=3", &[("CLIENT_TELEMETRY_RATE_LIMIT_EXEMPT_CIDRS", "10.9.9.9")]);
    assert!((0..6).all(|_| gateway.post_as("10.9.9.9", &batch(1)).status == 204));
    assert_eq!((0..4).map(|_| gateway.post_as("10.1.1.1", &batch(1)).status).collect::<Vec<_>>(), [204, 204, 204, 429]);
}

#[test]
fn an_unusable_override_stops_start_up_naming_the_setting() {
    for (value, shown) in [
        ("203.0.113.0/24=500,198.51.100.7=0", "198.51.100.7=0"),
        ("203.0.113.0/33=500", "203.0.113.0/33=500"),
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("203.0.113.0/24=lots", "203.0.113.0/24=lots"),
    ] {
        let output = std::process::Command::new(support::BIN)
            .env_clear()
            .env("CLIENT_TELEMETRY_RATE_LIMIT_OVERRIDES", value)
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{value}: {stderr}");
        let expected = format!("invalid configuration: CLIENT_TELEMETRY_RATE_LIMIT_OVERRIDES={shown:?}: ");
        assert!(stderr.contains(&expected), "{stderr:?} should contain {expected:?}");
    }
}
