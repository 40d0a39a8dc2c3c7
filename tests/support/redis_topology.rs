//! Real Redis topologies on loopback, from Debian's `redis-server`: a Cluster (primaries with one
//! replica each) and a primary with a replica behind three Sentinels. Each node runs in its own
//! temporary directory; every process is killed, and the directory removed, when dropped.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{free_port, wait_until};

/// One redis-server (or Sentinel) process.
pub struct Node {
    pub port: u16,
    child: Option<Child>,
}

impl Node {
    fn spawn(port: u16, args: &[String]) -> Node {
        let child =
            Command::new("redis-server").args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect(
                "redis-server is needed by these tests (apt-get install redis-server); scripts/test.sh checks it",
            );
        let node = Node { port, child: Some(child) };
        assert!(wait_until(Duration::from_secs(10), || node.try_query::<String>(&["PING"]).is_ok()), "port {port}");
        node
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: gone at once, connections reset.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn try_query<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
        connection.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(&mut connection)
    }

    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        self.try_query(args).unwrap_or_else(|e| panic!("{args:?} on {}: {e}", self.port))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh directory under the system's temporary one, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ct-{name}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn base_args(port: u16, dir: &TempDir) -> Vec<String> {
    ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", &dir.path("")]
        .map(String::from)
        .to_vec()
}

/// A Redis Cluster: `primaries` primaries, each with one replica; a primary that stops answering for
/// `NODE_TIMEOUT_MS` is failed over to its replica.
pub struct RedisCluster {
    pub nodes: Vec<Node>,
    _dir: TempDir,
}

pub const NODE_TIMEOUT_MS: u64 = 1000;

impl RedisCluster {
    pub fn start(primaries: usize) -> RedisCluster {
        let dir = TempDir::new("cluster");
        let nodes: Vec<Node> = (0..primaries * 2)
            .map(|_| {
                let port = free_port();
                let mut args = base_args(port, &dir);
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        // the bus port is chosen too: port + 10000 may be taken or out of range
                        "--cluster-port",
                        &free_port().to_string(),
                        "--cluster-config-file",
                        &dir.path(&format!("nodes-{port}.conf")),
                        "--cluster-node-timeout",
                        &NODE_TIMEOUT_MS.to_string(),
                        // a replica may take over however long since it last heard from its primary
                        "--cluster-replica-validity-factor",
                        "0",
                    ]
                    .map(String::from),
                );
                Node::spawn(port, &args)
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        create.args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let created = create.stdout(Stdio::null()).stderr(Stdio::null()).status().expect("redis-cli");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes, _dir: dir };
        let ready = wait_until(Duration::from_secs(20), || {
            cluster.nodes.iter().all(|node| {
                let info: String = node.try_query(&["CLUSTER", "INFO"]).unwrap_or_default();
                info.contains("cluster_state:ok") && info.contains(&format!("cluster_known_nodes:{}", primaries * 2))
            }) && cluster.replicas_in_sync() == primaries
        });
        assert!(ready, "the cluster did not become ready");
        cluster
    }

    /// The seed list the gateway is given (every node; any one would do).
    pub fn urls(&self) -> String {
        self.nodes.iter().map(Node::url).collect::<Vec<_>>().join(",")
    }

    fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    /// The port of the primary serving `slot`, as a running node sees it.
    pub fn primary_of_slot(&self, slot: u16) -> Option<u16> {
        let node = self.live().next()?;
        let slots: Vec<Vec<redis::Value>> = node.try_query(&["CLUSTER", "SLOTS"]).ok()?;
        slots.iter().find_map(|range| {
            let start: u16 = redis::from_redis_value(range[0].clone()).ok()?;
            let end: u16 = redis::from_redis_value(range[1].clone()).ok()?;
            let primary: Vec<redis::Value> = redis::from_redis_value(range[2].clone()).ok()?;
            let port: u16 = redis::from_redis_value(primary[1].clone()).ok()?;
            (start..=end).contains(&slot).then_some(port)
        })
    }

    /// Ports of the primaries holding slots.
    pub fn primary_ports(&self) -> Vec<u16> {
        let node = self.live().next().expect("a running node");
        let nodes: String = node.query(&["CLUSTER", "NODES"]);
        nodes
            .lines()
            .filter(|line| line.split_whitespace().nth(2).is_some_and(|flags| flags.contains("master")))
            .filter(|line| line.split_whitespace().count() > 8)
            .filter_map(|line| line.split_whitespace().nth(1)?.split(['@', ':']).nth(1)?.parse().ok())
            .collect()
    }

    pub fn node(&mut self, port: u16) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.port == port).expect("a node of this cluster")
    }

    /// Replicas whose link to their primary is up.
    fn replicas_in_sync(&self) -> usize {
        self.live()
            .filter(|node| {
                let info: String = node.try_query(&["INFO", "replication"]).unwrap_or_default();
                info.contains("role:slave") && info.contains("master_link_status:up")
            })
            .count()
    }

    /// Waits until `slot` is served by a primary other than `old`, and returns when that was seen.
    pub fn wait_for_failover(&self, slot: u16, old: u16, timeout: Duration) -> Option<Instant> {
        let promoted = wait_until(timeout, || self.primary_of_slot(slot).is_some_and(|port| port != old));
        promoted.then(Instant::now)
    }

    /// Keys stored on the node at `port`.
    pub fn keys_on(&self, port: u16) -> u64 {
        self.nodes.iter().find(|n| n.port == port).expect("node").query(&["DBSIZE"])
    }
}

