//! Value objects. Each validates on construction, so an invalid one cannot exist.

mod absolute_uri;
mod delegates;
mod email;
mod enums;
mod ids;
mod jwk;
mod owner;
mod resource;
mod scope;
mod secret;
mod semver;

pub use delegates::{Delegates, MAX_DELEGATES};
pub use email::Email;
pub use enums::{AgentStatus, AgentType, AuditAction, CredentialStatus, DeploymentEnv, Outcome};
pub use ids::{AgentId, CredentialId, EventId, TokenId};
pub use jwk::{JwsAlgorithm, KeyType, MIN_RSA_BITS, PublicKeyJwk, access_token_hash};
pub use owner::Owner;
pub use resource::{MAX_RESOURCE_LENGTH, MAX_RESOURCES, ResourceUri, Resources};
pub use scope::{Capabilities, MANAGEMENT_SCOPES, Scope, ScopeSet};
pub use secret::{ClientSecret, SecretHash};
pub use semver::SemVer;

mod time;
pub use time::{format_time, serialize_opt_time, serialize_time};
