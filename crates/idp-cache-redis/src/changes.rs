//! [`ChangeNotifier`] over Redis pub/sub, and the task that feeds each node's
//! [`ChangeListener`] from it.
//!
//! A change is announced by one script that increments the shared sequence
//! (`<prefix>changes:seq`, a hash of a random `epoch` and a `seq` counter)
//! and publishes `<epoch>:<seq>:<change>|<ack id>` on `<prefix>changes`, the
//! change being `agent:<agent id>` or `token:<jti>:<expiry, Unix seconds>`.
//! Every node holds one subscribed connection, named
//! `agentidp-feed:<prefix>:<node id>` (CLIENT LIST shows it). Whenever it is
//! not subscribed (start-up, Redis restart, a connection that stops answering
//! its PINGs) the listeners hear [`ChangeListener::feed_lost`], and once
//! subscribed again [`ChangeListener::feed_restored`]: announcements published
//! in between are lost, so each listener starts over from its source of truth.
//!
//! A connection can also stop delivering without failing (dead but not
//! closed, or the whole process paused), and the node cannot notice what it
//! did not receive. So a node must prove it heard everything:
//!
//! * Each node tracks the highest sequence number it heard without a gap. A
//!   gap, or an epoch it does not know (Redis lost the sequence), means
//!   announcements were missed: the listeners forget everything
//!   ([`ChangeListener::feed_restored`]) and the node goes on from there.
//! * Every [`RENEW_EVERY`] the node runs a script that compares the shared
//!   sequence with the one it heard; only if they are equal does it record
//!   the node in `<prefix>changes:nodes` (a sorted set scored by the end of
//!   its lease, Redis time plus [`LEASE`]), and the node then tells its
//!   listeners [`ChangeListener::caught_up_until`] a deadline measured from
//!   before it sent the script, a little shorter than the lease: it always
//!   ends before the lease Redis recorded. A node that fell behind for
//!   [`CATCH_UP_WITHIN`] drops its subscription and subscribes again.
//! * An announcement's script also returns the nodes with a lease and how
//!   long each has left; [`ChangeNotifier`]'s calls return once each of them
//!   acknowledged (on `<prefix>acks`, after its listeners applied the
//!   change), or its lease ran out, which takes at most [`ACK_WITHIN`]. A node
//!   whose lease ran out cannot renew it without having heard this change,
//!   and its listeners stop answering from memory when its deadline passes.
//!
//! So when a change's request is answered, every node either applied it or
//! no longer answers from memory, whatever happened to its connection or its
//! process; a paused process compares its deadline on waking, before it
//! answers anything. The price is a renewal per node every 300 ms, and a
//! change waiting up to a second for a node that stopped hearing.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::redis;
use futures_util::StreamExt;
use idp_domain::StoreError;
use idp_domain::ports::{ChangeListener, ChangeNotifier, RevokedToken};
use idp_domain::values::{AgentId, TokenId};
use redis::aio::{PubSub, PubSubSink};
use redis::{ConnectionAddr, RedisConnectionInfo, Script};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cache::ConnectError;
use crate::connections::{Connections, settle};
use crate::error::unexpected;

