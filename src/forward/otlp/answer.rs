//! A collector's answer: how many records it refused.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;
use serde::Deserialize;

use crate::forward::settings::Protocol;

/// Log records a collector refused in a 200 answer (`partialSuccess.rejectedLogRecords`); an empty
/// or unreadable answer means none. The encoding is the answer's `Content-Type`, else the request's.
pub fn rejected_log_records(body: &[u8], content_type: Option<&str>, protocol: Protocol) -> u64 {
    let protobuf = match content_type {
        Some(t) if t.contains("protobuf") => true,
        Some(t) if t.contains("json") => false,
        _ => protocol == Protocol::Protobuf,
    };
    let rejected = if protobuf {
        ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_log_records)
    } else {
        // Not the generated type: it reads `rejectedLogRecords` only as a number, while collectors
        // write 64-bit integers as strings, as OTLP/JSON says.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Response {
            partial_success: Option<Partial>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Partial {
            #[serde(default)]
            rejected_log_records: Option<Int>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Int {
            Number(i64),
            Text(String),
        }
        let response: Option<Response> = serde_json::from_slice(body).ok();
        match response.and_then(|r| r.partial_success).and_then(|p| p.rejected_log_records) {
            Some(Int::Number(n)) => n,
            Some(Int::Text(s)) => s.parse().unwrap_or(0),
            None => 0,
        }
    };
    u64::try_from(rejected).unwrap_or(0)
}
