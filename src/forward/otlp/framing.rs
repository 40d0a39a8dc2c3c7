//! Framing: encoded records into one request body.

use std::{collections::HashMap, io::Write, sync::Arc};

use bytes::Bytes;
use flate2::{Compression, write::GzEncoder};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use prost::{Message, encoding};

use super::{
    Record,
    mapping::{log_record, resource},
    protobuf::{SharedAttributes, encode_log_record},
};
use crate::{
    event::{Event, Origin},
    forward::settings::Protocol,
};

/// Encodes records on the request path and frames batches of them into request bodies: one
/// `resourceLogs` per distinct resource (the app, browser and SDK of a request), and in each one
/// `scopeLogs` per event scope.
///
/// The generated types encode each record and resource; only the three envelopes around them
/// (`ExportLogsServiceRequest` → `ResourceLogs` → `ScopeLogs`) are framed here, from encoded parts, so
/// an export copies bytes instead of building and re-measuring a tree of owned messages.
pub struct Encoder {
    /// `service.name` first, then `OTEL_RESOURCE_ATTRIBUTES`: the base of every resource.
    base: Vec<(String, String)>,
    protocol: Protocol,
    gzip: bool,
}

thread_local! {
    /// Where a request's records are encoded (see `Encoder::records`).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One scope's encoded `InstrumentationScope` and its records.
type ScopeGroup<'b> = (Vec<u8>, Vec<&'b [u8]>);
/// One resource's encoded `Resource` and its scopes.
type ResourceGroup<'b> = (&'b [u8], Vec<ScopeGroup<'b>>);
/// Records grouped for one body: by resource, then by scope, in order of first appearance.
type Grouped<'b> = Vec<ResourceGroup<'b>>;
/// The same, while grouping: scopes by name.
type Grouping<'b> = Vec<(&'b [u8], Vec<(&'b str, Vec<&'b [u8]>)>)>;

/// Field numbers of the envelopes (opentelemetry/proto/collector/logs/v1 and logs/v1).
const REQUEST_RESOURCE_LOGS: u32 = 1;
const RESOURCE_LOGS_RESOURCE: u32 = 1;
const RESOURCE_LOGS_SCOPE_LOGS: u32 = 2;
const SCOPE_LOGS_SCOPE: u32 = 1;
const SCOPE_LOGS_LOG_RECORDS: u32 = 2;

impl Encoder {
    pub fn new(resource_attributes: &[(String, String)], protocol: Protocol, gzip: bool) -> Self {
        Self { base: resource_attributes.to_vec(), protocol, gzip }
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

    /// A request's events as records, encoded into one buffer that their `log` slices share, with
    /// the request's resource encoded once.
    pub fn records(&self, origin: &Origin<'_>, events: &[Event<'_>], observed_time_unix_nano: u64) -> Vec<Record> {
        let resource: Arc<[u8]> = encode_message(&resource(&self.base, origin), self.protocol).into();
        let mut ends = Vec::with_capacity(events.len());
        // Encoded into a buffer the thread keeps, then copied at its exact size: the records wait in
        // the queue, and a buffer grown by doubling would keep up to half of it unused meanwhile.
        let buffer = SCRATCH.with_borrow_mut(|buffer| {
            buffer.clear();
            match self.protocol {
                Protocol::Json => {
                    for event in events {
                        let log = log_record(origin, event, observed_time_unix_nano);
                        serde_json::to_writer(&mut *buffer, &log).expect("OTLP messages serialise to JSON");
                        ends.push(buffer.len());
                    }
                }
                Protocol::Protobuf => {
                    let shared = SharedAttributes::new(origin);
                    for event in events {
                        encode_log_record(&shared, event, observed_time_unix_nano, buffer);
                        ends.push(buffer.len());
                    }
                }
            }
            Bytes::copy_from_slice(buffer)
        });
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
                Record { resource: resource.clone(), scope, log }
            })
            .collect()
    }

    /// The body of one export. Encoded once: retries send the same bytes.
    pub fn encode(&self, batch: &[Record]) -> Bytes {
        let mut groups: Grouping = Vec::new();
        let mut by_key: HashMap<(&[u8], &str), (usize, usize)> = HashMap::new();
        for record in batch {
            let (r, s) = *by_key.entry((&record.resource, &record.scope)).or_insert_with(|| {
                let r = match groups.iter().position(|(resource, _)| **resource == *record.resource) {
                    Some(r) => r,
                    None => {
                        groups.push((&record.resource, Vec::new()));
                        groups.len() - 1
                    }
                };
                groups[r].1.push((&record.scope, Vec::new()));
                (r, groups[r].1.len() - 1)
            });
            groups[r].1[s].1.push(&record.log);
        }
        let grouped: Grouped = groups
            .into_iter()
            .map(|(resource, scopes)| {
                let scopes = scopes
                    .into_iter()
                    .map(|(name, logs)| {
                        let scope = InstrumentationScope { name: name.to_string(), ..Default::default() };
                        (encode_message(&scope, self.protocol), logs)
                    })
                    .collect();
                (resource, scopes)
            })
            .collect();
        let body = match self.protocol {
            Protocol::Json => json_body(&grouped),
            Protocol::Protobuf => protobuf_body(&grouped),
        };
        if !self.gzip {
            return body.into();
        }
        // Fast compression: most of the gain for a fraction of the CPU, on the ingest machine.
        let mut gzip = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
        gzip.write_all(&body).expect("writing to memory cannot fail");
        gzip.finish().expect("writing to memory cannot fail").into()
    }
}

fn protobuf_body(groups: &Grouped) -> Vec<u8> {
    let scope_logs_len = |(scope, logs): &ScopeGroup| {
        field_len(SCOPE_LOGS_SCOPE, scope.len())
            + logs.iter().map(|log| field_len(SCOPE_LOGS_LOG_RECORDS, log.len())).sum::<usize>()
    };
    let resource_logs_len = |(resource, scopes): &ResourceGroup| {
        field_len(RESOURCE_LOGS_RESOURCE, resource.len())
            + scopes.iter().map(|s| field_len(RESOURCE_LOGS_SCOPE_LOGS, scope_logs_len(s))).sum::<usize>()
    };
    let mut body =
        Vec::with_capacity(groups.iter().map(|g| field_len(REQUEST_RESOURCE_LOGS, resource_logs_len(g))).sum());
    for group in groups {
        field_header(REQUEST_RESOURCE_LOGS, resource_logs_len(group), &mut body);
        let (resource, scopes) = group;
        field_header(RESOURCE_LOGS_RESOURCE, resource.len(), &mut body);
        body.extend_from_slice(resource);
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
    }
    body
}

fn json_body(groups: &Grouped) -> Vec<u8> {
    let len: usize = groups
        .iter()
        .map(|(resource, scopes)| {
            resource.len() + scopes.iter().flat_map(|(_, logs)| logs).map(|log| log.len() + 1).sum::<usize>()
        })
        .sum();
    let scope_count: usize = groups.iter().map(|(_, scopes)| scopes.len() + 1).sum();
    let mut body = Vec::with_capacity(len + 64 * scope_count + 32);
    body.extend_from_slice(br#"{"resourceLogs":["#);
    for (r, (resource, scopes)) in groups.iter().enumerate() {
        body.extend_from_slice(if r == 0 { br#"{"resource":"# } else { br#",{"resource":"# });
        body.extend_from_slice(resource);
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
        body.extend_from_slice(b"]}");
    }
    body.extend_from_slice(b"]}");
    body
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
