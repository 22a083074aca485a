//! Reading request input: bodies with a size limit, then JSON bodies, query
//! strings, path parameters and forms as the typed request shapes of
//! [`crate::requests`]. Serde reads a shape; this module adds only what serde
//! cannot say by itself: which field a refusal is about, that `null` is not
//! absence, that a query parameter may not repeat, and the contract's order of
//! checks. Every refusal is an [`ApiError`] (or the caller's own shape, for the
//! token endpoint), never a panic or a 500.

use std::collections::BTreeMap;

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;
use idp_domain::audit::RequestContext;
use idp_domain::values::AgentId;
use serde::Deserializer;
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, Expected, IntoDeserializer, Unexpected, Visitor};
use serde_json::Value;

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

/// Reads a JSON body as the request shape `T`. An empty body is `None`; a
/// non-empty body needs a JSON content type (else 415) and must be one JSON
/// object (else 400), then is read into `T` as the private `typed` reader does.
pub fn json_body<T: Shape>(req: &HttpRequest, body: &[u8]) -> Result<Option<T>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    match media_type(req) {
        Some(media) if is_json(&media) => {}
        _ => return Err(ApiError::unsupported_media_type("application/json")),
    }
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(ApiError::bad_body("must be a JSON object")),
        Err(e) => {
            return Err(ApiError::bad_body(format!(
                "malformed JSON: {}",
                e.classify_message()
            )));
        }
    };
    let fields = fields
        .into_iter()
        .map(|(name, value)| (name, JsonValue(value)));
    typed(fields.collect(), "unknown field").map(Some)
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

/// Reads the query string as the request shape `T`: each parameter at most once;
/// one `T` does not declare is refused when `T` denies unknown fields.
pub fn query<T: Shape>(req: &HttpRequest) -> Result<T, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| ApiError::validation("query", "malformed query string"))?;
    let mut params = BTreeMap::new();
    for (name, value) in pairs {
        if params.contains_key(&name) {
            return Err(ApiError::validation(
                &truncated(&name),
                "must not be repeated",
            ));
        }
        params.insert(name, TextValue(value));
    }
    typed(params.into_iter().collect(), "unknown query parameter")
}

/// Reads the path parameters of the matched route as the request shape `T`.
pub fn path<T: Shape>(req: &HttpRequest) -> Result<T, ApiError> {
    let params = req.match_info().iter();
    let params = params.map(|(name, value)| (name.to_owned(), TextValue(value.to_owned())));
    typed(params.collect(), "unknown path parameter")
}

/// A request shape: its fields declared once, in a `Deserialize` struct (which
/// says the wire names and types, and refuses unknown fields where the contract
/// does), its rules in `garde` (whose custom validators call the domain's value
/// objects).
pub trait Shape: DeserializeOwned + garde::Validate<Context = ()> {}

impl<T: DeserializeOwned + garde::Validate<Context = ()>> Shape for T {}

