//! [`ChangeNotifier`] over Redis pub/sub, and the task that feeds each node's
//! [`ChangeListener`] from it.
//!
//! A change is one `PUBLISH <prefix>changes <message>|<ack id>`, the message
//! being `agent:<agent id>` or `token:<jti>:<expiry, Unix seconds>`. Every
//! node holds one subscribed connection; whenever it is not subscribed
//! (start-up, Redis restart, a connection that stops answering its PINGs) the
//! listeners hear [`ChangeListener::feed_lost`], and once subscribed again
//! [`ChangeListener::feed_restored`]: announcements published in between are
//! lost, so each listener starts over from its source of truth.
//!
//! An announcement is acknowledged: each node, once its listeners have
//! applied it, publishes the ack id on `<prefix>acks`, and
//! [`ChangeNotifier`]'s calls return only when every node that received the
//! announcement (PUBLISH's count) has acknowledged it, or after
//! [`ACK_WITHIN`]. So when a change's request is answered, every subscribed
//! node already answers the new state: a client that suspends an agent on one
//! node and then calls another sees the suspension. A node that has not
//! acknowledged within the limit (overloaded, or cut off from Redis without
//! its connection failing yet) is logged; its copies are bounded by their
//! own expiry and by its PINGs ([`PING_EVERY`]) noticing a dead connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::redis;
use futures_util::StreamExt;
use idp_domain::StoreError;
use idp_domain::ports::{ChangeListener, ChangeNotifier, RevokedToken};
use idp_domain::values::{AgentId, TokenId};
use redis::aio::PubSubSink;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cache::{ConnectError, Pool, checkout, settle};

/// The channel of announcements, under the key prefix.
const CHANGES: &str = "changes";
/// The channel of acknowledgements, under the key prefix.
const ACKS: &str = "acks";
/// How long a change waits for every node's acknowledgement.
pub const ACK_WITHIN: Duration = Duration::from_secs(2);
/// How often the subscribed connection is PINGed: a connection that broke
/// without closing (a dead peer) is noticed within this plus [`ANSWER_WITHIN`].
const PING_EVERY: Duration = Duration::from_secs(5);
/// Limit on connecting, subscribing and each PING's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Pause between attempts to subscribe again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Publishes changes on one Redis and runs the subscriber that reports every
/// node's changes to this node's listeners. Dropping it stops the subscriber.
#[derive(Debug)]
pub struct RedisChangeFeed {
    pool: Pool,
    channels: Arc<Channels>,
    waiters: Arc<Waiters>,
    subscriber: JoinHandle<()>,
}

#[derive(Debug)]
struct Channels {
    changes: String,
    acks: String,
}

/// Acknowledgements counted per announcement this node is waiting on.
#[derive(Debug, Default)]
struct Waiters(Mutex<HashMap<Uuid, watch::Sender<usize>>>);

impl Waiters {
    fn register(&self, id: Uuid) -> watch::Receiver<usize> {
        let (sender, receiver) = watch::channel(0);
        lock(&self.0).insert(id, sender);
        receiver
    }

    fn remove(&self, id: Uuid) {
        lock(&self.0).remove(&id);
    }

    fn acknowledged(&self, id: Uuid) {
        if let Some(sender) = lock(&self.0).get(&id) {
            sender.send_modify(|count| *count += 1);
        }
    }
}

/// The map holds plain counters; a panic elsewhere cannot leave it invalid.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RedisChangeFeed {
    /// Publishes through `pool` on the channel under `prefix`, and subscribes
    /// to it on a connection of its own to `url`, reporting to `listeners`.
    /// They hear [`ChangeListener::feed_restored`] once subscribed. Must be
    /// called inside a Tokio runtime.
    pub fn start(
        url: &str,
        pool: Pool,
        prefix: &str,
        listeners: Vec<Arc<dyn ChangeListener>>,
    ) -> Result<Self, ConnectError> {
        let client = redis::Client::open(url).map_err(ConnectError::InvalidUrl)?;
        let channels = Arc::new(Channels {
            changes: format!("{prefix}{CHANGES}"),
            acks: format!("{prefix}{ACKS}"),
        });
        let waiters = Arc::new(Waiters::default());
        let node = Node {
            client,
            pool: pool.clone(),
            channels: channels.clone(),
            waiters: waiters.clone(),
            listeners: Listeners(listeners),
        };
        let subscriber = tokio::spawn(node.subscribe_forever());
        Ok(Self {
            pool,
            channels,
            waiters,
            subscriber,
        })
    }
}

