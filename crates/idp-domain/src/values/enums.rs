use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ValueError;

/// Declares a closed set of wire strings as an enum with `as_str`, `ALL`,
/// `FromStr` (refusing anything else with a [`ValueError`] naming `field`) and
/// serde in the same spelling.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal, { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl FromStr for $name {
            type Err = ValueError;
            fn from_str(raw: &str) -> Result<Self, ValueError> {
                match raw {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(ValueError::new(
                        $field,
                        format!("must be one of: {}", [$($wire),+].join(", ")),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// The kind of work an agent does; tokens carry it as the `agent_type` claim.
    AgentType, "agentType", {
        /// Screens inputs (`screener`).
        Screener => "screener",
        /// Classifies (`classifier`).
        Classifier => "classifier",
        /// Directs other agents (`orchestrator`).
        Orchestrator => "orchestrator",
        /// Extracts data (`extractor`).
        Extractor => "extractor",
        /// Summarizes (`summarizer`).
        Summarizer => "summarizer",
        /// Routes requests (`router`).
        Router => "router",
        /// Watches systems (`monitor`).
        Monitor => "monitor",
        /// Anything else (`custom`); what `bootstrap` creates.
        Custom => "custom",
    }
);

wire_enum!(
    /// Where an agent runs; tokens carry it as the `deployment_env` claim.
    DeploymentEnv, "deploymentEnv", {
        /// `development`.
        Development => "development",
        /// `staging`.
        Staging => "staging",
        /// `production`.
        Production => "production",
    }
);

wire_enum!(
    /// An agent's lifecycle state. `Decommissioned` is final.
    AgentStatus, "status", {
        /// Authenticates and holds valid tokens (`active`).
        Active => "active",
        /// Cannot authenticate; its tokens are refused until it is
        /// reactivated (`suspended`).
        Suspended => "suspended",
        /// Retired for good; its credentials are revoked (`decommissioned`).
        Decommissioned => "decommissioned",
    }
);

wire_enum!(
    /// A credential's state; `Expired` is derived from `expiresAt`.
    CredentialStatus, "status", {
        /// Usable (`active`).
        Active => "active",
        /// Past its `expiresAt` (`expired`).
        Expired => "expired",
        /// Revoked, by its owner or with its agent's decommissioning (`revoked`).
        Revoked => "revoked",
    }
);

wire_enum!(
    /// What an audit event records.
    AuditAction, "action", {
        /// An agent was registered (`agent.created`).
        AgentCreated => "agent.created",
        /// An agent's fields changed (`agent.updated`).
        AgentUpdated => "agent.updated",
        /// An agent was suspended (`agent.suspended`).
        AgentSuspended => "agent.suspended",
        /// A suspended agent was made active again (`agent.reactivated`).
        AgentReactivated => "agent.reactivated",
        /// An agent was decommissioned (`agent.decommissioned`).
        AgentDecommissioned => "agent.decommissioned",
        /// A credential was generated (`credential.generated`).
        CredentialGenerated => "credential.generated",
        /// A credential's secret was replaced (`credential.rotated`).
        CredentialRotated => "credential.rotated",
        /// A credential was revoked (`credential.revoked`).
        CredentialRevoked => "credential.revoked",
        /// An access token was issued (`token.issued`); the monthly quota
        /// counts these.
        TokenIssued => "token.issued",
        /// An access token was revoked (`token.revoked`).
        TokenRevoked => "token.revoked",
        /// An agent exchanged a token of an agent it acts for (RFC 8693,
        /// `token.exchanged`); the monthly quota counts the successful ones
        /// against the actor.
        TokenExchanged => "token.exchanged",
        /// A client authentication or token request was refused (`auth.failed`).
        AuthFailed => "auth.failed",
        /// A signing key was made (`key.created`), in the `_system` chain.
        KeyCreated => "key.created",
        /// A signing key started signing (`key.activated`).
        KeyActivated => "key.activated",
        /// A signing key stopped signing (`key.retired`).
        KeyRetired => "key.retired",
        /// A signing key was revoked by an operator (`key.revoked`).
        KeyRevoked => "key.revoked",
    }
);

wire_enum!(
    /// Whether the audited action succeeded.
    Outcome, "outcome", {
        /// `success`.
        Success => "success",
        /// `failure`.
        Failure => "failure",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_value() {
        for t in AgentType::ALL {
            assert_eq!(t.as_str().parse::<AgentType>().unwrap(), *t);
        }
        for a in AuditAction::ALL {
            assert_eq!(a.as_str().parse::<AuditAction>().unwrap(), *a);
        }
        assert_eq!(AgentType::ALL.len(), 8);
        assert_eq!(AuditAction::ALL.len(), 16);
    }

    #[test]
    fn refuses_unknown_and_other_case() {
        let err = "Screener".parse::<AgentType>().unwrap_err();
        assert_eq!(err.field, "agentType");
        assert!("".parse::<DeploymentEnv>().is_err());
        assert!("deleted".parse::<AgentStatus>().is_err());
    }
}