/// The one reading of a request shape from named values, in the contract's
/// order: first the fields `T` declares, in declaration order (a `null`, a
/// wrong type or a missing required field, then `garde`'s rules, the first
/// failing field named), then any field `T` does not declare. The first
/// refusal is the answer, naming its field.
fn typed<T, V>(fields: Vec<(String, V)>, unknown_reason: &str) -> Result<T, ApiError>
where
    T: Shape,
    V: for<'de> IntoDeserializer<'de, FieldError>,
{
    let declared = declared_fields::<T>();
    let (mut known, mut unknown): (Vec<_>, Vec<_>) = fields
        .into_iter()
        .partition(|(name, _)| declared.contains(&name.as_str()));
    known.sort_by_key(|(name, _)| declared.iter().position(|d| *d == name));
    // The first unknown field by name: JSON objects come in body order or
    // sorted depending on serde_json's features, and the answer must not.
    unknown.sort_by(|(a, _), (b, _)| a.cmp(b));
    let value: T = deserialize(known).map_err(|e| e.into_api_error(unknown_reason))?;
    value.validate().map_err(|report| {
        // garde names a field by its Rust identifier, and reports in its own
        // order: the wire name is serde's, and the first in declaration order
        // is the one named.
        let refusals = report.iter().map(|(path, error)| {
            let path = path.to_string();
            let at = declared.iter().position(|name| snake_case(name) == path);
            (at, path, error.message())
        });
        match refusals.min_by_key(|(at, _, _)| at.unwrap_or(usize::MAX)) {
            Some((Some(at), _, reason)) => ApiError::validation(declared[at], reason),
            Some((None, path, reason)) if !path.is_empty() => ApiError::validation(&path, reason),
            Some((None, _, reason)) => ApiError::bad_body(reason),
            None => ApiError::bad_body("is invalid"),
        }
    })?;
    if unknown.is_empty() {
        return Ok(value);
    }
    // Only fields `T` does not declare: a shape that denies unknown fields
    // names the first; one that does not (an OAuth form) ignores them.
    match deserialize::<T, V>(unknown) {
        Err(refused @ Refused(FieldError::Unknown(_), _)) => {
            Err(refused.into_api_error(unknown_reason))
        }
        _ => Ok(value),
    }
}

/// A refusal of serde, and the field being read when it came.
struct Refused(FieldError, String);

impl Refused {
    fn into_api_error(self, unknown_reason: &str) -> ApiError {
        match self.0 {
            FieldError::Missing(name) => ApiError::validation(name, "is required"),
            FieldError::Unknown(name) => ApiError::validation(&truncated(&name), unknown_reason),
            FieldError::Invalid(reason) => ApiError::validation(&truncated(&self.1), reason),
        }
    }
}

/// Deserializes `T` from `fields` in their order.
fn deserialize<T, V>(fields: Vec<(String, V)>) -> Result<T, Refused>
where
    T: DeserializeOwned,
    V: for<'de> IntoDeserializer<'de, FieldError>,
{
    let current = std::cell::RefCell::new(String::new());
    let fields = fields.into_iter().inspect(|(name, _)| {
        current.replace(name.clone());
    });
    T::deserialize(MapDeserializer::<_, FieldError>::new(fields))
        .map_err(|e| Refused(e, current.take()))
}

