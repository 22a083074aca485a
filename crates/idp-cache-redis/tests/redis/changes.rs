//! [`RedisChangeFeed`]: an announcement (a changed agent, a revoked token)
//! reaches every node subscribed under the same prefix, itself included, and
//! nobody under another prefix; a node vouches for its copies only while it
//! has heard every announcement, and an announcer waits for every node that
//! does until it acknowledged or its lease ended.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use idp_cache_redis::{ACK_WITHIN, CATCH_UP_WITHIN, LEASE, RedisChangeFeed, redis};
use idp_domain::ports::{ChangeListener, ChangeNotifier, RevokedToken};
use idp_domain::values::{AgentId, TokenId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::support::{TestRedis, redis_url};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Changed(AgentId),
    Revoked(RevokedToken),
    Lost,
    Restored,
}

/// A listener that records what it heard, and the deadline the feed last
/// vouched for it until.
#[derive(Default)]
struct Recorder {
    heard: Mutex<Vec<Heard>>,
    vouched_until: Mutex<Option<Instant>>,
}

impl Recorder {
    fn heard(&self) -> Vec<Heard> {
        self.heard.lock().unwrap().clone()
    }

    fn vouched_until(&self) -> Option<Instant> {
        *self.vouched_until.lock().unwrap()
    }

