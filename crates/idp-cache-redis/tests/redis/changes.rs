//! [`RedisChangeFeed`]: an announcement (a changed agent, a revoked token)
//! reaches every node subscribed under the same prefix, itself included, and
//! nobody under another prefix.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use idp_cache_redis::RedisChangeFeed;
use idp_domain::ports::{ChangeListener, ChangeNotifier, RevokedToken};
use idp_domain::values::{AgentId, TokenId};
use uuid::Uuid;

use crate::support::{TestRedis, redis_url};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Changed(AgentId),
    Revoked(RevokedToken),
    Lost,
    Restored,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Heard>>);

impl Recorder {
    fn heard(&self) -> Vec<Heard> {
        self.0.lock().unwrap().clone()
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
}

impl ChangeListener for Recorder {
    fn agent_changed(&self, agent: AgentId) {
        self.0.lock().unwrap().push(Heard::Changed(agent));
    }

    fn token_revoked(&self, token: &RevokedToken) {
        self.0.lock().unwrap().push(Heard::Revoked(token.clone()));
    }

    fn feed_lost(&self) {
        self.0.lock().unwrap().push(Heard::Lost);
    }

    fn feed_restored(&self) {
        self.0.lock().unwrap().push(Heard::Restored);
    }
}

fn node(redis: &TestRedis, prefix: &str) -> (RedisChangeFeed, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let feed = RedisChangeFeed::start(
        &redis_url(),
        redis.cache.pool().clone(),
        prefix,
        vec![recorder.clone()],
    )
    .unwrap();
    (feed, recorder)
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
    }

    // Each call returns once every node applied the change: no waiting here.
    let agent = AgentId(Uuid::new_v4());
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

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(heard_elsewhere.heard(), vec![Heard::Restored]);
    assert!(!heard_by_b.heard().contains(&Heard::Lost));
    // Publishing leaves no key behind.
    assert!(redis.keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_message_on_the_channel_forgets_everything() {
    let redis = TestRedis::new().await;
    let (_a, heard) = node(&redis, &redis.prefix);
    heard.wait_for(&Heard::Restored).await;

    let mut conn = redis.cache.pool().get().await.unwrap();
    let _: i64 = idp_cache_redis::redis::cmd("PUBLISH")
        .arg(format!("{}changes", redis.prefix))
        .arg("not an agent id")
        .query_async(&mut *conn)
        .await
        .unwrap();
    for _ in 0..100 {
        if heard.heard().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(heard.heard(), vec![Heard::Restored, Heard::Restored]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_acknowledges_delays_a_change_by_the_limit_only() {
    let redis = TestRedis::new().await;
    let (a, heard) = node(&redis, &redis.prefix);
    heard.wait_for(&Heard::Restored).await;
    let client = idp_cache_redis::redis::Client::open(redis_url()).unwrap();
    let mut silent = client.get_async_pubsub().await.unwrap();
    silent
        .subscribe(format!("{}changes", redis.prefix))
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let agent = AgentId(Uuid::new_v4());
    a.agent_changed(agent).await.unwrap();
    let waited = started.elapsed();
    assert!(heard.heard().contains(&Heard::Changed(agent)));
    assert!(
        waited >= idp_cache_redis::ACK_WITHIN && waited < idp_cache_redis::ACK_WITHIN * 2,
        "waited {waited:?}"
    );
}
