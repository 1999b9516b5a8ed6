"""The KurrentDB front door of a gater with [tls] and [[tokens]]: run by
tests/tests/kurrent.rs.

    python secured.py HOST:PORT CA_FILE WRITER_TOKEN READER_TOKEN

A KurrentDB client connects with TLS (trusting the cluster's CA) and basic auth
whose password is a gater token: the writer appends and reads, the reader reads
and subscribes and is refused appends, and a token the gater does not know is unauthenticated.
Prints "secured: N passed, M failed" and exits 1 on a failure.
"""

import sys
import traceback
import uuid

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.events import CaughtUp, RecordedEvent
from kurrentdbclient.exceptions import AccessDeniedError, UnauthenticatedError


def main():
    target, ca, writer, reader = sys.argv[1:5]

    def client(user_token):
        auth = f"{user_token[0]}:{user_token[1]}@" if user_token else ""
        return KurrentDBClient(uri=f"kurrentdb://{auth}{target}?tls=true&tlsCaFile={ca}")

    stream = f"secured-{uuid.uuid4().hex[:8]}"
    passed = failed = 0

    def scenario(name, f):
        nonlocal passed, failed
        try:
            f()
        except Exception:
            failed += 1
            print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        else:
            passed += 1
            print(f"ok {name}", flush=True)

    def writer_appends_and_reads():
        c = client(("app", writer))
        try:
            c.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=NewEvent(type="a", data=b"{}"))
            c.append_to_stream(stream, current_version=0, events=[NewEvent(type="b", data=b"{}"), NewEvent(type="c", data=b"{}")])
            assert [e.type for e in c.get_stream(stream)] == ["a", "b", "c"]
        finally:
            c.close()

    def reader_reads_and_may_not_append():
        c = client(("reader", reader))
        try:
            assert len(c.get_stream(stream)) == 3
            for events in (NewEvent(type="x", data=b"{}"), [NewEvent(type="x", data=b"{}")] * 1):
                try:
                    c.append_to_stream(stream, current_version=StreamState.ANY, events=events)
                except AccessDeniedError:
                    pass
                else:
                    raise AssertionError("a read token appended")
            assert len(c.get_stream(stream)) == 3
            # A catch-up subscription is a read: the shared store subscription it
            # polls is the front door's affair, not the reader's (who may not create
            # subscriptions with the reckon CLI).
            sub = c.subscribe_to_stream(stream, include_caught_up=True, timeout=60)
            try:
                got = []
                for item in sub:
                    got.append(item)
                    if isinstance(item, CaughtUp):
                        break
                assert [i.type for i in got if type(i) is RecordedEvent] == ["a", "b", "c"], got
            finally:
                sub.stop()
        finally:
            c.close()

    def strangers_are_unauthenticated():
        # (The client insists on credentials with TLS: only a wrong token can be sent.)
        for who in (("app", "rkn_not-a-token-this-gater-knows"), ("reader", writer[:-1])):
            c = client(who)
            try:
                c.get_stream(stream)
            except UnauthenticatedError:
                pass
            else:
                raise AssertionError(f"{who} read without a valid token")
            finally:
                c.close()

    scenario("writer_appends_and_reads", writer_appends_and_reads)
    scenario("reader_reads_and_may_not_append", reader_reads_and_may_not_append)
    scenario("strangers_are_unauthenticated", strangers_are_unauthenticated)
    print(f"secured: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
