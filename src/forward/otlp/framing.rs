//! Framing: encoded records into one request body.

use std::{collections::HashMap, io::Write, sync::Arc};

use bytes::Bytes;
use flate2::{Compression, write::GzEncoder};
use opentelemetry_proto::tonic::{
    common::v1::{InstrumentationScope, KeyValue},
    resource::v1::Resource,
};
use prost::{Message, encoding};

use super::{
    Record,
    mapping::{key_value, log_record, string},
};
use crate::{event::Event, forward::settings::Protocol};

/// Encodes records on the request path and frames batches of them into request bodies: the same
/// resource on each, one `scopeLogs` per event scope.
///
/// The generated types encode each record; only the three envelopes around the records
/// (`ExportLogsServiceRequest` → `ResourceLogs` → `ScopeLogs`) are framed here, from encoded parts, so
/// an export copies bytes instead of building and re-measuring a tree of owned messages.
pub struct Encoder {
    /// The `Resource` message, encoded once.
    resource: Vec<u8>,
    protocol: Protocol,
    gzip: bool,
}

/// Field numbers of the envelopes (opentelemetry/proto/collector/logs/v1 and logs/v1).
const REQUEST_RESOURCE_LOGS: u32 = 1;
const RESOURCE_LOGS_RESOURCE: u32 = 1;
const RESOURCE_LOGS_SCOPE_LOGS: u32 = 2;
const SCOPE_LOGS_SCOPE: u32 = 1;
const SCOPE_LOGS_LOG_RECORDS: u32 = 2;

impl Encoder {
    pub fn new(resource_attributes: &[(String, String)], protocol: Protocol, gzip: bool) -> Self {
        let mut attributes: Vec<KeyValue> =
            resource_attributes.iter().map(|(k, v)| key_value(k.clone(), string(v))).collect();
        attributes.push(key_value("telemetry.sdk.name".into(), string(env!("CARGO_PKG_NAME"))));
        attributes.push(key_value("telemetry.sdk.version".into(), string(env!("CARGO_PKG_VERSION"))));
        let resource = Resource { attributes, ..Default::default() };
        Self { resource: encode_message(&resource, protocol), protocol, gzip }
    }

