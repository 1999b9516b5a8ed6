"""KurrentDB client scenarios against reckon-db's KurrentDB front door.

Run by tests/tests/kurrent.rs with the official Python client, kurrentdbclient
(pinned in requirements.txt), against a real reckon-node and gater:

    python scenarios.py URI [SCENARIO ...]

URI is a KurrentDB connection string (kurrentdb://127.0.0.1:PORT?tls=false).
Every scenario writes streams of its own (a fresh prefix per run), so they share
one store. Prints one line per scenario, then "N passed, M failed"; exits 1 when
any failed.
"""

import datetime
import importlib.metadata
import sys
import traceback
import uuid

import grpc
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.events import CaughtUp, Checkpoint, RecordedEvent
from kurrentdbclient.exceptions import (
    NotFoundError,
    StreamIsDeletedError,
    WrongCurrentVersionError,
)
from kurrentdbclient.protos.v1 import (
    gossip_pb2_grpc,
    persistent_pb2,
    persistent_pb2_grpc,
    projections_pb2,
    projections_pb2_grpc,
    shared_pb2,
)

CLIENT_VERSION = "1.3.5"
# Bounds every call and subscription: a scenario that hangs fails instead.
TIMEOUT_S = 60

RUN = uuid.uuid4().hex[:8]


def stream(name):
    """A stream name of this run."""
    return f"{name}-{RUN}-{uuid.uuid4().hex[:6]}"


def event(event_type, data=b"{}", **kw):
    return NewEvent(type=event_type, data=data, **kw)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect(exc_type, f):
    try:
        f()
    except exc_type as e:
        return e
    raise AssertionError(f"expected {exc_type.__name__}")


def is_event(item):
    """An event, not a checkpoint or caught-up (which the client derives from it)."""
    return type(item) is RecordedEvent


def take_until(sub, stop, limit=1000):
    """Items of a subscription until stop(item) is true (that one included)."""
    got = []
    for item in sub:
        got.append(item)
        if stop(item) or len(got) >= limit:
            break
    return got


# --- scenarios --------------------------------------------------------------


def append_single(c, _uri):
    s = stream("single")
    e = event("placed", b'{"total":5}', metadata=b'{"by":"me"}')
    cp = c.append_to_stream(s, current_version=StreamState.NO_STREAM, events=e)
    (r,) = c.get_stream(s)
    check(r.id == e.id, "the event id round-trips")
    check((r.type, r.data, r.metadata) == ("placed", b'{"total":5}', b'{"by":"me"}'), r)
    check(r.content_type == "application/json", r.content_type)
    check((r.stream_position, r.commit_position) == (0, cp), (r, cp))
    check(r.commit_position == r.prepare_position, "commit = prepare")
    now = datetime.datetime.now(datetime.timezone.utc)
    check(abs((now - r.recorded_at).total_seconds()) < 3600, r.recorded_at)


def append_batch(c, _uri):
    s = stream("batch")
    events = [event("a"), event("b"), event("c")]
    cp = c.append_to_stream(s, current_version=StreamState.NO_STREAM, events=events)
    got = c.get_stream(s)
    check([r.id for r in got] == [e.id for e in events], "ids in order")
    check([r.stream_position for r in got] == [0, 1, 2], got)
    positions = [r.commit_position for r in got]
    check(positions == list(range(positions[0], positions[0] + 3)), positions)
    check(cp == positions[-1], (cp, positions))
    # A retry with the same ids (a client that timed out) writes nothing new.
    again = c.append_to_stream(s, current_version=StreamState.NO_STREAM, events=events)
    check(again == cp, (again, cp))
    check(len(c.get_stream(s)) == 3, "one copy")


def binary_and_metadata(c, _uri):
    s = stream("binary")
    data = bytes(range(256))
    e = event("blob", data, metadata=b"\x00custom", content_type="application/octet-stream")
    c.append_to_stream(s, current_version=StreamState.ANY, events=e)
    (r,) = c.get_stream(s)
    check(r.data == data and r.metadata == b"\x00custom", r)
    check(r.content_type == "application/octet-stream", r.content_type)


