//! What the limiter's connections are made to: one Redis, a Redis Cluster, or the primary that
//! Sentinel names. The decision logic sees one `Connection` type whichever it is.

use redis::{
    AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
};

use super::{cluster, sentinel};
use crate::ratelimit::{RedisMode, RedisSettings};

pub enum Connector {
    Standalone { client: Client, config: AsyncConnectionConfig },
    Cluster(ClusterClient),
    Sentinel(sentinel::Primary),
}

/// One multiplexed connection: to a single node, or a cluster connection that routes each command
/// by its key's slot and follows MOVED, ASK and failovers by itself.
#[derive(Clone)]
pub enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Connector {
    /// Checks the settings; connects nothing yet.
    pub fn new(settings: &RedisSettings) -> Result<Self, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout));
        Ok(match &settings.mode {
            RedisMode::Standalone => {
                let info = settings.nodes[0].as_str().into_connection_info()?;
                let client = if settings.tls.is_empty() {
                    Client::open(info)?
                } else {
                    Client::build_with_tls(info, settings.tls.redis_certificates())?
                };
                Connector::Standalone { client, config }
            }
            RedisMode::Cluster => Connector::Cluster(cluster::client(settings)?),
            RedisMode::Sentinel { master } => Connector::Sentinel(sentinel::Primary::new(settings, master, config)?),
        })
    }

    pub async fn connect(&self) -> Result<Connection, RedisError> {
        match self {
            Connector::Standalone { client, config } => {
                client.get_multiplexed_async_connection_with_config(config).await.map(Connection::Single)
            }
            Connector::Cluster(client) => client.get_async_connection().await.map(Connection::Cluster),
            Connector::Sentinel(primary) => primary.connect().await.map(Connection::Single),
        }
    }

    /// `standalone`, `cluster` or `sentinel`: in `/readyz` and the logs.
    pub fn mode(&self) -> &'static str {
        match self {
            Connector::Standalone { .. } => "standalone",
            Connector::Cluster(_) => "cluster",
            Connector::Sentinel(_) => "sentinel",
        }
    }

    /// Whether a connection that failed this way is dropped, to connect again on the next call. A
    /// cluster connection repairs itself (it reconnects nodes and refreshes its slot map); a
    /// connection to a single node is replaced after a broken socket, and under Sentinel also after
    /// READONLY (the node was demoted: asking Sentinel again finds the new primary).
    pub fn replaces_after(&self, error: Option<&RedisError>) -> bool {
        match (self, error) {
            (Connector::Cluster(_), _) => false,
            (_, None) => true, // a missed deadline
            (Connector::Sentinel(_), Some(error)) => {
                error.is_unrecoverable_error()
                    || error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
            }
            (Connector::Standalone { .. }, Some(error)) => error.is_unrecoverable_error(),
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