/// A primary and a replica, watched by three Sentinels (quorum 2) that fail over after
/// `NODE_TIMEOUT_MS` without an answer.
pub struct RedisSentinel {
    pub primary: Node,
    pub replica: Node,
    pub sentinels: Vec<Node>,
    _dir: TempDir,
}

pub const MASTER_NAME: &str = "telemetry";

impl RedisSentinel {
    pub fn start() -> RedisSentinel {
        let dir = TempDir::new("sentinel");
        let primary_port = free_port();
        let primary = Node::spawn(primary_port, &base_args(primary_port, &dir));
        let replica_port = free_port();
        let mut args = base_args(replica_port, &dir);
        args.extend(["--replicaof", "127.0.0.1", &primary_port.to_string()].map(String::from));
        let replica = Node::spawn(replica_port, &args);
        let sentinels = (0..3)
            .map(|i| {
                let port = free_port();
                let config = dir.path(&format!("sentinel-{i}.conf"));
                let text = format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} {NODE_TIMEOUT_MS}\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\nsentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir.path("")
                );
                std::fs::write(&config, text).unwrap();
                Node::spawn(port, &[config, "--sentinel".into()])
            })
            .collect();
        let topology = RedisSentinel { primary, replica, sentinels, _dir: dir };
        // Sentinels find the replica and each other through hello messages (every 2 s).
        let ready = wait_until(Duration::from_secs(30), || {
            topology.sentinels.iter().all(|s| {
                let replicas: Vec<redis::Value> =
                    s.try_query(&["SENTINEL", "REPLICAS", MASTER_NAME]).unwrap_or_default();
                let others: Vec<redis::Value> =
                    s.try_query(&["SENTINEL", "SENTINELS", MASTER_NAME]).unwrap_or_default();
                replicas.len() == 1 && others.len() == 2
            }) && {
                let info: String = topology.replica.try_query(&["INFO", "replication"]).unwrap_or_default();
                info.contains("master_link_status:up")
            }
        });
        assert!(ready, "the Sentinels did not discover the topology");
        topology
    }

    pub fn sentinel_urls(&self) -> String {
        self.sentinels.iter().map(Node::url).collect::<Vec<_>>().join(",")
    }

    /// The primary's port, as the first running Sentinel names it.
    pub fn primary_port(&self) -> Option<u16> {
        let sentinel = self.sentinels.iter().find(|s| s.is_running())?;
        let (_, port): (String, u16) =
            sentinel.try_query(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]).ok()?;
        Some(port)
    }

    /// Waits until the Sentinels name the replica as primary and it has taken the role.
    pub fn wait_for_failover(&self, timeout: Duration) -> Option<Instant> {
        let promoted = wait_until(timeout, || {
            let role: String = self.replica.try_query(&["INFO", "replication"]).unwrap_or_default();
            self.primary_port() == Some(self.replica.port) && role.contains("role:master")
        });
        promoted.then(Instant::now)
    }
}

/// A redis-server that speaks only TLS, with the server certificate of `ca`; with `clients`, it
/// requires a client certificate from that CA too.
pub struct TlsRedis {
    pub port: u16,
    child: Child,
    certificates: redis::TlsCertificates,
}

impl TlsRedis {
    pub fn start(ca: &super::certs::TestCa, clients: bool) -> TlsRedis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--tls-cert-file", &ca.path("server.crt"), "--tls-key-file", &ca.path("server.key")])
            .args(["--tls-ca-cert-file", &ca.path("ca.crt")])
            .args(["--tls-auth-clients", if clients { "yes" } else { "no" }])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        let read = |file: &str| std::fs::read(ca.path(file)).unwrap();
        let certificates = redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: read("client.crt"),
                client_key: read("client.key"),
            }),
            root_cert: Some(read("ca.crt")),
        };
        let server = TlsRedis { port, child, certificates };
        assert!(wait_until(Duration::from_secs(10), || server.try_dbsize().is_ok()), "TLS redis on {port}");
        server
    }

    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    fn try_dbsize(&self) -> redis::RedisResult<u64> {
        let client = redis::Client::build_with_tls(self.url(), self.certificates.clone())?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
        redis::cmd("DBSIZE").query(&mut connection)
    }

    /// Keys stored, read over TLS with the test's own client certificate.
    pub fn dbsize(&self) -> u64 {
        self.try_dbsize().unwrap()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
