//! Side by side, for Redis Cluster and Sentinel: the `redis` crate's own multiplexed connections
//! (what the gateway uses: one per worker, shared and pipelined by its concurrent calls) against a
//! `deadpool-redis` pool (a connection checked out per call), running the limiter's own script.
//!
//! Starts its own servers on free loopback ports (a three-primary Cluster; a primary with one
//! Sentinel), then runs each variant in turn for `--seconds`, `--rounds` times, and prints the
//! median calls per second and client CPU per call. Results belong in docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release --example redis_pools -- --seconds 3 --rounds 3 --concurrency 64
//! ```

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{Script, aio::ConnectionLike};

const SCRIPT: &str = include_str!("../src/ratelimit/redis/sliding_window.lua");

fn main() {
    let arg = |name: &str, default: u64| {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (seconds, rounds, concurrency) = (arg("--seconds", 3), arg("--rounds", 3), arg("--concurrency", 64) as usize);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let cluster = Servers::cluster(3);
    let sentinel = Servers::sentinel();
    let cluster_urls = cluster.urls();
    let sentinel_urls = sentinel.urls();

    let variants = [
        ("cluster: redis ClusterConnection (gateway)", Kind::ClusterMultiplexed, &cluster_urls),
        ("cluster: deadpool-redis pool", Kind::ClusterPool, &cluster_urls),
        ("sentinel: redis MultiplexedConnection (gateway)", Kind::SentinelMultiplexed, &sentinel_urls),
        ("sentinel: deadpool-redis pool", Kind::SentinelPool, &sentinel_urls),
    ];
    let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, (name, kind, urls)) in variants.iter().enumerate() {
            let run = async {
                Runner::new(*kind, urls, concurrency).await.run(concurrency, Duration::from_secs(seconds)).await
            };
            let (rate, cpu_us) = runtime.block_on(run);
            eprintln!("round {}: {name}: {rate:.0} calls/s, {cpu_us:.1} client CPU-µs/call", round + 1);
            results[i].push((rate, cpu_us));
        }
    }
    println!("| variant | calls/s (median) | client CPU µs/call (median) |");
    println!("|---|---|---|");
    for ((name, _, _), runs) in variants.iter().zip(&results) {
        let median = |f: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!("| {name} | {:.0} | {:.1} |", median(|r| r.0), median(|r| r.1));
    }
}

#[derive(Clone, Copy)]
enum Kind {
    ClusterMultiplexed,
    ClusterPool,
    SentinelMultiplexed,
    SentinelPool,
}

/// One way of reaching Redis.
enum Runner {
    Cluster(redis::cluster_async::ClusterConnection),
    ClusterPool(deadpool_redis::cluster::Pool),
    Sentinel(redis::aio::MultiplexedConnection),
    SentinelPool(deadpool_redis::sentinel::Pool),
}

impl Runner {
    async fn new(kind: Kind, urls: &[String], size: usize) -> Runner {
        match kind {
            Kind::ClusterMultiplexed => {
                let client = redis::cluster::ClusterClient::new(urls.to_vec()).unwrap();
                Runner::Cluster(client.get_async_connection().await.unwrap())
            }
            Kind::ClusterPool => {
                let mut config = deadpool_redis::cluster::Config::from_urls(urls.to_vec());
                config.pool = Some(deadpool_redis::PoolConfig::new(size));
                Runner::ClusterPool(config.create_pool(Some(deadpool_redis::Runtime::Tokio1)).unwrap())
            }
            Kind::SentinelMultiplexed => {
                let mut client = redis::sentinel::SentinelClient::build(
                    urls.to_vec(),
                    MASTER,
                    None,
                    redis::sentinel::SentinelServerType::Master,
                )
                .unwrap();
                Runner::Sentinel(client.get_async_connection().await.unwrap())
            }
            Kind::SentinelPool => {
                let mut config = deadpool_redis::sentinel::Config::from_urls(
                    urls.to_vec(),
                    MASTER.to_string(),
                    deadpool_redis::sentinel::SentinelServerType::Master,
                );
                config.pool = Some(deadpool_redis::PoolConfig::new(size));
                Runner::SentinelPool(config.create_pool(Some(deadpool_redis::Runtime::Tokio1)).unwrap())
            }
        }
    }