impl Drop for RedisChangeFeed {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

impl RedisChangeFeed {
    /// Announces `message` and waits for every receiver's acknowledgement.
    async fn publish(&self, message: String) -> Result<(), StoreError> {
        let id = Uuid::new_v4();
        let mut acks = self.waiters.register(id);
        let published = publish(
            &self.pool,
            &self.channels.changes,
            format!("{message}|{id}"),
        )
        .await;
        let outcome = match published {
            Ok(receivers) => {
                let receivers = usize::try_from(receivers).unwrap_or(0);
                let all = tokio::time::timeout(ACK_WITHIN, acks.wait_for(|n| *n >= receivers));
                if !matches!(all.await, Ok(Ok(_))) {
                    tracing::warn!(
                        receivers,
                        acknowledged = *acks.borrow(),
                        "not every node acknowledged a change within {ACK_WITHIN:?}; the others' copies expire on their own"
                    );
                }
                Ok(())
            }
            Err(err) => Err(err),
        };
        self.waiters.remove(id);
        outcome
    }
}

async fn publish(pool: &Pool, channel: &str, message: String) -> Result<i64, StoreError> {
    let mut conn = checkout(pool).await?;
    let result: redis::RedisResult<i64> = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query_async(&mut *conn)
        .await;
    settle(conn, result)
}

#[async_trait]
impl ChangeNotifier for RedisChangeFeed {
    async fn agent_changed(&self, agent: AgentId) -> Result<(), StoreError> {
        self.publish(format!("agent:{agent}")).await
    }

    async fn token_revoked(&self, token: &RevokedToken) -> Result<(), StoreError> {
        self.publish(format!(
            "token:{}:{}",
            token.token_id,
            token.expires_at.timestamp()
        ))
        .await
    }
}

/// What a message announces.
fn parse(message: &str) -> Option<Change> {
    if let Some(agent) = message.strip_prefix("agent:") {
        return Uuid::parse_str(agent)
            .ok()
            .map(|id| Change::Agent(AgentId(id)));
    }
    let (jti, expiry) = message.strip_prefix("token:")?.split_once(':')?;
    let token_id = TokenId(Uuid::parse_str(jti).ok()?);
    let expires_at = DateTime::<Utc>::from_timestamp(expiry.parse().ok()?, 0)?;
    Some(Change::Token(RevokedToken {
        token_id,
        expires_at,
    }))
}

enum Change {
    Agent(AgentId),
    Token(RevokedToken),
}

/// Every listener of this node, told each thing in turn.
struct Listeners(Vec<Arc<dyn ChangeListener>>);

impl Listeners {
    fn heard(&self, change: Option<Change>) {
        for listener in &self.0 {
            match &change {
                Some(Change::Agent(agent)) => listener.agent_changed(*agent),
                Some(Change::Token(token)) => listener.token_revoked(token),
                // Not ours (someone else publishing on the channel): the safe
                // reading is "anything may have changed".
                None => listener.feed_restored(),
            }
        }
    }

    fn lost(&self) {
        self.0.iter().for_each(|listener| listener.feed_lost());
    }

    fn restored(&self) {
        self.0.iter().for_each(|listener| listener.feed_restored());
    }
}

/// This node's side of the feed: the subscription and what it reports to.
struct Node {
    client: redis::Client,
    pool: Pool,
    channels: Arc<Channels>,
    waiters: Arc<Waiters>,
    listeners: Listeners,
}

impl Node {
    async fn subscribe_forever(self) {
        loop {
            match self.listen().await {
                Ok(()) => {
                    tracing::warn!("the change feed's Redis connection closed; resubscribing")
                }
                Err(err) => tracing::warn!(error = %err, "the change feed is down; resubscribing"),
            }
            self.listeners.lost();
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    /// One subscription, until its connection fails.
    async fn listen(&self) -> Result<(), redis::RedisError> {
        let pubsub = within(self.client.get_async_pubsub()).await?;
        let (mut sink, mut stream) = pubsub.split();
        within(sink.subscribe(&[&self.channels.changes, &self.channels.acks])).await?;
        self.listeners.restored();
        let mut pings = tokio::time::interval(PING_EVERY);
        pings.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        return Ok(());
                    };
                    let payload = message.get_payload::<String>().unwrap_or_default();
                    if message.get_channel_name() == self.channels.acks {
                        if let Ok(id) = Uuid::parse_str(&payload) {
                            self.waiters.acknowledged(id);
                        }
                    } else {
                        self.apply(&payload).await;
                    }
                }
                _ = pings.tick() => ping(&mut sink).await?,
            }
        }
    }

    /// Hands an announcement to the listeners, then acknowledges it.
    async fn apply(&self, payload: &str) {
        let Some((message, id)) = payload.rsplit_once('|') else {
            self.listeners.heard(None);
            return;
        };
        self.listeners.heard(parse(message));
        if let Err(err) = publish(&self.pool, &self.channels.acks, id.to_owned()).await {
            tracing::warn!(error = %err, "could not acknowledge a change");
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