def read_stream_both_ways(c, _uri):
    s = stream("read")
    c.append_to_stream(
        s, current_version=StreamState.NO_STREAM, events=[event(f"e{i}") for i in range(5)]
    )
    check([r.stream_position for r in c.get_stream(s)] == [0, 1, 2, 3, 4], "forwards")
    check([r.stream_position for r in c.get_stream(s, backwards=True)] == [4, 3, 2, 1, 0], "backwards")
    check([r.stream_position for r in c.get_stream(s, stream_position=2, limit=2)] == [2, 3], "page")
    check(
        [r.stream_position for r in c.get_stream(s, stream_position=3, backwards=True, limit=2)] == [3, 2],
        "page backwards",
    )
    check(c.get_current_version(s) == 4, "current version")
    expect(NotFoundError, lambda: c.get_stream(stream("missing")))
    check(c.get_current_version(stream("missing")) == StreamState.NO_STREAM, "no stream")


def read_all_both_ways(c, _uri):
    a, b = stream("all-a"), stream("all-b")
    first = c.append_to_stream(a, current_version=StreamState.NO_STREAM, events=event("x"))
    c.append_to_stream(b, current_version=StreamState.NO_STREAM, events=event("y"))
    last = c.append_to_stream(a, current_version=0, events=event("z"))
    fwd = [
        (r.stream_name, r.type, r.commit_position)
        for r in c.read_all(commit_position=first, limit=3)
    ]
    check([t for _, t, _ in fwd] == ["x", "y", "z"], fwd)
    check(fwd[0][2] == first and fwd[-1][2] == last, fwd)
    back = [r.commit_position for r in c.read_all(backwards=True, limit=3)]
    check(back == sorted(back, reverse=True), back)
    check(back[0] >= last, (back, last))
    check(c.get_commit_position() >= last, "the head is at or past the last append")
    from_pos = [r.commit_position for r in c.read_all(commit_position=last, backwards=True, limit=2)]
    check(from_pos[0] == last and from_pos[1] < last, from_pos)


def expected_revision_failures(c, _uri):
    s = stream("expect")
    c.append_to_stream(s, current_version=StreamState.NO_STREAM, events=event("a"))
    e = expect(WrongCurrentVersionError, lambda: c.append_to_stream(s, current_version=5, events=event("b")))
    check("0" in str(e), e)
    expect(
        WrongCurrentVersionError,
        lambda: c.append_to_stream(s, current_version=StreamState.NO_STREAM, events=event("b")),
    )
    expect(
        WrongCurrentVersionError,
        lambda: c.append_to_stream(
            stream("absent"), current_version=StreamState.EXISTS, events=event("b")
        ),
    )
    # And as a batch (BatchAppend), with the current revision in the error.
    e = expect(
        WrongCurrentVersionError,
        lambda: c.append_to_stream(s, current_version=3, events=[event("b"), event("c")]),
    )
    check("0" in str(e), e)
    c.append_to_stream(s, current_version=StreamState.EXISTS, events=event("b"))
    c.append_to_stream(s, current_version=1, events=[event("c"), event("d")])
    check(c.get_current_version(s) == 3, "nothing written by the refused appends")


def delete_and_tombstone(c, _uri):
    s = stream("delete")
    c.append_to_stream(s, current_version=StreamState.NO_STREAM, events=[event("a"), event("b")])
    # The expected revision is checked, as an append's is.
    e = expect(WrongCurrentVersionError, lambda: c.delete_stream(s, current_version=0))
    check("Actual version: 1" in str(e), e)
    check(len(c.get_stream(s)) == 2, "a refused delete deletes nothing")
    c.delete_stream(s, current_version=1)
    expect(NotFoundError, lambda: c.get_stream(s))
    check(c.get_current_version(s) == StreamState.NO_STREAM, "deleted: no stream")
    # Recreated, it continues after its last revision: revisions are never reused.
    c.append_to_stream(s, current_version=StreamState.NO_STREAM, events=event("c"))
    again = c.get_stream(s)
    check([(r.type, r.stream_position) for r in again] == [("c", 2)], again)
    # Deleting a stream that is not there, expecting a revision: not found.
    expect(NotFoundError, lambda: c.delete_stream(stream("absent"), current_version=0))
    t = stream("tombstone")
    c.append_to_stream(t, current_version=StreamState.NO_STREAM, events=event("a"))
    expect(WrongCurrentVersionError, lambda: c.tombstone_stream(t, current_version=StreamState.NO_STREAM))
    c.tombstone_stream(t, current_version=0)
    expect(NotFoundError, lambda: c.get_stream(t))
    expect(
        StreamIsDeletedError,
        lambda: c.append_to_stream(t, current_version=StreamState.ANY, events=[event("b"), event("c")]),
    )


