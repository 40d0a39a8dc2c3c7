//! Test support: the real gateway binary on a loopback port, driven over HTTP.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod certs;
pub mod collector;
pub mod fleet;
pub mod load;
pub mod redis_topology;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_client-telemetry");
pub const INGEST: &str = "/api/client-telemetry";

/// A running gateway process. Killed when dropped.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    lines: Arc<Mutex<Vec<String>>>,
    /// Set once stdout reached end of file: every line the process wrote is in `lines`.
    stdout_closed: Arc<AtomicBool>,
    stderr: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// An HTTP answer, whatever its status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    /// The body as text (lossily, for a binary body).
    pub body: String,
    /// The body as received (protobuf answers).
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

impl Gateway {
    /// Starts the binary with only these variables (plus a loopback port), and waits until it listens.
    pub fn start(env: &[(&str, &str)]) -> Gateway {
        let mut command = Command::new(BIN);
        command.env_clear().env("CLIENT_TELEMETRY_BIND", "127.0.0.1:0").env("CLIENT_TELEMETRY_WORKERS", "2");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start gateway");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        let stdout_closed = Arc::new(AtomicBool::new(false));
        let closed = stdout_closed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(r#""msg":"listening""#) {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
            closed.store(true, Ordering::SeqCst);
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_sink = stderr.clone();
        let child_stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(child_stderr).lines().map_while(Result::ok) {
                err_sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let listening = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("gateway did not start; stderr: {}", stderr.lock().unwrap())
        });
        let listening: Value = serde_json::from_str(&listening).unwrap();
        let addr = listening["addr"].as_str().unwrap().parse().unwrap();
        let admin_addr = listening["admin_addr"].as_str().map(|a| a.parse().unwrap());
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
        Gateway { child, addr, admin_addr, lines, stdout_closed, stderr, agent }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr.unwrap_or(self.addr))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// POSTs a JSON body to the ingest route.
    pub fn post(&self, body: &str) -> Reply {
        self.post_with(&[("content-type", "application/json")], body)
    }

    pub fn post_with(&self, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut request = self.agent.post(&self.url(INGEST));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        reply(request.send_string(body))
    }

    pub fn post_bytes(&self, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut request = self.agent.post(&self.url(INGEST));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        reply(request.send_bytes(body))
    }

    /// POSTs bytes to `path` (any route) with these headers.
    pub fn post_path(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut request = self.agent.post(&self.url(path));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        reply(request.send_bytes(body))
    }

    /// POSTs a JSON body to any URL (e.g. the ingest route with a query string).
    pub fn post_to(&self, url: &str, body: &str) -> Reply {
        reply(self.agent.post(url).set("content-type", "application/json").send_string(body))
    }

    /// POSTs as client `ip` through a trusted proxy (needs CLIENT_TELEMETRY_TRUSTED_PROXIES=127.0.0.1).
    pub fn post_as(&self, ip: &str, body: &str) -> Reply {
        self.post_with(&[("content-type", "application/json"), ("x-forwarded-for", ip)], body)
    }

    pub fn get(&self, url: &str) -> Reply {
        reply(self.agent.get(url).call())
    }

