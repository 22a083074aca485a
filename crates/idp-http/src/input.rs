//! Reading request input: bodies with a size limit, JSON objects field by field,
//! query strings, path identifiers and forms. Every refusal is an [`ApiError`]
//! (or the caller's own shape, for the token endpoint), never a panic or a 500.

use std::collections::BTreeMap;

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;
use idp_domain::audit::RequestContext;
use idp_domain::values::AgentId;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ApiError;

/// The largest request body accepted (contract section 1).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest `User-Agent` kept in audit events.
const MAX_USER_AGENT_CHARS: usize = 512;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over [`MAX_BODY_BYTES`].
    TooLarge,
    /// The connection failed mid-body.
    Incomplete,
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::TooLarge => ApiError::payload_too_large(MAX_BODY_BYTES),
            BodyError::Incomplete => ApiError::bad_body("the request body could not be read"),
        }
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] (checked against
/// `Content-Length` first, then while streaming).
pub async fn read_body(req: &HttpRequest, mut payload: Payload) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Incomplete)?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The media type of the request without parameters, lower-cased.
pub fn media_type(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

fn is_json(media_type: &str) -> bool {
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

/// Parses a JSON object body. An empty body is `None`; a non-empty body needs a
/// JSON content type (else 415) and must be one JSON object (else 400).
pub fn json_object(req: &HttpRequest, body: &[u8]) -> Result<Option<JsonObject>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    match media_type(req) {
        Some(media) if is_json(&media) => {}
        _ => return Err(ApiError::unsupported_media_type("application/json")),
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(Some(JsonObject { fields })),
        Ok(_) => Err(ApiError::bad_body("must be a JSON object")),
        Err(e) => Err(ApiError::bad_body(format!(
            "malformed JSON: {}",
            e.classify_message()
        ))),
    }
}

trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    /// The error's category and position, without echoing input.
    fn classify_message(&self) -> String {
        let kind = match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "unexpected end of input",
        };
        format!("{kind} at line {} column {}", self.line(), self.column())
    }
}

/// A JSON object read field by field; [`JsonObject::finish`] refuses leftovers.
#[derive(Debug)]
pub struct JsonObject {
    fields: Map<String, Value>,
}

impl JsonObject {
    /// Removes `name`: absent is `None`; `null` is refused.
    fn take(&mut self, name: &str) -> Result<Option<Value>, ApiError> {
        match self.fields.remove(name) {
            None => Ok(None),
            Some(Value::Null) => Err(ApiError::validation(name, "must not be null")),
            Some(value) => Ok(Some(value)),
        }
    }

    /// An optional string field.
    pub fn take_str(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::validation(name, "must be a string")),
        }
    }

    /// A required string field.
    pub fn require_str(&mut self, name: &str) -> Result<String, ApiError> {
        self.take_str(name)?
            .ok_or_else(|| ApiError::validation(name, "is required"))
    }

    /// An optional array-of-strings field.
    pub fn take_str_array(&mut self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.take(name)? {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    _ => Err(ApiError::validation(name, "must be an array of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::validation(name, "must be an array of strings")),
        }
    }

    /// A required array-of-strings field.
    pub fn require_str_array(&mut self, name: &str) -> Result<Vec<String>, ApiError> {
        self.take_str_array(name)?
            .ok_or_else(|| ApiError::validation(name, "is required"))
    }

    /// Refuses fields that may not be sent (server-owned or immutable).
    pub fn refuse(&self, names: &[&str], reason: &str) -> Result<(), ApiError> {
        match names.iter().find(|name| self.fields.contains_key(**name)) {
            Some(name) => Err(ApiError::validation(name, reason)),
            None => Ok(()),
        }
    }

    /// Whether the object has no fields left.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Refuses any field not taken.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.fields.keys().next() {
            Some(name) => Err(ApiError::validation(&truncated(name), "unknown field")),
            None => Ok(()),
        }
    }
}

