//! Contract test suites for the ports of `idp-domain`.
//!
//! Each suite is a set of `pub async fn` taking the adapter under test as
//! `Arc<dyn Port>`; every adapter crate calls them from its own tests, so all
//! adapters of a port are held to one contract. Test code: panics are the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cache;
pub mod chain_and_keys;
pub mod replay;
pub mod store;

/// Defines one test per function of the [`store`] contract suite, against an
/// adapter's test harness: `$start` makes a fresh harness (bound to `$h`),
/// whose methods named after the ports (`agents()`, `credentials()`,
/// `audit()`, `revoked_tokens()`, `signing_keys()`) hand out the adapter as
/// each port, and `$finish` cleans up after a test that passed. The list of
/// suite functions lives here, once, so every store adapter runs all of them.
#[macro_export]
macro_rules! store_contract_tests {
    (start: $start:expr, finish: |$h:ident| $finish:expr $(,)?) => {
        $crate::store_contract_tests! {
            @each start: $start, finish: |$h| $finish;
            agent_create_and_find => agent_create_and_find(agents, audit);
            agent_email_unique_case_insensitively => agent_email_unique_case_insensitively(agents, audit);
            agent_email_unique_on_update => agent_email_unique_on_update(agents, audit);
            agent_limit_per_owner => agent_limit_per_owner(agents, audit);
            agent_limit_holds_under_concurrent_creates => agent_limit_holds_under_concurrent_creates(agents);
            agent_tenancy => agent_tenancy(agents, audit);
            agent_list_order_and_pagination => agent_list_order_and_pagination(agents);
            agent_list_filters => agent_list_filters(agents);
            agent_update => agent_update(agents, audit);
            agent_update_refuses_a_stale_read => agent_update_refuses_a_stale_read(agents, audit);
            agent_resources_and_dpop_round_trip => agent_resources_and_dpop_round_trip(agents, audit);
            agent_update_compares_resources_and_dpop => agent_update_compares_resources_and_dpop(agents, audit);
            agent_delegates_round_trip => agent_delegates_round_trip(agents, audit);
            agent_update_has_one_winner_per_read => agent_update_has_one_winner_per_read(agents, audit);
            agent_concurrent_updates_lose_nothing => agent_concurrent_updates_lose_nothing(agents, audit);
            agent_decommission => agent_decommission(agents, credentials, audit);
            credential_create_requires_active_agent => credential_create_requires_active_agent(agents, credentials, audit);
            credential_limit_per_agent => credential_limit_per_agent(agents, credentials, audit);
            credential_limit_holds_under_concurrent_creates => credential_limit_holds_under_concurrent_creates(agents, credentials);
            credential_create_races_decommission => credential_create_races_decommission(agents, credentials);
            credential_tenancy => credential_tenancy(agents, credentials);
            credential_list_order_pagination_and_status => credential_list_order_pagination_and_status(agents, credentials);
            credential_rotate_and_revoke => credential_rotate_and_revoke(agents, credentials, audit);
            credential_find_by_hint => credential_find_by_hint(agents, credentials);
            credential_public_key_round_trip => credential_public_key_round_trip(agents, credentials, audit);
            credential_find_by_hint_skips_public_keys => credential_find_by_hint_skips_public_keys(agents, credentials);
            credential_find_public_keys => credential_find_public_keys(agents, credentials);
            credential_rotate_public_key => credential_rotate_public_key(agents, credentials, audit);
            credential_rotate_refuses_the_other_type => credential_rotate_refuses_the_other_type(agents, credentials, audit);
            credential_subject_state => credential_subject_state(agents, credentials);
            audit_append_list_find => audit_append_list_find(audit);
            audit_list_filters => audit_list_filters(audit);
            audit_append_never_overwrites => audit_append_never_overwrites(audit);
            audit_append_all => audit_append_all(audit);
            audit_tokens_issued_since => audit_tokens_issued_since(audit);
            audit_tokens_issued_by => audit_tokens_issued_by(audit);
            audit_append_all_is_all_or_none => audit_append_all_is_all_or_none(audit);
            revoked_token_store => revoked_token_store(revoked_tokens, audit);
            audit_chain_sequences_per_owner => audit_chain_sequences_per_owner(audit);
            audit_chain_ownerless_goes_to_system => audit_chain_ownerless_goes_to_system(audit);
            audit_chain_page_paging => audit_chain_page_paging(audit);
            audit_chain_append_all_mixed_owners => audit_chain_append_all_mixed_owners(audit);
            audit_chain_concurrent_appends => audit_chain_concurrent_appends(audit);
            audit_chain_covers_transactional_writes => audit_chain_covers_transactional_writes(agents, credentials, audit, revoked_tokens);
            signing_key_insert_and_list => signing_key_insert_and_list(signing_keys, audit);
            signing_key_insert_races_make_one_key => signing_key_insert_races_make_one_key(signing_keys, audit);
            signing_key_activate_early => signing_key_activate_early(signing_keys, audit);
            signing_key_revoke => signing_key_revoke(signing_keys, audit);
            signing_key_record_activation_once => signing_key_record_activation_once(signing_keys, audit);
            signing_key_replace_private_keys => signing_key_replace_private_keys(signing_keys);
            signing_key_set_version_grows => signing_key_set_version_grows(signing_keys);
            signing_key_set_acknowledgements => signing_key_set_acknowledgements(signing_keys);
        }

        #[tokio::test]
        async fn audit_log_port_has_no_update_or_delete() {
            $crate::store::audit_log_port_has_no_update_or_delete().await;
        }
    };
    (@each start: $start:expr, finish: |$h:ident| $finish:expr; $($name:ident => $suite:ident($($port:ident),*);)+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let $h = $start;
            $crate::store::$suite($($h.$port()),*).await;
            $finish;
        }
    )+};
}
