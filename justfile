# AgentIdP tasks. `just` lists them; configuration comes from the environment
# and from `.env` (copy `.env.example`).

set dotenv-load

# List the recipes.
default:
    @just --list

# Run the HTTP server (release build) with the configuration from the environment.
serve:
    cargo run --release -p idp-server -- serve

# Apply pending database migrations to DATABASE_URL and exit.
migrate:
    cargo run --release -p idp-server -- migrate

# Create an owner's first agent and one credential; prints its clientId and clientSecret once.
bootstrap owner email:
    cargo run --release -p idp-server -- bootstrap --owner '{{owner}}' --email '{{email}}'

# Run every test (needs PostgreSQL and Redis: IDP_TEST_DATABASE_URL, IDP_TEST_REDIS_URL).
test:
    cargo nextest run --workspace --all-targets

# Check formatting and run clippy with warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Run exactly what CI runs (.ci/run): services, fmt, clippy, domain purity, tests.
check:
    .ci/run

# Format the code.
fmt:
    cargo fmt --all

# Load benchmark (bench/README.md): release build, wrk, both deployments, one table; `--compare` alone: beside oidc-provider.
bench *args:
    bench/run.sh {{args}}

# Fuzz the API from its served OpenAPI document with schemathesis (pip install schemathesis==4.32.5), with and without a token.
api-fuzz *args:
    scripts/api-fuzz {{args}}

# Run the fault suite (SIGKILL, Redis restarted empty, PostgreSQL outage under load).
faults:
    cargo build -p idp-server
    cargo nextest run -p idp-e2e -E 'test(/faults::/)'

# Check that the OpenAPI document parses (and validate it as OpenAPI 3.1 when openapi-spec-validator is installed).
openapi-check:
    python3 -c "import yaml,sys; yaml.safe_load(open('openapi/openapi.yaml'))"
    @if python3 -c "import openapi_spec_validator" 2>/dev/null; then python3 -m openapi_spec_validator openapi/openapi.yaml; else echo "openapi-spec-validator is not installed: parsed only (pip install openapi-spec-validator)"; fi