def filters(c, _uri):
    prefix = f"flt{RUN}"
    orders, users = f"{prefix}order-{uuid.uuid4().hex[:6]}", f"{prefix}user-{uuid.uuid4().hex[:6]}"
    start = c.get_commit_position()
    c.append_to_stream(orders, current_version=StreamState.NO_STREAM, events=[event("Placed"), event("Paid")])
    c.append_to_stream(users, current_version=StreamState.NO_STREAM, events=[event("Registered")])

    def names(**kw):
        return [
            (r.stream_name, r.type)
            for r in c.read_all(commit_position=start, **kw)
            if r.stream_name.startswith(prefix)
        ]

    by_stream_prefix = names(filter_include=[f"{prefix}order-"], filter_by_stream_name=True, filter_by_prefix=True)
    check(by_stream_prefix == [(orders, "Placed"), (orders, "Paid")], by_stream_prefix)
    by_type_regex = names(filter_include=["P.*"])
    check(by_type_regex == [(orders, "Placed"), (orders, "Paid")], by_type_regex)
    by_type_prefix = names(filter_include=["Reg"], filter_by_prefix=True)
    check(by_type_prefix == [(users, "Registered")], by_type_prefix)
    excluded = names(filter_exclude=["Paid"])
    check(excluded == [(orders, "Placed"), (users, "Registered")], excluded)
    by_stream_regex = names(filter_include=[f"{prefix}user-.*"], filter_by_stream_name=True)
    check(by_stream_regex == [(users, "Registered")], by_stream_regex)
    # Backwards, filtered, counted in matching events.
    last = [
        r.type
        for r in c.read_all(backwards=True, limit=1, filter_include=[f"{prefix}order-"], filter_by_stream_name=True, filter_by_prefix=True)
    ]
    check(last == ["Paid"], last)


def catch_up_from_start_through_live(c, _uri):
    s = stream("live")
    before = [event(f"before-{i}") for i in range(3)]
    c.append_to_stream(s, current_version=StreamState.NO_STREAM, events=before)
    sub = c.subscribe_to_all(
        filter_include=[s], filter_by_stream_name=True, filter_by_prefix=True,
        include_caught_up=True, timeout=TIMEOUT_S,
    )
    try:
        got = take_until(sub, lambda i: isinstance(i, CaughtUp))
        events = [i for i in got if is_event(i)]
        check([e.id for e in events] == [e.id for e in before], "catch-up delivers what was there")
        after = [event(f"after-{i}") for i in range(3)]
        c.append_to_stream(s, current_version=2, events=after[:1])
        c.append_to_stream(s, current_version=3, events=after[1:])
        live = take_until(sub, lambda i: is_event(i) and i.id == after[-1].id)
        live = [i for i in live if is_event(i)]
        check([e.id for e in live] == [e.id for e in after], "live: every event once, in order")
        positions = [e.commit_position for e in events + live]
        check(positions == sorted(set(positions)), positions)
    finally:
        sub.stop()
    # The same through a stream subscription from the start.
    sub = c.subscribe_to_stream(s, include_caught_up=True, timeout=TIMEOUT_S)
    try:
        got = take_until(sub, lambda i: isinstance(i, CaughtUp))
        check([i.stream_position for i in got if is_event(i)] == list(range(6)), got)
        check(got[-1].stream_position == 5, got[-1])
        c.append_to_stream(s, current_version=5, events=event("more"))
        (nxt,) = take_until(sub, lambda i: is_event(i))
        check(nxt.stream_position == 6, nxt)
    finally:
        sub.stop()