/// The channel of announcements, under the key prefix.
const CHANGES: &str = "changes";
/// The channel of acknowledgements, under the key prefix.
const ACKS: &str = "acks";
/// The shared sequence of announcements (a hash: `epoch`, `seq`).
const SEQUENCE: &str = "changes:seq";
/// The nodes with a lease, scored by its end in Redis time (ms).
const NODES: &str = "changes:nodes";
/// How long a renewed lease lasts, in Redis time.
pub const LEASE: Duration = Duration::from_millis(1_000);
/// How often a node renews its lease: three tries within one lease, so one
/// slow answer does not cost the node its memory.
pub const RENEW_EVERY: Duration = Duration::from_millis(300);
/// Kept between the two clocks: a node's own deadline ends this much before
/// the lease Redis recorded, and a waiting announcer waits this much longer,
/// in case the host's clock and Redis's run at slightly different rates.
const CLOCK_MARGIN: Duration = Duration::from_millis(100);
/// The longest a change waits for the nodes' acknowledgements: a lease, and
/// the margins of both clocks.
pub const ACK_WITHIN: Duration = LEASE.saturating_add(CLOCK_MARGIN.saturating_mul(2));
/// A node that has not heard a sequence number Redis showed it this long
/// after is deaf (a subscription that no longer delivers): it subscribes again.
pub const CATCH_UP_WITHIN: Duration = Duration::from_secs(1);
/// How long the sequence outlives the last announcement; should it expire,
/// the nodes only forget everything once.
const SEQUENCE_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long the set of leases outlives the last renewal.
const NODES_KEPT: Duration = Duration::from_secs(60);
/// How often the subscribed connection is PINGed: a connection that broke
/// without closing (a dead peer) is noticed within this plus [`ANSWER_WITHIN`].
const PING_EVERY: Duration = Duration::from_secs(5);
/// Limit on connecting, subscribing and each PING's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Pause between attempts to subscribe again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Increments the sequence (starting an epoch if there is none), publishes
/// the announcement with its place in the sequence, and returns Redis's time
/// (ms) and the unexpired leases (node, end, ...).
///
/// KEYS: sequence, nodes. ARGV: channel, epoch if new, change, ack id,
/// sequence TTL (ms).
const ANNOUNCE_SCRIPT: &str = r"
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[2])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[1], epoch .. ':' .. seq .. ':' .. ARGV[3] .. '|' .. ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return {now, redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')}
";

/// Records the node's lease if it heard the whole sequence; returns whether
/// it did, and the sequence as Redis holds it (`''` and 0 when none).
///
/// KEYS: sequence, nodes. ARGV: node id, epoch heard, seq heard, lease (ms),
/// nodes TTL (ms).
const RENEW_SCRIPT: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if epoch ~= ARGV[2] or seq ~= tonumber(ARGV[3]) then
  return {0, epoch, seq}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {1, epoch, seq}
";

/// Publishes changes on one Redis and runs the subscriber that reports every
/// node's changes to this node's listeners. Dropping it stops the subscriber.
#[derive(Debug)]
pub struct RedisChangeFeed {
    connections: Connections,
    keys: Arc<Keys>,
    waiters: Arc<Waiters>,
    announce: Script,
    node: Uuid,
    client_name: String,
    subscriber: JoinHandle<()>,
}

#[derive(Debug)]
struct Keys {
    changes: String,
    acks: String,
    sequence: String,
    nodes: String,
}

/// The nodes that acknowledged each announcement this node is waiting on.
#[derive(Debug, Default)]
struct Waiters(Mutex<HashMap<Uuid, watch::Sender<HashSet<Uuid>>>>);

impl Waiters {
    fn register(&self, id: Uuid) -> watch::Receiver<HashSet<Uuid>> {
        let (sender, receiver) = watch::channel(HashSet::new());
        lock(&self.0).insert(id, sender);
        receiver
    }

    fn remove(&self, id: Uuid) {
        lock(&self.0).remove(&id);
    }

    fn acknowledged(&self, id: Uuid, node: Uuid) {
        if let Some(sender) = lock(&self.0).get(&id) {
            sender.send_modify(|nodes| {
                nodes.insert(node);
            });
        }
    }
}

/// The map holds plain sets; a panic elsewhere cannot leave it invalid.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RedisChangeFeed {
    /// Publishes through `connections` on the channel under `prefix`, and subscribes
    /// to it on a connection of its own to `url`, reporting to `listeners`.
    /// They hear [`ChangeListener::feed_restored`] once subscribed, and
    /// [`ChangeListener::caught_up_until`] after each renewed lease. Must be
    /// called inside a Tokio runtime.
    pub fn start(
        url: &str,
        connections: Connections,
        prefix: &str,
        listeners: Vec<Arc<dyn ChangeListener>>,
    ) -> Result<Self, ConnectError> {
        let client = redis::Client::open(url).map_err(ConnectError::InvalidUrl)?;
        let keys = Arc::new(Keys {
            changes: format!("{prefix}{CHANGES}"),
            acks: format!("{prefix}{ACKS}"),
            sequence: format!("{prefix}{SEQUENCE}"),
            nodes: format!("{prefix}{NODES}"),
        });
        let node = Uuid::new_v4();
        let client_name = client_name(prefix, node);
        let waiters = Arc::new(Waiters::default());
        let subscriber = Subscriber {
            client,
            client_name: client_name.clone(),
            node,
            connections: connections.clone(),
            keys: keys.clone(),
            waiters: waiters.clone(),
            renew: Script::new(RENEW_SCRIPT),
            listeners: Listeners(listeners),
        };
        let subscriber = tokio::spawn(subscriber.subscribe_forever());
        Ok(Self {
            connections,
            keys,
            waiters,
            announce: Script::new(ANNOUNCE_SCRIPT),
            node,
            client_name,
            subscriber,
        })
    }

    /// This node's id in the set of leases and in its acknowledgements.
    pub fn node_id(&self) -> Uuid {
        self.node
    }

    /// The name of the subscribed connection (`CLIENT SETNAME`), by which
    /// operators and tests find it in `CLIENT LIST`.
    pub fn client_name(&self) -> &str {
        &self.client_name
    }
}

