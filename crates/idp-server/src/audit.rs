//! The operator's `audit` commands: verify chains and list events straight
//! from the store, whatever their age (contract section 15).

use std::io::Write;

use idp_domain::audit_chain::{Verification, next_page_start};
use idp_domain::services::{AuditService, CHAIN_PAGE};
use idp_domain::values::Owner;
use serde_json::json;

/// A failure reported by one exact stderr line (no `error:` prefix) and exit
/// status 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

fn owner_arg(raw: &str) -> anyhow::Result<Owner> {
    Owner::parse_operator(raw).map_err(|e| anyhow::anyhow!("--owner: {}", e.reason))
}

/// `audit verify [--owner O]`: one JSON line per owner on stdout (every owner
/// with a chain, `_system` included, when none is named); a broken chain makes
/// the command fail with `first bad event: sequence K, eventId E` (the first
/// broken owner's).
pub async fn verify(audit: &AuditService, owner: Option<&str>) -> anyhow::Result<()> {
    let owners = match owner {
        Some(raw) => vec![owner_arg(raw)?],
        None => audit.owners().await?,
    };
    let mut first_bad = None;
    let mut stdout = std::io::stdout().lock();
    for owner in owners {
        let line = match audit.verify(&owner).await? {
            Verification::Verified { events, head } => json!({
                "owner": owner, "verified": true, "events": events,
                "head": {"sequence": head.sequence, "hash": head.hash},
            }),
            Verification::Broken { events, bad } => {
                first_bad.get_or_insert_with(|| {
                    format!(
                        "first bad event: sequence {}, eventId {}",
                        bad.first_bad_sequence,
                        bad.event_id
                            .as_deref()
                            .unwrap_or("none (the chain ends before it)")
                    )
                });
                json!({
                    "owner": owner, "verified": false, "events": events,
                    "firstBadSequence": bad.first_bad_sequence, "eventId": bad.event_id,
                })
            }
        };
        writeln!(stdout, "{line}")?;
    }
    stdout.flush()?;
    match first_bad {
        Some(line) => Err(Reported(line).into()),
        None => Ok(()),
    }
}

/// `audit list --owner O`: every event of the owner's chain, in sequence
/// order, as NDJSON (as `GET /api/v1/audit/export` serves them).
pub async fn list(audit: &AuditService, owner: &str) -> anyhow::Result<()> {
    let owner = owner_arg(owner)?;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut from = 1;
    loop {
        let page = audit.chain_page(&owner, from, CHAIN_PAGE).await?;
        for event in &page {
            serde_json::to_writer(&mut stdout, event)?;
            stdout.write_all(b"\n")?;
        }
        match next_page_start(&page, CHAIN_PAGE) {
            Some(next) => from = next,
            None => break,
        }
    }
    stdout.flush()?;
    Ok(())
}
