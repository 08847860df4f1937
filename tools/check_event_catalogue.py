#!/usr/bin/env python3
"""Fails when docs/events.md and the event messages of proto/crm/v1 drift
apart: every message in a proto's "Events on <topic>" section needs a
"### <Name>" entry in the catalogue, and every entry needs a message."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def proto_events() -> set:
    names = set()
    for proto in (ROOT / "proto" / "crm" / "v1").glob("*.proto"):
        text = proto.read_text()
        m = re.search(r"^// -+ Events on [^\n]*$", text, re.M)
        if m:
            names |= set(re.findall(r"^message (\w+) \{", text[m.end():], re.M))
    return names


def main() -> int:
    documented = set(re.findall(r"^### (\w+)\s*$",
                                (ROOT / "docs" / "events.md").read_text(), re.M))
    events = proto_events()
    missing, stale = sorted(events - documented), sorted(documented - events)
    for name in missing:
        print(f"docs/events.md: event {name} is not described")
    for name in stale:
        print(f"docs/events.md: {name} is not an event message in proto/crm/v1")
    print(f"event catalogue: {len(events)} events, {len(missing) + len(stale)} problems")
    return 1 if missing or stale else 0


if __name__ == "__main__":
    sys.exit(main())
