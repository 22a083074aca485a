//! Signing keys at run time (contract section 14): the key ring a server
//! signs with, the upkeep task that keeps it current on every node, and the
//! operator's `keys` commands.
//!
//! Nodes learn of key changes by reading the store: every change counts one
//! more key-set version; each node checks the version every
//! [`UPKEEP_TICK`], installs the keys when it moved, and acknowledges the
//! version it holds. A `keys` command waits until every node that
//! acknowledged recently holds its change, so the change is in effect
//! everywhere when the command exits, on both deployments, with or without
//! Redis.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::Context;
use chrono::Duration;
use idp_crypto::{JoseKeyRing, KeyVault, SigningAlgorithm, VaultKeyGenerator};
use idp_domain::keys::{KeyStatus, SigningKeyRecord};
use idp_domain::ports::{Clock, SigningKeyStore};
use idp_domain::services::{Ambient, KeyError, KeyService, KeySettings, Rotation};
use idp_domain::values::format_time;
use serde_json::json;

use crate::config::Config;
use crate::wiring::Stores;

/// How often a node checks the key-set version and acknowledges it.
pub const UPKEEP_TICK: StdDuration = StdDuration::from_secs(1);
/// How often a node runs the rotation upkeep (first key, automatic rotation,
/// activation events): well within the contract's 60 s.
const MAINTAIN_EVERY: StdDuration = StdDuration::from_secs(10);
/// A node that has not acknowledged for this long is taken for stopped.
const LIVENESS: Duration = Duration::seconds(3);
/// How long a `keys` command waits for the running nodes.
const CONFIRM_WITHIN: StdDuration = StdDuration::from_secs(10);

/// The vault private keys are stored through: sealing under
/// `IDP_KEY_ENCRYPTION_KEY_FILE` when it is set.
pub fn vault(config: &Config) -> anyhow::Result<Arc<KeyVault>> {
    match &config.key_encryption_key_file {
        Some(path) => KeyVault::from_key_file(path)
            .map(Arc::new)
            .map_err(|e| anyhow::anyhow!("IDP_KEY_ENCRYPTION_KEY_FILE: {e}")),
        None => Ok(Arc::new(KeyVault::plaintext())),
    }
}

fn settings(config: &Config) -> KeySettings {
    KeySettings {
        algorithm: config.signing_alg.clone(),
        rotation_period: config.key_rotation_period(),
        prepublish: Duration::seconds(
            i64::try_from(config.key_prepublish_seconds).unwrap_or(i64::MAX / 1_000_000),
        ),
        token_ttl: Duration::seconds(i64::from(config.token_ttl_seconds)),
    }
}

/// The key service over the store, generating keys through `vault`.
pub fn service(
    config: &Config,
    stores: &Stores,
    vault: Arc<KeyVault>,
    ambient: Ambient,
) -> KeyService {
    KeyService::new(
        stores.signing_keys.clone(),
        Arc::new(VaultKeyGenerator::new(vault)),
        ambient,
        settings(config),
    )
}

/// Refuses stored keys this deployment cannot open (sealed while
/// `IDP_KEY_ENCRYPTION_KEY_FILE` is unset, or sealed under another key), so
/// the server stops before serving with a line that names the variable.
fn check_keys_open(vault: &KeyVault, records: &[SigningKeyRecord]) -> anyhow::Result<()> {
    for record in records.iter().filter(|r| r.revoked_at.is_none()) {
        vault.open(&record.kid, &record.private_key).map_err(|e| {
            anyhow::anyhow!(
                "{e}; IDP_KEY_ENCRYPTION_KEY_FILE is unset or is not the key the signing keys were sealed under"
            )
        })?;
    }
    Ok(())
}

/// Seals every stored key still kept as PEM, once a key-encryption key is
/// configured: after this no dump of the store holds a private key in clear.
async fn seal_plaintext_keys(
    store: &dyn SigningKeyStore,
    vault: &KeyVault,
    records: &[SigningKeyRecord],
) -> anyhow::Result<usize> {
    if !vault.seals() {
        return Ok(0);
    }
    let mut replacements = Vec::new();
    for record in records
        .iter()
        .filter(|r| !KeyVault::is_sealed(&r.private_key))
    {
        let sealed = vault
            .reseal(&record.kid, &record.private_key, vault)
            .map_err(|e| anyhow::anyhow!("IDP_KEY_ENCRYPTION_KEY_FILE: {e}"))?;
        replacements.push((record.kid.clone(), record.private_key.clone(), sealed));
    }
    if replacements.is_empty() {
        return Ok(0);
    }
    match store.replace_private_keys(&replacements).await {
        // Another node sealed them first.
        Ok(()) | Err(idp_domain::StoreError::NotFound) => Ok(replacements.len()),
        Err(e) => Err(anyhow::anyhow!("cannot store the sealed signing keys: {e}")),
    }
}

