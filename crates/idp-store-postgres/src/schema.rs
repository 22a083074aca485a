//! The tables of `migrations/postgres`, written by hand (no `diesel print-schema`
//! step in the build). Keep in step with the migrations: the integration tests
//! exercise every column through the ports.

diesel::table! {
    agents (agent_id) {
        agent_id -> Uuid,
        email -> Text,
        /// `GENERATED ALWAYS AS (lower(email))`: read-only, never inserted.
        email_normalized -> Text,
        agent_type -> Text,
        version -> Text,
        capabilities -> Array<Text>,
        owner -> Text,
        deployment_env -> Text,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        resources -> Array<Text>,
        require_dpop -> Bool,
        /// Agent ids, in order, no NULL element.
        delegates -> Array<Uuid>,
    }
}

diesel::table! {
    credentials (credential_id) {
        credential_id -> Uuid,
        agent_id -> Uuid,
        owner -> Text,
        secret_hash -> Text,
        secret_hint -> Nullable<Text>,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        /// `secret` or `public_key`.
        credential_type -> Text,
        /// The public JWK's JSON text; set exactly for a `public_key`.
        public_jwk -> Nullable<Text>,
        jwk_thumbprint -> Nullable<Text>,
    }
}

diesel::table! {
    audit_events (event_id) {
        event_id -> Uuid,
        /// The chain owner: a tenant, or `_system` for events no tenant owns.
        owner -> Text,
        agent_id -> Nullable<Uuid>,
        actor_id -> Nullable<Uuid>,
        action -> Text,
        outcome -> Text,
        ip_address -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        metadata -> Jsonb,
        timestamp -> Timestamptz,
        /// NULL only between the migration that added it and the backfill
        /// that `run_migrations` runs right after.
        sequence -> Nullable<BigInt>,
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
        jti -> Uuid,
        owner -> Text,
        expires_at -> Timestamptz,
        revoked_at -> Timestamptz,
    }
}

diesel::table! {
    signing_keys (kid) {
        algorithm -> Text,
        kid -> Text,
        private_key -> Text,
        created_at -> Timestamptz,
        succeeds -> Nullable<Text>,
        activates_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        activation_recorded -> Bool,
    }
}

diesel::table! {
    key_set_version (id) {
        id -> Bool,
        version -> BigInt,
    }
}

diesel::table! {
    key_set_nodes (node) {
        node -> Text,
        version -> BigInt,
        seen_at -> Timestamptz,
    }
}

diesel::joinable!(credentials -> agents (agent_id));
diesel::allow_tables_to_appear_in_same_query!(agents, credentials);