/// Whether every `%` of a form body starts an escape of two hex digits. The
/// WHATWG decoder `serde_urlencoded` follows keeps a broken escape (`%ZZ`) as
/// it is, but a body with one was not written by a form encoder, so it is
/// refused rather than guessed at.
fn well_escaped(body: &[u8]) -> bool {
    let mut rest = body;
    while let Some(at) = rest.iter().position(|&b| b == b'%') {
        match rest.get(at + 1..at + 3) {
            Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
                rest = &rest[at + 3..]
            }
            _ => return false,
        }
    }
    true
}

fn truncated(raw: &str) -> String {
    raw.chars().take(64).collect()
}

/// Query parameters: each at most once, none unknown.
#[derive(Debug)]
pub struct QueryParams {
    params: BTreeMap<String, String>,
}

impl QueryParams {
    /// Parses the request's query string, refusing repeated names.
    pub fn parse(req: &HttpRequest) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|_| ApiError::validation("query", "malformed query string"))?;
        let mut params = BTreeMap::new();
        for (name, value) in pairs {
            if params.insert(name.clone(), value).is_some() {
                return Err(ApiError::validation(
                    &truncated(&name),
                    "must not be repeated",
                ));
            }
        }
        Ok(Self { params })
    }

    /// Removes and parses `name` with `parse`, naming the field on failure.
    pub fn take<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ApiError> {
        match self.params.remove(name) {
            None => Ok(None),
            Some(raw) => parse(&raw)
                .map(Some)
                .map_err(|e| ApiError::validation(name, e.to_string())),
        }
    }

    /// Removes a positive integer parameter.
    pub fn take_u32(&mut self, name: &str) -> Result<Option<u32>, ApiError> {
        self.take(name, |raw| {
            raw.parse::<u32>().map_err(|_| "must be a positive integer")
        })
    }

    /// Refuses any parameter not taken.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.params.keys().next() {
            Some(name) => Err(ApiError::validation(
                &truncated(name),
                "unknown query parameter",
            )),
            None => Ok(()),
        }
    }
}

/// Parses a path segment as a UUID.
pub fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::validation(field, "must be a UUID"))
}

/// Parses an RFC 3339 timestamp (with offset).
pub fn parse_time(field: &str, raw: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| ApiError::validation(field, "must be an RFC 3339 timestamp"))
}

/// An `application/x-www-form-urlencoded` body, each parameter at most once
/// (RFC 6749 section 3.2: repeated parameters are an error; unknown ones are ignored).
#[derive(Debug)]
pub struct FormParams {
    params: BTreeMap<String, String>,
}

/// Why a form could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// Not `application/x-www-form-urlencoded`.
    WrongMediaType,
    /// Not decodable.
    Malformed,
    /// A parameter given twice.
    Repeated(String),
}

impl FormParams {
    /// Parses a form body, checking the content type when the body is not empty.
    pub fn parse(req: &HttpRequest, body: &[u8]) -> Result<Self, FormError> {
        if !body.is_empty()
            && media_type(req).as_deref() != Some("application/x-www-form-urlencoded")
        {
            return Err(FormError::WrongMediaType);
        }
        if !well_escaped(body) {
            return Err(FormError::Malformed);
        }
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|_| FormError::Malformed)?;
        let mut params = BTreeMap::new();
        for (name, value) in pairs {
            if params.insert(name.clone(), value).is_some() {
                return Err(FormError::Repeated(truncated(&name)));
            }
        }
        Ok(Self { params })
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 section 3.2).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Who is calling from where, for audit events.
pub fn request_context(req: &HttpRequest, actor: Option<AgentId>) -> RequestContext {
    let trusted = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .map(|state| state.settings.trusted_proxies.as_slice())
        .unwrap_or_default();
    RequestContext {
        actor_id: actor,
        ip_address: crate::client_ip::client_ip(req, trusted).map(|ip| ip.to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::well_escaped;

    #[test]
    fn broken_percent_escapes_are_refused() {
        assert!(well_escaped(b"grant_type=client_credentials&scope=a%20b"));
        assert!(well_escaped(b"a=%2F%2f&b=%e2%82%ac"));
        assert!(well_escaped(b""));
        for broken in [&b"grant_type=%ZZ"[..], b"a=%", b"a=%2", b"a=%2G", b"%%41=1"] {
            assert!(!well_escaped(broken), "{}", String::from_utf8_lossy(broken));
        }
    }
}