    /// Whether it may answer from memory now.
    fn vouched(&self) -> bool {
        self.vouched_until()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Waits up to 5 s for `what`.
    async fn wait_for(&self, what: &Heard) {
        for _ in 0..100 {
            if self.heard().contains(what) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never heard {what:?}; heard {:?}", self.heard());
    }

    /// Waits up to 5 s until `what` was heard `times` times.
    async fn wait_for_times(&self, what: &Heard, times: usize) {
        for _ in 0..100 {
            if self.heard().iter().filter(|h| *h == what).count() >= times {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "never heard {what:?} {times} times; heard {:?}",
            self.heard()
        );
    }

    /// Waits up to 5 s until the feed vouches for it.
    async fn wait_until_vouched(&self) {
        for _ in 0..250 {
            if self.vouched() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never vouched for; heard {:?}", self.heard());
    }
}

impl ChangeListener for Recorder {
    fn agent_changed(&self, agent: AgentId) {
        self.heard.lock().unwrap().push(Heard::Changed(agent));
    }

    fn token_revoked(&self, token: &RevokedToken) {
        self.heard
            .lock()
            .unwrap()
            .push(Heard::Revoked(token.clone()));
    }

    fn feed_lost(&self) {
        self.heard.lock().unwrap().push(Heard::Lost);
    }

    fn feed_restored(&self) {
        self.heard.lock().unwrap().push(Heard::Restored);
    }

    fn caught_up_until(&self, until: Instant) {
        let mut vouched = self.vouched_until.lock().unwrap();
        assert!(
            vouched.is_none_or(|before| before <= until),
            "a deadline moved backwards"
        );
        *vouched = Some(until);
    }
}

fn node(redis: &TestRedis, prefix: &str) -> (RedisChangeFeed, Arc<Recorder>) {
    node_via(&redis_url(), redis, prefix)
}

/// A node whose subscription connects to `url` (its other connections go to
/// the test Redis).
fn node_via(url: &str, redis: &TestRedis, prefix: &str) -> (RedisChangeFeed, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let feed = RedisChangeFeed::start(
        url,
        redis.cache.connections().clone(),
        prefix,
        vec![recorder.clone()],
    )
    .unwrap();
    (feed, recorder)
}

async fn query<T: redis::FromRedisValue>(redis: &TestRedis, cmd: &redis::Cmd) -> T {
    let mut conn = redis.cache.connections().get().await.unwrap();
    cmd.query_async(&mut *conn).await.unwrap()
}

/// Redis's clock, in ms.
async fn redis_now_ms(redis: &TestRedis) -> u64 {
    let (secs, micros): (u64, u64) = query(redis, &redis::cmd("TIME")).await;
    secs * 1000 + micros / 1000
}

fn agent() -> AgentId {
    AgentId(Uuid::new_v4())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_every_node_of_the_prefix_and_no_other() {
    let redis = TestRedis::new().await;
    let (a, heard_by_a) = node(&redis, &redis.prefix);
    let (_b, heard_by_b) = node(&redis, &redis.prefix);
    let elsewhere = format!("idp-test:{}:", Uuid::new_v4().simple());
    let (_c, heard_elsewhere) = node(&redis, &elsewhere);
    for recorder in [&heard_by_a, &heard_by_b, &heard_elsewhere] {
        recorder.wait_for(&Heard::Restored).await;
        recorder.wait_until_vouched().await;
    }

    // Each call returns once every node applied the change: no waiting here.
    let agent = agent();
    let started = Instant::now();
    a.agent_changed(agent).await.unwrap();
    assert!(heard_by_b.heard().contains(&Heard::Changed(agent)));
    assert!(heard_by_a.heard().contains(&Heard::Changed(agent)));
    let token = RevokedToken {
        token_id: TokenId(Uuid::new_v4()),
        expires_at: Utc.with_ymd_and_hms(2031, 1, 2, 3, 4, 5).unwrap(),
    };
    a.token_revoked(&token).await.unwrap();
    assert!(heard_by_b.heard().contains(&Heard::Revoked(token.clone())));
    assert!(heard_by_a.heard().contains(&Heard::Revoked(token)));
    assert!(
        started.elapsed() < LEASE / 2,
        "every node acknowledged, yet the calls took {:?}",
        started.elapsed()
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(heard_elsewhere.heard(), vec![Heard::Restored]);
    assert!(!heard_by_b.heard().contains(&Heard::Lost));
    // The sequence and the leases are the only keys, and both expire.
    let keys = redis.keys().await;
    let expected = [
        format!("{}changes:nodes", redis.prefix),
        format!("{}changes:seq", redis.prefix),
    ];
    assert_eq!(keys, expected);
    for key in &expected {
        assert!(redis.pttl(key).await > 0, "{key} never expires");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_message_on_the_channel_forgets_everything() {
    let redis = TestRedis::new().await;
    let (_a, heard) = node(&redis, &redis.prefix);
    heard.wait_for(&Heard::Restored).await;

    let _: i64 = query(
        &redis,
        redis::cmd("PUBLISH")
            .arg(format!("{}changes", redis.prefix))
            .arg("not an agent id"),
    )
    .await;
    heard.wait_for_times(&Heard::Restored, 2).await;
    assert_eq!(heard.heard(), vec![Heard::Restored, Heard::Restored]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_without_a_lease_is_not_waited_for() {
    let redis = TestRedis::new().await;
    let (a, heard) = node(&redis, &redis.prefix);
    heard.wait_until_vouched().await;
    // Subscribed, but never vouched for by a lease: it answers nothing from
    // memory, so nobody needs to wait for it.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut silent = client.get_async_pubsub().await.unwrap();
    silent
        .subscribe(format!("{}changes", redis.prefix))
        .await
        .unwrap();

    let started = Instant::now();
    let agent = agent();
    a.agent_changed(agent).await.unwrap();
    let waited = started.elapsed();
    assert!(heard.heard().contains(&Heard::Changed(agent)));
    assert!(waited < LEASE / 2, "waited {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_node_that_never_acknowledges_is_waited_out_by_its_lease() {
    let redis = TestRedis::new().await;
    let (a, heard) = node(&redis, &redis.prefix);
    heard.wait_until_vouched().await;

    // A node that renewed its lease and then stopped hearing (paused, or
    // its subscription dead): it holds a lease and never acknowledges.
    let lease_ms = 600;
    let end = redis_now_ms(&redis).await + lease_ms;
    let _: i64 = query(
        &redis,
        redis::cmd("ZADD")
            .arg(format!("{}changes:nodes", redis.prefix))
            .arg(end)
            .arg(Uuid::new_v4().to_string()),
    )
    .await;
    let started = Instant::now();
    a.agent_changed(agent()).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(lease_ms) - Duration::from_millis(100),
        "returned before the silent node's lease ended: {waited:?}"
    );
    assert!(waited < ACK_WITHIN, "waited {waited:?}");
    // Once its lease ended, it is no longer waited for.
    let started = Instant::now();
    a.agent_changed(agent()).await.unwrap();
    assert!(
        started.elapsed() < LEASE / 2,
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_sequence_forgets_everything() {
    let redis = TestRedis::new().await;
    let (a, heard) = node(&redis, &redis.prefix);
    heard.wait_until_vouched().await;
    let (first, second) = (agent(), agent());
    a.agent_changed(first).await.unwrap();

    // An announcement this node never received.
    let _: i64 = query(
        &redis,
        redis::cmd("HINCRBY")
            .arg(format!("{}changes:seq", redis.prefix))
            .arg("seq")
            .arg(1),
    )
    .await;
    a.agent_changed(second).await.unwrap();
    heard.wait_for(&Heard::Changed(second)).await;
    assert_eq!(
        heard.heard(),
        vec![
            Heard::Restored,
            Heard::Changed(first),
            Heard::Restored,
            Heard::Changed(second)
        ]
    );
    // Caught up again: the lease is renewed.
    let before = heard.vouched_until().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(heard.vouched_until().unwrap() > before);
    assert!(heard.vouched());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_sequence_stops_renewing_its_lease_then_subscribes_again() {
    let redis = TestRedis::new().await;
    let (a, heard) = node(&redis, &redis.prefix);
    heard.wait_until_vouched().await;
    a.agent_changed(agent()).await.unwrap();

    // The sequence moves on without this node hearing of it.
    let _: i64 = query(
        &redis,
        redis::cmd("HINCRBY")
            .arg(format!("{}changes:seq", redis.prefix))
            .arg("seq")
            .arg(1),
    )
    .await;
    let behind_since = Instant::now();
    let last = heard.vouched_until().unwrap();
    // No renewal may succeed while behind: the deadline stays where it was
    // (at most one renewal in flight when the sequence moved).
    tokio::time::sleep(LEASE).await;
    let deadline = heard.vouched_until().unwrap();
    assert!(
        deadline <= last + Duration::from_millis(400),
        "renewed while behind"
    );
    assert!(!heard.vouched(), "still vouched for while behind");
    let leased: Option<f64> = query(
        &redis,
        redis::cmd("ZSCORE")
            .arg(format!("{}changes:nodes", redis.prefix))
            .arg(a.node_id().to_string()),
    )
    .await;
    let now = redis_now_ms(&redis).await;
    assert!(
        leased.is_none_or(|end| end <= now as f64),
        "its lease still runs in Redis"
    );

    // Deaf for CATCH_UP_WITHIN: it drops the subscription and starts over.
    heard.wait_for(&Heard::Lost).await;
    assert!(behind_since.elapsed() >= CATCH_UP_WITHIN);
    heard.wait_for_times(&Heard::Restored, 2).await;
    heard.wait_until_vouched().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_sequence_makes_a_node_forget_everything_and_go_on() {
    let redis = TestRedis::new().await;
    let (a, heard) = node(&redis, &redis.prefix);
    heard.wait_until_vouched().await;
    a.agent_changed(agent()).await.unwrap();

    // What a Redis restart without persistence does to the sequence.
    let _: i64 = query(
        &redis,
        redis::cmd("DEL").arg(format!("{}changes:seq", redis.prefix)),
    )
    .await;
    heard.wait_for_times(&Heard::Restored, 2).await;
    heard.wait_until_vouched().await;
    // The next announcement starts a new epoch, which this node follows.
    let next = agent();
    a.agent_changed(next).await.unwrap();
    assert_eq!(heard.heard().last(), Some(&Heard::Changed(next)));
    assert_eq!(
        heard
            .heard()
            .iter()
            .filter(|h| **h == Heard::Restored)
            .count(),
        2
    );
}

/// The subscriber connection of `feed`, by its client name in `CLIENT LIST`.
async fn subscriber_id(redis: &TestRedis, feed: &RedisChangeFeed) -> Option<u64> {
    let list: String = query(redis, redis::cmd("CLIENT").arg("LIST")).await;
    list.lines()
        .find(|line| {
            line.split(' ')
                .any(|field| field == format!("name={}", feed.client_name()))
        })
        .and_then(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("id="))
                .and_then(|id| id.parse().ok())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_is_named_and_a_killed_one_stops_answering_at_once() {
    let redis = TestRedis::new().await;
    let (a, heard_by_a) = node(&redis, &redis.prefix);
    let (b, heard_by_b) = node(&redis, &redis.prefix);
    heard_by_a.wait_until_vouched().await;
    heard_by_b.wait_until_vouched().await;
    assert!(b.client_name().contains(&redis.prefix));
    let id = subscriber_id(&redis, &b)
        .await
        .expect("b's subscriber in CLIENT LIST");
    assert_ne!(subscriber_id(&redis, &a).await, Some(id));

    let _: i64 = query(&redis, redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id)).await;
    let changed = agent();
    a.agent_changed(changed).await.unwrap();
    // B either heard the change or no longer vouches for its copies.
    assert!(
        heard_by_b.heard().contains(&Heard::Changed(changed))
            || heard_by_b.heard().contains(&Heard::Lost)
            || !heard_by_b.vouched(),
        "b answers from memory without the change: {:?}",
        heard_by_b.heard()
    );
    // Then it subscribes again, under the same name.
    heard_by_b.wait_for_times(&Heard::Restored, 2).await;
    let again = subscriber_id(&redis, &b).await.expect("a new subscriber");
    assert_ne!(again, id);
}

/// A TCP relay to the test Redis that can go silent: the connections open
/// when it is frozen stop passing bytes in both directions but stay open, as
/// a dead peer or a dropped route leaves them; later ones pass as usual.
struct Relay {
    url: String,
    frozen_before: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
}

impl Relay {
    async fn start() -> Self {
        let target = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let frozen_before = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (frozen, count) = (frozen_before.clone(), accepted.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let number = count.fetch_add(1, Ordering::SeqCst) + 1;
                let outbound = tokio::net::TcpStream::connect(&target).await.unwrap();
                let (inbound_read, inbound_write) = inbound.into_split();
                let (outbound_read, outbound_write) = outbound.into_split();
                tokio::spawn(pass(inbound_read, outbound_write, frozen.clone(), number));
                tokio::spawn(pass(outbound_read, inbound_write, frozen.clone(), number));
            }
        });
        Self {
            url,
            frozen_before,
            accepted,
        }
    }

    /// Silences every connection open now.
    fn freeze(&self) {
        self.frozen_before
            .store(self.accepted.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    }
}

async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen_before: Arc<AtomicU64>,
    number: u64,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if number < frozen_before.load(Ordering::SeqCst) {
            // Silent, but holding both sockets open.
            std::future::pending::<()>().await;
        }
        if read == 0 || to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_silently_stops_delivering_is_waited_out_and_stops_answering() {
    let redis = TestRedis::new().await;
    let relay = Relay::start().await;
    let (a, heard_by_a) = node(&redis, &redis.prefix);
    let (_b, heard_by_b) = node_via(&relay.url, &redis, &redis.prefix);
    heard_by_a.wait_until_vouched().await;
    heard_by_b.wait_until_vouched().await;
    // Both follow the same sequence (the first announcement starts it).
    let first = agent();
    a.agent_changed(first).await.unwrap();
    assert!(heard_by_b.heard().contains(&Heard::Changed(first)));

    // B's subscription goes silent; its PING has not noticed yet, and its
    // lease renewals still reach Redis through its pool.
    relay.freeze();
    let changed = agent();
    let started = Instant::now();
    a.agent_changed(changed).await.unwrap();
    let waited = started.elapsed();
    assert!(!heard_by_b.heard().contains(&Heard::Changed(changed)));
    assert!(
        !heard_by_b.vouched(),
        "the change returned after {waited:?} while the node that missed it still vouched for its copies"
    );
    assert!(
        !heard_by_b.heard().contains(&Heard::Lost),
        "noticed by other means"
    );
    assert!(waited < ACK_WITHIN, "waited {waited:?}");
    assert!(heard_by_a.heard().contains(&Heard::Changed(changed)));

    // B then finds itself behind, subscribes again (the relay passes new
    // connections) and is vouched for once more.
    assert_eq!(
        heard_by_b.heard(),
        vec![Heard::Restored, Heard::Changed(first)]
    );
    heard_by_b.wait_for(&Heard::Lost).await;
    heard_by_b.wait_for_times(&Heard::Restored, 2).await;
    heard_by_b.wait_until_vouched().await;
    let next = agent();
    let started = Instant::now();
    a.agent_changed(next).await.unwrap();
    assert!(heard_by_b.heard().contains(&Heard::Changed(next)));
    assert!(
        started.elapsed() < LEASE / 2,
        "waited {:?}",
        started.elapsed()
    );
}
