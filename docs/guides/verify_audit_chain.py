#!/usr/bin/env python3
"""Verify an AgentIdP audit export (NDJSON) offline.

Usage: verify_audit_chain.py EXPORT.ndjson [SEQUENCE HASH]

Recomputes every link: each event's hash must be the SHA-256 of the previous
event's hash followed by the event's RFC 8785 canonical JSON without `hash`.
Without SEQUENCE HASH the export must start at sequence 1; with them it must
continue that head (the last line of an earlier run), as an export made with
`?fromSequence=SEQUENCE+1` does. Prints `verified N events, head SEQ HASH`, or
`first bad event: sequence K, eventId E` on stderr and exits 1.
"""

import hashlib
import json
import sys

GENESIS = "0" * 64


def canonical(event):
    """RFC 8785 for audit events: their keys are ASCII and their values
    strings, integers, booleans, null, objects and arrays (no fractions), so
    sorted keys, no spaces and UTF-8 output are the whole canonical form."""
    unhashed = {key: value for key, value in event.items() if key != "hash"}
    return json.dumps(
        unhashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def main(args):
    if len(args) not in (1, 3):
        sys.exit(__doc__.strip().splitlines()[2])
    sequence, head = (int(args[1]), args[2]) if len(args) == 3 else (0, GENESIS)
    count = 0
    with open(args[0], encoding="utf-8") as export:
        for line in export:
            if not line.strip():
                continue
            count += 1
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                event = {}
            link = hashlib.sha256((head + canonical(event)).encode("utf-8"))
            if event.get("sequence") != sequence + 1 or (
                event.get("hash") != link.hexdigest()
            ):
                print(
                    f"first bad event: sequence {sequence + 1}, "
                    f"eventId {event.get('eventId')}",
                    file=sys.stderr,
                )
                return 1
            sequence, head = sequence + 1, event["hash"]
    print(f"verified {count} events, head {sequence} {head}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