/// `agentidp-feed:<prefix>:<node id>`, with every character Redis refuses
/// in a client name (spaces, control characters) replaced by `_`.
fn client_name(prefix: &str, node: Uuid) -> String {
    format!("agentidp-feed:{prefix}:{}", node.simple())
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

impl Drop for RedisChangeFeed {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

/// A lease some node held when an announcement was published, and when this
/// node stops waiting for it (on its own clock, later than Redis's end).
struct Lease {
    node: Uuid,
    waited_until: Instant,
}

impl RedisChangeFeed {
    /// Announces `change` and waits until every node with a lease has
    /// acknowledged it or lost its lease.
    async fn publish(&self, change: String) -> Result<(), StoreError> {
        let id = Uuid::new_v4();
        let mut acks = self.waiters.register(id);
        let outcome = match self.announce(&change, id).await {
            Ok(leases) => {
                wait_for_acks(&mut acks, leases).await;
                Ok(())
            }
            Err(err) => Err(err),
        };
        self.waiters.remove(id);
        outcome
    }

    /// Runs the announcing script; the leases to wait for.
    async fn announce(&self, change: &str, id: Uuid) -> Result<Vec<Lease>, StoreError> {
        let mut conn = self.connections.get().await?;
        let result = self
            .announce
            .key(&self.keys.sequence)
            .key(&self.keys.nodes)
            .arg(&self.keys.changes)
            .arg(Uuid::new_v4().simple().to_string())
            .arg(change)
            .arg(id.to_string())
            .arg(ms(SEQUENCE_KEPT))
            .invoke_async(&mut *conn)
            .await;
        // Taken after the reply, so after Redis read its clock: waiting from
        // here for what was left of a lease waits at least until it ended.
        let received = Instant::now();
        let (now, leases): (i64, Vec<String>) = settle(conn, result)?;
        let mut waiting = Vec::with_capacity(leases.len() / 2);
        for pair in leases.chunks(2) {
            let [node, end] = pair else {
                return Err(unexpected("ZRANGE WITHSCORES"));
            };
            let (Ok(node), Ok(end)) = (Uuid::parse_str(node), end.parse::<f64>()) else {
                // Not a node of ours: nothing to wait for.
                continue;
            };
            // Scores are whole milliseconds; a lease never runs longer than LEASE.
            let left = Duration::from_millis(u64::try_from(end as i64 - now).unwrap_or(0));
            waiting.push(Lease {
                node,
                waited_until: received + left.min(LEASE) + CLOCK_MARGIN,
            });
        }
        Ok(waiting)
    }
}

/// Waits until every lease was acknowledged or ended, logging the nodes
/// that had to be waited out.
async fn wait_for_acks(acks: &mut watch::Receiver<HashSet<Uuid>>, mut pending: Vec<Lease>) {
    loop {
        {
            let acknowledged = acks.borrow_and_update();
            pending.retain(|lease| !acknowledged.contains(&lease.node));
        }
        let now = Instant::now();
        let (ended, waiting): (Vec<Lease>, Vec<Lease>) = pending
            .into_iter()
            .partition(|lease| lease.waited_until <= now);
        for lease in ended {
            tracing::warn!(
                node = %lease.node,
                "a node did not acknowledge a change before its lease ended; it no longer answers from memory"
            );
        }
        pending = waiting;
        let Some(next) = pending.iter().map(|lease| lease.waited_until).min() else {
            return;
        };
        let next = tokio::time::Instant::from_std(next);
        if let Ok(Err(_)) = tokio::time::timeout_at(next, acks.changed()).await {
            // No more acknowledgements can come: wait the leases out.
            tokio::time::sleep_until(next).await;
        }
    }
}

/// `duration` in whole milliseconds, for PEXPIRE and scores.
fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

async fn publish(
    connections: &Connections,
    channel: &str,
    message: String,
) -> Result<i64, StoreError> {
    let mut conn = connections.get().await?;
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

/// What a change says.
fn parse(change: &str) -> Option<Change> {
    if let Some(agent) = change.strip_prefix("agent:") {
        return Uuid::parse_str(agent)
            .ok()
            .map(|id| Change::Agent(AgentId(id)));
    }
    let (jti, expiry) = change.strip_prefix("token:")?.split_once(':')?;
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

/// A message on the changes channel: `<epoch>:<seq>:<change>|<ack id>`.
struct Announcement<'a> {
    epoch: &'a str,
    seq: u64,
    change: &'a str,
    ack: &'a str,
}

impl<'a> Announcement<'a> {
    fn parse(payload: &'a str) -> Option<Self> {
        let (rest, ack) = payload.rsplit_once('|')?;
        let (epoch, rest) = rest.split_once(':')?;
        let (seq, change) = rest.split_once(':')?;
        Some(Self {
            epoch,
            seq: seq.parse().ok()?,
            change,
            ack,
        })
    }
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

    fn caught_up_until(&self, until: Instant) {
        self.0
            .iter()
            .for_each(|listener| listener.caught_up_until(until));
    }
}

/// Where this node stands in the sequence of announcements.
#[derive(Debug)]
struct Position {
    /// The sequence's epoch (empty before the first announcement).
    epoch: String,
    /// The highest number heard, every one below it heard too (or covered
    /// by the listeners forgetting everything after it).
    heard: u64,
    /// A number Redis showed that was not heard yet, and since when.
    behind: Option<(u64, Instant)>,
    /// Whether the last renewal failed, so a Redis outage logs once.
    renewal_failing: bool,
}

/// What an announcement's number means to a [`Position`].
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The next one: apply it.
    Next,
    /// Already covered: it was made before the listeners last forgot
    /// everything (a subscription's start, a resync).
    Covered,
    /// Some were missed: forget everything, then apply it.
    Gap,
}

impl Position {
    fn follow(&mut self, epoch: &str, seq: u64) -> Step {
        if epoch == self.epoch {
            if seq <= self.heard {
                return Step::Covered;
            }
            let step = if seq == self.heard + 1 {
                Step::Next
            } else {
                Step::Gap
            };
            self.heard = seq;
            return step;
        }
        // The very first announcement under this prefix starts the epoch;
        // any other epoch means Redis lost the sequence this node followed.
        let first = self.epoch.is_empty() && self.heard == 0 && seq == 1;
        self.epoch = epoch.to_owned();
        self.heard = seq;
        if first { Step::Next } else { Step::Gap }
    }
}

/// Why a subscription ended.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot read the sequence of announcements: {0}")]
    Sequence(#[from] StoreError),
    #[error("the subscription stopped delivering announcements")]
    Deaf,
    #[error("the connection closed")]
    Closed,
}

/// This node's side of the feed: the subscription and what it reports to.
struct Subscriber {
    client: redis::Client,
    client_name: String,
    node: Uuid,
    connections: Connections,
    keys: Arc<Keys>,
    waiters: Arc<Waiters>,
    renew: Script,
    listeners: Listeners,
}

impl Subscriber {
    async fn subscribe_forever(self) {
        loop {
            let Err(err) = self.listen().await;
            tracing::warn!(error = %err, "the change feed is down; resubscribing");
            self.listeners.lost();
            self.leave().await;
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    /// One subscription, until it fails or stops delivering.
    async fn listen(&self) -> Result<Infallible, FeedError> {
        let pubsub = within(self.connect()).await?;
        let (mut sink, mut stream) = pubsub.split();
        within(sink.subscribe(&[&self.keys.changes, &self.keys.acks])).await?;
        // Read once subscribed, and forgotten after: every announcement up to
        // this number is covered by the listeners forgetting everything, every
        // later one arrives on the subscription.
        let (epoch, heard) = self.sequence().await?;
        let mut position = Position {
            epoch,
            heard,
            behind: None,
            renewal_failing: false,
        };
        self.listeners.restored();
        tracing::info!(
            client_name = %self.client_name,
            node = %self.node,
            "subscribed to the change feed"
        );
        let mut pings = tokio::time::interval(PING_EVERY);
        pings.tick().await;
        let mut renewals = tokio::time::interval(RENEW_EVERY);
        renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Announcements first, so a renewal rarely finds one unheard.
                biased;
                message = stream.next() => {
                    let Some(message) = message else {
                        return Err(FeedError::Closed);
                    };
                    let payload = message.get_payload::<String>().unwrap_or_default();
                    if message.get_channel_name() == self.keys.acks {
                        acknowledged(&self.waiters, &payload);
                    } else {
                        self.apply(&mut position, &payload).await;
                    }
                }
                _ = renewals.tick() => self.renew(&mut position).await?,
                _ = pings.tick() => ping(&mut sink).await?,
            }
        }
    }

    /// Opens the subscriber's connection under its client name.
    ///
    /// The `redis` crate sets no client name on a pub/sub connection, and
    /// once handed to it a connection takes no other command; so the
    /// handshake (AUTH, SELECT, CLIENT SETNAME) is done here first, and the
    /// crate gets a connection with nothing left to set up. A TLS URL, whose
    /// stream this crate cannot open itself, gets an unnamed connection.
    async fn connect(&self) -> redis::RedisResult<PubSub> {
        let info = self.client.get_connection_info();
        let settings = info.redis_settings();
        let ready = RedisConnectionInfo::default().set_skip_set_lib_name();
        match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let mut stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                handshake(&mut stream, settings, &self.client_name).await?;
                PubSub::new(&ready, stream).await
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                let mut stream = tokio::net::UnixStream::connect(path).await?;
                handshake(&mut stream, settings, &self.client_name).await?;
                PubSub::new(&ready, stream).await
            }
            _ => self.client.get_async_pubsub().await,
        }
    }

    /// The sequence as Redis holds it now.
    async fn sequence(&self) -> Result<(String, u64), StoreError> {
        let mut conn = self.connections.get().await?;
        let result = redis::cmd("HMGET")
            .arg(&self.keys.sequence)
            .arg("epoch")
            .arg("seq")
            .query_async(&mut *conn)
            .await;
        let (epoch, seq): (Option<String>, Option<u64>) = settle(conn, result)?;
        Ok((epoch.unwrap_or_default(), seq.unwrap_or(0)))
    }

    /// Hands an announcement to the listeners, then acknowledges it.
    async fn apply(&self, position: &mut Position, payload: &str) {
        let Some(announcement) = Announcement::parse(payload) else {
            // Not ours, and without an id to acknowledge.
            self.listeners.heard(None);
            return;
        };
        match position.follow(announcement.epoch, announcement.seq) {
            Step::Next => self.listeners.heard(parse(announcement.change)),
            Step::Covered => {}
            Step::Gap => {
                tracing::warn!(
                    heard = position.heard,
                    "announcements were missed; forgetting every copy"
                );
                self.listeners.restored();
                self.listeners.heard(parse(announcement.change));
            }
        }
        let ack = format!("{}:{}", announcement.ack, self.node);
        if let Err(err) = publish(&self.connections, &self.keys.acks, ack).await {
            tracing::warn!(error = %err, "could not acknowledge a change");
        }
    }

    /// Renews this node's lease if it heard every announcement, and vouches
    /// for its listeners until shortly before the lease ends.
    async fn renew(&self, position: &mut Position) -> Result<(), FeedError> {
        // Taken before the script runs, so the deadline ends before the lease
        // Redis records from its own clock when the script runs.
        let sent = Instant::now();
        let renewal = tokio::time::timeout(LEASE, self.renewal(position)).await;
        let (renewed, epoch, seq) = match renewal {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => {
                if !position.renewal_failing {
                    tracing::warn!(error = %err, "cannot renew the change feed's lease; answering from the stores");
                }
                position.renewal_failing = true;
                return Ok(());
            }
            Err(_) => {
                if !position.renewal_failing {
                    tracing::warn!(
                        "no answer to the change feed's lease renewal; answering from the stores"
                    );
                }
                position.renewal_failing = true;
                return Ok(());
            }
        };
        position.renewal_failing = false;
        if renewed {
            position.behind = None;
            self.listeners
                .caught_up_until(sent + LEASE.saturating_sub(CLOCK_MARGIN));
            return Ok(());
        }
        // A node that started before the first announcement under the
        // prefix has no epoch yet: it is behind, not reset.
        let reset = !position.epoch.is_empty() && (epoch != position.epoch || seq < position.heard);
        if reset {
            // Redis lost the sequence (a restart, a flush): what this node
            // heard cannot be compared any more; start over from Redis's.
            tracing::warn!("the sequence of announcements was reset; forgetting every copy");
            position.epoch = epoch;
            position.heard = seq;
            position.behind = None;
            self.listeners.restored();
            return Ok(());
        }
        match position.behind {
            Some((target, since)) if position.heard < target => {
                if since.elapsed() >= CATCH_UP_WITHIN {
                    return Err(FeedError::Deaf);
                }
            }
            // In flight, most likely: give it until CATCH_UP_WITHIN.
            _ => position.behind = Some((seq, Instant::now())),
        }
        Ok(())
    }

    async fn renewal(&self, position: &Position) -> Result<(bool, String, u64), StoreError> {
        let mut conn = self.connections.get().await?;
        let result = self
            .renew
            .key(&self.keys.sequence)
            .key(&self.keys.nodes)
            .arg(self.node.to_string())
            .arg(&position.epoch)
            .arg(position.heard)
            .arg(ms(LEASE))
            .arg(ms(NODES_KEPT))
            .invoke_async(&mut *conn)
            .await;
        let (renewed, epoch, seq): (i64, String, u64) = settle(conn, result)?;
        Ok((renewed == 1, epoch, seq))
    }

    /// Withdraws this node's lease, so announcers stop waiting for it at once
    /// rather than when it ends. Best effort: it ends by itself anyway.
    async fn leave(&self) {
        let Ok(mut conn) = self.connections.get().await else {
            return;
        };
        let result: redis::RedisResult<i64> = redis::cmd("ZREM")
            .arg(&self.keys.nodes)
            .arg(self.node.to_string())
            .query_async(&mut *conn)
            .await;
        let _ = settle(conn, result);
    }
}

