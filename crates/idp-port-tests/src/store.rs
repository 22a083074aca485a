//! Contract suites of the store ports: agents, credentials, audit, revoked tokens, signing keys.
