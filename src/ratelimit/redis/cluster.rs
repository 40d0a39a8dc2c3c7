//! Redis Cluster: the client for the seed nodes, and the readiness probe of the primaries.

use std::time::Duration;

use redis::{
    RedisError,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};

use crate::ratelimit::RedisSettings;

/// Retries of one command inside the cluster connection (redirections, a node reconnecting). Few:
/// the limiter's deadline ends a call long before the crate's default of 16 would.
const RETRIES: u32 = 2;

pub fn client(settings: &RedisSettings) -> Result<ClusterClient, RedisError> {
    let mut builder = ClusterClientBuilder::new(settings.nodes.iter().map(String::as_str).collect::<Vec<_>>())
        .connection_timeout(settings.timeout)
        .response_timeout(settings.timeout)
        .retries(RETRIES);
    if !settings.tls.is_empty() {
        builder = builder.certs(settings.tls.redis_certificates());
    }
    builder.build()
}

/// Primaries serving slots, as the cluster sees them, and how many of them answered a PING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Primaries {
    pub serving: usize,
    pub answering: usize,
}

/// Asks any node for `CLUSTER NODES`, then PINGs each primary that serves slots.
pub async fn probe(connection: &mut ClusterConnection, timeout: Duration) -> Result<Primaries, RedisError> {
    let mut last_error = None;
    let mut nodes = None;
    // A random node may be the one that is down: ask a few.
    for _ in 0..3 {
        let ask = connection.route_command(
            redis::cmd("CLUSTER").arg("NODES").to_owned(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        );
        match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(value)) => {
                nodes = Some(redis::from_redis_value::<String>(value)?);
                break;
            }
            Ok(Err(error)) => last_error = Some(error),
            Err(_) => last_error = Some(RedisError::from((redis::ErrorKind::Io, "CLUSTER NODES timed out"))),
        }
    }
    let Some(nodes) = nodes else {
        return Err(last_error.unwrap_or_else(|| RedisError::from((redis::ErrorKind::Io, "no node answered"))));
    };
    let primaries = serving_primaries(&nodes);
    // All at once: a dead primary costs the probe one timeout, not one each.
    let pings = primaries.iter().map(|(host, port)| {
        let mut connection = connection.clone();
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port });
        async move {
            matches!(
                tokio::time::timeout(timeout, connection.route_command(redis::cmd("PING"), routing)).await,
                Ok(Ok(_))
            )
        }
    });
    let answering = futures_util::future::join_all(pings).await.into_iter().filter(|answered| *answered).count();
    Ok(Primaries { serving: primaries.len(), answering })
}

/// `host, port` of each primary holding slots, from `CLUSTER NODES`:
/// `<id> <ip:port@cport[,hostname]> <flags> <primary> <ping> <pong> <epoch> <link> <slot>…`
fn serving_primaries(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let primary = fields.get(2)?.split(',').any(|flag| flag == "master");
            if !primary || fields.len() < 9 {
                return None;
            }
            let address = fields[1].split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.trim_matches(['[', ']']).to_string(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_with_slots_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001,redis-1 master - 0 1 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 1 3 disconnected
d4 127.0.0.1:7003@17003 slave a1 0 1 1 connected
e5 [::1]:7004@17004 master - 0 1 4 connected 10923-16383
";
        let primaries = serving_primaries(nodes);
        assert_eq!(
            primaries,
            [("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001), ("::1".into(), 7004)]
                .map(|(h, p): (String, u16)| (h, p))
                .to_vec()
        );
    }
}
