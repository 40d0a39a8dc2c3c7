//! The command line and the configuration, through the real binary: `--help`, `--version`,
//! `check-config`, unknown and deprecated names, and the reference in docs/configuration.md.

mod support;

use std::{collections::BTreeMap, path::Path, process::Command};

use support::{BIN, Gateway, batch};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs the binary with only these variables; returns (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).env_clear().envs(env.iter().copied()).output().expect("run the binary");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status.code().expect("exited"), text(out.stdout), text(out.stderr))
}

/// `check-config`'s output as variable -> value.
fn effective(stdout: &str) -> BTreeMap<String, String> {
    stdout.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn help_and_version_answer_without_starting_a_server() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("check-config") && out.contains("serve") && out.contains("--version"), "{out}");
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    let expected = format!("client-telemetry {} (commit {})", env!("CARGO_PKG_VERSION"), env!("BUILD_GIT_COMMIT"));
    assert_eq!(out.trim(), expected);
    assert_eq!(run(&["--no-such-flag"], &[]).0, 2);
}

#[test]
fn check_config_prints_the_effective_settings_with_secrets_redacted() {
    let (code, out, err) = run(
        &["check-config"],
        &[
            ("CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS", "7"),
            ("CLIENT_TELEMETRY_API_KEYS", "k-0123456789abcdef"),
            ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "redis://:hunter2@redis:6379/0"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20sk-123"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "https://user:pa55word@collector:4318/v1/logs?token=t0ken-value"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let settings = effective(&out);
    assert_eq!(settings["CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS"], "7");
    assert_eq!(settings["CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS"], "60000", "defaults are shown too");
    assert_eq!(settings["CLIENT_TELEMETRY_API_KEYS"], "<redacted>");
    assert_eq!(settings["CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL"], "redis://***@redis:6379/0");
    assert_eq!(settings["OTEL_EXPORTER_OTLP_HEADERS"], "<redacted>");
    assert_eq!(settings["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://collector:4318");
    assert_eq!(settings["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"], "https://***@collector:4318/v1/logs?token=***");
    for secret in ["0123456789abcdef", "hunter2", "sk-123", "pa55word", "t0ken-value"] {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret} shown:\n{out}\n{err}");
    }
}

#[test]
fn check_config_refuses_an_invalid_configuration_with_exit_2_and_no_secret() {
    let (code, out, err) = run(&["check-config"], &[("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS", "0")]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.contains("CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS=\"0\": must be at least 1"), "{err}");
    let (code, _, err) = run(&["check-config"], &[("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL", "http://:hunter2@redis")]);
    assert_eq!(code, 2);
    assert!(err.contains("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL") && !err.contains("hunter2"), "{err}");
    let (code, _, err) = run(&["check-config"], &[("CLIENT_TELEMETRY_API_KEYS", "short-secret")]);
    assert_eq!(code, 2);
    assert!(err.contains("CLIENT_TELEMETRY_API_KEYS") && !err.contains("short-secret"), "{err}");
}

#[test]
fn an_unknown_variable_stops_start_up_with_a_suggestion() {
    let (code, _, err) = run(&[], &[("CLIENT_TELEMETRY_RATE_LIMT_MAX_REQUESTS", "5")]);
    assert_eq!(code, 2);
    assert!(err.contains("CLIENT_TELEMETRY_RATE_LIMT_MAX_REQUESTS"), "{err}");
    assert!(err.contains("did you mean CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS?"), "{err}");
    assert_eq!(run(&["check-config"], &[("CLIENT_TELEMETRY_RATE_LIMT_MAX_REQUESTS", "5")]).0, 2);
}

#[test]
fn an_unknown_file_key_stops_start_up_with_a_suggestion() {
    let dir = std::env::temp_dir().join(format!("ct-configuration-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, "rate_limit_max_requests: 5\nscrub_sensitive_key: [session]\n").unwrap();
    let (code, _, err) = run(&["check-config"], &[("CLIENT_TELEMETRY_CONFIG", file.to_str().unwrap())]);
    assert_eq!(code, 2);
    assert!(err.contains("scrub_sensitive_key") && err.contains("did you mean scrub_sensitive_keys?"), "{err}");
}

#[test]
fn kubernetes_service_links_do_not_stop_the_gateway() {
    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_SERVICE_HOST", "10.96.0.12"),
        ("CLIENT_TELEMETRY_SERVICE_PORT", "8080"),
        ("CLIENT_TELEMETRY_SERVICE_PORT_HTTP", "8080"),
        ("CLIENT_TELEMETRY_PORT", "tcp://10.96.0.12:8080"),
        ("CLIENT_TELEMETRY_PORT_8080_TCP", "tcp://10.96.0.12:8080"),
        ("CLIENT_TELEMETRY_PORT_8080_TCP_PROTO", "tcp"),
        ("CLIENT_TELEMETRY_PORT_8080_TCP_PORT", "8080"),
        ("CLIENT_TELEMETRY_PORT_8080_TCP_ADDR", "10.96.0.12"),
        ("NEXT_PUBLIC_CLIENT_TELEMETRY_ENDPOINT", "/api/client-telemetry"),
    ]);
    assert_eq!(gateway.post(&batch(1)).status, 204);
}

#[test]
fn old_spellings_start_and_are_warned_about() {
    let gateway = Gateway::start(&[
        ("CLIENT_TELEMETRY_DEDUP_WINDOW_MS", "60000"),
        ("CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS", "https://app.example.com"),
    ]);
    let ok = gateway.post_with(&[("origin", "https://app.example.com"), ("x-batch-id", "b-1")], &batch(1));
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://app.example.com"));
    let retry = gateway.post_with(&[("origin", "https://app.example.com"), ("x-batch-id", "b-1")], &batch(1));
    assert_eq!(retry.json()["duplicate"], true, "{}", retry.body);
    let warned: Vec<_> = gateway
        .log_lines()
        .into_iter()
        .filter(|l| l["msg"] == "deprecated setting")
        .map(|l| (l["setting"].as_str().unwrap().to_string(), l["instead"].as_str().unwrap().to_string()))
        .collect();
    assert!(warned.contains(&(
        "CLIENT_TELEMETRY_DEDUP_WINDOW_MS".into(),
        "renamed: use CLIENT_TELEMETRY_RATE_LIMIT_DEDUP_WINDOW_MS".into()
    )));
    assert!(warned.contains(&(
        "CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS".into(),
        "renamed: use CLIENT_TELEMETRY_ALLOWED_ORIGINS".into()
    )));
    let (code, _, err) = run(
        &["check-config"],
        &[("CLIENT_TELEMETRY_REDIS_TIMEOUT_MS", "40"), ("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS", "50")],
    );
    assert_eq!(code, 2, "both spellings, different values");
    assert!(err.contains("CLIENT_TELEMETRY_REDIS_TIMEOUT_MS"), "{err}");
    assert!(err.contains("CLIENT_TELEMETRY_RATE_LIMIT_REDIS_TIMEOUT_MS"), "{err}");
}

/// The block between the markers in docs/configuration.md.
fn documented_reference() -> String {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/configuration.md")).unwrap();
    let begin = "<!-- settings-reference:begin -->\n";
    let start = doc.find(begin).expect("begin marker") + begin.len();
    let end = doc.find("<!-- settings-reference:end -->").expect("end marker");
    doc[start..end].to_string()
}

#[test]
fn the_documented_reference_is_the_one_the_code_declares() {
    let (code, generated, _) = run(&["check-config", "--reference"], &[]);
    assert_eq!(code, 0);
    assert!(
        documented_reference() == generated,
        "docs/configuration.md is out of date: replace its settings-reference block with the output of \
         `cargo run -q -- check-config --reference`"
    );
    // Every current setting is in it with its default (the deprecated ones are marked).
    let (_, out, _) = run(&["check-config"], &[]);
    for (name, default) in effective(&out) {
        let shown = if default.is_empty() { "none".to_string() } else { format!("`{default}`") };
        let row = format!("| `{name}` | {shown} |");
        let forwarding_alias = name.starts_with("OTEL_") || name.contains("_OTLP_");
        assert!(generated.contains(&row) || forwarding_alias, "{row} missing from the reference");
    }
}

/// The variables a `KEY=value` file sets (comments and blank lines skipped).
fn env_file(path: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.split_once('=').unwrap_or_else(|| panic!("{path}: not NAME=value: {l}"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

#[test]
fn the_kubernetes_settings_are_known_current_and_valid() {
    let mut vars = env_file("deploy/k8s/base/config.env");
    vars.extend(env_file("deploy/k8s/base/secrets.env"));
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (code, out, err) = run(&["check-config"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "deprecated names in deploy/k8s/base: {err}");
    let settings = effective(&out);
    for (name, value) in &vars {
        if name == "CLIENT_TELEMETRY_RATE_LIMIT_REDIS_URL" {
            continue; // shown with its password redacted
        }
        assert_eq!(settings.get(name), Some(value), "{name} as check-config reads it");
    }
}

/// `cargo run` and `cargo test` hand the process every variable the build script sets: none of them
/// may look like one of our settings (an unknown setting stops start-up).
#[test]
fn the_environment_cargo_runs_the_binary_in_is_a_valid_configuration() {
    let out = Command::new(BIN).arg("check-config").output().expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}