    /// `concurrency` tasks calling the script as fast as they can for `duration`, on this thread
    /// (as a gateway worker does); calls per second and this process's CPU per call.
    async fn run(self, concurrency: usize, duration: Duration) -> (f64, f64) {
        let runner = Arc::new(self);
        let calls = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Script::new(SCRIPT);
        // Load the script everywhere first, so NOSCRIPT is not what is measured.
        runner.call(&script, 0).await;
        let (cpu_start, started) = (cpu_time(), Instant::now());
        let local = tokio::task::LocalSet::new();
        for task in 0..concurrency {
            let (runner, calls, stop, script) = (runner.clone(), calls.clone(), stop.clone(), script.clone());
            local.spawn_local(async move {
                let mut n = task as u64;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    runner.call(&script, n % 100_000).await;
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        local
            .run_until(async {
                tokio::time::sleep(duration).await;
                stop.store(true, Ordering::Relaxed);
            })
            .await;
        local.await;
        let (elapsed, cpu) = (started.elapsed(), cpu_time() - cpu_start);
        let calls = calls.load(Ordering::Relaxed) as f64;
        (calls / elapsed.as_secs_f64(), cpu.as_secs_f64() * 1e6 / calls)
    }

    /// One limiter decision for client `n`: its key, as the gateway names it, and a limit it never reaches.
    async fn call(&self, script: &Script, n: u64) {
        let mut invocation = script.prepare_invoke();
        invocation.key(format!("bench:rl:v2:{{ip:{n}}}")).arg(0).arg(60_000_000u64).arg(1_000_000u64).arg(1_000_000u64);
        let result: redis::RedisResult<redis::Value> = match self {
            Runner::Cluster(connection) => invoke(&invocation, &mut connection.clone()).await,
            Runner::ClusterPool(pool) => invoke(&invocation, &mut pool.get().await.unwrap()).await,
            Runner::Sentinel(connection) => invoke(&invocation, &mut connection.clone()).await,
            Runner::SentinelPool(pool) => invoke(&invocation, &mut pool.get().await.unwrap()).await,
        };
        result.expect("the script answers");
    }
}

async fn invoke<C: ConnectionLike + Send>(
    invocation: &redis::ScriptInvocation<'_>,
    connection: &mut C,
) -> redis::RedisResult<redis::Value> {
    invocation.invoke_async(connection).await
}

/// This process's user + system CPU time.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

const MASTER: &str = "bench";

/// redis-server processes of this run, killed when dropped.
struct Servers {
    children: Vec<Child>,
    ports: Vec<u16>,
    sentinel_port: Option<u16>,
    dir: std::path::PathBuf,
}

impl Servers {
    fn cluster(primaries: usize) -> Servers {
        let mut servers = Servers::new("cluster");
        for _ in 0..primaries {
            servers.redis(&["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"]);
        }
        let nodes: Vec<String> = servers.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success(), "cluster create");
        let ok = |port: u16| {
            let out = Command::new("redis-cli").args(["-p", &port.to_string(), "cluster", "info"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !servers.ports.iter().all(|p| ok(*p)) {
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        servers
    }

    fn sentinel() -> Servers {
        let mut servers = Servers::new("sentinel");
        let primary = servers.redis(&[]);
        let port = free_port();
        let conf = servers.dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor {MASTER} 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n"
            ),
        )
        .unwrap();
        let child = Command::new("redis-server").arg(&conf).arg("--sentinel").stdout(Stdio::null()).spawn().unwrap();
        servers.children.push(child);
        wait_for_port(port);
        servers.sentinel_port = Some(port);
        servers
    }

    fn new(name: &str) -> Servers {
        let dir = std::env::temp_dir().join(format!("redis-pools-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Servers { children: Vec::new(), ports: Vec::new(), sentinel_port: None, dir }
    }

    fn redis(&mut self, extra: &[&str]) -> u16 {
        let port = free_port();
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", dir.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server)");
        self.children.push(child);
        self.ports.push(port);
        wait_for_port(port);
        port
    }

    fn urls(&self) -> Vec<String> {
        match self.sentinel_port {
            Some(port) => vec![format!("redis://127.0.0.1:{port}")],
            None => self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect(),
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(20));
    }
}
