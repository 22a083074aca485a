#!/usr/bin/env python3
"""An A2A agent whose Agent Card names AgentIdP, and a peer that calls it.

    python3 a2a_agent_card.py serve IDP_URL [PORT]
        the agent: serves its Agent Card at /.well-known/agent-card.json and
        A2A JSON-RPC (message/send) at /a2a on 127.0.0.1:PORT (default: a free
        port), and prints `listening on URL`. Environment: A2A_CLIENT_ID and
        A2A_CLIENT_SECRET, the agent's own AgentIdP credentials (with the
        tokens:introspect capability), used to introspect the tokens it receives.
    python3 a2a_agent_card.py call AGENT_URL
        the peer: reads the card, follows its security scheme to AgentIdP's
        metadata, gets a token (client credentials, resource = the card's url)
        and sends a message. Environment: AGENT_ID and AGENT_SECRET, the peer's.
    python3 a2a_agent_card.py verify-card IDP_URL CARD_AGENT_ID
        the peer checks AgentIdP's signed card of an agent (GET
        /api/v1/agents/{agentId}/card, a compact JWS) against the issuer's JWK
        Set. Environment: AGENT_ID and AGENT_SECRET, of an agent with agents:read.

Needs Python 3.9+ and nothing else: HTTP and RS256 are done with the standard library.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCHEME = "agentidp"  # the card's name for AgentIdP's security scheme
SCOPE = "summaries:write"  # what a caller's token must carry


def http(method, url, headers=None, form=None, body=None):
    """(status, JSON reply, or the text of a non-JSON one, or None) of one request."""
    headers, data = dict(headers or {}), None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            status, kind, raw = response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        status, kind, raw = error.code, error.headers.get_content_type(), error.read()
    if not raw:
        return status, None
    return status, (json.loads(raw) if kind.endswith("json") else raw.decode())


def basic(client_id, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ----------------------------------------------------------------- the agent


def serve(idp, port=0):
    credentials = basic(os.environ["A2A_CLIENT_ID"], os.environ["A2A_CLIENT_SECRET"])
    metadata_url = f"{idp}/.well-known/oauth-authorization-server"  # RFC 8414
    _, authorization_server = http("GET", metadata_url)

    httpd = ThreadingHTTPServer(("127.0.0.1", int(port)), None)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    endpoint = f"{base}/a2a"  # the card's url, and the audience of the tokens it takes
    card = {  # A2A protocol 0.3 AgentCard
        "protocolVersion": "0.3.0",
        "name": "summarizer",
        "description": "Summarizes documents for the agents of acme.",
        "url": endpoint,
        "preferredTransport": "JSONRPC",
        "version": "1.0.0",
        "capabilities": {},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "summarize", "name": "Summarize",
                    "description": "A short summary of the text sent.", "tags": ["summaries"]}],
        "securitySchemes": {
            SCHEME: {
                "type": "oauth2",
                "description": "AgentIdP: OAuth 2.0 client credentials",
                "oauth2MetadataUrl": metadata_url,
                "flows": {"clientCredentials": {
                    "tokenUrl": authorization_server["token_endpoint"],
                    "scopes": {SCOPE: "Ask this agent for summaries."},
                }},
            },
        },
        "security": [{SCHEME: [SCOPE]}],
    }

    def caller(token):
        """AgentIdP's answer for the token, if it may call this agent."""
        _, info = http("POST", authorization_server["introspection_endpoint"],
                       headers=credentials, form={"token": token})
        if not info or not info.get("active") or info.get("token_type") != "Bearer":
            return None
        audiences = info.get("aud", [])
        audiences = audiences if isinstance(audiences, list) else [audiences]
        if endpoint not in audiences or SCOPE not in info.get("scope", "").split():
            return None
        return info

    class Handler(BaseHTTPRequestHandler):
        def reply(self, status, body, challenge=None):
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            if challenge:
                self.send_header("WWW-Authenticate", challenge)
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            if self.path == "/.well-known/agent-card.json":
                self.reply(200, card)
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self):
            if self.path != "/a2a":
                return self.reply(404, {"error": "not found"})
            length = int(self.headers.get("Content-Length") or 0)
            try:
                call = json.loads(self.rfile.read(length))
            except ValueError:
                return self.reply(400, {"error": "not JSON"})
            authorization = self.headers.get("Authorization", "")
            info = caller(authorization[len("Bearer "):]) if authorization.startswith("Bearer ") else None
            if info is None:
                return self.reply(401, {"error": "invalid_token"},
                                  f'Bearer error="invalid_token", scope="{SCOPE}"')
            if call.get("method") != "message/send":
                return self.reply(200, {"jsonrpc": "2.0", "id": call.get("id"),
                                        "error": {"code": -32601, "message": "unknown method"}})
            parts = call.get("params", {}).get("message", {}).get("parts", [])
            text = " ".join(part.get("text", "") for part in parts if part.get("kind") == "text")
            self.reply(200, {"jsonrpc": "2.0", "id": call.get("id"), "result": {
                "kind": "message", "role": "agent", "messageId": str(uuid.uuid4()),
                "parts": [{"kind": "text", "text": f"summary for {info['sub']}: {text[:40]}"}],
            }})

        def log_message(self, *args):
            pass  # quiet

    httpd.RequestHandlerClass = Handler
    print(f"listening on {base}", flush=True)
    httpd.serve_forever()


