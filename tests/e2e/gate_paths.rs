//! No spelling of a path reaches an `/api/v1` handler around the gate (issue
//! 9, item 7): the router matches the decoded path, so the gate wraps the
//! matched `/api/v1` scope instead of comparing raw path strings. Sent on raw
//! sockets, because an HTTP client library normalizes some of these paths.

use crate::support::{Exchange, TestApp, raw_exchange};

/// What a raw exchange answered (the head lower-cased).
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    /// A header's value.
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim())
        })
    }

    fn remaining(&self) -> Option<u64> {
        self.header("x-ratelimit-remaining")
            .and_then(|v| v.parse().ok())
    }

    /// The contract error `code` of the body.
    fn code(&self) -> Option<String> {
        let body: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        body["code"].as_str().map(str::to_owned)
    }
}

/// Writes `method path` exactly as given, with an optional Bearer token.
async fn raw(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> Raw {
    let host = app.base_url().strip_prefix("http://").unwrap();
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{authorization}Connection: close\r\n\r\n"
    );
    let reply = raw_exchange(app.base_url(), request.into_bytes()).await;
    Raw {
        status: reply.status,
        head: reply.head,
        body: reply.body,
    }
}

async fn every_spelling_that_reaches_the_api_is_gated_and_counted() {
    let app = TestApp::builder()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "20")
        .start()
        .await;
    let mut expected_remaining = 20;
    for (path, status) in [
        ("/%61pi/v1/agents", 401),
        ("/api/v1/%61gents", 401),
        ("/%61%70%69/v1/audit", 401),
        ("/api/v1/agents/", 404),
        ("/api/v1/./agents", 404),
        ("/api/v1/token/../agents", 404),
        ("/api/v1/nope", 404),
    ] {
        let reply = raw(&app, "GET", path, None).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        expected_remaining -= 1;
        assert_eq!(
            reply.remaining(),
            Some(expected_remaining),
            "{path} was not counted by the gate: {}",
            reply.head
        );
        for name in ["x-ratelimit-limit", "x-ratelimit-reset"] {
            assert!(reply.header(name).is_some(), "{path}: no {name}");
        }
    }
    // Spellings the router does not take for /api/v1 reach no handler at all.
    for path in ["/api//v1/agents", "/API/v1/agents"] {
        let reply = raw(&app, "GET", path, None).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert_eq!(reply.code().as_deref(), Some("NOT_FOUND"), "{path}");
        assert!(reply.remaining().is_none(), "{path}");
    }
    // The budget the hostile spellings spent is the one a plain request sees.
    let plain = app.get("/api/v1/agents").reply().await;
    plain.expect_unauthenticated();
    assert_eq!(
        plain.header("x-ratelimit-remaining"),
        Some((expected_remaining - 1).to_string().as_str())
    );
}

async fn an_encoded_path_is_throttled_like_the_plain_one() {
    let app = TestApp::builder()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "2")
        .start()
        .await;
    let (_, token) = app.bootstrap_admin("acme").await;
    // The token request was the agent's first request of the minute.
    let allowed = raw(&app, "GET", "/%61pi/v1/agents", Some(&token)).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.remaining(), Some(0));
    let refused = raw(&app, "GET", "/api/v1/%61gents", Some(&token)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.code().as_deref(), Some("RATE_LIMIT_EXCEEDED"));
    assert!(refused.header("retry-after").is_some());
    // Anonymous callers too: their address's budget.
    for _ in 0..2 {
        let reply = raw(&app, "GET", "/%61pi/v1/agents", None).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
    }
    let refused = raw(&app, "GET", "/%61pi/v1/agents", None).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
}

async fn other_methods_on_the_token_endpoint_stay_gated() {
    let app = TestApp::start().await;
    for path in ["/api/v1/token", "/api/v1/%74oken"] {
        let reply = raw(&app, "DELETE", path, None).await;
        assert_eq!(reply.status, 405, "{path}: {}", reply.body);
        assert_eq!(reply.header("allow"), Some("post"), "{path}");
        assert!(reply.remaining().is_some(), "{path}: not gated");
    }
}

e2e_tests!(
    every_spelling_that_reaches_the_api_is_gated_and_counted,
    an_encoded_path_is_throttled_like_the_plain_one,
    other_methods_on_the_token_endpoint_stay_gated,
);
