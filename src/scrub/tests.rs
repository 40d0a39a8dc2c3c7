use serde_json::json;

use super::*;

pub(crate) fn default_settings() -> ScrubSettings {
    ScrubConfig::default().resolve().unwrap()
}

fn scrubber() -> &'static Scrubber {
    static SCRUBBER: std::sync::OnceLock<Scrubber> = std::sync::OnceLock::new();
    SCRUBBER.get_or_init(|| Scrubber::new(&default_settings()).unwrap())
}

fn scrub(text: &str) -> (String, Redactions) {
    let mut redactions = Redactions::default();
    let out = scrubber().scrub_text(text, &mut redactions).into_owned();
    (out, redactions)
}

/// Each positive is redacted as `kind` and leaves the text around it intact.
fn assert_redacted(kind: Kind, positives: &[&str]) {
    for secret in positives {
        let (out, redactions) = scrub(&format!("before {secret} after"));
        assert_eq!(out, format!("before {} after", kind.marker()), "{secret:?}");
        assert_eq!(redactions.get(kind), 1, "{secret:?}");
        assert_eq!(redactions.total(), 1, "{secret:?}");
    }
}

fn assert_untouched(negatives: &[&str]) {
    for text in negatives {
        let (out, redactions) = scrub(text);
        assert_eq!(&out, text, "{:?}", redactions);
        assert_eq!(redactions.total(), 0, "{text:?}");
    }
}

#[test]
fn emails() {
    assert_redacted(Kind::Email, &["jane.doe@example.com", "a+tag@sub.example.co.uk", "X_Y-z@mail-host.io"]);
    assert_untouched(&["react@18.2.0", "@scope/pkg@1.0.0", "user@localhost", "meet @ 10"]);
}

