#!/usr/bin/env python3
"""An AgentIdP agent without a shared secret: it proves who it is with its own
key (private_key_jwt, RFC 7523) and binds its token to that key (DPoP, RFC 9449).

    python3 agent_without_secrets.py keygen KEY_FILE
        writes a new P-256 private key to KEY_FILE (readable by you only) and
        prints its public JWK, the one to register as the agent's credential;
    python3 agent_without_secrets.py IDP_URL AGENT_ID KEY_FILE
        gets a DPoP-bound token and reads the agent's own record with it.

Needs Python 3.9+ and joserfc (pip install joserfc); HTTP is the standard library's.
"""

import base64
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from joserfc import jwt
from joserfc.jwk import ECKey

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def keygen(key_file: str) -> None:
    key = ECKey.generate_key("P-256", auto_kid=True)  # kid: the RFC 7638 thumbprint
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(key.as_dict(private=True), out)
    print(json.dumps(key.as_dict(private=False)))


def client_assertion(key: ECKey, agent_id: str, token_url: str) -> str:
    """Who the agent is: a JWT signed with its key, good once, for one minute."""
    now = int(time.time())
    claims = {
        "iss": agent_id,
        "sub": agent_id,
        "aud": token_url,
        "iat": now,
        "exp": now + 60,  # at most 300 s after iat
        "jti": str(uuid.uuid4()),  # single use
    }
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


def dpop_proof(key: ECKey, method: str, url: str, access_token: str = "") -> str:
    """Proof that this request comes from the holder of the key: one per request."""
    claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time())}
    if access_token:
        claims["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    return jwt.encode(header, claims, key)


def get_token(idp: str, agent_id: str, key: ECKey) -> dict:
    token_url = f"{idp}/api/v1/token"
    form = {
        "grant_type": "client_credentials",
        "scope": "agents:read",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(key, agent_id, token_url),
    }
    request = urllib.request.Request(
        token_url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"DPoP": dpop_proof(key, "POST", token_url)},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:  # {"error": "invalid_client", ...}
        sys.exit(f"token request refused: {error.code} {error.read().decode()}")


def main(idp: str, agent_id: str, key_file: str) -> None:
    with open(key_file) as f:
        key = ECKey.import_key(json.load(f))
    token = get_token(idp, agent_id, key)
    access_token = token["access_token"]

    url = f"{idp}/api/v1/agents/{agent_id}"
    request = urllib.request.Request(url, headers={
        "Authorization": f"DPoP {access_token}",
        "DPoP": dpop_proof(key, "GET", url, access_token),
    })
    try:
        with urllib.request.urlopen(request) as response:
            status = response.status
    except urllib.error.HTTPError as error:  # 401: see its WWW-Authenticate header
        status = error.code
        print(error.headers.get("WWW-Authenticate"), file=sys.stderr)

    # The token's own claims, read without verifying: the agent only looks at its binding.
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    print(json.dumps({
        "token_type": token["token_type"],  # "DPoP"
        "jkt": claims.get("cnf", {}).get("jkt"),  # the thumbprint of the agent's key
        "status": status,  # of GET /api/v1/agents/{agentId}
    }))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "keygen":
        keygen(sys.argv[2])
    elif len(sys.argv) == 4:
        main(*sys.argv[1:])
    else:
        sys.exit(__doc__)
