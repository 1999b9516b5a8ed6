"""A catch-up subscription through the KurrentDB front door while the store's
leader is killed: run by tests/tests/kurrent.rs against a 3-node cluster.

    python failover.py URI

1. appends BEFORE events one at a time, subscribes to the stream and to $all
   (filtered to the stream) from the start, reads both until caught up;
2. prints "CAUGHT_UP" and waits for a line on stdin (the test kills the leader);
3. appends AFTER more events, each retried with its same id until acknowledged
   (a retry of an append that landed is answered with its first result);
4. reads both subscriptions until the last event, and checks each delivered every
   event exactly once, in order: no gap and no repeat across the failover.

Prints "failover: N passed, M failed" and exits 1 on a failure.
"""

import sys
import time
import uuid

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.events import CaughtUp, RecordedEvent

BEFORE = 20
AFTER = 20
TIMEOUT_S = 120
APPEND_TRIES_MAX = 600
APPEND_RETRY_PAUSE_S = 0.1


def append_until_acked(client, stream, event):
    last = None
    for _ in range(APPEND_TRIES_MAX):
        try:
            return client.append_to_stream(stream, current_version=StreamState.ANY, events=event)
        except Exception as e:  # the election: unavailable, timeouts
            last = e
            time.sleep(APPEND_RETRY_PAUSE_S)
    raise AssertionError(f"append never acknowledged: {last!r}")


def until(sub, stop):
    got = []
    for item in sub:
        got.append(item)
        if stop(item):
            return got
    raise AssertionError("the subscription ended")


def main():
    uri = sys.argv[1]
    client = KurrentDBClient(uri=uri)
    stream = f"failover-{uuid.uuid4().hex[:8]}"
    events = [NewEvent(type=f"e{i}", data=b"{}") for i in range(BEFORE + AFTER)]
    for e in events[:BEFORE]:
        append_until_acked(client, stream, e)
    subs = {
        "stream": client.subscribe_to_stream(stream, include_caught_up=True, timeout=TIMEOUT_S),
        "all": client.subscribe_to_all(
            filter_include=[stream], filter_by_stream_name=True, filter_by_prefix=True,
            include_caught_up=True, timeout=TIMEOUT_S,
        ),
    }
    seen = {name: [] for name in subs}
    for name, sub in subs.items():
        seen[name] += until(sub, lambda i: isinstance(i, CaughtUp))
    print("CAUGHT_UP", flush=True)
    sys.stdin.readline()
    for e in events[BEFORE:]:
        append_until_acked(client, stream, e)
    passed = failed = 0
    for name, sub in subs.items():
        seen[name] += until(sub, lambda i: type(i) is RecordedEvent and i.id == events[-1].id)
        sub.stop()
        got = [i for i in seen[name] if type(i) is RecordedEvent]
        ids, want = [i.id for i in got], [e.id for e in events]
        revisions = [i.stream_position for i in got]
        if ids == want and revisions == list(range(len(events))):
            passed += 1
            print(f"ok {name}: {len(got)} events, none missing, none repeated", flush=True)
        else:
            failed += 1
            print(f"FAIL {name}: revisions {revisions}", flush=True)
    client.close()
    print(f"failover: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
