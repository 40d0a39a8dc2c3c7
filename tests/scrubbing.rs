//! PII scrubbing through the real binary: what reaches the log line.
mod support;

use serde_json::json;
use support::Gateway;

const PII: &[&str] = &[
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "DE89370400440532013000",
    "+49 151 23456789",
    "203.0.113.42",
    "2001:db8::8a2e:370:7334",
    "hunter2",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "AKIAIOSFODNN7EXAMPLE",
    "a1b2c3d4e5f6a7b8",
];

fn event_full_of_pii() -> String {
    json!({
        "level": "error",
        "scope": "checkout jane.doe@example.com",
        "sessionId": "550e8400-e29b-41d4-a716-446655440000",
        "message": "card 4111 1111 1111 1111 declined for +49 151 23456789 from 203.0.113.42 (iban DE89370400440532013000)",
        "timestamp": "2025-01-15T10:30:45.123Z",
        "requestId": "request-xyz789",
        "context": {
            "password": "hunter2",
            "headers": { "authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U" },
            "url": "https://example.com/cb?token=a1b2c3d4e5f6a7b8",
            "peer": "2001:db8::8a2e:370:7334",
            "aws": "AKIAIOSFODNN7EXAMPLE",
            "attempt": 2,
            "build": "1.2.3",
            "at": "2025-01-15T10:30:45.123Z"
        }
    })
    .to_string()
}

#[test]
fn the_log_line_carries_no_pii_and_redactions_are_counted() {
    let gateway = Gateway::start(&[]);
    assert_eq!(gateway.post(&event_full_of_pii()).status, 204);
    let line = gateway.wait_for_events(1).remove(0);
    let text = line.to_string();
    for pii in PII {
        assert!(!text.contains(pii), "{pii:?} reached the log: {text}");
    }
    assert_eq!(line["scope"], "checkout [REDACTED:email]");
    assert_eq!(
        line["message"],
        "card [REDACTED:card] declined for [REDACTED:phone] from [REDACTED:ipv4] (iban [REDACTED:iban])"
    );
    assert_eq!(line["context"]["password"], "[REDACTED:sensitive_key]");
    assert_eq!(line["context"]["headers"]["authorization"], "[REDACTED:sensitive_key]");
    assert_eq!(line["context"]["url"], "https://example.com/cb?token=[REDACTED:secret]");
    // What is not PII is untouched.
    assert_eq!(line["sessionId"], "550e8400-e29b-41d4-a716-446655440000");
    assert_eq!(line["context"]["attempt"], 2);
    assert_eq!(line["context"]["build"], "1.2.3");
    assert_eq!(line["context"]["at"], "2025-01-15T10:30:45.123Z");

    let count = |kind: &str| gateway.metric(&format!("client_telemetry_redactions_total{{kind=\"{kind}\"}}"));
    assert_eq!(count("email"), 1.0);
    assert_eq!(count("card"), 1.0);
    assert_eq!(count("sensitive_key"), 2.0);
    assert_eq!(count("secret"), 1.0);
    assert_eq!(count("ipv6"), 1.0);
    assert_eq!(count("api_key"), 1.0);
}

#[test]
fn scrubbing_can_be_turned_off_and_tuned() {
    let gateway = Gateway::start(&[("CLIENT_TELEMETRY_SCRUB_ENABLED", "false")]);
    assert_eq!(gateway.post(&event_full_of_pii()).status, 204);
    let text = gateway.wait_for_events(1)[0].to_string();
    assert!(text.contains("jane.doe@example.com") && text.contains("hunter2"), "{text}");

    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_SCRUB_DISABLED_KINDS", "ipv4"),
        ("CLIENT_TELEMETRY_SCRUB_ALLOW_KEYS", "password"),
        ("CLIENT_TELEMETRY_SCRUB_CUSTOM_PATTERNS", r#"["declined"]"#),
    ]);
    assert_eq!(gateway.post(&event_full_of_pii()).status, 204);
    let line = gateway.wait_for_events(1).remove(0);
    assert_eq!(line["context"]["password"], "hunter2");
    let message = line["message"].as_str().unwrap();
    assert!(message.contains("203.0.113.42") && message.contains("[REDACTED:custom]"), "{message}");
    assert!(!message.contains("4111"), "{message}");
}
