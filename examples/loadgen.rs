//! Open-loop load generator for the benchmark: requests leave at a fixed arrival rate whatever the
//! server's latency, and each latency is measured from the request's *intended* send time, so
//! queueing delay is counted instead of hidden (no coordinated omission, as wrk2 and `oha` with
//! latency correction do).
//!
//! Each of `--connections` keep-alive connections runs on its own thread with its own schedule
//! (`rate / connections` requests/s, offsets spread over one interval). A connection that falls
//! behind sends its next request as soon as the last answer is in, and that request's latency still
//! counts from when it should have left. The timer's slack counts as latency too.
//!
//! Requests are the browser client's: `POST` of the body file as `text/plain`, a browser
//! User-Agent, many client addresses through `X-Forwarded-For` (the gateway must trust 127.0.0.1),
//! and optionally `?session=…&batch=…` with a new batch id each time.
//!
//! Prints one line, `BENCH requests=… duration_us=… errors_status=… errors_connect=… p50_us=…
//! p99_us=… p999_us=… late=…` (`late`: requests sent more than 1 ms after their intended time),
//! the same summary as the benchmark's wrk script.
//!
//! `cargo run --release --example loadgen -- --url http://127.0.0.1:8080/api/client-telemetry --rate 5000 --body body.json`

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// http://host:port/path (plain HTTP)
    #[arg(long)]
    url: String,
    /// requests per second, all connections together
    #[arg(long)]
    rate: f64,
    /// seconds
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// the request body (sent as is)
    #[arg(long)]
    body: PathBuf,
    /// distinct client addresses, round robin
    #[arg(long, default_value_t = 10_000)]
    clients: u32,
    /// a session per client and a new batch id per request in the query string
    #[arg(long)]
    ids: bool,
}

const USER_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) \
                          Chrome/131.0.0.0 Safari/537.36";

struct Target {
    addr: String,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> Target {
    let rest = url.strip_prefix("http://").expect("--url must start with http://");
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    Target { addr: host.to_string(), host: host.to_string(), path }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors_status: u64,
    errors_connect: u64,
    late: u64,
}

fn main() {
    let args = Args::parse();
    let target = Arc::new(parse_url(&args.url));
    let body: Arc<[u8]> = std::fs::read(&args.body).expect("reading --body").into();
    let connections = args.connections.max(1);
    let interval = Duration::from_secs_f64(connections as f64 / args.rate);
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(args.duration);
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let (target, body) = (target.clone(), body.clone());
            let (clients, ids) = (args.clients.max(1), args.ids);
            // Connections' schedules interleave, so arrivals are evenly spaced overall.
            let first = start + interval.mul_f64(c as f64 / connections as f64);
            thread::spawn(move || {
                connection(&target, &body, first, interval, end, |n| (n * connections as u64 + c as u64, clients, ids))
            })
        })
        .collect();
    let mut all = Tally::default();
    for t in threads {
        let t = t.join().expect("connection thread");
        all.latencies_us.extend(t.latencies_us);
        all.errors_status += t.errors_status;
        all.errors_connect += t.errors_connect;
        all.late += t.late;
    }
    all.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let l = &all.latencies_us;
        if l.is_empty() { 0 } else { l[((l.len() as f64 * p / 100.0).ceil() as usize).clamp(1, l.len()) - 1] }
    };
    println!(
        "BENCH requests={} duration_us={} errors_status={} errors_connect={} p50_us={} p99_us={} p999_us={} late={}",
        all.latencies_us.len(),
        (end - start).as_micros(),
        all.errors_status,
        all.errors_connect,
        pct(50.0),
        pct(99.0),
        pct(99.9),
        all.late
    );
}

/// One connection's schedule: request `n` is due at `first + n * interval`.
fn connection(
    target: &Target,
    body: &[u8],
    first: Instant,
    interval: Duration,
    end: Instant,
    id: impl Fn(u64) -> (u64, u32, bool),
) -> Tally {
    let mut tally = Tally::default();
    let mut stream: Option<Conn> = None;
    let mut request = Vec::with_capacity(body.len() + 512);
    for n in 0u64.. {
        let due = first + interval.mul_f64(n as f64);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        } else if now - due > Duration::from_millis(1) {
            tally.late += 1;
        }
        let (seq, clients, ids) = id(n);
        build_request(&mut request, target, body, seq, clients, ids);
        let conn = match stream.take() {
            Some(conn) => conn,
            None => match Conn::open(&target.addr) {
                Ok(conn) => conn,
                Err(_) => {
                    tally.errors_connect += 1;
                    continue;
                }
            },
        };
        match conn.exchange(&request) {
            Ok((conn, status, keep_alive)) => {
                tally.latencies_us.push(due.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !(200..300).contains(&status) {
                    tally.errors_status += 1;
                }
                if keep_alive {
                    stream = Some(conn);
                }
            }
            Err(_) => tally.errors_connect += 1,
        }
    }
    tally
}

fn build_request(out: &mut Vec<u8>, target: &Target, body: &[u8], seq: u64, clients: u32, ids: bool) {
    let client = (seq % clients as u64) as u32;
    let [_, a, b, c] = client.to_be_bytes();
    out.clear();
    write!(out, "POST {}", target.path).unwrap();
    if ids {
        write!(out, "?session=s-{client}&batch=b-{seq:x}-{:x}", std::process::id()).unwrap();
    }
    write!(
        out,
        " HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         X-Forwarded-For: 10.{a}.{b}.{c}\r\nContent-Length: {}\r\n\r\n",
        target.host,
        body.len()
    )
    .unwrap();
    out.extend_from_slice(body);
}

/// A keep-alive HTTP/1.1 connection: one request at a time, answers framed by Content-Length.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self { reader: BufReader::new(stream) })
    }

    /// Sends the request, reads the whole answer: (status, whether the connection stays open).
    fn exchange(mut self, request: &[u8]) -> std::io::Result<(Self, u16, bool)> {
        self.reader.get_mut().write_all(request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let (mut length, mut keep_alive) = (0usize, true);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(bad());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').ok_or_else(bad)?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(|_| bad())?;
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(std::io::Error::other("chunked answers are not supported"));
            }
        }
        let mut skip = vec![0; length];
        self.reader.read_exact(&mut skip)?;
        Ok((self, status, keep_alive))
    }
}

fn bad() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP answer")
}