/// Counts an acknowledgement, `<ack id>:<node id>`.
fn acknowledged(waiters: &Waiters, payload: &str) {
    let Some((id, node)) = payload.split_once(':') else {
        return;
    };
    if let (Ok(id), Ok(node)) = (Uuid::parse_str(id), Uuid::parse_str(node)) {
        waiters.acknowledged(id, node);
    }
}

/// AUTH (if the URL has a password), SELECT (if not database 0) and CLIENT
/// SETNAME on a fresh connection, each answered by one status line.
async fn handshake<S>(
    stream: &mut S,
    settings: &RedisConnectionInfo,
    name: &str,
) -> redis::RedisResult<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut commands = Vec::new();
    let mut count = 0;
    if let Some(password) = settings.password() {
        let mut auth = redis::cmd("AUTH");
        if let Some(username) = settings.username() {
            auth.arg(username);
        }
        commands.extend(auth.arg(password).get_packed_command());
        count += 1;
    }
    if settings.db() != 0 {
        commands.extend(redis::cmd("SELECT").arg(settings.db()).get_packed_command());
        count += 1;
    }
    commands.extend(
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(name)
            .get_packed_command(),
    );
    count += 1;
    stream.write_all(&commands).await?;
    for _ in 0..count {
        let line = read_line(stream).await?;
        if !line.starts_with('+') {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the change feed's connection was refused",
                line,
            )));
        }
    }
    Ok(())
}

