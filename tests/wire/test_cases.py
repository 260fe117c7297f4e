"""Data-driven request cases (gunicorn treq style): cases/NNN_name.bin + .json.

Every case is run whole, one byte at a time, in seeded random chunkings, in
hypothesis-chosen chunkings, and (unless it ends in a fatal error) followed
by more requests that must still be decoded (or, after a fatal error, never
be).  EOF is always fed at the end.
See cases/README.md for the file format.
"""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire

from tests.wire.helpers import (TERM, assert_matches, bytewise, cut, drive_requests,
                                normalize_requests, random_chunks, whole)

pytestmark = pytest.mark.unit

CASES_DIR = Path(__file__).parent / "cases"
CASE_NAMES = sorted(p.stem for p in CASES_DIR.glob("*.bin"))
# Requests appended after a case that leaves the connection usable.
TRAILER = b"LIST" + TERM + b"GET after.txt" + TERM
TRAILER_EVENTS = [{"event": "Command", "verb": "LIST"},
                  {"event": "Command", "verb": "GET", "name": "after.txt"}]


def load(name: str):
    raw = (CASES_DIR / f"{name}.bin").read_bytes()
    expected = json.loads((CASES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    options = {}
    if isinstance(expected, dict):
        options, expected = expected.get("options", {}), expected["events"]
    return raw, expected, options


def ends_fatal(expected) -> bool:
    return any(e["event"] == "error" and e["fatal"] for e in expected)


def ends_at_eof(expected) -> bool:
    """The case is cut short by EOF: appending bytes would change its meaning."""
    return any(e["event"] == "error" and "connection closed" in e["contains"] for e in expected)


# Cases that can be followed by more bytes: after a non-fatal ending those must
# be decoded; after a fatal error they must never be.
TRAILER_CASES = [name for name in CASE_NAMES if not ends_at_eof(load(name)[1])]


def run(name, chunker, trailer=False, whole_requests=False):
    raw, expected, options = load(name)
    if trailer:
        raw += TRAILER
        if not ends_fatal(expected):
            expected = expected + TRAILER_EVENTS
    events = normalize_requests(drive_requests(chunker(raw), whole_requests=whole_requests,
                                               **options))
    assert_matches(events, expected, name)


def per_request(raw: bytes) -> list[bytes]:
    """``raw`` cut after every terminator: each request as a server may receive it."""
    pieces = raw.split(TERM)
    return [piece + TERM for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def test_case_files_are_complete_and_well_formed():
    assert len(CASE_NAMES) >= 35
    assert sorted(p.stem for p in CASES_DIR.glob("*.json")) == CASE_NAMES
    numbers = [name.split("_", 1)[0] for name in CASE_NAMES]
    assert len(set(numbers)) == len(numbers) and all(n.isdigit() and len(n) == 3 for n in numbers)
    for name in CASE_NAMES:
        _, expected, options = load(name)
        assert expected, name
        assert set(options) <= {"max_line_bytes", "max_upload_bytes"}, name
        for event in expected:
            assert event["event"] in {"Command", "UploadStart", "UploadData", "UploadEnd",
                                      "error"}, name
        # a fatal error can only be the last event
        fatal = [i for i, e in enumerate(expected) if e["event"] == "error" and e["fatal"]]
        assert fatal in ([], [len(expected) - 1]), name


@pytest.mark.parametrize("name", CASE_NAMES)
def test_whole(name):
    run(name, whole)


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("chunker", [whole, per_request], ids=["whole", "per-request"])
def test_offered_as_whole_requests_first(name, chunker):
    """What the server does between requests (``whole_request()``) decodes the same."""
    run(name, chunker, trailer=name in TRAILER_CASES, whole_requests=True)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_one_byte_at_a_time(name):
    run(name, bytewise)


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("seed", range(6))
def test_random_chunks(name, seed):
    run(name, lambda raw: random_chunks(raw, seed))


@pytest.mark.parametrize("name", TRAILER_CASES)
def test_whole_with_trailing_requests(name):
    run(name, whole, trailer=True)


@pytest.mark.parametrize("name", TRAILER_CASES)
def test_one_byte_at_a_time_with_trailing_requests(name):
    run(name, bytewise, trailer=True)


@pytest.mark.parametrize("name", TRAILER_CASES)
@pytest.mark.parametrize("seed", range(3))
def test_random_chunks_with_trailing_requests(name, seed):
    run(name, lambda raw: random_chunks(raw, 100 + seed), trailer=True)


@pytest.mark.parametrize("name", CASE_NAMES)
@settings(max_examples=15)
@given(data=st.data())
def test_hypothesis_chunks(name, data):
    raw, expected, _ = load(name)
    trailer = data.draw(st.booleans(), label="trailer") and name in TRAILER_CASES
    size = len(raw) + (len(TRAILER) if trailer else 0)
    points = data.draw(st.lists(st.integers(0, size), max_size=30), label="cuts")
    run(name, lambda raw: cut(raw, points), trailer=trailer,
        whole_requests=data.draw(st.booleans(), label="whole_requests"))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_decoder_is_quiet_after_the_case(name):
    """After the case (and EOF) nothing more comes out, whatever is called."""
    raw, expected, options = load(name)
    decoder = wire.RequestDecoder(**options)
    drive_requests(whole(raw), decoder, **options)
    for _ in range(3):
        assert decoder.next_event() is wire.NEED_DATA
    if not ends_fatal(expected):
        assert decoder.state in (decoder.IDLE, decoder.CLOSED)
        assert decoder.trailing_data == b""