#[test]
fn jwts() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    assert_redacted(Kind::Jwt, &[jwt, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0x."]);
    assert_untouched(&["eyJ is how JSON starts in base64", "file.eyJ.txt"]);
}

#[test]
fn bearer_and_basic_credentials() {
    assert_redacted(Kind::Bearer, &["Bearer abc123def456ghi789", "bearer 9f8e7d6c5b4a", "Basic dXNlcjpwYXNzd29yZA=="]);
    assert_untouched(&["the bearer of bad news", "basic functionality works", "Bearer token expired"]);
}

#[test]
fn provider_api_keys() {
    assert_redacted(
        Kind::ApiKey,
        &[
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_1234567890abcdefghijklmnopqrstuvwxyz",
            "xoxb-1234567890-abcdefghij",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "sk-proj-abcdefghijklmnopqrstuvwx",
            "glpat-abcdefghij1234567890",
        ],
    );
    assert_untouched(&["AKIA", "sk-short", "task-list-item-renderer", "ghp_short"]);
}

#[test]
fn secrets_after_a_name_keep_the_name() {
    for (text, expected) in [
        ("password=hunter2", "password=[REDACTED:secret]"),
        ("login?user=x&token=a1b2c3d4e5f6&next=/", "login?user=x&token=[REDACTED:secret]&next=/"),
        (r#"{"apiKey": "Zx81kqP0vLm2"}"#, r#"{"apiKey": "[REDACTED:secret]"}"#),
        ("client_secret: s3cr3tValue99", "client_secret: [REDACTED:secret]"),
        ("?key=AbC123xyz789", "?key=[REDACTED:secret]"),
        // A stack frame keeps its position, which is not part of the value.
        ("at f (https://a.test/x?token=a1b2c3d4e5f6:12:5)", "at f (https://a.test/x?token=[REDACTED:secret]:12:5)"),
        ("f@https://a.test/x?pwd=hunter2:3:14", "f@https://a.test/x?pwd=[REDACTED:secret]:3:14"),
    ] {
        let (out, redactions) = scrub(text);
        assert_eq!(out, expected, "{text}");
        assert_eq!(redactions.get(Kind::Secret), 1, "{text}");
    }
    // A keyboard key or a sort key is not a secret; `monkey=` is not `key=`.
    assert_untouched(&["key=Enter", "key: ArrowDown", "sort_key=name", "monkey=banana42x", "token=expired"]);
}

#[test]
fn card_numbers_pass_luhn() {
    assert_redacted(Kind::Card, &["4111111111111111", "4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005"]);
    assert_untouched(&[
        "4111111111111112",
        "order 1234567890123456 shipped",
        // Unix milliseconds and nanoseconds start with 1, which no card network uses.
        "at 1736937045123",
        "t=1736937045123000000",
    ]);
}

#[test]
fn ibans_pass_their_check_digits() {
    assert_redacted(Kind::Iban, &["DE89370400440532013000", "GB82 WEST 1234 5698 7654 32"]);
    assert_untouched(&["DE89370400440532013001", "AB12CDEFGHIJKLMNOP"]);
}

#[test]
fn phone_numbers() {
    assert_redacted(
        Kind::Phone,
        &["+49 151 23456789", "+1 (555) 123-4567", "(555) 123-4567", "555-123-4567", "030 1234567"],
    );
    assert_untouched(&["+1 day", "+12345", "score +20.5%", "build 123.456.789"]);
}

#[test]
fn ip_addresses() {
    assert_redacted(Kind::Ipv4, &["203.0.113.42", "10.0.0.1"]);
    assert_redacted(
        Kind::Ipv6,
        &[
            "2001:db8::8a2e:370:7334",
            "2001:db8::1",
            "fe80::1",
            "fe80::1%eth0",
            "::1",
            "::ffff:192.0.2.1",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "2001:db8:0:0:0:0:2:1",
            "0:0:0:0:0:ffff:192.0.2.1",
        ],
    );
    let (out, _) = scrub("connect to [2001:db8::1]:8080 failed");
    assert_eq!(out, "connect to [[REDACTED:ipv6]]:8080 failed");
    let (out, _) = scrub("peer was 2001:db8::1. Retrying");
    assert_eq!(out, "peer was [REDACTED:ipv6]. Retrying");
    assert_untouched(&[
        "Mozilla/5.0 (X11) Chrome/120.0.0.0 Safari/537.36",
        "v1.2.3.4",
        "1.2.3.4.5",
        "256.1.1.1",
        "at 10:30:45.123",
        "mac 00:1a:2b:3c:4d:5e",
        "std::fs::read",
        "face::bad",
        "Error 42: timeout",
        "step 3: done",
        "10:30:45",
        "at 10:30:45 and 23:59:59.999",
        "1:2:3:4:5:6:7",
        "2001:db8::1.5",
    ]);
}

/// A group and a colon, a clock time or a MAC address is not even a candidate: such messages
/// take the clean path (one scan, nothing parsed or copied).
#[test]
fn ordinary_colons_take_the_clean_path() {
    let limits = crate::event::Limits::default();
    for message in [
        "Error 42: timeout",
        "step 3: done",
        "event 7: user clicked",
        "at 10:30:45",
        "mac 00:1a:2b:3c:4d:5e",
        "std::fs::read",
    ] {
        let json = json!({
            "level": "info", "scope": "nav", "sessionId": "s-1", "message": message,
            "timestamp": "2025-01-15T10:30:45.123Z", "context": { "at": "10:30:45", "step": 3 },
        })
        .to_string();
        let event = crate::event::parse_event(&json, &limits).unwrap();
        assert!(!scrubber().may_need_scrubbing(&event), "{message:?}");
    }
    for message in ["from 2001:db8::1", "from ::1", "from fe80::1%eth0"] {
        let json = json!({
            "level": "info", "scope": "nav", "sessionId": "s-1", "message": message,
            "timestamp": "2025-01-15T10:30:45.123Z",
        })
        .to_string();
        let event = crate::event::parse_event(&json, &limits).unwrap();
        assert!(scrubber().may_need_scrubbing(&event), "{message:?}");
    }
}

#[test]
fn ordinary_telemetry_is_left_alone() {
    assert_untouched(&[
        "2025-01-15T10:30:45.123Z",
        "2025-01-15 10:30:45+01:00",
        "550e8400-e29b-41d4-a716-446655440000",
        "12345678-1234-5678-1234-567812345678",
        "session-abc123",
        "version 1.2.3",
        "app@2.14.0-beta.1",
        "clicked button #42 after 1500 ms (ratio 0.75)",
        "TypeError: Cannot read properties of undefined (reading 'map')",
        "GET /api/v1/orders/123456 failed with 503",
        "https://example.com/path?page=2&sort=desc",
        "amount 1234567.89 EUR",
        "",
    ]);
}

#[test]
fn several_kinds_in_one_text_are_all_redacted() {
    let (out, redactions) = scrub("mail jane@example.com from 203.0.113.9 card 4111111111111111");
    assert_eq!(out, "mail [REDACTED:email] from [REDACTED:ipv4] card [REDACTED:card]");
    assert_eq!((redactions.get(Kind::Email), redactions.get(Kind::Ipv4), redactions.get(Kind::Card)), (1, 1, 1));
}

#[test]
fn non_ascii_text_is_scanned_too() {
    let (out, _) = scrub("Grüße an jane@example.com — 🙂 +49 151 23456789");
    assert_eq!(out, "Grüße an [REDACTED:email] — 🙂 [REDACTED:phone]");
}

fn event_with(context: Value) -> Event<'static> {
    let limits = crate::event::Limits::default();
    let json = json!({
        "level": "error", "scope": "checkout jane@example.com", "sessionId": "550e8400-e29b-41d4-a716-446655440000",
        "message": "payment failed for 4111 1111 1111 1111", "timestamp": "2025-01-15T10:30:45.123Z",
        "context": context,
    })
    .to_string();
    crate::event::parse_event(Box::leak(json.into_boxed_str()), &limits).unwrap()
}

#[test]
fn an_event_is_scrubbed_in_message_scope_context_keys_and_values() {
    let mut event = event_with(json!({
        "password": "hunter2",
        "userEmail": "jane@example.com",
        "Authorization": { "scheme": "Bearer", "value": "abc" },
        "maxTokens": 500,
        "emailVerified": true,
        "cc": 4111111111111111u64,
        "clientIp": "203.0.113.9",
        "jane@example.com": "keyed by an address",
        "john@example.com": "another",
        "nested": { "list": ["+49 151 23456789", 42, "plain"] },
        "attempt": 2,
    }));
    let redactions = scrubber().scrub_event(&mut event);
    assert_eq!(event.message, "payment failed for [REDACTED:card]");
    assert_eq!(event.scope, "checkout [REDACTED:email]");
    assert_eq!(event.session_id, "550e8400-e29b-41d4-a716-446655440000");
    let context = Value::Object(event.context_map().unwrap());
    assert_eq!(
        context,
        json!({
            "password": "[REDACTED:sensitive_key]",
            "userEmail": "[REDACTED:sensitive_key]",
            "Authorization": { "scheme": "[REDACTED:sensitive_key]", "value": "[REDACTED:sensitive_key]" },
            "maxTokens": 500,
            "emailVerified": true,
            "cc": "[REDACTED:card]",
            "clientIp": "[REDACTED:ipv4]",
            "[REDACTED:email]": "keyed by an address",
            "[REDACTED:email]#2": "another",
            "nested": { "list": ["[REDACTED:phone]", 42, "plain"] },
            "attempt": 2,
        })
    );
    assert_eq!(redactions.get(Kind::SensitiveKey), 4);
    assert_eq!(redactions.get(Kind::Card), 2);
    assert_eq!(redactions.get(Kind::Email), 3);
    assert_eq!(redactions.total(), 11);
}

#[test]
fn kinds_can_be_disabled_keys_allowed_and_patterns_added() {
    let settings = ScrubSettings {
        disabled_kinds: vec![Kind::Ipv4, Kind::SensitiveKey],
        custom_patterns: vec![r"ORD-[0-9]{6}".into()],
        allow_keys: vec!["contact_email".into()],
        ..default_settings()
    };
    let scrubber = Scrubber::new(&settings).unwrap();
    let mut event = event_with(json!({
        "ip": "203.0.113.9", "password": "hunter2", "contactEmail": "support@example.com", "order": "ORD-123456",
    }));
    let redactions = scrubber.scrub_event(&mut event);
    let context = event.context_map().unwrap();
    assert_eq!(context["ip"], "203.0.113.9");
    assert_eq!(context["password"], "hunter2");
    assert_eq!(context["contactEmail"], "support@example.com");
    assert_eq!(context["order"], "[REDACTED:custom]");
    assert_eq!(redactions.get(Kind::Custom), 1);
    assert!(Scrubber::new(&ScrubSettings { custom_patterns: vec!["(".into()], ..default_settings() }).is_err());
}

#[test]
fn a_clean_event_is_not_copied() {
    let limits = crate::event::Limits::default();
    let json = r#"{"level":"info","scope":"nav","sessionId":"s-1","message":"route changed to /orders","timestamp":"2025-01-15T10:30:45.123Z","context":{"route":"/orders","ms":12}}"#;
    let mut event = crate::event::parse_event(json, &limits).unwrap();
    assert_eq!(scrubber().scrub_event(&mut event).total(), 0);
    assert!(matches!(event.message, Cow::Borrowed(_)));
    assert!(matches!(event.scope, Cow::Borrowed(_)));
}

// Round two of the blind spots (issue 17): each class caught, and a look-alike that stays.

#[test]
fn card_numbers_in_other_number_forms_and_groupings() {
    assert_redacted(
        Kind::Card,
        &[
            "4111.1111.1111.1111",
            "4111  1111  1111  1111",
            "3782.822463.10005",
            "4.111111111111111e15",
            "4111111111111111E+0",
            "5.555555555554444e15",
        ],
    );
    // A sign or a decimal point leaves the digits a card number on their own.
    let (out, _) = scrub("paid with -4111111111111111 and 4111111111111111.0");
    assert_eq!(out, "paid with -[REDACTED:card] and [REDACTED:card].0");
    assert_untouched(&[
        "v1.2.3.4",
        "build 2024.11.05.1234",
        "order 1234567890123456 shipped",
        "Error 42",
        "ratio 0.1234",
        "3.141592653589793",
        "elapsed 1.736937045123e12 ns",
        "4.1111e15",
        "4111.1111.1111.1112",
        "at 1736937045123",
    ]);
}

#[test]
fn card_numbers_as_json_numbers_of_any_form() {
    for number in
        ["4111111111111111", "-4111111111111111", "4111111111111111.0", "4.111111111111111e15", "4111111111111111e0"]
    {
        let mut event = event_with(serde_json::from_str(&format!(r#"{{"n": {number}}}"#)).unwrap());
        assert!(!scrubber().takes_clean_path(&event), "{number} must not take the clean path");
        scrubber().scrub_event(&mut event);
        assert_eq!(event.context_map().unwrap()["n"], "[REDACTED:card]", "{number}");
    }
    for number in ["0.1234", "1736937045123", "4111111111111112.0", "4.5e15", "-42", "1e300"] {
        let mut event = event_with(serde_json::from_str(&format!(r#"{{"n": {number}}}"#)).unwrap());
        scrubber().scrub_event(&mut event);
        assert!(event.context_map().unwrap()["n"].is_number(), "{number} is kept");
    }
}

#[test]
fn international_and_url_encoded_email_addresses_are_redacted_whole() {
    assert_redacted(
        Kind::Email,
        &["jürgen.müller@example.com", "josé@bücher.de", "用户@例子.广告", "иван@пример.рф", "jane.doe%40example.com"],
    );
    let (out, _) = scrub("GET /unsubscribe?to=jane%40example.com&x=1");
    assert_eq!(out, "GET /unsubscribe?to=[REDACTED:email]&x=1");
    // In text written without spaces, the words around an address stay.
    let (out, _) = scrub("連絡先はjane@example.comです");
    assert_eq!(out, "連絡先は[REDACTED:email]です");
    assert_untouched(&["Grüße aus München", "react@18.2.0", "100%40 done", "@scope/pkg@1.0.0", "user@localhost"]);
}

#[test]
fn authorization_and_cookie_headers_inside_messages() {
    for (text, expected) in [
        ("sent Authorization: Token abcdef", "sent Authorization: Token [REDACTED:bearer]"),
        ("authorization: Digest username", "authorization: Digest [REDACTED:bearer]"),
        ("Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA==", "Proxy-Authorization: Basic [REDACTED:bearer]"),
        (r#"headers {"Authorization": "a1b2c3d4e5f6"}"#, r#"headers {"Authorization": "[REDACTED:bearer]"}"#),
        ("retry with bearer abcdefghijklmnopqrstuvwx", "retry with [REDACTED:bearer]"),
        ("Cookie: sid=abc; theme=dark", "Cookie: [REDACTED:secret]"),
        ("set-cookie: session=xyz; Path=/; HttpOnly", "set-cookie: [REDACTED:secret]"),
        (r#"req {"cookie": "a=1; b=2"} sent"#, r#"req {"cookie": "[REDACTED:secret]"} sent"#),
    ] {
        assert_eq!(scrub(text).0, expected, "{text}");
    }
    assert_untouched(&[
        "authorization failed",
        "Authorization: required",
        "the bearer of bad news",
        "Bearer token expired",
        "cookie: disabled",
        "Cookie consent: accepted",
        "cookies=3",
    ]);
}

#[test]
fn numbers_under_a_key_naming_a_secret_are_redacted_and_counts_are_kept() {
    let mut event = event_with(json!({
        "password": 123456,
        "userPassword": [1234, 5678],
        "auth": { "token": 987654321 },
        "maxTokens": 500,
        "tokenCount": 3,
        "passwordLength": 12,
        "secretsRotated": true,
    }));
    scrubber().scrub_event(&mut event);
    assert_eq!(
        Value::Object(event.context_map().unwrap()),
        json!({
            "password": "[REDACTED:sensitive_key]",
            "userPassword": ["[REDACTED:sensitive_key]", "[REDACTED:sensitive_key]"],
            "auth": { "token": "[REDACTED:sensitive_key]" },
            "maxTokens": 500,
            "tokenCount": 3,
            "passwordLength": 12,
            "secretsRotated": true,
        })
    );
}

#[test]
fn a_context_key_naming_a_secret_never_takes_the_clean_path_however_it_is_spelt() {
    let limits = crate::event::Limits::default();
    for key in ["password", "userPassword", "X-Api_Key", "API.KEY", "pass-word", "Auth_Token", "e-mail"] {
        let json = json!({
            "level": "info", "scope": "nav", "sessionId": "s-1", "message": "saved",
            "timestamp": "2025-01-15T10:30:45.123Z", "context": { key: "plain" },
        })
        .to_string();
        let event = crate::event::parse_event(&json, &limits).unwrap();
        assert!(!scrubber().takes_clean_path(&event), "{key:?}");
    }
    // `pässwörd` normalises to `psswrd`, which names no secret.
    for key in ["action", "component", "cartItems", "experiment", "pässwörd"] {
        let json = json!({
            "level": "info", "scope": "nav", "sessionId": "s-1", "message": "saved",
            "timestamp": "2025-01-15T10:30:45.123Z", "context": { key: "plain" },
        })
        .to_string();
        let event = crate::event::parse_event(&json, &limits).unwrap();
        assert!(scrubber().takes_clean_path(&event), "{key:?}");
    }
}
