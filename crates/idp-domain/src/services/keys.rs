//! Signing-key rotation (contract section 14): the first key, rotations (by
//! time, by an operator, or to another algorithm), early activation, revocation,
//! and the `key.*` events of the `_system` chain.
//!
//! Every decision reads the stored keys and writes through one conditional
//! store call, so several nodes (and an operator's command) acting at once
//! make one key per rotation: [`SigningKeyStore::insert_key`] stores at most
//! one live successor per key.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use thiserror::Error;

use crate::StoreError;
use crate::audit::AuditEvent;
use crate::keys::{
    KeyState, KeyStatus, SigningKeyRecord, active_key, key_statuses, pending_successor,
};
use crate::ports::{KeyGenerator, SigningKeyStore, TokenCodec};
use crate::values::AuditAction;

use super::Ambient;

/// How keys rotate.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySettings {
    /// Algorithm of the first key and of automatic rotations.
    pub algorithm: String,
    /// Age of the active key that starts an automatic rotation; `None`: never.
    pub rotation_period: Option<Duration>,
    /// How long a new key is published before it signs.
    pub prepublish: Duration,
    /// Access token lifetime: how long a retired key stays published.
    pub token_ttl: Duration,
}

/// Why a key command was refused.
#[derive(Debug, Error)]
pub enum KeyError {
    /// A rotation is already under way: this key waits to activate.
    #[error(
        "key {kid} is already next (activates at {activates_at}); revoke it to replace it, or rotate with --now to activate it at once"
    )]
    AlreadyPending {
        /// The waiting key.
        kid: String,
        /// When it activates.
        activates_at: DateTime<Utc>,
    },
    /// No key has this id.
    #[error("no key {0}")]
    UnknownKey(String),
    /// The key is already revoked.
    #[error("key {0} is already revoked")]
    AlreadyRevoked(String),
    /// Revoking the active key needs another key ready to sign.
    #[error("key {0} is the active key and no other key can sign: run `keys rotate --now` first")]
    LastSigningKey(String),
    /// No key is active (the deployment has not started yet).
    #[error("no signing key is active")]
    NoActiveKey,
    /// The algorithm is not one of `RS256`, `ES256`, `EdDSA`.
    #[error("unsupported algorithm {0} (RS256, ES256 or EdDSA)")]
    UnsupportedAlgorithm(String),
    /// The store or the key generator failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// A new key was made; it activates at its `activates_at`.
    Created(SigningKeyRecord),
    /// The key already waiting was made active now (`--now`).
    ActivatedNow(SigningKeyRecord),
    /// Another node made the successor first; this is it.
    MadeElsewhere(SigningKeyRecord),
}

/// `at` truncated to the whole second. Activation instants are whole seconds,
/// like a token's `iat`: the key that signs a token is the one active at its
/// `iat`, with no second shared by two keys.
fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// The algorithms a key may have.
pub const KEY_ALGORITHMS: [&str; 3] = ["RS256", "ES256", "EdDSA"];