/// What a server signs with, and the upkeep that keeps it current.
pub struct ServerKeys {
    /// The ring, as the token codec.
    pub ring: Arc<JoseKeyRing>,
    /// The upkeep; `None` with an operator-managed key file.
    pub upkeep: Option<Upkeep>,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKeys")
            .field("ring", &self.ring)
            .field("managed", &self.upkeep.is_some())
            .finish()
    }
}

/// Builds the key ring for `serve`: the operator's key file, or the stored
/// keys (a first key made if there is none, a due rotation started, plain
/// keys sealed once a key-encryption key is configured).
pub async fn server_keys(
    config: &Config,
    stores: &Stores,
    ambient: Ambient,
) -> anyhow::Result<ServerKeys> {
    let ttl = Duration::seconds(i64::from(config.token_ttl_seconds));
    if let Some(path) = &config.signing_key_file {
        let algorithm: SigningAlgorithm = config.signing_alg.parse().map_err(|e| {
            anyhow::anyhow!("IDP_SIGNING_ALG={:?} is invalid: {e}", config.signing_alg)
        })?;
        let ring = JoseKeyRing::from_pem_file(path, algorithm, ambient.clock.clone(), ttl)
            .map_err(|e| anyhow::anyhow!("IDP_SIGNING_KEY_FILE={path:?} is invalid: {e}"))?;
        return Ok(ServerKeys {
            ring: Arc::new(ring),
            upkeep: None,
        });
    }
    let vault = vault(config)?;
    let store = stores.signing_keys.clone();
    let existing = store
        .list_keys()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the signing keys: {e}"))?;
    check_keys_open(&vault, &existing)?;
    let keys = service(config, stores, vault.clone(), ambient.clone());
    let records = keys
        .maintain()
        .await
        .map_err(|e| anyhow::anyhow!("cannot prepare the signing keys: {e}"))?;
    if seal_plaintext_keys(store.as_ref(), &vault, &records).await? > 0 {
        tracing::info!(
            "signing keys stored unencrypted are now sealed under IDP_KEY_ENCRYPTION_KEY_FILE"
        );
    }
    let ring = Arc::new(JoseKeyRing::new(vault, ambient.clock.clone(), ttl));
    let version = keys.install(ring.as_ref()).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot load the signing keys: {e}; IDP_KEY_ENCRYPTION_KEY_FILE may be missing or wrong"
        )
    })?;
    Ok(ServerKeys {
        ring: ring.clone(),
        upkeep: Some(Upkeep {
            keys,
            ring,
            store,
            clock: ambient.clock.clone(),
            node: format!("{}", uuid::Uuid::new_v4()),
            installed: version,
        }),
    })
}

/// One node's key upkeep.
pub struct Upkeep {
    keys: KeyService,
    ring: Arc<JoseKeyRing>,
    store: Arc<dyn SigningKeyStore>,
    clock: Arc<dyn Clock>,
    node: String,
    installed: u64,
}

impl std::fmt::Debug for Upkeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upkeep")
            .field("node", &self.node)
            .field("installed", &self.installed)
            .finish_non_exhaustive()
    }
}

