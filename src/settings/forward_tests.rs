//! Forwarding's variables and their precedence, through the whole loader (docs/forwarding.md).

use std::time::Duration;

use crate::{
    forward::{DEFAULT_SERVICE_NAME, ForwardSettings, Protocol},
    setting::Error as SettingsError,
    settings::Settings,
};

fn load(vars: &[(&str, &str)]) -> Result<Option<ForwardSettings>, SettingsError> {
    Settings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).map(|s| s.forward)
}

fn endpoint(vars: &[(&str, &str)]) -> String {
    load(vars).unwrap().expect("forwarding on").endpoint
}

#[test]
fn off_without_an_endpoint() {
    assert!(load(&[]).unwrap().is_none());
    assert!(load(&[("OTEL_SERVICE_NAME", "web"), ("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap().is_none());
}

#[test]
fn endpoint_precedence_seed_then_logs_then_base() {
    let seed = ("OTEL_COLLECTOR_ENDPOINT", "http://seed:4318/v1/logs");
    let logs = ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4318/custom");
    let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://base:4318/");
    assert_eq!(endpoint(&[seed, logs, base]), "http://seed:4318/v1/logs");
    assert_eq!(endpoint(&[logs, base]), "http://logs:4318/custom");
    assert_eq!(endpoint(&[base]), "https://base:4318/v1/logs");
    assert_eq!(endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/otlp")]), "http://c:4318/otlp/v1/logs");
}

#[test]
fn defaults_follow_the_seed_and_are_sized_for_a_replica_at_full_load() {
    let s = load(&[("OTEL_COLLECTOR_ENDPOINT", "http://c:4318/v1/logs")]).unwrap().unwrap();
    assert_eq!(s.protocol, Protocol::Protobuf, "the OTLP exporter specification's default");
    assert!(!s.gzip);
    assert_eq!(s.timeout, Duration::from_millis(5000));
    assert_eq!((s.queue_capacity, s.batch_size, s.batch_delay), (32_768, 2_048, Duration::from_secs(1)));
    assert_eq!(s.max_in_flight, 4);
    assert_eq!(s.resource, vec![("service.name".to_string(), DEFAULT_SERVICE_NAME.to_string())]);
    assert!(s.headers.0.is_empty());
}

#[test]
fn signal_specific_variables_win_over_general_ones() {
    let s = load(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "9000"),
        ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "7000"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-general=1"),
        ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-logs=2"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "100"),
        ("CLIENT_TELEMETRY_OTLP_QUEUE_CAPACITY", "300"),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "50"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "20"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!((s.protocol, s.gzip, s.timeout), (Protocol::Protobuf, true, Duration::from_secs(7)));
    assert_eq!(s.headers.0.len(), 1);
    assert_eq!(s.headers.0[0].0, "x-logs");
    assert_eq!((s.queue_capacity, s.batch_size, s.batch_delay), (300, 50, Duration::from_millis(20)));
    let s = load(&[
        ("OTEL_COLLECTOR_ENDPOINT", "http://c:4318/v1/logs"),
        ("OTEL_COLLECTOR_TIMEOUT_MS", "250"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "9000"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(s.timeout, Duration::from_millis(250));
}

#[test]
fn headers_and_resource_attributes_are_percent_decoded() {
    let s = load(&[
        ("OTEL_COLLECTOR_ENDPOINT", "http://c:4318/v1/logs"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr%3Dt%20x, x-tenant = acme"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=ignored,team=web%2Capp"),
        ("OTEL_SERVICE_NAME", "browser-gateway"),
    ])
    .unwrap()
    .unwrap();
    let headers: Vec<_> = s.headers.0.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap())).collect();
    assert_eq!(headers, [("api-key", "s3cr=t x"), ("x-tenant", "acme")]);
    let resource: Vec<_> = s.resource.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        resource,
        [("service.name", "browser-gateway"), ("deployment.environment", "prod"), ("team", "web,app")]
    );
    assert!(!format!("{s:?}").contains("s3cr"), "Debug must not show header values");
    let s = load(&[
        ("OTEL_COLLECTOR_ENDPOINT", "http://c:4318/v1/logs"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(s.resource[0].1, "from-attributes");
}

#[test]
fn errors_name_the_variable_and_never_echo_a_header_value() {
    let err = |vars: &[(&str, &str)]| load(vars).unwrap_err();
    let e = err(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]);
    assert_eq!((e.setting.as_str(), e.value.as_str()), ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"));
    let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
    assert_eq!((e.setting.as_str(), e.value.as_str()), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"));
    let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_COLLECTOR_TIMEOUT_MS", "soon")]);
    assert_eq!(e.setting, "OTEL_COLLECTOR_TIMEOUT_MS");
    let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]);
    assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_COMPRESSION");
    let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_EXPORTER_OTLP_HEADERS", "Bearer sk-123")]);
    assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_HEADERS");
    assert!(!e.to_string().contains("sk-123"), "{e}");
    let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_EXPORTER_OTLP_HEADERS", "a b=sk-123")]);
    assert!(!e.to_string().contains("sk-123"), "{e}");
    let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("OTEL_RESOURCE_ATTRIBUTES", "team")]);
    assert_eq!(e.setting, "OTEL_RESOURCE_ATTRIBUTES");
    let e = err(&[("OTEL_COLLECTOR_ENDPOINT", "http://c/v1/logs"), ("CLIENT_TELEMETRY_OTLP_BATCH_SIZE", "40000")]);
    assert_eq!(e.setting, "CLIENT_TELEMETRY_OTLP_BATCH_SIZE");
    assert!(e.reason.contains("queue capacity"), "{e}");
}

#[test]
fn the_configuration_file_can_set_them_too() {
    let dir = std::env::temp_dir().join(format!("ct-forward-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(&file, "otel_collector_endpoint = \"http://file:4318/v1/logs\"\notlp_batch_size = 64\n").unwrap();
    let path = file.to_str().unwrap();
    let s = load(&[("CLIENT_TELEMETRY_CONFIG", path)]).unwrap().unwrap();
    assert_eq!((s.endpoint.as_str(), s.batch_size), ("http://file:4318/v1/logs", 64));
    let s = load(&[("CLIENT_TELEMETRY_CONFIG", path), ("OTEL_COLLECTOR_ENDPOINT", "http://env:4318/v1/logs")])
        .unwrap()
        .unwrap();
    assert_eq!(s.endpoint, "http://env:4318/v1/logs");
}
