//! The Rust example of `docs/guides/verify-tokens-in-your-service.md` is
//! `verify_token_example.rs`, compiled into this test, word for word; and it
//! accepts a real token of a real server and refuses the bad ones.

use std::time::{Duration, SystemTime};

use crate::markdown;
use crate::read_repo_file;
use crate::server::{Server, TempDir, curl, run_server_command};
use crate::verify_token_example::{rs256_verifiers, verify_access_token};

const PAGE: &str = "docs/guides/verify-tokens-in-your-service.md";

#[test]
fn the_guide_shows_the_tested_rust_example() {
    let page = read_repo_file(PAGE);
    let blocks = markdown::code_blocks(&page, "rust");
    assert_eq!(
        blocks.first().map(String::as_str),
        Some(include_str!("verify_token_example.rs")),
        "{PAGE}: the first ```rust block must be tests/docs/verify_token_example.rs, verbatim"
    );
}

#[test]
fn the_rust_example_accepts_a_real_token_and_refuses_bad_ones() {
    let dir = TempDir::new("verify");
    let server = Server::start(dir.path());
    let url = &server.base_url;
    let admin: serde_json::Value = serde_json::from_str(&run_server_command(
        dir.path(),
        &[
            "bootstrap",
            "--owner",
            "acme",
            "--email",
            "verifier@acme.example",
        ],
    ))
    .unwrap();
    let basic = format!(
        "{}:{}",
        admin["clientId"].as_str().unwrap(),
        admin["clientSecret"].as_str().unwrap()
    );
    let response: serde_json::Value = serde_json::from_str(&curl(
        dir.path(),
        &[
            "-u",
            &basic,
            "-d",
            "grant_type=client_credentials",
            &format!("{url}/api/v1/token"),
        ],
    ))
    .unwrap();
    let token = response["access_token"].as_str().unwrap();
    let jwks = curl(dir.path(), &[&format!("{url}/.well-known/jwks.json")]);
    let verifiers = rs256_verifiers(jwks.as_bytes()).unwrap();

    // The server's clock, read from the token itself: the test keeps off the
    // wall clock, as the example's callers keep `now` an input.
    let claims: serde_json::Value =
        serde_json::from_slice(&base64_url_decode(token.split('.').nth(1).unwrap())).unwrap();
    let at = |seconds: i64| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap())
    };
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    let now = at(iat + 1);

    let verified = verify_access_token(token, &verifiers, url, url, now).unwrap();
    assert_eq!(verified.subject(), admin["agentId"].as_str());
    assert_eq!(
        verified.claim("owner").and_then(|v| v.as_str()),
        Some("acme")
    );

    assert!(verify_access_token(token, &verifiers, "http://elsewhere", url, now).is_err());
    assert!(verify_access_token(token, &verifiers, url, "another-audience", now).is_err());
    assert!(verify_access_token(token, &verifiers, url, url, at(exp + 31)).is_err());
    assert!(verify_access_token(token, &verifiers, url, url, at(iat - 31)).is_err());
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}.{flipped}{}", &signature[1..]);
    assert!(verify_access_token(&tampered, &verifiers, url, url, now).is_err());
    assert!(verify_access_token(token, &Default::default(), url, url, now).is_err());
}

fn base64_url_decode(segment: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .expect("base64url")
}
