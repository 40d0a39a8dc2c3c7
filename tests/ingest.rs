//! POST /api/client-telemetry, as a browser or a developer with curl sees it.
mod support;

use std::io::Read;

use serde_json::{Value, json};
use support::{Gateway, batch, event};

#[test]
fn a_valid_batch_is_accepted_with_204_and_each_event_logged_once() {
    let gateway = Gateway::start(&[]);
    let reply = gateway.post(&batch(20));
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert!(reply.body.is_empty());
    let lines = gateway.wait_for_events(20);
    assert_eq!(lines.len(), 20);
    let line = &lines[0];
    assert_eq!(line["level"], "info");
    assert_eq!(line["scope"], "checkout-form");
    assert_eq!(line["sessionId"], "session-abc123");
    assert_eq!(line["message"], "event 0");
    assert_eq!(line["timestamp"], "2025-01-15T10:30:45.123Z");
    assert_eq!(line["requestId"], "request-xyz789");
    // nested, not stringified
    assert_eq!(line["context"]["cart"]["items"], 3);
    assert_eq!(line["context"]["tags"], json!(["a", "b"]));
    assert!(line["ts"].as_str().unwrap().ends_with('Z'), "receive time: {line}");
}

#[test]
fn the_legacy_single_event_is_accepted_forever() {
    let gateway = Gateway::start(&[]);
    let reply = gateway.post(&event("error", "legacy").to_string());
    assert_eq!(reply.status, 204, "{}", reply.body);
    let lines = gateway.wait_for_events(1);
    assert_eq!(lines[0]["level"], "error");
    assert_eq!(lines[0]["message"], "legacy");
}

#[test]
fn json_text_plain_of_any_charset_and_no_content_type_are_accepted() {
    let gateway = Gateway::start(&[]);
    for content_type in
        ["application/json", "application/json; charset=utf-8", "text/plain;charset=UTF-8", "text/plain"]
    {
        let reply = gateway.post_with(&[("content-type", content_type)], &batch(1));
        assert_eq!(reply.status, 204, "{content_type}: {}", reply.body);
    }
    assert_eq!(gateway.post_with(&[], &batch(1)).status, 204);
    let reply = gateway.post_with(&[("content-type", "application/x-www-form-urlencoded")], &batch(1));
    assert_eq!(reply.status, 415);
    assert!(reply.json()["error"].as_str().unwrap().contains("text/plain"));
}

#[test]
fn invalid_events_are_reported_by_index_and_the_valid_ones_kept() {
    let gateway = Gateway::start(&[]);
    let mut bad_level = event("info", "x");
    bad_level["level"] = json!("debug");
    let mut no_session = event("info", "y");
    no_session.as_object_mut().unwrap().remove("sessionId");
    let body = json!({ "events": [event("info", "kept"), bad_level, event("warn", "kept too"), no_session] });
    let reply = gateway.post(&body.to_string());
    assert_eq!(reply.status, 200);
    let answer = reply.json();
    assert_eq!(answer["accepted"], 2);
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 1);
    assert!(rejected[0]["error"].as_str().unwrap().contains("debug"));
    assert_eq!(rejected[1]["index"], 3);
    assert!(rejected[1]["error"].as_str().unwrap().contains("sessionId"));
    let messages: Vec<Value> = gateway.wait_for_events(2).iter().map(|l| l["message"].clone()).collect();
    assert_eq!(messages, vec![json!("kept"), json!("kept too")]);
    assert_eq!(gateway.metric(r#"client_telemetry_events_rejected_total{reason="schema"}"#), 2.0);
}

fn assert_400(gateway: &Gateway, body: &[u8], needle: &str) {
    let reply = gateway.post_bytes(&[("content-type", "application/json")], body);
    assert_eq!(reply.status, 400, "{:?} -> {}", String::from_utf8_lossy(body), reply.body);
    let error = reply.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains(needle), "{error:?} should mention {needle:?}");
}

