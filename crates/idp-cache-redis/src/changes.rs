//! [`ChangeNotifier`] over Redis pub/sub, and the task that feeds each node's
//! [`ChangeListener`] from it.
//!
//! A change is one `PUBLISH <prefix>agent-changes <agent id>`. Every node
//! holds one subscribed connection; whenever it is not subscribed (start-up,
//! Redis restart, a connection that stops answering its PINGs) the listener
//! hears [`ChangeListener::feed_lost`] and keeps nothing, and once subscribed
//! again [`ChangeListener::feed_restored`]: announcements published in
//! between are lost, so the listener starts from nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis;
use futures_util::StreamExt;
use idp_domain::StoreError;
use idp_domain::ports::{ChangeListener, ChangeNotifier};
use idp_domain::values::AgentId;
use redis::aio::PubSubSink;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cache::{ConnectError, Pool, checkout, settle};

/// The channel under the key prefix.
const CHANNEL: &str = "agent-changes";
/// How often the subscribed connection is PINGed: a connection that broke
/// without closing (a dead peer) is noticed within this plus [`ANSWER_WITHIN`].
const PING_EVERY: Duration = Duration::from_secs(5);
/// Limit on connecting, subscribing and each PING's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Pause between attempts to subscribe again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Publishes changes on one Redis and runs the subscriber that reports other
/// nodes' changes to a listener. Dropping it stops the subscriber.
#[derive(Debug)]
pub struct RedisChangeFeed {
    pool: Pool,
    channel: String,
    subscriber: JoinHandle<()>,
}

impl RedisChangeFeed {
    /// Publishes through `pool` on the channel under `prefix`, and subscribes
    /// to it on a connection of its own to `url`, reporting to `listener`.
    /// The listener hears [`ChangeListener::feed_restored`] once subscribed.
    /// Must be called inside a Tokio runtime.
    pub fn start(
        url: &str,
        pool: Pool,
        prefix: &str,
        listener: Arc<dyn ChangeListener>,
    ) -> Result<Self, ConnectError> {
        let client = redis::Client::open(url).map_err(ConnectError::InvalidUrl)?;
        let channel = format!("{prefix}{CHANNEL}");
        let subscriber = tokio::spawn(subscribe_forever(client, channel.clone(), listener));
        Ok(Self {
            pool,
            channel,
            subscriber,
        })
    }
}

impl Drop for RedisChangeFeed {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

#[async_trait]
impl ChangeNotifier for RedisChangeFeed {
    async fn agent_changed(&self, agent: AgentId) -> Result<(), StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let result: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(agent.to_string())
            .query_async(&mut *conn)
            .await;
        settle(conn, result).map(drop)
    }
}

async fn subscribe_forever(
    client: redis::Client,
    channel: String,
    listener: Arc<dyn ChangeListener>,
) {
    loop {
        match listen(&client, &channel, listener.as_ref()).await {
            Ok(()) => tracing::warn!("the change feed's Redis connection closed; resubscribing"),
            Err(err) => tracing::warn!(error = %err, "the change feed is down; resubscribing"),
        }
        listener.feed_lost();
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// One subscription, until its connection fails.
async fn listen(
    client: &redis::Client,
    channel: &str,
    listener: &dyn ChangeListener,
) -> Result<(), redis::RedisError> {
    let pubsub = within(client.get_async_pubsub()).await?;
    let (mut sink, mut stream) = pubsub.split();
    within(sink.subscribe(channel)).await?;
    listener.feed_restored();
    let mut pings = tokio::time::interval(PING_EVERY);
    pings.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Ok(());
                };
                let agent = message
                    .get_payload::<String>()
                    .ok()
                    .and_then(|payload| Uuid::parse_str(&payload).ok());
                match agent {
                    Some(agent) => listener.agent_changed(AgentId(agent)),
                    // Not ours (someone else publishing on the channel): the
                    // safe reading is "anything may have changed".
                    None => listener.feed_restored(),
                }
            }
            _ = pings.tick() => ping(&mut sink).await?,
        }
    }
}

async fn ping(sink: &mut PubSubSink) -> Result<(), redis::RedisError> {
    within(sink.ping::<redis::Value>()).await.map(drop)
}

async fn within<T>(
    step: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, redis::RedisError> {
    match tokio::time::timeout(ANSWER_WITHIN, step).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from Redis",
        ))),
    }
}
