//! The Rust example of `docs/guides/verify-tokens-in-your-service.md` is
//! `verify_token_example.rs`, compiled into this test, word for word; and it
//! accepts a real token of a real server and refuses the bad ones. Its
//! `actor_chain`, and the Python and Node ones of the guide, read the chain of
//! a real delegated token.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::delegation::Live;
use crate::markdown;
use crate::read_repo_file;
use crate::server::{Server, TempDir, bootstrap_admin, clean_command, curl, run_with_limit};
use crate::verify_token_example::{actor_chain, rs256_verifiers, verify_access_token};

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
    let admin = bootstrap_admin(dir.path(), "acme", "verifier@acme.example");
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

/// The one ```LANG block of the guide that defines `function`.
fn block_defining(lang: &str, function: &str) -> String {
    let blocks: Vec<String> = markdown::code_blocks(&read_repo_file(PAGE), lang)
        .into_iter()
        .filter(|block| block.contains(function))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "{PAGE}: one ```{lang} block defines {function}"
    );
    blocks.into_iter().next().unwrap_or_default()
}

/// What a program made of `source` prints, run by `program` from `file`.
fn run_program(live: &Live, program: &str, file: &str, source: &str) -> Value {
    let path = live.path().join(file);
    std::fs::write(&path, source).expect("the program written");
    let mut command = clean_command(program, live.path());
    command.arg(&path);
    let done = run_with_limit(command, live.path(), Duration::from_secs(30));
    assert!(done.success, "{program} {file} failed: {}", done.stderr);
    serde_json::from_str(done.stdout.trim()).expect("JSON on stdout")
}

#[test]
fn the_examples_read_the_actor_chain_of_a_real_delegated_token() {
    let live = Live::start("verify-chain");
    let url = live.url().to_owned();
    let (ids, tokens) = live.chain_of_three();
    let jwks = curl(live.path(), &[&format!("{url}/.well-known/jwks.json")]);
    let verifiers = rs256_verifiers(jwks.as_bytes()).unwrap();
    let payload = |token: &str| -> Value {
        serde_json::from_slice(&base64_url_decode(token.split('.').nth(1).unwrap())).unwrap()
    };
    let now = |token: &str| {
        let iat = payload(token)["iat"].as_i64().unwrap();
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(iat + 1).unwrap())
    };

    // Rust: the plain token is its agent alone; the delegated ones the chain so far.
    for (length, token) in [1, 2, 3].into_iter().zip(&tokens) {
        let claims = verify_access_token(token, &verifiers, &url, &url, now(token)).unwrap();
        assert_eq!(actor_chain(&claims), ids[..length].to_vec(), "{claims}");
    }
    let delegated = payload(&tokens[2]);
    assert_eq!(delegated["client_id"], ids[2].as_str());
    assert_eq!(
        delegated["act"],
        serde_json::json!({"sub": ids[2], "act": {"sub": ids[1]}})
    );

    // Python and Node: the guide's functions on the same claims.
    let claims = |token: &str| serde_json::to_string(&payload(token)).unwrap();
    let python = format!(
        "import json\n{}\nprint(json.dumps([actor_chain(json.loads(c)) for c in {}]))\n",
        block_defining("python", "def actor_chain"),
        serde_json::to_string(&tokens.iter().map(|t| claims(t)).collect::<Vec<_>>()).unwrap(),
    );
    let node = format!(
        "{}\nconsole.log(JSON.stringify({}.map((c) => actorChain(JSON.parse(c)))));\n",
        block_defining("javascript", "function actorChain"),
        serde_json::to_string(&tokens.iter().map(|t| claims(t)).collect::<Vec<_>>()).unwrap(),
    );
    let expected = serde_json::json!([[ids[0]], [ids[0], ids[1]], [ids[0], ids[1], ids[2]]]);
    assert_eq!(run_program(&live, "python3", "chain.py", &python), expected);
    assert_eq!(run_program(&live, "node", "chain.mjs", &node), expected);
}

fn base64_url_decode(segment: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .expect("base64url")
}