#[test]
fn bad_bodies_get_a_400_a_developer_can_act_on() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_MAX_EVENTS_PER_REQUEST", "50")]);
    assert_400(&gateway, b"{\"events\":[", "malformed JSON");
    assert_400(&gateway, b"not json", "malformed JSON");
    assert_400(&gateway, b"", "malformed JSON");
    assert_400(&gateway, b"{\"events\":[\xff\xfe]}", "UTF-8");
    assert_400(&gateway, br#"{"events":{"level":"info"}}"#, "`events` must be an array");
    assert_400(&gateway, br#"{"events":[]}"#, "empty");
    assert_400(&gateway, br#"[1,2,3]"#, "JSON object");
    assert_400(&gateway, batch(51).as_bytes(), "51 events in one request, more than the limit of 50");
    assert_400(&gateway, br#"{"events":[{"level":"info"},{"nope":1}]}"#, "none of the 2 events is valid");
    // the legacy form names the problem itself
    assert_400(&gateway, br#"{"level":"info","scope":"s","sessionId":"x","message":"m"}"#, "missing field `timestamp`");
}

#[test]
fn hostile_input_gets_a_4xx_never_a_panic() {
    let gateway = Gateway::start(&[]);
    let deep = format!("{{\"events\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert_400(&gateway, deep.as_bytes(), "");
    let mut deep_context = event("info", "deep");
    deep_context["context"] = serde_json::from_str(&format!("{}1{}", "{\"a\":".repeat(50), "}".repeat(50))).unwrap();
    assert_400(&gateway, json!({ "events": [deep_context] }).to_string().as_bytes(), "deeper than 5");
    let huge_number = event("info", "n").to_string().replace("\"attempt\":2", "\"attempt\":1e999999");
    assert_400(&gateway, format!("{{\"events\":[{huge_number}]}}").as_bytes(), "number out of range");
    let nul = event("info", "a\u{0}b").to_string();
    assert_400(&gateway, nul.as_bytes(), "NUL");
    let duplicate = event("info", "d").to_string().replace("\"ok\":true", "\"ok\":true,\"ok\":false");
    assert_400(&gateway, duplicate.as_bytes(), "duplicate key");
    assert_400(&gateway, br#"{"events":[],"events":[]}"#, "duplicate field");
    // a long string of numbers is just data, within limits
    let long_number = format!("{{\"events\":[{}]}}", "9".repeat(200_000));
    assert_400(&gateway, long_number.as_bytes(), "");
    // still serving
    assert_eq!(gateway.post(&batch(1)).status, 204);
}

#[test]
fn bodies_over_the_limit_get_413_announced_or_chunked() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_MAX_BODY_BYTES", "4096")]);
    let big = batch(40);
    assert!(big.len() > 4096);
    assert_eq!(gateway.post(&big).status, 413);
    // chunked: no Content-Length, the cap still holds
    let chunked = ureq::post(&gateway.url(support::INGEST)).send(std::io::Cursor::new(big.clone().into_bytes()));
    let reply = support::reply(chunked);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(reply.json()["error"].as_str().unwrap().contains("4096"));
    // exactly at the limit is fine
    let fits = batch(1);
    assert!(fits.len() <= 4096);
    let fitting = ureq::post(&gateway.url(support::INGEST)).send(std::io::Cursor::new(fits.into_bytes()));
    assert_eq!(support::reply(fitting).status, 204);
}

#[test]
fn metrics_count_known_traffic() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_ADMIN_BIND", "127.0.0.1:0")]);
    for _ in 0..3 {
        assert_eq!(gateway.post(&batch(20)).status, 204);
    }
    let mut warn = event("warn", "w");
    warn["level"] = json!("warn");
    assert_eq!(gateway.post(&json!({ "events": [warn, event("error", "e")] }).to_string()).status, 204);
    assert_eq!(gateway.post("nope").status, 400);
    assert_eq!(gateway.metric(r#"client_telemetry_requests_total{route="native",status="204"}"#), 4.0);
    assert_eq!(gateway.metric(r#"client_telemetry_requests_total{route="native",status="400"}"#), 1.0);
    assert_eq!(gateway.metric(r#"client_telemetry_events_total{app="",level="info"}"#), 60.0);
    assert_eq!(gateway.metric(r#"client_telemetry_events_total{app="",level="warn"}"#), 1.0);
    assert_eq!(gateway.metric(r#"client_telemetry_events_total{app="",level="error"}"#), 1.0);
    assert_eq!(gateway.metric("client_telemetry_batch_size_count"), 4.0);
    assert_eq!(gateway.metric("client_telemetry_batch_size_sum"), 62.0);
    assert_eq!(gateway.metric(r#"client_telemetry_batch_size_bucket{le="20"}"#), 4.0);
    assert_eq!(gateway.metric(r#"client_telemetry_batch_size_bucket{le="10"}"#), 1.0);
    assert_eq!(gateway.metric("client_telemetry_request_duration_seconds_count"), 5.0);
    let build = format!(r#"client_telemetry_build_info{{commit="{}",version="0.1.0"}}"#, env!("BUILD_GIT_COMMIT"));
    assert_eq!(gateway.metric(&build), 1.0);
    assert!(gateway.metric("process_resident_memory_bytes") > 0.0);
    // operations endpoints live on the admin listener only
    assert_eq!(gateway.get(&gateway.url("/metrics")).status, 404);
    assert_eq!(gateway.get(&gateway.admin_url("/healthz")).status, 200);
    assert_eq!(gateway.get(&gateway.admin_url("/readyz")).json()["status"], "ready");
}

#[test]
fn cors_echoes_allowed_origins_with_credentials_and_exposes_the_limit_headers() {
    let origin = "http://app.example:3000";
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_ALLOWED_ORIGINS", origin)]);
    let preflight = support::reply(
        ureq::request("OPTIONS", &gateway.url(support::INGEST))
            .set("origin", origin)
            .set("access-control-request-method", "POST")
            .set("access-control-request-headers", "content-type")
            .call(),
    );
    assert!(preflight.status < 300, "{preflight:?}");
    assert_eq!(preflight.header("access-control-allow-origin"), Some(origin));
    assert_eq!(preflight.header("access-control-allow-credentials"), Some("true"));

    let post = gateway.post_with(&[("origin", origin), ("content-type", "text/plain;charset=UTF-8")], &batch(1));
    assert_eq!(post.status, 204);
    assert_eq!(post.header("access-control-allow-origin"), Some(origin));
    let exposed = post.header("access-control-expose-headers").unwrap().to_ascii_lowercase();
    for header in ["retry-after", "ratelimit", "ratelimit-policy"] {
        assert!(exposed.contains(header), "{exposed}");
    }
    // another origin gets no CORS grant, and is refused: the allowed origins are one list
    let other = gateway.post_with(&[("origin", "https://evil.example")], &batch(1));
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other.status, 403);
}

#[test]
fn without_cors_origins_no_cors_headers_are_sent() {
    let gateway = Gateway::start(&[]);
    let post = gateway.post_with(&[("origin", "http://app.example")], &batch(1));
    assert_eq!(post.status, 204);
    assert_eq!(post.header("access-control-allow-origin"), None);
}

#[test]
fn chunked_bodies_within_the_limit_are_read_whole() {
    let gateway = Gateway::start(&[]);
    let body = batch(100);
    let reader = std::io::Cursor::new(body.into_bytes()).chain(std::io::empty());
    let reply = support::reply(ureq::post(&gateway.url(support::INGEST)).send(reader));
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(gateway.wait_for_events(100).len(), 100);
}

#[test]
fn the_browser_client_and_the_demo_page_are_served_as_committed() {
    let gateway = Gateway::start(&[]);
    let script = gateway.get(&gateway.url("/client-telemetry.js"));
    assert_eq!(script.status, 200);
    assert!(script.header("content-type").unwrap().starts_with("text/javascript"));
    assert_eq!(script.body, std::fs::read_to_string("client/dist/client-telemetry.min.js").unwrap());
    let demo = gateway.get(&gateway.url("/demo"));
    assert_eq!(demo.status, 200);
    assert!(demo.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(demo.body, std::fs::read_to_string("client/demo/index.html").unwrap());
}

#[test]
fn the_browser_client_is_sent_gzipped_with_an_etag_and_under_a_content_hashed_name_cached_for_good() {
    let gateway = Gateway::start(&[]);
    let committed = std::fs::read_to_string("client/dist/client-telemetry.min.js").unwrap();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut request = ureq::get(&gateway.url(path));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        match request.call() {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(e) => panic!("{e}"),
        }
    };
    let zipped = get("/client-telemetry.js", &[("accept-encoding", "gzip, deflate, br")]);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("vary"), Some("Accept-Encoding"));
    let etag = zipped.header("etag").unwrap().to_string();
    let mut body = Vec::new();
    zipped.into_reader().read_to_end(&mut body).unwrap();
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut unzipped).unwrap();
    assert_eq!(unzipped, committed);
    assert!(body.len() < committed.len() / 2, "{} compressed bytes for {}", body.len(), committed.len());

    let cached = get("/client-telemetry.js", &[("if-none-match", &etag)]);
    assert_eq!((cached.status(), cached.header("etag")), (304, Some(etag.as_str())));
    let head = ureq::head(&gateway.url("/client-telemetry.js")).call().unwrap();
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    assert_eq!(head.header("content-length"), Some(committed.len().to_string().as_str()));
    assert_eq!(head.into_string().unwrap(), "", "HEAD has no body");

    let hash = etag.trim_matches('"');
    let hashed = get(&format!("/client-telemetry.{hash}.js"), &[]);
    assert_eq!(hashed.status(), 200);
    assert_eq!(hashed.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(hashed.into_string().unwrap(), committed);
    assert_eq!(get("/client-telemetry.0000000000000000.js", &[]).status(), 404, "another build's name");
}
