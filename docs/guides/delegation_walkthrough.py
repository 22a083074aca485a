#!/usr/bin/env python3
"""Delegation with AgentIdP (RFC 8693 token exchange), three agents deep:
an orchestrator hands work to a summarizer, which hands part of it to a
retriever, each acting on the orchestrator's behalf.

    python3 delegation_walkthrough.py IDP_URL ADMIN_TOKEN

ADMIN_TOKEN: a token with agents:write, tokens:introspect and audit:read (the
bootstrap agent's). Registers the three agents, runs the exchanges, shows two
refusals, introspects the retriever's token before and after the
orchestrator revokes its own, reads the audit log, and prints a JSON summary.

Needs Python 3.9+ and nothing else: HTTP is the standard library's.
"""

import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def call(method, url, token=None, basic=None, form=None, body=None):
    """(status, JSON reply or None) of one HTTP request."""
    headers, data = {}, None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        pair = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, (json.loads(raw) if raw else None)


def must(status_and_reply, expected=(200, 201)):
    status, reply = status_and_reply
    if status not in expected:
        sys.exit(f"unexpected {status}: {reply}")
    return reply


def claims_of(access_token):
    """The token's claims, read without verifying (for display only: a
    resource server verifies them first, see verify-tokens-in-your-service.md)."""
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def actor_chain(claims):
    """[subject, first actor, ..., last actor] of a token's claims: `act`
    nests the newest actor outermost, so read it inside out."""
    actors = []
    act = claims.get("act")
    while act:
        actors.append(act["sub"])
        act = act.get("act")
    return [claims["sub"]] + actors[::-1]


def main(idp, admin_token):
    run = uuid.uuid4().hex[:6]  # fresh emails, so the script can run again

    def register(name, agent_type, capabilities, delegates):
        agent = must(call("POST", f"{idp}/api/v1/agents", token=admin_token, body={
            "email": f"{name}-{run}@acme.example", "agentType": agent_type, "version": "1.0.0",
            "capabilities": capabilities, "deploymentEnv": "production",
            "delegates": delegates,  # who may act on this agent's behalf
        }))
        credential = must(call(
            "POST", f"{idp}/api/v1/agents/{agent['agentId']}/credentials",
            token=admin_token))
        return agent["agentId"], (credential["clientId"], credential["clientSecret"])

    # 1. Three agents, each naming the next among its delegates (the last first,
    #    since delegates must already exist).
    retriever, retriever_secret = register("retriever", "extractor", ["docs:read"], [])
    summarizer, summarizer_secret = register(
        "summarizer", "summarizer", ["docs:read", "summaries:write"], [retriever])
    orchestrator, orchestrator_secret = register(
        "orchestrator", "orchestrator", ["docs:read", "summaries:write", "tasks:run"], [summarizer])

    token_url = f"{idp}/api/v1/token"

    def exchange(client, subject_token, scope=None):
        form = {
            "grant_type": EXCHANGE_GRANT,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
        }
        if scope:
            form["scope"] = scope  # default: subject token's scope ∩ actor's capabilities
        return call("POST", token_url, basic=client, form=form)

    # 2. The orchestrator gets a token of its own.
    a_token = must(call("POST", token_url, basic=orchestrator_secret, form={
        "grant_type": "client_credentials", "scope": "docs:read summaries:write"}))

    # 3. The summarizer acts for the orchestrator: it exchanges the
    #    orchestrator's token, authenticating as itself.
    b_token = must(exchange(summarizer_secret, a_token["access_token"]))

    # 4. The retriever acts for the summarizer acting for the orchestrator,
    #    with a narrower scope.
    c_token = must(exchange(retriever_secret, b_token["access_token"], "docs:read"))
    c_claims = claims_of(c_token["access_token"])

    # 5. Refusals: the retriever is not among the orchestrator's delegates, and
    #    the summarizer cannot widen the scope (tasks:run is not in A's token).
    skipped = exchange(retriever_secret, a_token["access_token"])
    widened = exchange(summarizer_secret, a_token["access_token"], "docs:read tasks:run")

    # 6. Introspection sees the chain, and the cascade: the orchestrator revokes
    #    its own token, and the retriever's token dies with it.
    introspect_url = f"{idp}/api/v1/token/introspect"
    before = must(call("POST", introspect_url, token=admin_token,
                       form={"token": c_token["access_token"]}))
    must(call("POST", f"{idp}/api/v1/token/revoke", basic=orchestrator_secret,
              form={"token": a_token["access_token"]}))
    after = must(call("POST", introspect_url, token=admin_token,
                      form={"token": c_token["access_token"]}))

    # 7. The audit log: one token.exchanged event per exchange, refusals included.
    events = must(call("GET", f"{idp}/api/v1/audit?action=token.exchanged&agentId={orchestrator}",
                       token=admin_token))["data"]

    names = {orchestrator: "orchestrator", summarizer: "summarizer", retriever: "retriever"}

    def named(act):  # an `act` claim with names instead of ids
        return {"sub": names[act["sub"]], **({"act": named(act["act"])} if "act" in act else {})}

    print(json.dumps({
        "delegated_token": {
            "sub": names[c_claims["sub"]],
            "client_id": names[c_claims["client_id"]],
            "act": named(c_claims["act"]),
            "scope": c_token["scope"],
            "exp_within_subject_token": c_claims["exp"] <= claims_of(a_token["access_token"])["exp"],
        },
        "chain": " -> ".join(names[agent] for agent in actor_chain(c_claims)),
        "refused": {
            "retriever_skipping_the_summarizer": f"{skipped[0]} {skipped[1]['error']}",
            "summarizer_widening_the_scope": f"{widened[0]} {widened[1]['error']}",
        },
        "introspection": {
            "active": before["active"],
            "act": named(before["act"]),
            "active_after_the_orchestrator_revoked_its_token": after["active"],
        },
        "audit": [  # oldest first
            f"{event['outcome']}: " + " -> ".join(names[a] for a in event["metadata"]["chain"])
            for event in reversed(events)
        ],
    }, indent=2))

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