/// One reply line, without its CRLF. Read byte by byte: the replies are a
/// few bytes, and nothing may be read past them (the rest belongs to the
/// `redis` crate).
async fn read_line<S: AsyncRead + Unpin>(stream: &mut S) -> redis::RedisResult<String> {
    const LONGEST: usize = 1024;
    let mut line = Vec::new();
    loop {
        let byte = stream.read_u8().await?;
        if byte == b'\n' && line.last() == Some(&b'\r') {
            line.pop();
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(byte);
        if line.len() > LONGEST {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "an overlong reply to the change feed's handshake",
            )));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: &str, heard: u64) -> Position {
        Position {
            epoch: epoch.to_owned(),
            heard,
            behind: None,
            renewal_failing: false,
        }
    }

    #[test]
    fn a_position_follows_the_sequence_and_notices_gaps_and_new_epochs() {
        let mut position = at("e1", 4);
        assert_eq!(position.follow("e1", 5), Step::Next);
        assert_eq!(position.follow("e1", 3), Step::Covered);
        assert_eq!(position.follow("e1", 5), Step::Covered);
        assert_eq!(position.follow("e1", 7), Step::Gap);
        assert_eq!(position.heard, 7);
        assert_eq!(position.follow("e2", 8), Step::Gap, "Redis lost e1");
        assert_eq!((position.epoch.as_str(), position.heard), ("e2", 8));
        assert_eq!(position.follow("e2", 9), Step::Next);
    }

    #[test]
    fn the_first_announcement_under_a_prefix_starts_its_epoch() {
        let mut position = at("", 0);
        assert_eq!(position.follow("e1", 1), Step::Next);
        let mut late = at("", 0);
        assert_eq!(late.follow("e1", 2), Step::Gap, "number 1 was missed");
    }

    #[test]
    fn an_announcement_parses_with_colons_in_its_change() {
        let jti = Uuid::new_v4();
        let payload = format!("ab12:42:token:{jti}:1700000000|ack-id");
        let parsed = Announcement::parse(&payload).unwrap();
        assert_eq!(
            (parsed.epoch, parsed.seq, parsed.ack),
            ("ab12", 42, "ack-id")
        );
        assert!(
            matches!(parse(parsed.change), Some(Change::Token(t)) if t.token_id == TokenId(jti))
        );
        assert!(Announcement::parse("not ours").is_none());
        assert!(
            Announcement::parse("e:x:agent:1|id").is_none(),
            "a seq that is no number"
        );
    }

    #[test]
    fn a_client_name_has_no_character_redis_refuses() {
        let node = Uuid::new_v4();
        let name = client_name("my prefix:\n", node);
        assert_eq!(name, format!("agentidp-feed:my_prefix:_:{}", node.simple()));
    }
}
