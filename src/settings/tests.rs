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
