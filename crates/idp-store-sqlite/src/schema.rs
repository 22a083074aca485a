//! The tables of `migrations/sqlite`, written by hand (no `diesel print-schema`
//! step in the build). Keep in step with the migrations: the integration tests
//! exercise every column through the ports. Column types follow the layout of
//! the `columns` module: UUIDs and JSON as `Text`, instants as `BigInt`
//! milliseconds.

diesel::table! {
    agents (agent_id) {
        agent_id -> Text,
        email -> Text,
        /// `GENERATED ALWAYS AS (lower(email)) STORED`: read-only, never inserted.
        email_normalized -> Text,
        agent_type -> Text,
        version -> Text,
        /// A JSON array of strings.
        capabilities -> Text,
        owner -> Text,
        deployment_env -> Text,
        status -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        /// A JSON array of strings, possibly empty.
        resources -> Text,
        /// 0 or 1.
        require_dpop -> Bool,
        /// A JSON array of agent ids (UUID text), possibly empty.
        delegates -> Text,
    }
}

diesel::table! {
    credentials (credential_id) {
        credential_id -> Text,
        agent_id -> Text,
        owner -> Text,
        secret_hash -> Text,
        secret_hint -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        /// `secret` or `public_key`.
        credential_type -> Text,
        /// The public JWK's JSON text; set exactly for a `public_key`.
        public_jwk -> Nullable<Text>,
        jwk_thumbprint -> Nullable<Text>,
    }
}

diesel::table! {
    audit_events (event_id) {
        event_id -> Text,
        owner -> Nullable<Text>,
        agent_id -> Nullable<Text>,
        actor_id -> Nullable<Text>,
        action -> Text,
        outcome -> Text,
        ip_address -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        /// A JSON value.
        metadata -> Text,
        timestamp -> BigInt,
        /// The event's place in its owner's chain; NULL only between the
        /// migration that added it and the backfill in the same transaction.
        sequence -> Nullable<BigInt>,
        /// The chain hash, 64 lowercase hex characters.
        hash -> Nullable<Text>,
    }
}

diesel::table! {
    audit_heads (owner) {
        owner -> Text,
        sequence -> BigInt,
        hash -> Text,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        owner -> Text,
        expires_at -> BigInt,
        revoked_at -> BigInt,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        algorithm -> Text,
        private_key -> Text,
        succeeds -> Nullable<Text>,
        created_at -> BigInt,
        activates_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        /// 0 or 1.
        activation_recorded -> Bool,
    }
}

diesel::table! {
    /// One row (`id` 1).
    key_set_version (id) {
        id -> Integer,
        version -> BigInt,
    }
}

diesel::table! {
    key_set_nodes (node) {
        node -> Text,
        version -> BigInt,
        seen_at -> BigInt,
    }
}

diesel::joinable!(credentials -> agents (agent_id));
diesel::allow_tables_to_appear_in_same_query!(agents, credentials);