    pub fn content_type(&self) -> &'static str {
        match self.protocol {
            Protocol::Json => "application/json",
            Protocol::Protobuf => "application/x-protobuf",
        }
    }

    pub fn gzip(&self) -> bool {
        self.gzip
    }

    /// A request's events as records, encoded into one buffer that their `log` slices share.
    pub fn records(&self, events: &[Event<'_>], observed_time_unix_nano: u64) -> Vec<Record> {
        let mut buffer = Vec::with_capacity(events.len() * 512);
        let mut ends = Vec::with_capacity(events.len());
        for event in events {
            let log = log_record(event, observed_time_unix_nano);
            match self.protocol {
                Protocol::Json => serde_json::to_writer(&mut buffer, &log).expect("OTLP messages serialise to JSON"),
                Protocol::Protobuf => log.encode(&mut buffer).expect("a Vec grows as needed"),
            }
            ends.push(buffer.len());
        }
        let buffer = Bytes::from(buffer);
        let mut scope: Option<Arc<str>> = None;
        let mut start = 0;
        events
            .iter()
            .zip(ends)
            .map(|(event, end)| {
                let scope = match &scope {
                    Some(same) if **same == *event.scope => same.clone(),
                    _ => scope.insert(Arc::from(&*event.scope)).clone(),
                };
                let log = buffer.slice(start..end);
                start = end;
                Record { scope, log }
            })
            .collect()
    }

    /// The body of one export. Encoded once: retries send the same bytes.
    pub fn encode(&self, batch: &[Record]) -> Bytes {
        let mut scopes: Vec<(&str, Vec<&[u8]>)> = Vec::new();
        let mut by_scope: HashMap<&str, usize> = HashMap::new();
        for record in batch {
            let index = *by_scope.entry(&record.scope).or_insert_with(|| {
                scopes.push((&record.scope, Vec::new()));
                scopes.len() - 1
            });
            scopes[index].1.push(&record.log);
        }
        let scopes: Vec<(Vec<u8>, Vec<&[u8]>)> = scopes
            .into_iter()
            .map(|(name, logs)| {
                let scope = InstrumentationScope { name: name.to_string(), ..Default::default() };
                (encode_message(&scope, self.protocol), logs)
            })
            .collect();
        let body = match self.protocol {
            Protocol::Json => self.json_body(&scopes),
            Protocol::Protobuf => self.protobuf_body(&scopes),
        };
        if !self.gzip {
            return body.into();
        }
        // Fast compression: most of the gain for a fraction of the CPU, on the ingest machine.
        let mut gzip = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
        gzip.write_all(&body).expect("writing to memory cannot fail");
        gzip.finish().expect("writing to memory cannot fail").into()
    }

    fn protobuf_body(&self, scopes: &[(Vec<u8>, Vec<&[u8]>)]) -> Vec<u8> {
        let scope_logs_len = |(scope, logs): &(Vec<u8>, Vec<&[u8]>)| {
            field_len(SCOPE_LOGS_SCOPE, scope.len())
                + logs.iter().map(|log| field_len(SCOPE_LOGS_LOG_RECORDS, log.len())).sum::<usize>()
        };
        let resource_logs_len = field_len(RESOURCE_LOGS_RESOURCE, self.resource.len())
            + scopes.iter().map(|s| field_len(RESOURCE_LOGS_SCOPE_LOGS, scope_logs_len(s))).sum::<usize>();
        let mut body = Vec::with_capacity(field_len(REQUEST_RESOURCE_LOGS, resource_logs_len));
        field_header(REQUEST_RESOURCE_LOGS, resource_logs_len, &mut body);
        field_header(RESOURCE_LOGS_RESOURCE, self.resource.len(), &mut body);
        body.extend_from_slice(&self.resource);
        for scope_logs in scopes {
            field_header(RESOURCE_LOGS_SCOPE_LOGS, scope_logs_len(scope_logs), &mut body);
            let (scope, logs) = scope_logs;
            field_header(SCOPE_LOGS_SCOPE, scope.len(), &mut body);
            body.extend_from_slice(scope);
            for log in logs {
                field_header(SCOPE_LOGS_LOG_RECORDS, log.len(), &mut body);
                body.extend_from_slice(log);
            }
        }
        body
    }

    fn json_body(&self, scopes: &[(Vec<u8>, Vec<&[u8]>)]) -> Vec<u8> {
        let logs_len: usize = scopes.iter().flat_map(|(_, logs)| logs).map(|log| log.len() + 1).sum();
        let mut body = Vec::with_capacity(self.resource.len() + logs_len + 64 * (scopes.len() + 1));
        body.extend_from_slice(br#"{"resourceLogs":[{"resource":"#);
        body.extend_from_slice(&self.resource);
        body.extend_from_slice(br#","scopeLogs":["#);
        for (i, (scope, logs)) in scopes.iter().enumerate() {
            body.extend_from_slice(if i == 0 { br#"{"scope":"# } else { br#",{"scope":"# });
            body.extend_from_slice(scope);
            body.extend_from_slice(br#","logRecords":["#);
            for (j, log) in logs.iter().enumerate() {
                if j > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(log);
            }
            body.extend_from_slice(b"]}");
        }
        body.extend_from_slice(b"]}]}");
        body
    }
}

fn encode_message<M: Message + serde::Serialize>(message: &M, protocol: Protocol) -> Vec<u8> {
    match protocol {
        Protocol::Json => serde_json::to_vec(message).expect("OTLP messages serialise to JSON"),
        Protocol::Protobuf => message.encode_to_vec(),
    }
}

/// Length of a length-delimited field: key, length, then the bytes.
fn field_len(tag: u32, len: usize) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

fn field_header(tag: u32, len: usize, body: &mut Vec<u8>) {
    encoding::encode_key(tag, encoding::WireType::LengthDelimited, body);
    encoding::encode_varint(len as u64, body);
}
