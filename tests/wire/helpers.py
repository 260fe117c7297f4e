"""Drivers shared by the wire tests: feed a decoder in chunks, normalise events."""

from __future__ import annotations

import base64
import hashlib
import random

import wire
from wire import (NEED_DATA, Command, ProtocolError, ReplyData, ReplyEnd, ReplyStart,
                  UploadData, UploadEnd, UploadStart)

TERM = wire.TERMINATOR


# -- splitting a byte string into chunks --------------------------------------

def whole(data: bytes) -> list[bytes]:
    return [data] if data else []


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def random_chunks(data: bytes, seed: int, max_size: int | None = None) -> list[bytes]:
    """Chunks of random sizes; the size range itself is random per seed."""
    rng = random.Random(seed)
    top = max_size or rng.choice([2, 5, 17, 64, 1000])
    chunks, i = [], 0
    while i < len(data):
        size = rng.randint(1, top)
        chunks.append(data[i:i + size])
        i += size
    return chunks


def cut(data: bytes, points) -> list[bytes]:
    """Split ``data`` at the given offsets (any order, duplicates allowed)."""
    bounds = [0, *sorted({p for p in points if 0 < p < len(data)}), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


# -- RequestDecoder -------------------------------------------------------------

class Fatal(Exception):
    pass


def drive_requests(chunks, decoder: wire.RequestDecoder | None = None, *, eof: bool = True,
                   check_memory: bool = True, whole_requests: bool = False,
                   **options) -> list:
    """Feed ``chunks`` then (optionally) EOF, draining events after each feed.

    Returns the events in order; a ProtocolError appears in the list as the
    exception object.  Stops at the first fatal error (and checks the decoder
    then stays quiet).  Along the way it checks the bounds the decoder
    promises: every next_event() call makes progress (the number of calls is
    bounded by the input size), an UploadData is never larger than what the
    chunk just fed can account for, and after draining, an upload body leaves
    at most the 3 bytes that may start the terminator in the buffer.
    With ``whole_requests`` each chunk is first offered to ``whole_request()``,
    as the server does with what it receives between requests.
    """
    decoder = decoder or wire.RequestDecoder(**options)
    chunks = list(chunks)
    total = sum(len(c) for c in chunks)
    budget = 4 * total + 20           # next_event calls that return an event
    events = []
    feeds = chunks + ([b""] if eof else [])
    for chunk in feeds:
        request = decoder.whole_request(chunk) if whole_requests else None
        if request is not None:
            events.append(request)
            budget -= 1
            continue
        decoder.receive_data(chunk)
        while True:
            try:
                event = decoder.next_event()
            except ProtocolError as exc:
                assert isinstance(exc.fatal, bool) and exc.message == str(exc)
                events.append(exc)
                if exc.fatal:
                    assert decoder.state == decoder.CLOSED
                    for _ in range(3):
                        assert decoder.next_event() is NEED_DATA
                    return events
                budget -= 1
                assert budget >= 0, "decoder does not make progress"
                continue
            if event is NEED_DATA:
                break
            budget -= 1
            assert budget >= 0, "decoder does not make progress"
            if isinstance(event, UploadData):
                assert event.data, "empty UploadData"
                if check_memory:
                    # at most: 3 held-back bytes + the chunk + 3 pending base64 chars
                    assert len(event.data) <= 3 * ((len(chunk) + 6) // 4), (
                        len(event.data), len(chunk))
            events.append(event)
        if check_memory:
            if decoder.state in (decoder.UPLOAD_BODY, decoder.SKIP_BODY):
                assert len(decoder._input) <= 3
            elif decoder.state == decoder.IDLE:
                assert len(decoder._input) <= decoder.max_line_bytes + 3
    return events


def normalize_requests(events) -> list[dict]:
    """Chunking-independent view: UploadData merged, partial data before an error dropped."""
    out: list[dict] = []
    for event in events:
        if isinstance(event, UploadData):
            if out and out[-1]["event"] == "UploadData":
                out[-1]["data"] += event.data
            else:
                out.append({"event": "UploadData", "data": event.data})
            continue
        if isinstance(event, ProtocolError):
            if out and out[-1]["event"] == "UploadData":
                out.pop()     # how much of a failed upload came out depends on chunking
            out.append({"event": "error", "fatal": event.fatal, "message": event.message})
        elif isinstance(event, Command):
            out.append({"event": "Command", "verb": event.verb, "name": event.name})
        elif isinstance(event, UploadStart):
            out.append({"event": "UploadStart", "name": event.name})
        elif isinstance(event, UploadEnd):
            out.append({"event": "UploadEnd", "size": event.size})
        else:
            raise AssertionError(f"unexpected event {event!r}")
    return out


def error_kind(message: str) -> str:
    """The part of an error message that does not depend on chunking."""
    return message.split(":")[0]


def coarse(events: list[dict]) -> list[dict]:
    return [dict(e, message=error_kind(e["message"])) if e["event"] == "error" else e
            for e in events]


def assert_matches(actual: list[dict], expected: list[dict], label: str = "") -> None:
    """Compare normalised events to a case file's expectations."""
    def show(events):
        return [{k: (v if k != "data" else f"<{len(v)} bytes>") for k, v in e.items()}
                for e in events]
    assert len(actual) == len(expected), f"{label}: {show(actual)} != {expected}"
    for got, want in zip(actual, expected):
        where = f"{label}: {show([got])[0]} vs {want}"
        assert got["event"] == want["event"], where
        kind = want["event"]
        if kind == "error":
            assert got["fatal"] == want["fatal"], where
            assert want["contains"] in got["message"], where
        elif kind == "UploadData":
            if "b64" in want:
                assert got["data"] == base64.b64decode(want["b64"], validate=True), where
            else:
                assert hashlib.sha256(got["data"]).hexdigest() == want["sha256"], where
                assert len(got["data"]) == want["size"], where
        elif kind == "Command":
            assert (got["verb"], got["name"]) == (want["verb"], want.get("name")), where
        elif kind == "UploadStart":
            assert got["name"] == want["name"], where
        elif kind == "UploadEnd":
            assert got["size"] == want["size"], where
        else:
            raise AssertionError(f"unknown expected event {want}")


# -- ReplyDecoder ------------------------------------------------------------------

def drive_replies(chunks, decoder: wire.ReplyDecoder | None = None, *, eof: bool = True,
                  **options) -> list:
    """Like drive_requests for replies; every reply error is fatal, so it stops there."""
    decoder = decoder or wire.ReplyDecoder(**options)
    chunks = list(chunks)
    budget = 4 * sum(len(c) for c in chunks) + 20
    events = []
    for chunk in chunks + ([b""] if eof else []):
        decoder.receive_data(chunk)
        while True:
            try:
                event = decoder.next_event()
            except ProtocolError as exc:
                assert exc.fatal
                events.append(exc)
                return events
            if event is NEED_DATA:
                break
            if isinstance(event, wire.ReplyClosed):
                assert chunk == b"", "ReplyClosed before end of stream"
                return events
            budget -= 1
            assert budget >= 0, "reply decoder does not make progress"
            if isinstance(event, ReplyData):
                assert event.data
            events.append(event)
    return events


def normalize_replies(events) -> list:
    """[("start", fields, streamed), ("data", bytes), ("end",), ("error", message)]."""
    out: list = []
    for event in events:
        if isinstance(event, ReplyData):
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + event.data)
            else:
                out.append(("data", event.data))
        elif isinstance(event, ReplyStart):
            out.append(("start", event.fields, event.streamed))
        elif isinstance(event, ReplyEnd):
            out.append(("end",))
        elif isinstance(event, ProtocolError):
            out.append(("error", event.message))
        else:
            raise AssertionError(f"unexpected event {event!r}")
    return out


def get_reply(name: str, content: bytes) -> bytes:
    return wire.get_reply_prefix(name) + base64.b64encode(content) + wire.GET_REPLY_SUFFIX


def expected_reply_events(reply: tuple) -> list:
    """Expected normalised events for one ("get", name, content) / ("json", dict) reply."""
    if reply[0] == "get":
        _, name, content = reply
        events = [("start", {"status": "OK", "data_namafile": name}, True)]
        if content:
            events.append(("data", content))
        return events + [("end",)]
    return [("start", reply[1], False), ("end",)]


def encode_reply_spec(reply: tuple) -> bytes:
    if reply[0] == "get":
        return get_reply(reply[1], reply[2])
    return wire.encode_reply(reply[1])