/// Rotates, revokes and lists signing keys; installs them in the token codec.
#[derive(Clone)]
pub struct KeyService {
    store: Arc<dyn SigningKeyStore>,
    generator: Arc<dyn KeyGenerator>,
    ambient: Ambient,
    settings: KeySettings,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl KeyService {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn SigningKeyStore>,
        generator: Arc<dyn KeyGenerator>,
        ambient: Ambient,
        settings: KeySettings,
    ) -> Self {
        Self {
            store,
            generator,
            ambient,
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &KeySettings {
        &self.settings
    }

    /// Every key with its state now.
    pub async fn statuses(&self) -> Result<Vec<KeyStatus>, KeyError> {
        let records = self.store.list_keys().await?;
        Ok(key_statuses(
            &records,
            self.ambient.now(),
            self.settings.token_ttl,
        ))
    }

    /// Makes sure a key signs now: when none is active, a waiting key is
    /// activated at once, or else a first key is made. Nodes starting together
    /// make one key. Answers every stored key.
    pub async fn ensure_active_key(&self) -> Result<Vec<SigningKeyRecord>, KeyError> {
        let records = self.store.list_keys().await?;
        let now = self.ambient.now();
        if active_key(&records, now).is_some() {
            return Ok(records);
        }
        let waiting = records
            .iter()
            .filter(|r| r.revoked_at.is_none())
            .min_by_key(|r| r.activates_at);
        match waiting {
            Some(next) => {
                // `maintain` writes its activation events.
                self.store
                    .activate_early(&next.kid, whole_second(now), &[])
                    .await?;
            }
            None => {
                // The first key, or the one after a deployment whose keys were all revoked.
                let last = records
                    .iter()
                    .max_by_key(|r| r.created_at)
                    .map(|r| r.kid.clone());
                let algorithm = self.settings.algorithm.clone();
                self.create(&algorithm, last, whole_second(now), true)
                    .await?;
            }
        }
        Ok(self.store.list_keys().await?)
    }

    /// Starts a rotation to `algorithm` (default: the configured one): a new
    /// key, published now, active after the pre-publication time, or at once
    /// with `now`. With a key already waiting, `now` activates that key at
    /// once; without `now` it is refused.
    pub async fn rotate(
        &self,
        algorithm: Option<&str>,
        now_flag: bool,
    ) -> Result<Rotation, KeyError> {
        let algorithm = algorithm.unwrap_or(&self.settings.algorithm).to_owned();
        if !KEY_ALGORITHMS.contains(&algorithm.as_str()) {
            return Err(KeyError::UnsupportedAlgorithm(algorithm));
        }
        let records = self.store.list_keys().await?;
        let now = self.ambient.now();
        let active = active_key(&records, now).ok_or(KeyError::NoActiveKey)?;
        if let Some(waiting) = pending_successor(&records, &active.kid) {
            if !now_flag {
                return Err(KeyError::AlreadyPending {
                    kid: waiting.kid.clone(),
                    activates_at: waiting.activates_at,
                });
            }
            return self.activate_now(waiting, now).await;
        }
        let activates_at = if now_flag {
            whole_second(now)
        } else {
            // Rounded up: published at least the whole pre-publication time.
            whole_second(now + self.settings.prepublish + Duration::milliseconds(999))
        };
        let active_kid = active.kid.clone();
        match self
            .create(&algorithm, Some(active_kid.clone()), activates_at, now_flag)
            .await?
        {
            Some(created) => Ok(Rotation::Created(created)),
            None => {
                let records = self.store.list_keys().await?;
                pending_successor(&records, &active_kid)
                    .cloned()
                    .map(Rotation::MadeElsewhere)
                    .ok_or(KeyError::NoActiveKey)
            }
        }
    }

    /// Revokes `kid`: it leaves the JWKS and every token it signed is refused.
    /// The active key may be revoked only when a key waits to replace it,
    /// which then activates at once.
    pub async fn revoke(&self, kid: &str) -> Result<KeyStatus, KeyError> {
        let statuses = self.statuses().await?;
        let status = statuses
            .iter()
            .find(|s| s.record.kid == kid)
            .ok_or_else(|| KeyError::UnknownKey(kid.to_owned()))?;
        let now = self.ambient.now();
        match status.state {
            KeyState::Revoked => return Err(KeyError::AlreadyRevoked(kid.to_owned())),
            KeyState::Active => {
                let records: Vec<SigningKeyRecord> =
                    statuses.iter().map(|s| s.record.clone()).collect();
                let successor = pending_successor(&records, kid)
                    .ok_or_else(|| KeyError::LastSigningKey(kid.to_owned()))?;
                self.activate_now(successor, now).await?;
            }
            KeyState::Next | KeyState::Retired => {}
        }
        let event = self.ambient.system_event(
            AuditAction::KeyRevoked,
            json!({"kid": kid, "alg": status.record.algorithm, "stateBefore": status.state}),
            now,
        );
        if !self.store.revoke_key(kid, now, &[event]).await? {
            return Err(KeyError::AlreadyRevoked(kid.to_owned()));
        }
        let after = self.statuses().await?;
        after
            .into_iter()
            .find(|s| s.record.kid == kid)
            .ok_or_else(|| KeyError::UnknownKey(kid.to_owned()))
    }

    /// One round of a node's upkeep: a first key if none signs, an automatic
    /// rotation once the active key is older than the rotation period, and
    /// the `key.activated` / `key.retired` events of activations that have
    /// happened (written once, by whichever node gets there first). Answers
    /// every stored key, to install in the codec.
    pub async fn maintain(&self) -> Result<Vec<SigningKeyRecord>, KeyError> {
        let mut records = self.ensure_active_key().await?;
        let now = self.ambient.now();
        if let (Some(period), Some(active)) =
            (self.settings.rotation_period, active_key(&records, now))
            && active.activates_at + period <= now
            && pending_successor(&records, &active.kid).is_none()
        {
            match self.rotate(None, false).await {
                Ok(_) | Err(KeyError::AlreadyPending { .. }) => {}
                Err(e) => return Err(e),
            }
            records = self.store.list_keys().await?;
        }
        let mut recorded_any = false;
        for record in &records {
            let activated = record.revoked_at.is_none() && record.activates_at <= now;
            if activated && !record.activation_recorded {
                let events = self.activation_events(record, now);
                recorded_any |= self.store.record_activation(&record.kid, &events).await?;
            }
        }
        if recorded_any {
            records = self.store.list_keys().await?;
        }
        Ok(records)
    }

    /// Reads the stored keys and installs them in `codec`; answers the
    /// key-set version read before the keys, so acknowledging it never claims
    /// a change that was not read.
    pub async fn install(&self, codec: &dyn TokenCodec) -> Result<u64, KeyError> {
        let version = self.store.key_set_version().await?;
        let records = self.store.list_keys().await?;
        codec.install(&records)?;
        Ok(version)
    }

    /// The running nodes (those that acknowledged within `liveness`) that
    /// have not yet installed key-set `version`: a key command waits until
    /// this is empty.
    pub async fn nodes_behind(
        &self,
        version: u64,
        liveness: Duration,
    ) -> Result<Vec<String>, KeyError> {
        let since = self.ambient.now() - liveness;
        Ok(self
            .store
            .key_set_acknowledgements(since)
            .await?
            .into_iter()
            .filter(|(_, seen)| *seen < version)
            .map(|(node, _)| node)
            .collect())
    }

    /// The current key-set version.
    pub async fn key_set_version(&self) -> Result<u64, KeyError> {
        Ok(self.store.key_set_version().await?)
    }

    async fn activate_now(
        &self,
        waiting: &SigningKeyRecord,
        now: DateTime<Utc>,
    ) -> Result<Rotation, KeyError> {
        let now = whole_second(now);
        if !self.store.activate_early(&waiting.kid, now, &[]).await? {
            return Err(KeyError::UnknownKey(waiting.kid.clone()));
        }
        let mut activated = waiting.clone();
        activated.activates_at = now;
        // Recorded now rather than at the next upkeep round, so the chain has
        // the activation before the command returns.
        let events = self.activation_events(&activated, now);
        self.store
            .record_activation(&activated.kid, &events)
            .await?;
        activated.activation_recorded = true;
        Ok(Rotation::ActivatedNow(activated))
    }

    /// `key.activated` for `key`, and `key.retired` for the key it succeeds.
    fn activation_events(&self, key: &SigningKeyRecord, now: DateTime<Utc>) -> Vec<AuditEvent> {
        let mut events = vec![self.ambient.system_event(
            AuditAction::KeyActivated,
            json!({"kid": key.kid, "alg": key.algorithm}),
            now,
        )];
        if let Some(predecessor) = &key.succeeds {
            events.push(self.ambient.system_event(
                AuditAction::KeyRetired,
                json!({"kid": predecessor, "successor": key.kid}),
                now,
            ));
        }
        events
    }

    /// Makes a key succeeding `succeeds`, active from `activates_at`. `None`
    /// when another node stored a successor first.
    async fn create(
        &self,
        algorithm: &str,
        succeeds: Option<String>,
        activates_at: DateTime<Utc>,
        activation_recorded: bool,
    ) -> Result<Option<SigningKeyRecord>, KeyError> {
        let generated = self.generator.generate(algorithm)?;
        let now = self.ambient.now();
        let record = SigningKeyRecord {
            kid: generated.kid,
            algorithm: algorithm.to_owned(),
            private_key: generated.private_key,
            succeeds,
            created_at: now,
            activates_at,
            revoked_at: None,
            activation_recorded,
        };
        let mut events = vec![self.ambient.system_event(
            AuditAction::KeyCreated,
            json!({
                "kid": record.kid,
                "alg": record.algorithm,
                "succeeds": record.succeeds,
                "activatesAt": crate::values::format_time(&record.activates_at),
            }),
            now,
        )];
        if activation_recorded {
            events.extend(self.activation_events(&record, now));
        }
        Ok(self
            .store
            .insert_key(&record, &events)
            .await?
            .then_some(record))
    }
}