impl Upkeep {
    /// Runs until the process ends: every tick, installs the keys if the
    /// key-set version moved and acknowledges the version held; every
    /// [`MAINTAIN_EVERY`], the rotation upkeep. Failures are logged and
    /// retried next tick: the ring keeps the keys it has.
    pub async fn run(mut self) {
        let mut ticks = tokio::time::interval(UPKEEP_TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ticks_per_maintain = (MAINTAIN_EVERY.as_secs() / UPKEEP_TICK.as_secs()).max(1);
        let mut tick: u64 = 0;
        loop {
            ticks.tick().await;
            tick += 1;
            if tick.is_multiple_of(ticks_per_maintain)
                && let Err(e) = self.keys.maintain().await
            {
                tracing::warn!(error = %e, "signing-key upkeep failed; retrying");
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot refresh the signing keys; keeping the ones held");
            }
        }
    }

    async fn refresh(&mut self) -> anyhow::Result<()> {
        let version = self.store.key_set_version().await?;
        if version != self.installed {
            let version = self.keys.install(self.ring.as_ref()).await?;
            tracing::info!(version, active = ?self.ring.active_key_id(), "signing keys reloaded");
            self.installed = version;
        }
        let now = self.clock.now();
        self.store
            .acknowledge_key_set(&self.node, self.installed, now)
            .await?;
        Ok(())
    }
}

/// One key as `keys list` prints it.
fn key_json(status: &KeyStatus) -> serde_json::Value {
    let time = |t: &Option<chrono::DateTime<chrono::Utc>>| t.as_ref().map(format_time);
    json!({
        "kid": status.record.kid,
        "alg": status.record.algorithm,
        "state": status.state,
        "createdAt": format_time(&status.record.created_at),
        "activatesAt": format_time(&status.record.activates_at),
        "retiredAt": time(&status.retired_at),
        "revokedAt": time(&status.record.revoked_at),
        "succeeds": status.record.succeeds,
    })
}

/// What the operator asked of the keys.
#[derive(Debug)]
pub enum KeyCommand<'a> {
    /// `keys list`.
    List,
    /// `keys rotate [--alg A] [--now]`.
    Rotate {
        /// The new key's algorithm.
        algorithm: Option<&'a str>,
        /// Activate at once.
        now: bool,
    },
    /// `keys revoke KID`.
    Revoke(&'a str),
    /// `keys rewrap --new-key-file F`.
    Rewrap(&'a Path),
}

/// Runs a `keys` command and prints its JSON answer on stdout.
pub async fn run(
    config: &Config,
    stores: &Stores,
    ambient: Ambient,
    command: KeyCommand<'_>,
) -> anyhow::Result<()> {
    if let Some(path) = &config.signing_key_file {
        return match command {
            KeyCommand::List => {
                let ring = server_keys(config, stores, ambient).await?.ring;
                println!(
                    "{}",
                    json!([{"kid": ring.active_key_id(), "alg": config.signing_alg, "state": "active", "managedBy": "IDP_SIGNING_KEY_FILE"}])
                );
                Ok(())
            }
            _ => anyhow::bail!(
                "IDP_SIGNING_KEY_FILE={path:?} is set: the signing key is managed by the operator, so rotation, revocation and rewrapping are theirs (replace the file and restart every node)"
            ),
        };
    }
    let vault = vault(config)?;
    let keys = service(config, stores, vault.clone(), ambient.clone());
    let refused = |e: KeyError| anyhow::anyhow!("{e}");
    let answer = match command {
        KeyCommand::List => {
            let statuses = keys.statuses().await.map_err(refused)?;
            println!(
                "{}",
                json!(statuses.iter().map(key_json).collect::<Vec<_>>())
            );
            return Ok(());
        }
        KeyCommand::Rotate { algorithm, now } => {
            let existing = stores.signing_keys.list_keys().await?;
            check_keys_open(&vault, &existing)?;
            let rotation = keys.rotate(algorithm, now).await.map_err(refused)?;
            let (key, how) = match rotation {
                Rotation::Created(key) => (key, "created"),
                Rotation::ActivatedNow(key) => (key, "activated"),
                Rotation::MadeElsewhere(key) => (key, "made by another node"),
            };
            tracing::info!(kid = %key.kid, how, "key rotation");
            status_of(&keys, &key.kid).await?
        }
        KeyCommand::Revoke(kid) => key_json(&keys.revoke(kid).await.map_err(refused)?),
        KeyCommand::Rewrap(new_key_file) => {
            let to = KeyVault::from_key_file(new_key_file)
                .map_err(|e| anyhow::anyhow!("--new-key-file: {e}"))?;
            let records = stores.signing_keys.list_keys().await?;
            let mut replacements = Vec::new();
            for record in &records {
                let resealed = vault
                    .reseal(&record.kid, &record.private_key, &to)
                    .map_err(|e| anyhow::anyhow!("{e}; IDP_KEY_ENCRYPTION_KEY_FILE must name the key the signing keys are sealed under now"))?;
                replacements.push((record.kid.clone(), record.private_key.clone(), resealed));
            }
            stores
                .signing_keys
                .replace_private_keys(&replacements)
                .await
                .context(
                    "cannot store the rewrapped keys (another rewrap ran at the same time?)",
                )?;
            json!({"rewrapped": replacements.len()})
        }
    };
    println!("{answer}");
    confirm_on_every_node(&keys).await
}

async fn status_of(keys: &KeyService, kid: &str) -> anyhow::Result<serde_json::Value> {
    let statuses = keys.statuses().await?;
    statuses
        .iter()
        .find(|s| s.record.kid == kid)
        .map(key_json)
        .ok_or_else(|| anyhow::anyhow!("key {kid} vanished"))
}

/// Waits until every running node holds the current key set.
async fn confirm_on_every_node(keys: &KeyService) -> anyhow::Result<()> {
    let version = keys.key_set_version().await?;
    let started = std::time::Instant::now();
    loop {
        let behind = keys.nodes_behind(version, LIVENESS).await?;
        if behind.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= CONFIRM_WITHIN {
            anyhow::bail!(
                "the change is stored, but {} running node(s) did not confirm it within {}s: {}",
                behind.len(),
                CONFIRM_WITHIN.as_secs(),
                behind.join(", ")
            );
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}
