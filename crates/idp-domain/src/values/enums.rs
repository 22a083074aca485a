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
    /// The kind of work an agent does.
    AgentType, "agentType", {
        Screener => "screener", Classifier => "classifier", Orchestrator => "orchestrator",
        Extractor => "extractor", Summarizer => "summarizer", Router => "router",
        Monitor => "monitor", Custom => "custom",
    }
);

wire_enum!(
    /// Where an agent runs.
    DeploymentEnv, "deploymentEnv", {
        Development => "development", Staging => "staging", Production => "production",
    }
);

wire_enum!(
    /// An agent's lifecycle state. `Decommissioned` is final.
    AgentStatus, "status", {
        Active => "active", Suspended => "suspended", Decommissioned => "decommissioned",
    }
);

wire_enum!(
    /// A credential's state; `Expired` is derived from `expiresAt`.
    CredentialStatus, "status", {
        Active => "active", Expired => "expired", Revoked => "revoked",
    }
);

wire_enum!(
    /// What an audit event records.
    AuditAction, "action", {
        AgentCreated => "agent.created", AgentUpdated => "agent.updated",
        AgentSuspended => "agent.suspended", AgentReactivated => "agent.reactivated",
        AgentDecommissioned => "agent.decommissioned",
        CredentialGenerated => "credential.generated", CredentialRotated => "credential.rotated",
        CredentialRevoked => "credential.revoked",
        TokenIssued => "token.issued", TokenRevoked => "token.revoked",
        AuthFailed => "auth.failed",
    }
);

wire_enum!(
    /// Whether the audited action succeeded.
    Outcome, "outcome", {
        Success => "success", Failure => "failure",
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
        assert_eq!(AuditAction::ALL.len(), 11);
    }

    #[test]
    fn refuses_unknown_and_other_case() {
        let err = "Screener".parse::<AgentType>().unwrap_err();
        assert_eq!(err.field, "agentType");
        assert!("".parse::<DeploymentEnv>().is_err());
        assert!("deleted".parse::<AgentStatus>().is_err());
    }
}
