//! An OpenTelemetry Collector stand-in: a plain std HTTP/1.1 server on a loopback port that records
//! every request and answers as the test says, switchable while the test runs. Deliberately not
//! actix or awc, so it shares no code with what it checks.

use std::{
    collections::{HashMap, VecDeque},
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse},
    logs::v1::LogRecord,
};
use prost::Message;

/// How the stand-in answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    /// 200 with `partialSuccess.rejectedLogRecords` set.
    Partial(i64),
    Status(u16),
    /// The status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// Reads the request, never answers; closes when the collector is dropped (or after 60 s).
    Hang,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub answer: Answer,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as it was sent, gunzipped if it was gzipped.
    pub fn raw(&self) -> Vec<u8> {
        if self.header("content-encoding") != Some("gzip") {
            return self.body.clone();
        }
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&self.body[..]).read_to_end(&mut raw).expect("valid gzip");
        raw
    }

    pub fn is_protobuf(&self) -> bool {
        self.header("content-type") == Some("application/x-protobuf")
    }

    /// Decoded with the generated OTLP types, by `Content-Type`.
    pub fn request(&self) -> ExportLogsServiceRequest {
        let raw = self.raw();
        match self.header("content-type") {
            Some("application/x-protobuf") => ExportLogsServiceRequest::decode(&raw[..]).expect("valid protobuf"),
            Some("application/json") => serde_json::from_slice(&raw).expect("valid OTLP/JSON"),
            other => panic!("unexpected content-type {other:?}"),
        }
    }

    pub fn records(&self) -> Vec<LogRecord> {
        let request = self.request();
        request.resource_logs.into_iter().flat_map(|r| r.scope_logs).flat_map(|s| s.log_records).collect()
    }

    /// Records the collector took: all of a 200, less what a partial success refused.
    pub fn delivered(&self) -> usize {
        match self.answer {
            Answer::Ok => self.records().len(),
            Answer::Partial(rejected) => self.records().len() - rejected as usize,
            _ => 0,
        }
    }
}

#[derive(Default)]
struct State {
    /// Answers for the next requests, in order; then `cycle`, round-robin.
    script: VecDeque<Answer>,
    cycle: Vec<Answer>,
    turn: usize,
    received: Vec<Received>,
}

impl State {
    fn next_answer(&mut self) -> Answer {
        if let Some(answer) = self.script.pop_front() {
            return answer;
        }
        let answer = self.cycle[self.turn % self.cycle.len()];
        self.turn += 1;
        answer
    }
}

pub struct Collector {
    pub addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Collector {
    /// Answers 200 until told otherwise.
    pub fn start() -> Collector {
        Collector::start_with(None)
    }

    /// The same over TLS (rustls), with this server configuration (certificate, client verification).
    pub fn start_tls(config: Arc<rustls::ServerConfig>) -> Collector {
        Collector::start_with(Some(config))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State { cycle: vec![Answer::Ok], ..State::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let (accept_state, accept_stop, is_tls) = (state.clone(), stop.clone(), tls.is_some());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (state, stop) = (accept_state.clone(), accept_stop.clone());
                match &tls {
                    None => std::thread::spawn(move || serve(stream, &state, &stop)),
                    Some(config) => {
                        let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                        let stream = rustls::StreamOwned::new(connection, stream);
                        std::thread::spawn(move || serve(stream, &state, &stop))
                    }
                };
            }
        });
        Collector { addr, tls: is_tls, state, stop }
    }

    /// The full logs URL.
    pub fn endpoint(&self) -> String {
        format!("{}://{}/v1/logs", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// From now on, every request gets this answer.
    pub fn answer(&self, answer: Answer) {
        self.cycle(&[answer]);
    }

    /// From now on, requests get these answers in turn, round-robin.
    pub fn cycle(&self, answers: &[Answer]) {
        let mut state = self.state.lock().unwrap();
        state.script.clear();
        state.cycle = answers.to_vec();
        state.turn = 0;
    }

    /// The next requests get these answers, then the current cycle resumes.
    pub fn script(&self, answers: &[Answer]) {
        self.state.lock().unwrap().script.extend(answers);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn delivered(&self) -> usize {
        self.received().iter().map(Received::delivered).sum()
    }

    /// Every record of every request, in arrival order, whatever the answer.
    pub fn records(&self) -> Vec<LogRecord> {
        self.received().iter().flat_map(Received::records).collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

/// One connection: requests in turn (keep-alive), each recorded, then answered as the state says.
fn serve(stream: impl Read + Write, state: &Mutex<State>, stop: &AtomicBool) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).expect("a Content-Length");
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let protobuf = headers.get("content-type").map(String::as_str) == Some("application/x-protobuf");
        let answer = {
            let mut state = state.lock().unwrap();
            let answer = state.next_answer();
            state.received.push(Received { at: Instant::now(), path, headers, body, answer });
            answer
        };
        let (status, retry_after, rejected) = match answer {
            Answer::Ok => (200, None, None),
            Answer::Partial(rejected) => (200, None, Some(rejected)),
            Answer::Status(status) => (status, None, None),
            Answer::RetryAfter(status, seconds) => (status, Some(seconds), None),
            Answer::Hang => {
                let until = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
        };
        // The spec: a 200 carries an ExportLogsServiceResponse in the request's encoding; a JSON
        // one writes the 64-bit count as a string, as real collectors do.
        let (content_type, body) = match (status, protobuf) {
            (200, true) => {
                let partial_success = rejected.map(|rejected_log_records| ExportLogsPartialSuccess {
                    rejected_log_records,
                    error_message: "refused by the stand-in".into(),
                });
                ("application/x-protobuf", ExportLogsServiceResponse { partial_success }.encode_to_vec())
            }
            (200, false) => {
                let body = match rejected {
                    Some(n) => format!(
                        r#"{{"partialSuccess":{{"rejectedLogRecords":"{n}","errorMessage":"refused by the stand-in"}}}}"#
                    ),
                    None => "{}".to_string(),
                };
                ("application/json", body.into_bytes())
            }
            _ => ("application/json", format!(r#"{{"code":0,"message":"stand-in answered {status}"}}"#).into_bytes()),
        };
        let mut head =
            format!("HTTP/1.1 {status} Stand-in\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n", body.len());
        if let Some(seconds) = retry_after {
            head.push_str(&format!("Retry-After: {seconds}\r\n"));
        }
        head.push_str("\r\n");
        let writer = reader.get_mut();
        if writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(&body))
            .and_then(|()| writer.flush())
            .is_err()
        {
            return;
        }
    }
}
