//! The single-use parts of `token-pkjwt` and `token-dpop`: `private_key_jwt`
//! client assertions and DPoP proofs. The server accepts each `jti` once
//! (contract sections 10 and 13), so wrk cannot cycle through a fixed list as
//! the other scenarios do: right before each run the driver signs a batch, one
//! file per wrk thread, and each thread walks its file once
//! (`walk_once` in bench/wrk/common.lua). A thread that reaches the end of its
//! file stops and the run fails: its rate would not be the server's.

use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use idp_crypto::client_keys::ClientKey;
use idp_domain::values::JwsAlgorithm;
use josekit::jwk::Jwk;
use josekit::jws::ES256;
use josekit::jws::JwsSigner as _;
use josekit::jws::alg::ecdsa::EcdsaJwsSigner;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::cli::Scenario;
use crate::seed::Seeded;

/// `exp` of an assertion is `iat` plus this (the server's maximum, contract
/// section 10).
pub const ASSERTION_LIFETIME_S: i64 = 300;

/// How far a DPoP proof's `iat` may be from the server's clock, either way
/// (contract section 13).
pub const DPOP_IAT_WINDOW_S: i64 = 60;

/// Seconds kept in hand under both limits: the server's clock is this
/// machine's, but wrk's last requests may be in flight a little after the run.
const MARGIN_S: i64 = 5;

/// `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
/// form-encoded.
const JWT_BEARER_FORM: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

/// The form body of a client_credentials request authenticated by
/// `assertion` (a compact JWS: base64url and dots, nothing to escape).
pub fn assertion_form(assertion: &str) -> String {
    format!(
        "grant_type=client_credentials&client_assertion_type={JWT_BEARER_FORM}&client_assertion={assertion}"
    )
}

/// An ES256 client key opened once to sign many times: [`ClientKey::sign`]
/// opens the key anew for every signature, which costs several times the
/// signature itself, and a run needs tens of thousands.
#[derive(Debug)]
pub struct Signer {
    signer: EcdsaJwsSigner,
    kid: String,
    public_jwk: Value,
}

impl Signer {
    pub fn new(key: &ClientKey) -> anyhow::Result<Self> {
        if key.algorithm() != JwsAlgorithm::Es256 {
            bail!("the bench signs with ES256 keys only");
        }
        let Value::Object(private) = key.private_jwk() else {
            bail!("a JWK that is not an object");
        };
        let jwk = Jwk::from_map(private).context("the client key's JWK")?;
        Ok(Self {
            signer: ES256
                .signer_from_jwk(&jwk)
                .context("an ES256 signer of the client key")?,
            kid: key.kid().to_owned(),
            public_jwk: key.public_jwk(),
        })
    }

