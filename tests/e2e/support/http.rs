//! Exchanges with the server: a [`Reply`] holds everything a test asserts on,
//! and every reply is checked for what the contract promises of all of them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::RequestBuilder;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text (lossy).
    pub text: String,
    /// The request path, for messages.
    pub path: String,
}

/// Sends a request and reads the reply, checking the invariants of every
/// response: an `X-Request-Id`, no 5xx but the contract's 503, `X-RateLimit-*` on every
/// `/api/v1` response but the token endpoint's (checked by its own tests), and
/// a status and body that `openapi/openapi.yaml` documents.
pub trait Exchange {
    /// Sends and reads the whole reply.
    fn reply(self) -> impl std::future::Future<Output = Reply> + Send;
}

impl Exchange for RequestBuilder {
    async fn reply(self) -> Reply {
        let (client, request) = self.build_split();
        let request = request.expect("a well-formed request");
        let method = request.method().clone();
        let path = request.url().path().to_owned();
        let response = client
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no response: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: body unreadable: {e}"));
        let reply = Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&body).into_owned(),
            path,
        };
        reply.check_invariants(method.as_str());
        reply
    }
}

impl Reply {
    fn check_invariants(&self, method: &str) {
        assert!(
            self.status < 500 || self.status == 503,
            "{method} {}: server error {}: {}",
            self.path,
            self.status,
            self.text
        );
        assert!(
            self.header("x-request-id").is_some_and(|id| !id.is_empty()),
            "{method} {}: no X-Request-Id",
            self.path
        );
        // Contract section 8 (v2): on every response, whatever its status.
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            (
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'",
            ),
        ] {
            assert_eq!(
                self.header(name),
                Some(value),
                "{method} {} ({}): {name}",
                self.path,
                self.status
            );
        }
        // A CORS preflight is answered before the gate: not rate limited.
        if self.path.starts_with("/api/v1/") && self.path != "/api/v1/token" && method != "OPTIONS"
        {
            for name in [
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ] {
                assert!(
                    self.header(name).is_some(),
                    "{method} {} ({}): no {name}",
                    self.path,
                    self.status
                );
            }
        }
        super::openapi::check(
            method,
            &self.path,
            self.status,
            self.header("content-type"),
            &self.text,
        );
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header, joined by ", ".
    pub fn header_values(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.path, self.text))
    }

    /// Asserts the status and returns the reply.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status, status,
            "{}: expected {status}, got {}: {}",
            self.path, self.status, self.text
        );
        self
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect_json(self, status: u16) -> Value {
        self.expect(status).json()
    }

    /// Asserts a contract error: status, `code`, a `message`, and the JSON
    /// content type. Returns the body.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            (self.status, self.json()["code"].as_str()),
            (status, Some(code)),
            "{}: expected {status} {code}, got {}: {}",
            self.path,
            self.status,
            self.text
        );
        let body = self.json();
        assert!(
            body["message"].is_string(),
            "{}: no message: {body}",
            self.path
        );
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{}: error without a JSON content type",
            self.path
        );
        body
    }

    /// Asserts a `400 VALIDATION_ERROR` about `field`.
    #[track_caller]
    pub fn expect_invalid_field(&self, field: &str) {
        let body = self.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(
            body["details"]["field"], field,
            "{}: wrong field in {body}",
            self.path
        );
    }

    /// Asserts an OAuth error of the token endpoint: status, `error`, an
    /// `error_description`, and the no-store headers (RFC 6749 section 5.2).
    #[track_caller]
    pub fn expect_oauth_error(&self, status: u16, error: &str) -> Value {
        assert_eq!(
            (self.status, self.json()["error"].as_str()),
            (status, Some(error)),
            "{}: expected {status} {error}, got {}: {}",
            self.path,
            self.status,
            self.text
        );
        let body = self.json();
        assert!(
            body["error_description"].is_string(),
            "{}: no error_description: {body}",
            self.path
        );
        self.expect_no_store();
        body
    }

    /// Asserts `Cache-Control: no-store` and `Pragma: no-cache`.
    #[track_caller]
    pub fn expect_no_store(&self) {
        assert_eq!(
            self.header("cache-control"),
            Some("no-store"),
            "{}",
            self.path
        );
        assert_eq!(self.header("pragma"), Some("no-cache"), "{}", self.path);
    }

    /// Asserts a `401 AUTHENTICATION_ERROR` with a Bearer challenge.
    #[track_caller]
    pub fn expect_unauthenticated(&self) {
        self.expect_error(401, "AUTHENTICATION_ERROR");
        assert!(
            self.header_values("www-authenticate").contains("Bearer"),
            "{}: 401 without a Bearer challenge: {:?}",
            self.path,
            self.headers
        );
    }

    /// Asserts `403 INSUFFICIENT_SCOPE` naming `scope` in its challenge.
    #[track_caller]
    pub fn expect_insufficient_scope(&self, scope: &str) {
        self.expect_error(403, "INSUFFICIENT_SCOPE");
        let challenge = self.header_values("www-authenticate");
        assert!(
            challenge.starts_with("Bearer")
                && challenge.contains(r#"error="insufficient_scope""#)
                && challenge.contains(&format!(r#"scope="{scope}""#)),
            "{}: bad challenge {challenge:?}",
            self.path
        );
    }
}

/// A response to bytes written on a socket: for requests an HTTP client
/// library will not send (non-UTF-8 request lines, lying lengths, chunked
/// bodies).
#[derive(Debug)]
pub struct RawReply {
    /// Status code.
    pub status: u16,
    /// The header block, lower-cased.
    pub head: String,
    /// The body, de-chunked if needed (lossy).
    pub body: String,
}

impl RawReply {
    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The contract error `code` of the body.
    pub fn code(&self) -> Option<String> {
        self.json()?.get("code")?.as_str().map(str::to_owned)
    }
}

/// Writes `request` (which should say `Connection: close`) to `base_url`'s
/// host and reads the response to the end.
pub async fn raw_exchange(base_url: &str, request: Vec<u8>) -> RawReply {
    let addr = base_url
        .strip_prefix("http://")
        .expect("an http:// base URL")
        .to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        // The server may answer and close before reading everything.
        let _ = stream.write_all(&request);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        parse_raw(&response)
    })
    .await
    .expect("the raw exchange's thread")
}

fn parse_raw(response: &[u8]) -> RawReply {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    RawReply { status, head, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}