def catch_up_from_a_position(c, _uri):
    s = stream("frompos")
    c.append_to_stream(s, current_version=StreamState.NO_STREAM, events=[event("a"), event("b")])
    second = c.get_stream(s)[1]
    c.append_to_stream(s, current_version=1, events=event("c"))
    sub = c.subscribe_to_all(
        commit_position=second.commit_position,
        filter_include=[s], filter_by_stream_name=True, filter_by_prefix=True,
        include_caught_up=True, timeout=TIMEOUT_S,
    )
    try:
        got = take_until(sub, lambda i: isinstance(i, CaughtUp))
        check([i.type for i in got if is_event(i)] == ["c"], got)
        c.append_to_stream(s, current_version=2, events=event("d"))
        (d,) = take_until(sub, lambda i: is_event(i))
        check(d.type == "d", d)
    finally:
        sub.stop()
    sub = c.subscribe_to_stream(s, stream_position=1, timeout=TIMEOUT_S)
    try:
        got = take_until(sub, lambda i: i.type == "d")
        check([i.type for i in got] == ["c", "d"], got)
    finally:
        sub.stop()
    # From the head of the store: only what comes next.
    sub = c.subscribe_to_all(commit_position=c.get_commit_position(), filter_include=[s], filter_by_stream_name=True, filter_by_prefix=True, timeout=TIMEOUT_S)
    try:
        c.append_to_stream(s, current_version=3, events=event("e"))
        (e,) = take_until(sub, lambda i: True)
        check(e.type == "e", e)
    finally:
        sub.stop()


def checkpoints(c, _uri):
    s = stream("ckpt")
    c.append_to_stream(s, current_version=StreamState.NO_STREAM, events=[event(f"n{i}") for i in range(5)])
    head = c.get_commit_position()
    sub = c.subscribe_to_all(
        filter_include=[f"nothing-matches-{RUN}"], filter_by_stream_name=True, filter_by_prefix=True,
        include_checkpoints=True, include_caught_up=True, window_size=1,
        checkpoint_interval_multiplier=1, timeout=TIMEOUT_S,
    )
    try:
        got = take_until(sub, lambda i: isinstance(i, Checkpoint) and i.commit_position >= head)
        check(not [i for i in got if is_event(i)], "nothing matched")
        cps = [i.commit_position for i in got if isinstance(i, Checkpoint)]
        check(cps == sorted(cps), cps)
    finally:
        sub.stop()


def edges(c, uri):
    target = uri.split("://", 1)[1].split("?", 1)[0]
    channel = grpc.insecure_channel(target)
    try:
        members = gossip_pb2_grpc.GossipStub(channel).Read(shared_pb2.Empty(), timeout=TIMEOUT_S).members
        check(len(members) == 1 and members[0].is_alive, members)
        check(members[0].http_end_point.port == int(target.rsplit(":", 1)[1]), members)
        # A method of a served service that is not implemented, and a service not
        # served at all: both UNIMPLEMENTED, at once.
        for call in (
            lambda: persistent_pb2_grpc.PersistentSubscriptionsStub(channel).Delete(
                persistent_pb2.DeleteReq(), timeout=TIMEOUT_S
            ),
            lambda: projections_pb2_grpc.ProjectionsStub(channel).Reset(
                projections_pb2.ResetReq(), timeout=TIMEOUT_S
            ),
        ):
            e = expect(grpc.RpcError, call)
            check(e.code() == grpc.StatusCode.UNIMPLEMENTED, e)
    finally:
        channel.close()
    check(c.list_subscriptions() == [], "no persistent subscriptions")
    # A client that discovers through gossip finds the front door.
    d = KurrentDBClient(uri=uri.replace("kurrentdb://", "kurrentdb+discover://"))
    try:
        s = stream("discover")
        d.append_to_stream(s, current_version=StreamState.NO_STREAM, events=event("a"))
        check(len(d.get_stream(s)) == 1, "read back through a discovered connection")
    finally:
        d.close()


SCENARIOS = {
    f.__name__: f
    for f in [
        append_single,
        append_batch,
        binary_and_metadata,
        read_stream_both_ways,
        read_all_both_ways,
        expected_revision_failures,
        delete_and_tombstone,
        filters,
        catch_up_from_start_through_live,
        catch_up_from_a_position,
        checkpoints,
        edges,
    ]
}


def main():
    version = importlib.metadata.version("kurrentdbclient")
    if version != CLIENT_VERSION:
        print(f"kurrentdbclient {version} is installed; these scenarios pin {CLIENT_VERSION}")
        return 2
    uri, names = sys.argv[1], sys.argv[2:] or list(SCENARIOS)
    client = KurrentDBClient(uri=uri)
    passed = failed = 0
    try:
        for name in names:
            try:
                SCENARIOS[name](client, uri)
            except Exception:
                failed += 1
                print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
            else:
                passed += 1
                print(f"ok {name}", flush=True)
    finally:
        client.close()
    print(f"kurrent: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