    /// A compact JWS of `claims` under `header` plus `alg`.
    fn sign(&self, mut header: Map<String, Value>, claims: &Value) -> anyhow::Result<String> {
        header.insert("alg".to_owned(), Value::from("ES256"));
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
        );
        let signature = self
            .signer
            .sign(signing_input.as_bytes())
            .context("ES256 signature")?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// A `private_key_jwt` assertion of `agent_id` for `audience` (the issuer),
/// issued at `iat` (Unix seconds), valid for the longest the server allows,
/// with a fresh `jti`; the header's `kid` selects the credential.
pub fn client_assertion(
    key: &Signer,
    agent_id: &str,
    audience: &str,
    iat: i64,
) -> anyhow::Result<String> {
    let mut header = Map::new();
    header.insert("typ".to_owned(), Value::from("JWT"));
    header.insert("kid".to_owned(), Value::from(key.kid.as_str()));
    let claims = json!({
        "iss": agent_id,
        "sub": agent_id,
        "aud": audience,
        "iat": iat,
        "exp": iat + ASSERTION_LIFETIME_S,
        "jti": Uuid::new_v4().to_string(),
    });
    key.sign(header, &claims)
}

/// A DPoP proof (RFC 9449 section 4.2) of a `POST` to `htu`, issued at `iat`,
/// with a fresh `jti` and the public key in the header.
pub fn dpop_proof(key: &Signer, htu: &str, iat: i64) -> anyhow::Result<String> {
    let mut header = Map::new();
    header.insert("typ".to_owned(), Value::from("dpop+jwt"));
    header.insert("jwk".to_owned(), key.public_jwk.clone());
    let claims = json!({
        "jti": Uuid::new_v4().to_string(),
        "htm": "POST",
        "htu": htu,
        "iat": iat,
    });
    key.sign(header, &claims)
}

/// Whether one batch signed at the start of a run stays acceptable for
/// `duration_s` of load: assertions live 300 s from their `iat`, proofs 60 s
/// either side of theirs (which [`write_batch`] puts mid-run).
pub fn check_duration(scenario: Scenario, duration_s: u32) -> anyhow::Result<()> {
    let duration = i64::from(duration_s);
    match scenario {
        Scenario::TokenPkjwt if duration > ASSERTION_LIFETIME_S - 4 * MARGIN_S => bail!(
            "token-pkjwt signs its assertions before each run and they expire {ASSERTION_LIFETIME_S} s after: use --duration {} or less",
            ASSERTION_LIFETIME_S - 4 * MARGIN_S
        ),
        Scenario::TokenDpop if duration / 2 > DPOP_IAT_WINDOW_S - 4 * MARGIN_S => bail!(
            "token-dpop signs its proofs before each run and the server takes a proof up to {DPOP_IAT_WINDOW_S} s either side of its iat: use --duration {} or less",
            2 * (DPOP_IAT_WINDOW_S - 4 * MARGIN_S)
        ),
        _ => Ok(()),
    }
}

/// The files of one run, removed when dropped.
#[derive(Debug)]
pub struct Batch {
    files: Vec<PathBuf>,
    /// Requests signed, over all files.
    pub requests: usize,
    /// How long signing and writing took.
    pub seconds: f64,
}

impl Drop for Batch {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// One client of the batch: what its lines in the threads' files say.
enum Item<'a> {
    /// `token-pkjwt`: the agent and its registered key (an index into the
    /// signers); the line is the form body.
    Assertion { agent_id: &'a str, key: usize },
    /// `token-dpop`: Basic credentials and the agent's DPoP key (an index
    /// into the signers); the line is `basic<TAB>proof`.
    Proof { basic: String, key: usize },
}

/// Signs `per_thread` requests of `scenario` for each of `threads` wrk
/// threads into `dir/<scenario>-<thread>.tsv` (threads numbered from 1, as
/// common.lua's `setup` does), one thread of this driver per file. Thread
/// `t`'s `i`-th line names the `(i * threads + t)`-th client of the seeded
/// order, so the threads rotate over all clients without meeting.
///
/// `now` (Unix seconds) is the time signing starts: it is every assertion's
/// `iat`; every proof's `iat` is `now + duration_s / 2`, the middle of the
/// run, and signing must be quick enough for the last request of the run to
/// be within the server's window.
pub fn write_batch(
    scenario: Scenario,
    seeded: &Seeded,
    dir: &Path,
    threads: u32,
    per_thread: usize,
    now: i64,
    duration_s: u32,
) -> anyhow::Result<Batch> {
    let started = Instant::now();
    let (signers, items) = items(scenario, seeded)?;
    let threads = usize::try_from(threads)?;
    let proof_iat = now + i64::from(duration_s) / 2;
    let files: Vec<PathBuf> = (1..=threads)
        .map(|t| dir.join(format!("{}-{t}.tsv", scenario.name())))
        .collect();
    let mut batch = Batch {
        files: files.clone(),
        requests: per_thread * threads,
        seconds: 0.0,
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(t, path)| {
                let (items, signers) = (&items, &signers);
                let (issuer, htu) = (&seeded.issuer, &seeded.token_endpoint);
                scope.spawn(move || -> anyhow::Result<()> {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let mut out = BufWriter::new(file);
                    let mut line = String::new();
                    for i in 0..per_thread {
                        line.clear();
                        match &items[(i * threads + t) % items.len()] {
                            Item::Assertion { agent_id, key } => line.push_str(&assertion_form(
                                &client_assertion(&signers[*key], agent_id, issuer, now)?,
                            )),
                            Item::Proof { basic, key } => {
                                let proof = dpop_proof(&signers[*key], htu, proof_iat)?;
                                write!(line, "{basic}\t{proof}")?;
                            }
                        }
                        line.push('\n');
                        out.write_all(line.as_bytes())?;
                    }
                    out.flush()?;
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(result) => result?,
                Err(_) => bail!("a signing thread panicked"),
            }
        }
        anyhow::Ok(())
    })?;
    batch.seconds = started.elapsed().as_secs_f64();
    // The run starts now and lasts `duration_s`: its last proof must still
    // be within the window around `proof_iat`.
    let late = batch.seconds + f64::from(duration_s) / 2.0;
    if scenario == Scenario::TokenDpop && late > (DPOP_IAT_WINDOW_S - MARGIN_S) as f64 {
        bail!(
            "signing {} DPoP proofs took {:.1} s: the last requests of a {duration_s} s run would carry proofs older than {DPOP_IAT_WINDOW_S} s; lower --single-use-rate or --duration",
            batch.requests,
            batch.seconds
        );
    }
    if scenario == Scenario::TokenPkjwt
        && batch.seconds + f64::from(duration_s) > (ASSERTION_LIFETIME_S - MARGIN_S) as f64
    {
        bail!(
            "signing {} assertions took {:.1} s: the last requests of a {duration_s} s run would carry expired assertions; lower --single-use-rate or --duration",
            batch.requests,
            batch.seconds
        );
    }
    Ok(batch)
}

/// The keys, opened, and the clients of `scenario` in the seeded order of
/// `token.tsv`, each naming its key by index.
fn items(scenario: Scenario, seeded: &Seeded) -> anyhow::Result<(Vec<Signer>, Vec<Item<'_>>)> {
    let mut signers = Vec::new();
    let mut items = Vec::new();
    for a in crate::load::interleaved_order(seeded) {
        let agent = &seeded.agents[a];
        let key = match scenario {
            Scenario::TokenPkjwt => agent.client_key.as_ref(),
            Scenario::TokenDpop => agent.dpop_key.as_ref(),
            other => bail!("{} sends no single-use requests", other.name()),
        };
        let Some(key) = key else { continue };
        signers.push(Signer::new(key)?);
        let key = signers.len() - 1;
        if scenario == Scenario::TokenPkjwt {
            items.push(Item::Assertion {
                agent_id: &agent.agent_id,
                key,
            });
        } else {
            items.extend(agent.credentials.iter().map(|c| Item::Proof {
                basic: STANDARD.encode(format!("{}:{}", c.client_id, c.client_secret)),
                key,
            }));
        }
    }
    if items.is_empty() {
        bail!("no client was seeded for {}", scenario.name());
    }
    Ok((signers, items))
}
