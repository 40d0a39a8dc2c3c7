//! The loader: defaults, file and environment; errors; old spellings and unknown names.

use std::time::Duration;

use super::*;
use crate::{
    ratelimit::{Backend, RedisFailure},
    scrub::Kind,
};

fn load(vars: &[(&str, &str)]) -> Result<Settings, Error> {
    Settings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[test]
fn defaults_need_nothing() {
    let s = load(&[]).unwrap();
    assert_eq!(s.transport.bind, "0.0.0.0:8080");
    assert_eq!(s.rate_limit.window, Duration::from_secs(60));
    assert_eq!(s.rate_limit.max_requests, 100);
    assert_eq!(s.rate_limit.backend, Backend::Memory);
    assert_eq!(s.body.max_body_bytes, 262_144);
    assert!(s.trusted_proxies.is_empty());
    assert!(s.access.allowed_origins.is_empty());
    assert!(s.transport.admin_bind.is_none());
    assert!(!s.rate_limit.dry_run);
    assert!(s.rate_limit.exempt.is_empty());
    let redis = &s.rate_limit.redis;
    assert_eq!(redis.url, "redis://127.0.0.1:6379");
    assert_eq!(redis.key_prefix, "client-telemetry:");
    assert_eq!(redis.connections_per_worker, 1);
    assert!(s.deprecated.is_empty());
    assert_eq!(redis.timeout, Duration::from_millis(25));
    assert_eq!(redis.failure, RedisFailure::Local);
}

#[test]
fn redis_backend_and_its_settings() {
    let s = load(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "redis"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "rediss://user:secret@redis.internal:6380/2"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_KEY_PREFIX", "ct:"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CONNECTIONS_PER_WORKER", "4"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS", "10"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_FAILURE", "deny"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_DRY_RUN", "true"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_EXEMPT_CIDRS", "10.0.0.0/8, 2001:db8::/32, 192.0.2.7"),
    ])
    .unwrap();
    let (rate_limit, redis) = (&s.rate_limit, &s.rate_limit.redis);
    assert_eq!(rate_limit.backend, Backend::Redis);
    assert_eq!(redis.url, "rediss://user:secret@redis.internal:6380/2");
    assert_eq!(redis.key_prefix, "ct:");
    assert_eq!(redis.connections_per_worker, 4);
    assert_eq!(redis.timeout, Duration::from_millis(10));
    assert_eq!(redis.failure, RedisFailure::Deny);
    assert!(rate_limit.dry_run);
    assert!(s.deprecated.is_empty(), "{:?}", s.deprecated);
    assert_eq!(rate_limit.exempt.len(), 3);
    for (value, failure) in [("local", RedisFailure::Local), ("ALLOW", RedisFailure::Allow)] {
        let s = load(&[("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_FAILURE", value)]).unwrap();
        assert_eq!(s.rate_limit.redis.failure, failure);
    }
}

#[test]
fn the_old_pool_size_still_starts_but_is_reported_as_ignored() {
    let s = load(&[("CLIENT_TELEMETRY_REDIS_POOL_SIZE", "16")]).unwrap();
    let [(name, instead)] = s.deprecated.as_slice() else { panic!("{:?}", s.deprecated) };
    assert_eq!(name, "CLIENT_TELEMETRY_REDIS_POOL_SIZE");
    assert!(instead.contains("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CONNECTIONS_PER_WORKER"), "{instead}");
    assert_eq!(s.rate_limit.redis.connections_per_worker, 1);
}