# ------------------------------------------------------------------ the peer


def call(agent_url):
    peer = basic(os.environ["AGENT_ID"], os.environ["AGENT_SECRET"])

    # 1. The card says where the agent is and which authorization server it trusts.
    _, card = http("GET", f"{agent_url.rstrip('/')}/.well-known/agent-card.json")
    requirement = card["security"][0]  # {scheme name: scopes}
    name, scopes = next(iter(requirement.items()))
    scheme = card["securitySchemes"][name]
    if scheme["type"] != "oauth2" or "clientCredentials" not in scheme["flows"]:
        sys.exit(f"no client credentials flow in {scheme}")

    # 2. The authorization server's metadata names its token endpoint.
    _, authorization_server = http("GET", scheme["oauth2MetadataUrl"])

    # 3. A token for this agent only (resource = the card's url), with the scopes it asks for.
    status, token = http("POST", authorization_server["token_endpoint"], headers=peer, form={
        "grant_type": "client_credentials",
        "scope": " ".join(scopes),
        "resource": card["url"],
    })
    if status != 200:
        sys.exit(f"token request refused: {status} {token}")

    # 4. An A2A message/send, with the token.
    message = {"role": "user", "messageId": str(uuid.uuid4()),
               "parts": [{"kind": "text", "text": "AgentIdP issues tokens to agents."}]}
    status, reply = http("POST", card["url"], headers={
        "Authorization": f"Bearer {token['access_token']}"},
        body={"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": message}})
    print(json.dumps({
        "card": card["name"],
        "token_endpoint": authorization_server["token_endpoint"],
        "scope": token["scope"],
        "status": status,
        "reply": reply["result"]["parts"][0]["text"] if status == 200 else reply,
    }))


# ------------------------------------------------ AgentIdP's signed card


def verify_rs256(jws, jwks):
    """The payload of a compact JWS signed RS256 by a key of the JWK Set, else an error."""
    header_b64, payload_b64, signature_b64 = jws.split(".")
    header = json.loads(b64url_decode(header_b64))
    if header.get("alg") != "RS256":  # pinned: never the header's choice
        raise ValueError("not RS256")
    key = next((k for k in jwks["keys"] if k.get("kid") == header.get("kid")
                and k.get("kty") == "RSA"), None)
    if key is None:
        raise ValueError("unknown kid")
    n = int.from_bytes(b64url_decode(key["n"]), "big")
    e = int.from_bytes(b64url_decode(key["e"]), "big")
    size = (n.bit_length() + 7) // 8
    signature = b64url_decode(signature_b64)
    if len(signature) != size:
        raise ValueError("bad signature")
    # RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 section 8.2.2): rebuild the whole
    # encoded message and compare, never parse it.
    digest = hashlib.sha256(f"{header_b64}.{payload_b64}".encode()).digest()
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + digest
    expected = b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info
    if not hmac.compare_digest(pow(int.from_bytes(signature, "big"), e, n).to_bytes(size, "big"),
                               expected):
        raise ValueError("bad signature")
    return header, json.loads(b64url_decode(payload_b64))


def verify_card(idp, card_agent_id):
    peer = basic(os.environ["AGENT_ID"], os.environ["AGENT_SECRET"])
    _, authorization_server = http("GET", f"{idp}/.well-known/oauth-authorization-server")
    _, token = http("POST", authorization_server["token_endpoint"], headers=peer,
                    form={"grant_type": "client_credentials", "scope": "agents:read"})
    status, signed = http("GET", f"{idp}/api/v1/agents/{card_agent_id}/card",
                          headers={"Authorization": f"Bearer {token['access_token']}"})
    if status != 200:
        sys.exit(f"card refused: {status} {signed}")
    _, jwks = http("GET", authorization_server["jwks_uri"])
    header, claims = verify_rs256(signed, jwks)
    if claims["iss"] != authorization_server["issuer"] or claims["sub"] != card_agent_id:
        sys.exit("the card is not this issuer's card of this agent")
    print(json.dumps({
        "typ": header.get("typ"),
        "iss": claims["iss"],
        "sub": claims["sub"],
        "status": claims.get("status"),
        "skills": [skill["id"] for skill in claims["card"]["skills"]],
        "oauth2MetadataUrl": claims["card"]["securitySchemes"][SCHEME]["oauth2MetadataUrl"],
    }))


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "serve":
        serve(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "call":
        call(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "verify-card":
        verify_card(*sys.argv[2:])
    else:
        sys.exit(__doc__)
