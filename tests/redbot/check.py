"""REDbot ("lint for HTTP") on one URL of a running hello-stateful, as a caching proxy or a
browser in front of it would judge the answer: REDbot's own request, then its follow-ups
(If-None-Match with the ETag, a Range of bytes it saw, Accept-Encoding: gzip).

Usage: python3 check.py URL [--header 'Name: value']... [--expect NOTE]...

Prints the answer's head and every note REDbot made, with its level and name. Exits 1 if any
note is of level "bad", if REDbot says caches may give the answer a freshness lifetime of their
own (FRESHNESS_HEURISTIC), if an --expect'ed note is missing, or if the fetch failed; 2 if
REDbot cannot be imported. Loopback only: REDbot's check of local addresses is turned off.
"""

import argparse
import sys
from configparser import ConfigParser

try:
    import thor
    from httplint.note import levels
    from redbot.resource import HttpResource
except ImportError as e:
    print(f"cannot import REDbot: {e}", file=sys.stderr)
    sys.exit(2)

# Fails whatever its level: a cache would choose how long to reuse the answer.
FORBIDDEN = {"FRESHNESS_HEURISTIC"}


def notes_of(resource):
    """Every note on the answer, sub-notes included."""
    pending = list(resource.response.notes)
    while pending:
        note = pending.pop(0)
        yield note
        pending.extend(note.subnotes)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--expect", action="append", default=[])
    args = parser.parse_args()

    config = ConfigParser()
    config.read_dict({"redbot": {"enable_local_access": "True"}})
    resource = HttpResource(config["redbot"])
    headers = [tuple(part.strip() for part in h.split(":", 1)) for h in args.header]
    resource.set_request(args.url, headers=headers)

    @thor.events.on(resource)
    def check_done():
        thor.stop()

    # Every request is to loopback; a check still running after this is stuck.
    thor.schedule(60, thor.stop)
    resource.check()
    thor.run()

    problems = []
    if not resource.check_done:
        problems.append("REDbot did not finish within 60 s")
    if resource.fetch_error is not None:
        problems.append(f"fetch failed: {resource.fetch_error.desc}")
    response = resource.response
    if response.status_code is not None:
        print(f"HTTP/{response.version} {response.status_code_str} {response.status_phrase}")
        for name, value in response.headers.text:
            print(f"{name}: {value.strip()}")
    seen = set()
    for note in notes_of(resource):
        name = type(note).__name__
        seen.add(name)
        print(f"  [{note.level.value}] {name}: {note.summary}")
        if note.level == levels.BAD:
            problems.append(f"bad: {name}: {note.summary}")
        if name in FORBIDDEN:
            problems.append(f"not allowed: {name}: {note.summary}")
    for name in args.expect:
        if name not in seen:
            problems.append(f"expected note {name} is missing")
    for problem in problems:
        print(f"REDBOT PROBLEM: {args.url} {args.header}: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