#[test]
fn bad_redis_settings_name_the_variable_and_never_show_a_password() {
    for (name, value) in [
        ("CLIENT_TELEMETRY_REDIS_URL", "http://redis:6379"),
        ("CLIENT_TELEMETRY_REDIS_URL", "redis://redis:6379/not-a-db"),
        ("CLIENT_TELEMETRY_REDIS_CONNECTIONS_PER_WORKER", "0"),
        ("CLIENT_TELEMETRY_REDIS_TIMEOUT_MS", "0"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_FAILURE", "retry"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_DRY_RUN", "maybe"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_EXEMPT_CIDRS", "10.0.0.0/40"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "http://redis:6379"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_CONNECTIONS_PER_WORKER", "0"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS", "0"),
    ] {
        let e = load(&[(name, value)]).unwrap_err();
        assert_eq!(e.setting, name, "{e}");
    }
    for url in ["redis://:hunter2@redis:6379/not-a-db", "http://:hunter2@redis:6379"] {
        let e = load(&[("CLIENT_TELEMETRY_REDIS_URL", url)]).unwrap_err();
        assert_eq!(e.setting, "CLIENT_TELEMETRY_REDIS_URL");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = load(&[("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", url)]).unwrap_err();
        assert_eq!(e.setting, "CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}

#[test]
fn environment_overrides_defaults() {
    let s = load(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "1000"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "5"),
        ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
        ("CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS", "https://a.example,http://localhost:3000"),
    ])
    .unwrap();
    assert_eq!(s.rate_limit.window, Duration::from_secs(1));
    assert_eq!(s.rate_limit.max_requests, 5);
    assert_eq!(s.trusted_proxies.len(), 2);
    assert_eq!(s.access.allowed_origins, vec!["https://a.example", "http://localhost:3000"]);
}

#[test]
fn errors_name_the_variable_and_the_value() {
    let e = load(&[("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "0")]).unwrap_err();
    assert_eq!(e.setting, "CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS");
    assert_eq!(e.value, "0");
    let e = load(&[("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "soon")]).unwrap_err();
    assert_eq!(e.setting, "CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS");
    assert!(e.to_string().contains("soon"), "{e}");
    let e = load(&[("CLIENT_TELEMETRY_TRUSTED_PROXIES", "10.0.0.0/33")]).unwrap_err();
    assert_eq!((e.setting.as_str(), e.value.as_str()), ("CLIENT_TELEMETRY_TRUSTED_PROXIES", "10.0.0.0/33"));
    let e = load(&[("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "etcd")]).unwrap_err();
    assert_eq!((e.setting.as_str(), e.value.as_str()), ("CLIENT_TELEMETRY_RATE_LIMIT_BACKEND", "etcd"));
    let e = load(&[("CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS", "*")]).unwrap_err();
    assert_eq!(e.setting, "CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS");
}

#[test]
fn session_limits_and_dedup_are_off_by_default_and_a_session_limit_cannot_exceed_the_ips() {
    let s = load(&[]).unwrap();
    assert_eq!((s.rate_limit.session_max_requests, s.rate_limit.dedup_window), (None, None));
    let s = load(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "20"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_DEDUP_WINDOW_MS", "600000"),
    ])
    .unwrap();
    assert_eq!(s.rate_limit.session_max_requests, Some(20));
    assert_eq!(s.rate_limit.dedup_window, Some(Duration::from_secs(600)));
    let e = load(&[("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "101")]).unwrap_err();
    assert_eq!((e.setting.as_str(), e.value.as_str()), ("CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS", "101"));
    assert!(e.to_string().contains("above the IP's (100)"), "{e}");
}

#[test]
fn hardening_settings_have_safe_defaults_and_named_errors() {
    let s = load(&[]).unwrap();
    assert!(s.scrub.enabled && s.body.accept_gzip);
    assert!(s.access.api_key_digests.is_empty() && s.access.allowed_origins.is_empty());
    assert_eq!(s.transport.header_read_timeout, Duration::from_secs(5));
    assert_eq!(s.body.body_read_timeout, Duration::from_secs(10));
    assert_eq!(s.transport.max_connection_age, Some(Duration::from_secs(600)));

    let s = load(&[
        ("CLIENT_TELEMETRY_SCRUB_DISABLED_KINDS", "ipv4, phone"),
        ("CLIENT_TELEMETRY_SCRUB_CUSTOM_PATTERNS", r#"["ORD-[0-9]{6}", "ACME-[A-Z]{2,4}"]"#),
        ("CLIENT_TELEMETRY_API_KEYS", "0123456789abcdef,fedcba9876543210"),
        ("CLIENT_TELEMETRY_MAX_CONNECTION_AGE_MS", "0"),
    ])
    .unwrap();
    assert_eq!(s.scrub.disabled_kinds, vec![Kind::Ipv4, Kind::Phone]);
    assert_eq!(s.scrub.custom_patterns, vec!["ORD-[0-9]{6}", "ACME-[A-Z]{2,4}"]);
    assert_eq!(s.access.api_key_digests.len(), 2);
    assert_eq!(s.transport.max_connection_age, None);
    assert_eq!(
        load(&[("CLIENT_TELEMETRY_SCRUB_CUSTOM_PATTERNS", "ORD-[0-9]{6}")]).unwrap().scrub.custom_patterns.len(),
        1
    );

    for (name, value) in [
        ("CLIENT_TELEMETRY_SCRUB_DISABLED_KINDS", "ssn"),
        ("CLIENT_TELEMETRY_SCRUB_CUSTOM_PATTERNS", "ORD-[0-9"),
        ("CLIENT_TELEMETRY_SCRUB_CUSTOM_PATTERNS", "x*"),
        ("CLIENT_TELEMETRY_ALLOWED_ORIGINS", "https://a.example/path"),
        ("CLIENT_TELEMETRY_MAX_GZIP_RATIO", "1"),
        ("CLIENT_TELEMETRY_HEADER_READ_TIMEOUT_MS", "0"),
    ] {
        let e = load(&[(name, value)]).unwrap_err();
        assert_eq!((e.setting.as_str(), e.value.as_str()), (name, value), "{e}");
    }
    // A key too short to resist guessing is refused, and never echoed.
    let e = load(&[("CLIENT_TELEMETRY_API_KEYS", "short")]).unwrap_err();
    assert_eq!(e.setting, "CLIENT_TELEMETRY_API_KEYS");
    assert!(!e.to_string().contains("short"), "{e}");
}

#[test]
fn file_sits_between_defaults_and_environment() {
    let dir = std::env::temp_dir().join(format!("ct-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        "rate_limit_max_requests = 7\nrate_limit_window_ms = 2000\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let s = load(&[("CLIENT_TELEMETRY_CONFIG", path), ("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "3000")]).unwrap();
    assert_eq!(s.rate_limit.max_requests, 7);
    assert_eq!(s.rate_limit.window, Duration::from_secs(3));
    assert_eq!(s.trusted_proxies.len(), 1);
    let e = load(&[("CLIENT_TELEMETRY_CONFIG", "/nonexistent/gateway.toml")]).unwrap_err();
    assert_eq!(e.setting, "CLIENT_TELEMETRY_CONFIG");
}

#[test]
fn an_unknown_variable_stops_start_up_naming_the_closest_known_one() {
    let e = load(&[("CLIENT_TELEMETRY_RATE_LIMT_MAX_REQUESTS", "5")]).unwrap_err();
    assert_eq!(e.setting, "CLIENT_TELEMETRY_RATE_LIMT_MAX_REQUESTS");
    assert!(e.reason.contains("did you mean CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS?"), "{e}");
    // The value of an unknown variable may be a secret: it is not shown.
    let e = load(&[("CLIENT_TELEMETRY_API_KEY", "k-0123456789abcdef")]).unwrap_err();
    assert!(e.reason.contains("did you mean CLIENT_TELEMETRY_API_KEYS?"), "{e}");
    assert!(!e.to_string().contains("k-0123456789abcdef"), "{e}");
    // The OpenTelemetry variables have no prefix of ours.
    let e = load(&[("CLIENT_TELEMETRY_OTEL_SERVICE_NAME", "web")]).unwrap_err();
    assert!(e.reason.contains("did you mean OTEL_SERVICE_NAME?"), "{e}");
}

#[test]
fn what_is_not_ours_is_left_alone() {
    let s = load(&[
        ("NEXT_PUBLIC_CLIENT_TELEMETRY_ENDPOINT", "/api/client-telemetry"),
        ("CLIENT_TELEMETRYX", "1"),
        ("OTEL_TRACES_EXPORTER", "none"),
        ("HOME", "/root"),
    ])
    .unwrap();
    assert!(s.deprecated.is_empty());
}

#[test]
fn kubernetes_service_links_never_stop_a_pod() {
    let links = [
        ("CLIENT_TELEMETRY_SERVICE_HOST", "10.96.0.12"),
        ("CLIENT_TELEMETRY_SERVICE_PORT", "8080"),
        ("CLIENT_TELEMETRY_SERVICE_PORT_HTTP", "8080"),
        ("CLIENT_TELEMETRY_SERVICE_PORT_ADMIN", "8081"),
        ("CLIENT_TELEMETRY_PORT", "tcp://10.96.0.12:8080"),
        ("CLIENT_TELEMETRY_PORT_8080_TCP", "tcp://10.96.0.12:8080"),
        ("CLIENT_TELEMETRY_PORT_8080_TCP_PROTO", "tcp"),
        ("CLIENT_TELEMETRY_PORT_8080_TCP_PORT", "8080"),
        ("CLIENT_TELEMETRY_PORT_8080_TCP_ADDR", "10.96.0.12"),
        ("CLIENT_TELEMETRY_PORT_53_UDP_ADDR", "10.96.0.12"),
        ("CLIENT_TELEMETRY_PORT_9000_SCTP_PROTO", "sctp"),
        // A Service named client-telemetry-redis.
        ("CLIENT_TELEMETRY_REDIS_SERVICE_HOST", "10.96.0.13"),
        ("CLIENT_TELEMETRY_REDIS_PORT_6379_TCP_ADDR", "10.96.0.13"),
    ];
    for link in links {
        assert!(load(&[link]).is_ok(), "{link:?}");
    }
    assert!(load(&links).is_ok());
    // Shapes that are not Kubernetes' are still checked.
    assert!(load(&[("CLIENT_TELEMETRY_PORT_8080_HTTP", "1")]).is_err());
    assert!(load(&[("CLIENT_TELEMETRY_SERVICE_HOSTNAME", "x")]).is_err());
}

#[test]
fn old_spellings_still_work_and_are_reported() {
    let s = load(&[
        ("CLIENT_TELEMETRY_DEDUP_WINDOW_MS", "60000"),
        ("CLIENT_TELEMETRY_REDIS_URL", "redis://redis.internal:6379/1"),
        ("CLIENT_TELEMETRY_REDIS_KEY_PREFIX", "ct:"),
        ("CLIENT_TELEMETRY_REDIS_CONNECTIONS_PER_WORKER", "2"),
        ("CLIENT_TELEMETRY_REDIS_TIMEOUT_MS", "40"),
    ])
    .unwrap();
    let redis = &s.rate_limit.redis;
    assert_eq!(s.rate_limit.dedup_window, Some(Duration::from_secs(60)));
    assert_eq!((redis.url.as_str(), redis.key_prefix.as_str()), ("redis://redis.internal:6379/1", "ct:"));
    assert_eq!((redis.connections_per_worker, redis.timeout), (2, Duration::from_millis(40)));
    let reported: Vec<_> = s.deprecated.iter().map(|(name, instead)| (name.as_str(), instead.as_str())).collect();
    assert_eq!(reported.len(), 5, "{reported:?}");
    assert!(reported.contains(&("CLIENT_TELEMETRY_REDIS_URL", "renamed: use CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL")));
    assert!(
        reported.contains(&(
            "CLIENT_TELEMETRY_DEDUP_WINDOW_MS",
            "renamed: use CLIENT_TELEMETRY_RATE_LIMIT_DEDUP_WINDOW_MS"
        ))
    );
}

#[test]
fn an_old_and_a_new_spelling_must_agree() {
    let same = [("CLIENT_TELEMETRY_REDIS_TIMEOUT_MS", "40"), ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS", "40")];
    assert_eq!(load(&same).unwrap().rate_limit.redis.timeout, Duration::from_millis(40));
    let e = load(&[
        ("CLIENT_TELEMETRY_REDIS_URL", "redis://:hunter2@old:6379"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "redis://:hunter2@new:6379"),
    ])
    .unwrap_err();
    let message = e.to_string();
    assert!(message.contains("CLIENT_TELEMETRY_REDIS_URL"), "{message}");
    assert!(message.contains("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn the_cors_origins_are_the_allowed_origins_now_and_both_lists_merge() {
    let s = load(&[
        ("CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS", "https://a.example"),
        ("CLIENT_TELEMETRY_ALLOWED_ORIGINS", "https://b.example,https://c.example"),
    ])
    .unwrap();
    let mut origins = s.access.allowed_origins.clone();
    origins.sort();
    assert_eq!(origins, ["https://a.example", "https://b.example", "https://c.example"]);
    assert_eq!(s.deprecated.len(), 1);
    assert_eq!(s.deprecated[0].0, "CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS");
}

#[test]
fn the_file_is_checked_like_the_environment() {
    let dir = std::env::temp_dir().join(format!("ct-settings-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    let path = file.to_str().unwrap();
    std::fs::write(&file, "rate_limt_max_requests = 7\n").unwrap();
    let e = load(&[("CLIENT_TELEMETRY_CONFIG", path)]).unwrap_err();
    assert_eq!(e.setting, "rate_limt_max_requests");
    assert!(e.reason.contains(path) && e.reason.contains("did you mean rate_limit_max_requests?"), "{e}");

    std::fs::write(&file, "redis_timeout_ms = 40\ncors_allowed_origins = [\"https://a.example\"]\n").unwrap();
    let s = load(&[("CLIENT_TELEMETRY_CONFIG", path)]).unwrap();
    assert_eq!(s.rate_limit.redis.timeout, Duration::from_millis(40));
    assert_eq!(s.access.allowed_origins, ["https://a.example"]);
    let names: Vec<_> = s.deprecated.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["cors_allowed_origins", "redis_timeout_ms"]);
    // A bad value given under an old key is named as given.
    std::fs::write(&file, "redis_timeout_ms = 0\n").unwrap();
    assert_eq!(load(&[("CLIENT_TELEMETRY_CONFIG", path)]).unwrap_err().setting, "redis_timeout_ms");
}

#[test]
fn the_effective_settings_show_every_setting_and_no_secret() {
    let s = load(&[
        ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "7"),
        ("CLIENT_TELEMETRY_API_KEYS", "k-0123456789abcdef,k-fedcba9876543210"),
        ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "rediss://user:hunter2@redis:6380/0"),
        ("OTEL_COLLECTOR_ENDPOINT", "http://c:4318/v1/logs"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=sk-123"),
    ])
    .unwrap();
    let effective: BTreeMap<_, _> = s.effective.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(effective.len(), catalogue().len() + 1, "every setting, and the file");
    assert_eq!(effective["CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS"], "7");
    assert_eq!(effective["CLIENT_TELEMETRY_API_KEYS"], "<redacted>,<redacted>");
    assert_eq!(effective["CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL"], "rediss://***@redis:6380/0");
    assert_eq!(effective["OTEL_EXPORTER_OTLP_HEADERS"], "<redacted>");
    assert_eq!(effective["OTEL_COLLECTOR_ENDPOINT"], "http://c:4318/v1/logs");
    let all = format!("{:?}", s.effective);
    assert!(!all.contains("hunter2") && !all.contains("sk-123") && !all.contains("0123456789"), "{all}");
}

#[test]
fn every_setting_has_a_meaning_and_one_key() {
    let catalogue = catalogue();
    let mut keys: Vec<_> = catalogue.iter().map(|e| e.key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), catalogue.len(), "a key declared by two components");
    for entry in &catalogue {
        assert!(!entry.meaning.is_empty(), "{}", entry.key);
    }
}

#[test]
fn settings_are_off_by_default_and_need_long_secrets_when_on() {
    let load = |vars: &[(&str, &str)]| {
        Settings::from_vars(vars.iter().map(|(k, v)| (format!("CLIENT_TELEMETRY_{k}"), v.to_string())))
    };
    assert!(load(&[]).unwrap().challenge.is_none());
    let secret = "s".repeat(32);
    let on = load(&[("CHALLENGE_ENABLED", "true"), ("CHALLENGE_SECRETS", &format!("{secret},{secret}x"))]);
    let on = on.unwrap().challenge.unwrap();
    assert_eq!((on.secrets.len(), on.threshold, on.difficulty), (2, 10, 12));
    assert_eq!((on.token_ttl, on.max_sessions_per_address), (std::time::Duration::from_secs(3600), 10));
    assert!(!format!("{on:?}").contains(&secret), "{on:?}");
    let refused = [
        vec![("CHALLENGE_ENABLED", "true")],
        vec![("CHALLENGE_ENABLED", "true"), ("CHALLENGE_SECRETS", "short-secret-that-is-31-chars-x")],
        vec![("CHALLENGE_ENABLED", "true"), ("CHALLENGE_SECRETS", &secret), ("CHALLENGE_DIFFICULTY", "33")],
        vec![("CHALLENGE_ENABLED", "true"), ("CHALLENGE_SECRETS", &secret), ("CHALLENGE_DIFFICULTY", "0")],
        vec![("CHALLENGE_ENABLED", "true"), ("CHALLENGE_SECRETS", &secret), ("CHALLENGE_THRESHOLD", "0")],
    ];
    for vars in refused {
        let error = load(&vars).unwrap_err();
        assert!(error.setting.starts_with("CLIENT_TELEMETRY_CHALLENGE_"), "{error}");
        assert!(!error.to_string().contains("short-secret"), "a secret is never shown: {error}");
    }
}
