//! Sentinel: each new connection asks the Sentinels which node is the primary of the master name
//! (and checks that node agrees), so a connection dropped after a failover reconnects to the new one.

use redis::{
    AsyncConnectionConfig, IntoConnectionInfo, RedisError, TlsMode,
    aio::MultiplexedConnection,
    sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType},
};
use tokio::sync::Mutex;

use crate::ratelimit::RedisSettings;

pub struct Primary {
    /// Locked for the lookup only: it caches its connections to the Sentinels.
    sentinels: Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
}

impl Primary {
    /// `settings.nodes` are the Sentinels; their URLs' user, password and database are the primary's
    /// (Sentinels themselves are asked without authentication).
    pub fn new(settings: &RedisSettings, master: &str, config: AsyncConnectionConfig) -> Result<Self, RedisError> {
        let infos =
            settings.nodes.iter().map(|url| url.as_str().into_connection_info()).collect::<Result<Vec<_>, _>>()?;
        let tls = settings.nodes[0].starts_with("rediss:");
        let primary = infos[0].redis_settings();
        let mut builder = SentinelClientBuilder::new(
            infos.iter().map(|info| info.addr().clone()),
            master,
            SentinelServerType::Master,
        )?
        .set_client_to_redis_db(primary.db());
        if let Some(username) = primary.username() {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = primary.password() {
            builder = builder.set_client_to_redis_password(password);
        }
        if tls {
            builder =
                builder.set_client_to_redis_tls_mode(TlsMode::Secure).set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if !settings.tls.is_empty() {
                builder = builder
                    .set_client_to_redis_certificates(settings.tls.redis_certificates())
                    .set_client_to_sentinel_certificates(settings.tls.redis_certificates());
            }
        }
        Ok(Self { sentinels: Mutex::new(builder.build()?), config })
    }

    pub async fn connect(&self) -> Result<MultiplexedConnection, RedisError> {
        let client = self.sentinels.lock().await.async_get_client().await?;
        client.get_multiplexed_async_connection_with_config(&self.config).await
    }
}
