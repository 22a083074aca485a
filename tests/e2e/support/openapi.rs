//! Every reply checked against `openapi/openapi.yaml`: its status must be
//! documented for the operation, and its JSON body must match the documented
//! schema, so an undocumented answer fails the test that received it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

/// The document, parsed once per test process.
fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("openapi/openapi.yaml is readable");
        serde_yaml_ng::from_str(&text).expect("openapi/openapi.yaml parses")
    })
}

/// Follows a local `$ref` (`#/components/...`) of the document.
fn resolve(value: &Value) -> &Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => {
            let target = pointer
                .strip_prefix('#')
                .and_then(|p| document().pointer(p))
                .unwrap_or_else(|| panic!("openapi.yaml: dangling $ref {pointer}"));
            resolve(target)
        }
        None => value,
    }
}

/// The documented path template `path` matches, if any (`{name}` matches one
/// non-empty segment).
fn path_item(path: &str) -> Option<(&'static str, &'static Value)> {
    let paths = document()["paths"].as_object()?;
    let segments: Vec<&str> = path.split('/').collect();
    paths.iter().find_map(|(template, item)| {
        let parts: Vec<&str> = template.split('/').collect();
        let matches = parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(part, segment)| {
                (part.starts_with('{') && !segment.is_empty()) || part == segment
            });
        matches.then_some((template.as_str(), item))
    })
}

/// A compiled validator for one response schema, kept per schema location.
fn validator(location: &str, schema: &Value) -> Arc<jsonschema::Validator> {
    static VALIDATORS: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
        OnceLock::new();
    let mut validators = VALIDATORS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    validators
        .entry(location.to_owned())
        .or_insert_with(|| {
            // `#/components/...` references resolve against the schema's own
            // root: give it the document's components.
            let mut root = schema.clone();
            if let Some(object) = root.as_object_mut() {
                object.insert("components".into(), document()["components"].clone());
            }
            let compiled = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&root)
                .unwrap_or_else(|e| panic!("openapi.yaml: {location} is not a valid schema: {e}"));
            Arc::new(compiled)
        })
        .clone()
}

/// Checks one reply against the document. Paths the document does not
/// describe (a 404 for an unknown route) and methods it does not list (405)
/// have nothing to check against.
pub fn check(method: &str, path: &str, status: u16, content_type: Option<&str>, body: &str) {
    let Some((template, item)) = path_item(path) else {
        return;
    };
    let Some(operation) = item.get(method.to_ascii_lowercase()) else {
        return;
    };
    let responses = &operation["responses"];
    let Some(response) = responses.get(status.to_string()) else {
        let documented: Vec<&String> = responses
            .as_object()
            .map(|r| r.keys().collect())
            .unwrap_or_default();
        panic!(
            "{method} {path}: status {status} is not documented for {method} {template} \
             (documented: {documented:?}); body: {body}"
        );
    };
    let response = resolve(response);
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        assert!(
            body.is_empty(),
            "{method} {path}: {status} is documented without a body, got: {body}"
        );
        return;
    };
    let media_type = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    let Some((documented_type, media)) = content
        .iter()
        .find(|(name, _)| name.split(';').next().map(str::trim) == Some(media_type))
    else {
        panic!(
            "{method} {path}: {status} answered {content_type:?}, documented: {:?}",
            content.keys().collect::<Vec<_>>()
        );
    };
    let Some(schema) = media.get("schema") else {
        return;
    };
    if !documented_type.contains("json") {
        return;
    }
    let instance: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path}: {status} body is not JSON ({e}): {body}"));
    let location = format!("{method} {template} {status} {documented_type}");
    let validator = validator(&location, schema);
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path}: {status} body does not match openapi.yaml ({location}):\n  {}\nbody: {body}",
        errors.join("\n  ")
    );
}
