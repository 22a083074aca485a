#!/usr/bin/env python3
"""An MCP-style server protected by AgentIdP, and an agent that calls it.

    python3 mcp_protected_resource.py serve IDP_URL [PORT]
        serves the protected resource on 127.0.0.1:PORT (default: a free
        port) and prints `listening on URL`. Environment: MCP_CLIENT_ID and
        MCP_CLIENT_SECRET, the server's own AgentIdP credentials (an agent
        with the tokens:introspect capability), used to introspect tokens.
    python3 mcp_protected_resource.py call MCP_URL
        the client: discovers the authorization server from the server's
        401, gets a token for the server (resource=...) and calls a tool.
        Environment: AGENT_ID and AGENT_SECRET, the calling agent's.

The server publishes RFC 9728 protected resource metadata, answers 401 with
`WWW-Authenticate: Bearer resource_metadata="..."` without a valid token, and
accepts a token only if AgentIdP's introspection says it is active, for this
server (`aud`), and carries the scope of the tool. The JSON-RPC endpoint at
/mcp stands in for an MCP server's: an MCP SDK puts the same checks in its
authorization middleware.

Needs Python 3.9+ and nothing else: HTTP is the standard library's.
"""

import base64
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The tools and the scope each needs: the scopes are capabilities of the
# agents allowed to call them.
TOOLS = {"search_docs": "docs:search"}
METADATA_PATH = "/.well-known/oauth-protected-resource"


def http(method, url, headers=None, form=None, body=None):
    """(status, headers, JSON reply or None) of one HTTP request."""
    headers, data = dict(headers or {}), None
    if form is not None:
        data = urllib.parse.urlencode(form, doseq=True).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            status, reply_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, reply_headers, raw = error.code, error.headers, error.read()
    return status, reply_headers, (json.loads(raw) if raw else None)


def basic(client_id, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


# ---------------------------------------------------------------- the server


def serve(idp, port=0):
    credentials = basic(os.environ["MCP_CLIENT_ID"], os.environ["MCP_CLIENT_SECRET"])
    # The authorization server's metadata (RFC 8414) names its endpoints.
    _, _, authorization_server = http("GET", f"{idp}/.well-known/oauth-authorization-server")
    issuer = authorization_server["issuer"]
    introspection_endpoint = authorization_server["introspection_endpoint"]

    httpd = ThreadingHTTPServer(("127.0.0.1", int(port)), None)
    resource = f"http://127.0.0.1:{httpd.server_address[1]}"  # this server's URL: the audience
    metadata_url = resource + METADATA_PATH
    metadata = {  # RFC 9728
        "resource": resource,
        "authorization_servers": [issuer],
        "scopes_supported": sorted(set(TOOLS.values())),
        "bearer_methods_supported": ["header"],
    }

    def token_info(token):
        """AgentIdP's answer for the token, if it may call this server."""
        _, _, info = http("POST", introspection_endpoint, headers=credentials,
                          form={"token": token})
        if not info or not info.get("active"):
            return None  # expired, revoked, its agent suspended, a link of its chain gone...
        audiences = info.get("aud", [])
        audiences = audiences if isinstance(audiences, list) else [audiences]
        if resource not in audiences:
            return None  # a token for another service
        if info.get("token_type") != "Bearer":
            return None  # DPoP-bound: this example does not check proofs
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
            if self.path == METADATA_PATH:
                self.reply(200, metadata)
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self):
            if self.path != "/mcp":
                return self.reply(404, {"error": "not found"})
            length = int(self.headers.get("Content-Length") or 0)
            try:
                call = json.loads(self.rfile.read(length))
            except ValueError:
                return self.reply(400, {"error": "not JSON"})
            authorization = self.headers.get("Authorization", "")
            if not authorization.startswith("Bearer "):
                # No token: say where to learn how to get one (RFC 9728 section 5.1).
                return self.reply(401, {"error": "unauthorized"},
                                  f'Bearer resource_metadata="{metadata_url}"')
            info = token_info(authorization[len("Bearer "):])
            if info is None:
                return self.reply(401, {"error": "invalid_token"},
                                  f'Bearer error="invalid_token", resource_metadata="{metadata_url}"')
            if call.get("method") == "tools/list":
                result = {"tools": [{"name": name, "inputSchema": {"type": "object"}}
                                    for name in TOOLS]}
            elif call.get("method") == "tools/call" and call.get("params", {}).get("name") in TOOLS:
                needed = TOOLS[call["params"]["name"]]
                if needed not in info.get("scope", "").split():
                    return self.reply(403, {"error": "insufficient_scope"},
                                      f'Bearer error="insufficient_scope", scope="{needed}", '
                                      f'resource_metadata="{metadata_url}"')
                query = call["params"].get("arguments", {}).get("query", "")
                result = {
                    "content": [{"type": "text", "text": f"2 documents match {query!r}"}],
                    # Who asked: the agent, and the agents acting for it (delegation.md).
                    "structuredContent": {"sub": info["sub"], "act": info.get("act")},
                }
            else:
                return self.reply(200, {"jsonrpc": "2.0", "id": call.get("id"),
                                        "error": {"code": -32601, "message": "unknown method"}})
            self.reply(200, {"jsonrpc": "2.0", "id": call.get("id"), "result": result})

        def log_message(self, *args):
            pass  # quiet

    httpd.RequestHandlerClass = Handler
    print(f"listening on {resource}", flush=True)
    httpd.serve_forever()


# ---------------------------------------------------------------- the client


def call(mcp_url):
    agent = basic(os.environ["AGENT_ID"], os.environ["AGENT_SECRET"])
    endpoint = mcp_url.rstrip("/") + "/mcp"
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "search_docs", "arguments": {"query": "delegation"}}}

    # 1. Without a token, the server answers 401 and names its metadata.
    status, headers, _ = http("POST", endpoint, body=request)
    challenge = headers.get("WWW-Authenticate", "")
    found = re.search(r'resource_metadata="([^"]+)"', challenge)
    if status != 401 or not found:
        sys.exit(f"expected a 401 with resource_metadata, got {status} {challenge!r}")

    # 2. The protected resource metadata names the resource and its authorization server.
    _, _, resource_metadata = http("GET", found.group(1))
    resource = resource_metadata["resource"]
    if not endpoint.startswith(resource):
        sys.exit(f"metadata for {resource}, not for {endpoint}")
    issuer = resource_metadata["authorization_servers"][0]

    # 3. The authorization server's metadata (RFC 8414) names its token endpoint.
    _, _, authorization_server = http("GET", f"{issuer}/.well-known/oauth-authorization-server")
    if authorization_server["issuer"] != issuer:
        sys.exit("the authorization server metadata is not the issuer's")

    # 4. A token for this server only (RFC 8707), with the scopes it asks for.
    status, _, token = http("POST", authorization_server["token_endpoint"], headers=agent, form={
        "grant_type": "client_credentials",
        "scope": " ".join(resource_metadata["scopes_supported"]),
        "resource": resource,
    })
    if status != 200:
        sys.exit(f"token request refused: {status} {token}")

    # 5. The call, with the token.
    status, _, reply = http("POST", endpoint, body=request,
                            headers={"Authorization": f"Bearer {token['access_token']}"})
    print(json.dumps({
        "challenge": challenge,
        "authorization_server": issuer,
        "resource": resource,
        "scope": token["scope"],
        "status": status,
        "result": reply.get("result") if reply else None,
    }))


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "serve":
        serve(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "call":
        call(sys.argv[2])
    else:
        sys.exit(__doc__)