/// The wire names of `T`'s fields, in declaration order, as serde's derive
/// declares them.
fn declared_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = FieldError;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, FieldError> {
            Err(FieldError::Invalid(String::new()))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, FieldError> {
            *self.0 = fields;
            Err(FieldError::Invalid(String::new()))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _probed = T::deserialize(Probe(&mut fields));
    fields
}

/// `agentType` -> `agent_type`, as serde's `rename_all = "camelCase"` reverses.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Why serde refused a request: what it alone cannot tell by name.
#[derive(Debug)]
pub enum FieldError {
    /// A required field is absent.
    Missing(&'static str),
    /// A field the shape does not declare.
    Unknown(String),
    /// The field being read is refused, for this reason.
    Invalid(String),
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(name) => write!(f, "{name} is required"),
            Self::Unknown(name) => write!(f, "unknown field {name}"),
            Self::Invalid(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for FieldError {}

impl serde::de::Error for FieldError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self::Invalid(msg.to_string())
    }

    // Said without echoing the input (serde's own messages quote it).
    fn invalid_type(_: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::Invalid(format!("must be {expected}"))
    }

    fn invalid_value(_: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::Invalid(format!("must be {expected}"))
    }

    fn invalid_length(_: usize, expected: &dyn Expected) -> Self {
        Self::Invalid(format!("must be {expected}"))
    }

    fn unknown_field(field: &str, _: &'static [&'static str]) -> Self {
        Self::Unknown(field.to_owned())
    }

    fn missing_field(field: &'static str) -> Self {
        Self::Missing(field)
    }
}

/// A JSON value read into a request shape: `null` is refused wherever it
/// stands (an absent field is omitted, not `null`).
#[derive(Debug)]
pub struct JsonValue(Value);

impl IntoDeserializer<'_, FieldError> for JsonValue {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for JsonValue {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::Null => Err(FieldError::Invalid("must not be null".to_owned())),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, f) => visitor.visit_f64(f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => {
                let mut items = SeqDeserializer::new(items.into_iter().map(JsonValue));
                let value = visitor.visit_seq(&mut items)?;
                items.end()?;
                Ok(value)
            }
            Value::Object(fields) => {
                let fields = fields.into_iter().map(|(k, v)| (k, JsonValue(v)));
                let mut fields = MapDeserializer::new(fields);
                let value = visitor.visit_map(&mut fields)?;
                fields.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        visitor.visit_some(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// A query, path or form value: text, read as a number where the shape says so.
#[derive(Debug)]
pub struct TextValue(String);

impl IntoDeserializer<'_, FieldError> for TextValue {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for TextValue {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        visitor.visit_string(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        visitor.visit_some(self)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.0.parse::<u32>() {
            Ok(n) => visitor.visit_u32(n),
            Err(_) => Err(FieldError::Invalid("must be a positive integer".to_owned())),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.0.parse::<u64>() {
            Ok(n) => visitor.visit_u64(n),
            Err(_) => Err(FieldError::Invalid("must be a positive integer".to_owned())),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
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

/// An `application/x-www-form-urlencoded` body, each parameter at most once
/// (RFC 6749 section 3.2: repeated parameters are an error; unknown ones are ignored).
#[derive(Debug)]
pub struct FormParams {
    params: BTreeMap<String, String>,
    repeatable: BTreeMap<String, Vec<String>>,
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
        Self::parse_with_repeatable(req, body, &[])
    }

    /// [`FormParams::parse`] for a form whose parameters named in
    /// `repeatable` may be given several times (RFC 8707 `resource`); read
    /// them with [`FormParams::all`].
    pub fn parse_with_repeatable(
        req: &HttpRequest,
        body: &[u8],
        repeatable: &[&str],
    ) -> Result<Self, FormError> {
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
        let mut repeated: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in pairs {
            if repeatable.contains(&name.as_str()) {
                repeated.entry(name).or_default().push(value);
            } else if params.insert(name.clone(), value).is_some() {
                return Err(FormError::Repeated(truncated(&name)));
            }
        }
        Ok(Self {
            params,
            repeatable: repeated,
        })
    }

    /// Every value of a repeatable parameter, in order; empty values count
    /// as given (the caller decides whether they are valid).
    pub fn all(&self, name: &str) -> &[String] {
        self.repeatable.get(name).map_or(&[], Vec::as_slice)
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 section 3.2).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The form read as the request shape `T`; an empty value counts as absent
    /// (RFC 6749 section 3.2).
    pub fn typed<T: Shape>(self) -> Result<T, ApiError> {
        let params = self
            .params
            .into_iter()
            .filter(|(_, value)| !value.is_empty());
        let params = params.map(|(name, value)| (name, TextValue(value)));
        typed(params.collect(), "unknown parameter")
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
    use super::{declared_fields, snake_case, well_escaped};

    #[test]
    fn declared_fields_are_the_wire_names_in_declaration_order() {
        let fields = declared_fields::<crate::requests::UpdateAgent>();
        assert_eq!(
            fields,
            [
                "agentId",
                "owner",
                "createdAt",
                "updatedAt",
                "status",
                "email",
                "agentType",
                "version",
                "capabilities",
                "deploymentEnv",
                "resources",
                "requireDpop",
                "delegates"
            ]
        );
        assert!(declared_fields::<crate::requests::NoQuery>().is_empty());
        let form = declared_fields::<crate::requests::TokenForm>();
        assert_eq!(form, ["token", "token_type_hint"]);
        assert!(form.iter().all(|name| snake_case(name) == *name));
    }

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