    /// The value of one sample in /metrics, e.g. `client_telemetry_requests_total{route="native",status="204"}`; 0 if absent.
    pub fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.get(&self.admin_url("/metrics")).body, sample)
    }

    /// Every stdout line so far, parsed.
    pub fn log_lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    pub fn event_lines(&self) -> Vec<Value> {
        self.log_lines().into_iter().filter(|l| l["msg"] == "client event").collect()
    }

    /// Waits until `count` event lines have been written (logging is asynchronous).
    pub fn wait_for_events(&self, count: usize) -> Vec<Value> {
        wait_until(Duration::from_secs(10), || self.event_lines().len() >= count);
        self.event_lines()
    }

    /// After the process has exited: waits until everything it wrote to stdout has been read.
    pub fn wait_stdout_closed(&self) {
        let closed = wait_until(Duration::from_secs(10), || self.stdout_closed.load(Ordering::SeqCst));
        assert!(closed, "stdout still open 10 s after the exit");
    }

    /// Resident memory in MiB, from /proc/<pid>/status (`VmRSS`, or `VmHWM` for the peak).
    pub fn memory_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("the gateway runs");
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"));
        kib / 1024.0
    }

    /// The forwarding counters, from one scrape.
    pub fn otlp_counts(&self) -> OtlpCounts {
        let text = self.get(&self.admin_url("/metrics")).body;
        let value = |sample: &str| metric_value(&text, sample) as u64;
        let events = |result: &str| value(&format!("client_telemetry_otlp_events_total{{result=\"{result}\"}}"));
        OtlpCounts {
            accepted: ["info", "warn", "error"]
                .iter()
                .map(|level| value(&format!("client_telemetry_events_total{{app=\"\",level=\"{level}\"}}")))
                .sum(),
            exported: events("exported"),
            failed: events("failed"),
            dropped: events("dropped"),
            exports_ok: value("client_telemetry_otlp_exports_total{result=\"success\"}"),
            exports_failed: value("client_telemetry_otlp_exports_total{result=\"failure\"}"),
            queue_depth: value("client_telemetry_otlp_queue_depth"),
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "gateway still running after {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The forwarding counters of one scrape (`accepted` is `client_telemetry_events_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtlpCounts {
    pub accepted: u64,
    pub exported: u64,
    pub failed: u64,
    pub dropped: u64,
    pub exports_ok: u64,
    pub exports_failed: u64,
    pub queue_depth: u64,
}

impl OtlpCounts {
    /// Every accepted event has its outcome: the queue has drained.
    pub fn settled(&self) -> bool {
        self.exported + self.failed + self.dropped == self.accepted
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn reply(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("request failed: {e}"),
    };
    let headers = response
        .headers_names()
        .into_iter()
        .map(|name| {
            let value = response.all(&name).join(", ");
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    let status = response.status();
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut response.into_reader(), &mut raw);
    let body = String::from_utf8_lossy(&raw).into_owned();
    Reply { status, headers, body, raw }
}

pub fn metric_value(exposition: &str, sample: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// One valid event.
pub fn event(level: &str, message: &str) -> Value {
    json!({
        "level": level,
        "scope": "checkout-form",
        "sessionId": "session-abc123",
        "message": message,
        "timestamp": "2025-01-15T10:30:45.123Z",
        "requestId": "request-xyz789",
        "context": { "action": "button_click", "attempt": 2, "ratio": 0.5, "ok": true, "tags": ["a", "b"], "cart": { "items": 3 } }
    })
}

/// A batch body of `n` valid events.
pub fn batch(n: usize) -> String {
    json!({ "events": (0..n).map(|i| event("info", &format!("event {i}"))).collect::<Vec<_>>() }).to_string()
}

/// A free loopback port (for processes that cannot report theirs).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A raw HTTP/1.1 answer read off a socket.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// Reads one HTTP/1.1 response (headers, then a Content-Length body) from `stream`.
/// `None` when the server closed the connection (or sent nothing) before a full response.
pub fn read_raw_response(stream: &mut std::net::TcpStream) -> Option<RawReply> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(RawReply { status, headers, body: String::from_utf8_lossy(&body).to_string() })
}

/// True once the peer has closed the connection (a read returns 0 or fails), waiting at most `timeout`.
pub fn closed_by_peer(stream: &mut std::net::TcpStream, timeout: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// The head of a POST to the ingest route; `extra` lines end with `\r\n`.
pub fn post_head(extra: &str) -> String {
    format!("POST {INGEST} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}\r\n")
}

/// A redis-server of the test's own on a free loopback port, without persistence, so a restart
/// comes back empty, and with `DEBUG` allowed from loopback (`DEBUG SLEEP` stalls it). Tests kill,
/// pause, restart and flush it. Killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut server = RedisServer { child: None, port: free_port() };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed by these tests (apt-get install redis-server); scripts/test.sh checks it");
        self.child = Some(child);
        let answers = wait_until(Duration::from_secs(10), || {
            redis::Client::open(self.url()).and_then(|c| c.get_connection()).is_ok()
        });
        assert!(answers, "redis-server did not start on port {}", self.port);
    }

    /// SIGKILL: gone at once, connections reset.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: connections stay open, nothing answers, until `resume`.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        assert!(Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap().success());
    }

    pub fn connection(&self) -> redis::Connection {
        let connection = redis::Client::open(self.url()).unwrap().get_connection().unwrap();
        connection.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        connection
    }

    /// Runs one command, e.g. `redis.query(&["SCRIPT", "FLUSH"])`.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(&mut self.connection()).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// `INFO commandstats` as command -> calls (`evalsha`, `script|load`, …).
    pub fn command_calls(&self) -> HashMap<String, u64> {
        let info: String = self.query(&["INFO", "commandstats"]);
        info.lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?.parse().ok()?;
                Some((name.to_string(), calls))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill(); // SIGKILL ends a paused server too
    }
}
