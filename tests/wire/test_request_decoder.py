"""RequestDecoder behaviour beyond the case files: API details, memory, linear time."""

import base64
import hashlib
import os
import time

import pytest

import wire
from wire import (NEED_DATA, Command, ProtocolError, RequestDecoder, UploadData, UploadEnd,
                  UploadStart)
from tests.wire.helpers import (TERM, bytewise, drive_requests, normalize_requests,
                                random_chunks, whole)

pytestmark = pytest.mark.unit

CHUNKINGS = [whole, bytewise, lambda raw: random_chunks(raw, 7)]


def events_of(raw: bytes, **options):
    return normalize_requests(drive_requests(whole(raw), **options))


# -- encoding --------------------------------------------------------------------

def test_encode_request_forms():
    assert wire.encode_request("list") == b"LIST\r\n\r\n"
    assert wire.encode_request("get", "a.txt") == b"GET a.txt\r\n\r\n"
    assert wire.encode_request("DELETE", "\u00e9.txt") == "DELETE \u00e9.txt\r\n\r\n".encode()
    assert wire.encode_request("upload", "a", b"abc") == b"UPLOAD a YWJj\r\n\r\n"
    assert wire.encode_request("UPLOAD", "a", b"") == b"UPLOAD a \r\n\r\n"
    assert wire.encode_request("UPLOAD", "a") == b"UPLOAD a \r\n\r\n"
    assert wire.upload_request_head("\u6587") == "UPLOAD \u6587 ".encode()
    assert wire.TERMINATOR == b"\r\n\r\n"


def test_events_compare_by_value():
    assert Command("GET", "a") == Command("GET", "a") != Command("DELETE", "a")
    assert Command("LIST").name is None
    assert UploadData(b"x") == UploadData(b"x")
    assert UploadStart("a") != UploadStart("b")
    assert UploadEnd(3) == UploadEnd(3)
    assert repr(NEED_DATA) == "NEED_DATA"


def test_protocol_error_fields():
    exc = ProtocolError("boom")
    assert (exc.message, exc.fatal, str(exc)) == ("boom", False, "boom")
    assert ProtocolError("x", fatal=True).fatal is True


# -- simple API behaviour ---------------------------------------------------------

def test_events_one_call_at_a_time():
    decoder = RequestDecoder()
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"LIST" + TERM + b"UPLOAD a YWJj" + TERM + b"GET b" + TERM)
    assert decoder.next_event() == Command("LIST")
    assert decoder.next_event() == UploadStart("a")
    assert decoder.next_event() == UploadData(b"abc")
    assert decoder.next_event() == UploadEnd(3)
    assert decoder.next_event() == Command("GET", "b")
    assert decoder.next_event() is NEED_DATA
    assert decoder.next_event() is NEED_DATA


def test_upload_starts_before_its_content_arrives():
    decoder = RequestDecoder()
    decoder.receive_data(b"UPLOAD big.bin ")
    assert decoder.next_event() == UploadStart("big.bin")
    assert decoder.state == decoder.UPLOAD_BODY
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"YWJjZGVm")
    # base64 has no CR, so all of it is content already
    assert decoder.next_event() == UploadData(b"abcdef")
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"Z2hp\r\n")
    # a trailing CR LF may start the terminator: held back, the rest decoded
    assert decoder.next_event() == UploadData(b"ghi")
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"\r\n")
    assert decoder.next_event() == UploadEnd(9)
    assert decoder.state == decoder.IDLE


def test_a_stray_carriage_return_in_upload_content_is_refused():
    decoder = RequestDecoder()
    decoder.receive_data(b"UPLOAD x.bin YWJj\rZGVm" + TERM + b"LIST" + TERM)
    assert decoder.next_event() == UploadStart("x.bin")
    with pytest.raises(ProtocolError, match="stray carriage return") as error:
        decoder.next_event()
    assert not error.value.fatal
    assert decoder.next_event() == Command("LIST")


def test_data_after_padding_is_refused_however_it_arrives():
    # found by hypothesis: in one piece, "YQ==GET" used to wait for the rest
    # and end in "connection closed" at EOF instead of the base64 error
    raw = b"UPLOAD get YQ==GET"
    for chunks in (whole(raw), bytewise(raw)):
        events = normalize_requests(drive_requests(chunks))
        assert events[0] == {"event": "UploadStart", "name": "get"}
        assert events[-1]["event"] == "error" and not events[-1]["fatal"]
        assert "data after base64 padding" in events[-1]["message"]


def test_in_request_and_trailing_data():
    decoder = RequestDecoder()
    assert not decoder.in_request
    decoder.receive_data(b"GE")
    assert decoder.next_event() is NEED_DATA
    assert decoder.in_request
    decoder.receive_data(b"T a" + TERM + b"LI")
    assert decoder.next_event() == Command("GET", "a")
    assert decoder.trailing_data == b"LI"
    assert decoder.in_request
    decoder.receive_data(b"ST" + TERM)
    assert decoder.next_event() == Command("LIST")
    assert not decoder.in_request and decoder.trailing_data == b""
    decoder.receive_data(b"UPLOAD a ")
    assert decoder.next_event() == UploadStart("a")
    assert decoder.in_request          # the body is still to come
    decoder.receive_data(TERM)
    assert decoder.next_event() == UploadEnd(0)
    assert not decoder.in_request


def test_clean_eof_between_requests_is_not_an_error():
    decoder = RequestDecoder()
    decoder.receive_data(b"LIST" + TERM)
    decoder.receive_data(b"")
    assert decoder.next_event() == Command("LIST")
    for _ in range(3):
        assert decoder.next_event() is NEED_DATA
    assert not decoder.in_request


def test_non_fatal_error_leaves_decoder_idle():
    decoder = RequestDecoder()
    decoder.receive_data(b"NOPE" + TERM + b"LIST" + TERM)
    with pytest.raises(ProtocolError) as info:
        decoder.next_event()
    assert not info.value.fatal and "unknown command 'NOPE'" in info.value.message
    assert decoder.state == decoder.IDLE
    assert decoder.next_event() == Command("LIST")


def test_unknown_command_message_is_shortened():
    decoder = RequestDecoder()
    decoder.receive_data(b"X" * 100 + TERM)
    with pytest.raises(ProtocolError) as info:
        decoder.next_event()
    assert "X" * 40 + "..." in info.value.message and "X" * 41 not in info.value.message
    assert "LIST, GET, UPLOAD, DELETE" in info.value.message


@pytest.mark.parametrize("verb", ["l\u0131st", "LI\u017fT", "g\u0435t a",
                                  "\uff2c\uff29\uff33\uff34"])
def test_only_ascii_case_folding_makes_a_verb(verb):
    """'ı'.upper() == 'I' and 'ſ'.upper() == 'S': such look-alikes are not commands."""
    decoder = RequestDecoder()
    decoder.receive_data(verb.encode() + TERM + b"list" + TERM)
    with pytest.raises(ProtocolError, match="unknown command"):
        decoder.next_event()
    assert decoder.next_event() == Command("LIST")


def test_after_a_fatal_error_nothing_more_is_decoded():
    decoder = RequestDecoder(max_line_bytes=10)
    decoder.receive_data(b"GET " + b"x" * 20)
    with pytest.raises(ProtocolError) as info:
        decoder.next_event()
    assert info.value.fatal and decoder.state == decoder.CLOSED
    decoder.receive_data(TERM + b"LIST" + TERM)
    assert decoder.next_event() is NEED_DATA


@pytest.mark.parametrize("chunker", CHUNKINGS)
def test_line_limit_is_the_same_however_the_line_arrives(chunker):
    """A line of up to max_line_bytes is accepted, one byte more is fatal.

    (Before the fix a line of max_line_bytes - 2 .. max_line_bytes was accepted
    when it arrived whole but refused when it arrived in pieces, and a longer
    terminated line was accepted whole.)
    """
    limit = 12
    for length in range(5, 20):
        line = b"GET " + b"n" * (length - 4)
        events = normalize_requests(
            drive_requests(chunker(line + TERM + b"LIST" + TERM), max_line_bytes=limit))
        if length <= limit:
            assert events == [
                {"event": "Command", "verb": "GET", "name": "n" * (length - 4)},
                {"event": "Command", "verb": "LIST", "name": None}], length
        else:
            assert events == [{"event": "error", "fatal": True,
                               "message": f"request line longer than {limit} bytes"}], length


def test_upload_size_limit_counts_decoded_bytes():
    content = os.urandom(1000)
    raw = wire.encode_request("UPLOAD", "f", content) + b"LIST" + TERM
    for chunker in CHUNKINGS:
        ok = normalize_requests(drive_requests(chunker(raw), max_upload_bytes=1000))
        assert ok[-2:] == [{"event": "UploadEnd", "size": 1000},
                           {"event": "Command", "verb": "LIST", "name": None}]
        events = drive_requests(chunker(raw), max_upload_bytes=999)
        assert isinstance(events[-1], ProtocolError) and events[-1].fatal
        assert "larger than the limit of 999 bytes" in events[-1].message
        # what came out before the error never exceeds the limit
        assert sum(len(e.data) for e in events if isinstance(e, UploadData)) <= 999


# -- skip_upload ------------------------------------------------------------------

@pytest.mark.parametrize("chunker", CHUNKINGS)
def test_skip_upload_right_after_start(chunker):
    raw = wire.encode_request("UPLOAD", "x", os.urandom(5000)) + b"GET y" + TERM
    decoder = RequestDecoder()
    seen = []
    for chunk in chunker(raw) + [b""]:
        decoder.receive_data(chunk)
        while (event := decoder.next_event()) is not NEED_DATA:
            seen.append(event)
            if isinstance(event, UploadStart):
                decoder.skip_upload()
        if decoder.state == decoder.SKIP_BODY:
            assert len(decoder._input) <= 3      # skipped bytes are dropped, not kept
    assert seen == [UploadStart("x"), Command("GET", "y")]


@pytest.mark.parametrize("chunker", CHUNKINGS)
def test_skip_upload_in_the_middle(chunker):
    raw = wire.encode_request("UPLOAD", "x", os.urandom(5000)) + b"LIST" + TERM
    decoder = RequestDecoder()
    seen = []
    for chunk in chunker(raw) + [b""]:
        decoder.receive_data(chunk)
        while (event := decoder.next_event()) is not NEED_DATA:
            seen.append(event)
            if isinstance(event, UploadData):
                decoder.skip_upload()       # e.g. the disk is full
    assert seen[0] == UploadStart("x") and isinstance(seen[1], UploadData)
    assert seen[2:] == [Command("LIST")]


def test_skip_upload_after_the_terminator_was_seen_drops_upload_end():
    decoder = RequestDecoder()
    decoder.receive_data(b"UPLOAD x YWJj" + TERM + b"LIST" + TERM)
    assert decoder.next_event() == UploadStart("x")
    assert decoder.next_event() == UploadData(b"abc")
    assert decoder.state == decoder.UPLOAD_ENDING
    decoder.skip_upload()
    assert decoder.next_event() == Command("LIST")


def test_skip_upload_when_idle_changes_nothing():
    decoder = RequestDecoder()
    decoder.skip_upload()
    decoder.receive_data(b"LIST" + TERM)
    decoder.skip_upload()
    assert decoder.next_event() == Command("LIST")


def test_eof_in_a_skipped_upload_closes_quietly():
    """The peer already had its error reply: EOF just closes, no second error."""
    decoder = RequestDecoder()
    decoder.receive_data(b"UPLOAD x YWJjYWJj")
    assert decoder.next_event() == UploadStart("x")
    decoder.skip_upload()
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"")
    assert decoder.next_event() is NEED_DATA
    assert decoder.state == decoder.CLOSED


def test_eof_in_a_broken_upload_closes_quietly():
    events = drive_requests([b"UPLOAD x YW!jYWJjYWJj"])
    assert [type(e) for e in events] == [UploadStart, ProtocolError]
    assert not events[1].fatal


def skip_when(raw: bytes, chunker, skip_on, **options) -> list:
    """Events of ``raw`` fed in chunks, calling skip_upload() on the first event of
    type ``skip_on``; a ProtocolError is recorded and ends the run if fatal."""
    decoder = RequestDecoder(**options)
    seen, skipped = [], False
    for chunk in chunker(raw) + [b""]:
        decoder.receive_data(chunk)
        while True:
            try:
                event = decoder.next_event()
            except ProtocolError as exc:
                seen.append(exc)
                if exc.fatal:
                    assert decoder.state == decoder.CLOSED
                    return seen
                continue
            if event is NEED_DATA:
                break
            seen.append(event)
            if isinstance(event, skip_on) and not skipped:
                decoder.skip_upload()
                skipped = True
    return seen


# sizes whose base64 ends with "==", "=" and no padding: the limit is exact for each
@pytest.mark.parametrize("size", [1000, 1001, 1002])
@pytest.mark.parametrize("skip_on", [UploadStart, UploadData], ids=["at-start", "mid-body"])
@pytest.mark.parametrize("chunker", CHUNKINGS)
def test_a_skipped_upload_keeps_the_size_limit(chunker, skip_on, size):
    """A refused upload (skip_upload) is measured as a decoded one: over the limit
    is the same fatal error, at the limit the next request is decoded."""
    raw = wire.encode_request("UPLOAD", "x", os.urandom(size)) + b"LIST" + TERM
    at_limit = skip_when(raw, chunker, skip_on, max_upload_bytes=size)
    assert at_limit[0] == UploadStart("x") and at_limit[-1] == Command("LIST")
    assert not any(isinstance(e, ProtocolError) for e in at_limit)
    over = skip_when(raw, chunker, skip_on, max_upload_bytes=size - 1)
    assert over[0] == UploadStart("x")
    assert isinstance(over[-1], ProtocolError) and over[-1].fatal
    assert over[-1].message == f"upload larger than the limit of {size - 1} bytes"
    assert Command("LIST") not in over


def test_a_skipped_15mb_upload_stops_soon_after_a_1mb_limit():
    """The measured case: a refused 15 MB upload used to be read whole with a 1 MB limit."""
    limit = 1024 * 1024
    _, raw = big_upload(15 * 1024 * 1024, seed=2)
    decoder = RequestDecoder(max_upload_bytes=limit)
    fed = 0
    with pytest.raises(ProtocolError, match="larger than the limit") as error:
        for i in range(0, len(raw), PIECE):
            decoder.receive_data(raw[i:i + PIECE])
            fed += len(raw[i:i + PIECE])
            while (event := decoder.next_event()) is not NEED_DATA:
                if isinstance(event, UploadStart):
                    decoder.skip_upload()
    assert error.value.fatal and decoder.state == decoder.CLOSED
    # refused within one piece of the base64 length of 1 MB
    assert fed <= limit * 4 // 3 + PIECE + 64


def test_a_broken_upload_being_skipped_keeps_the_size_limit():
    """Skipped after invalid base64 (the decoder's own skip): the limit still holds."""
    body = base64.b64encode(os.urandom(3000))
    raw = b"UPLOAD x " + b"!" + body[1:] + TERM + b"LIST" + TERM
    for chunker in CHUNKINGS:
        events = normalize_requests(drive_requests(chunker(raw), max_upload_bytes=2999))
        assert [(e["event"], e.get("fatal")) for e in events] == [
            ("UploadStart", None), ("error", False), ("error", True)]
        assert events[-1]["message"] == "upload larger than the limit of 2999 bytes"
        events = normalize_requests(drive_requests(chunker(raw), max_upload_bytes=3000))
        assert [e["event"] for e in events] == ["UploadStart", "error", "Command"]


# -- memory bound -----------------------------------------------------------------

PIECE = 64 * 1024


def big_upload(size: int, seed: int = 0):
    content = hashlib.shake_256(str(seed).encode()).digest(size)
    return content, wire.encode_request("UPLOAD", "big.bin", content)


def test_10mb_upload_in_64k_pieces_stays_small():
    content, raw = big_upload(10 * 1024 * 1024)
    decoder = RequestDecoder(max_upload_bytes=20 * 1024 * 1024)
    digest, size, largest, pieces = hashlib.sha256(), 0, 0, 0
    for i in range(0, len(raw), PIECE):
        decoder.receive_data(raw[i:i + PIECE])
        assert len(decoder._input) < 128 * 1024
        while (event := decoder.next_event()) is not NEED_DATA:
            assert len(decoder._input) < 128 * 1024
            if isinstance(event, UploadData):
                digest.update(event.data)
                size += len(event.data)
                largest = max(largest, len(event.data))
                pieces += 1
            elif isinstance(event, UploadEnd):
                assert event.size == size
        assert len(decoder._input) <= 3 or decoder.state == decoder.IDLE
        if decoder._b64 is not None:
            assert len(decoder._b64._pending) < 4
    assert size == len(content) and digest.digest() == hashlib.sha256(content).digest()
    assert largest <= 3 * (PIECE + 6) // 4
    assert pieces >= len(raw) // PIECE - 1       # streamed, not collected


@pytest.mark.parametrize("how", ["refused", "invalid"])
def test_skipped_10mb_upload_stays_small(how):
    _, raw = big_upload(10 * 1024 * 1024, seed=1)
    if how == "invalid":
        raw = raw[:1000] + b"!" + raw[1001:]
    raw += b"LIST" + TERM
    decoder = RequestDecoder()
    seen = []
    for i in range(0, len(raw), PIECE):
        decoder.receive_data(raw[i:i + PIECE])
        while True:
            try:
                event = decoder.next_event()
            except ProtocolError as exc:
                seen.append("error")
                assert not exc.fatal
                continue
            if event is NEED_DATA:
                break
            seen.append(type(event).__name__)
            if isinstance(event, UploadStart) and how == "refused":
                decoder.skip_upload()
            assert len(decoder._input) < 128 * 1024
        assert len(decoder._input) < 128 * 1024
    assert seen[0] == "UploadStart" and seen[-1] == "Command"
    assert "UploadEnd" not in seen


# -- linear time --------------------------------------------------------------------

class CountingBuffer(bytearray):
    """A bytearray that counts how many bytes its find() calls look at."""

    def find(self, sub, start=0, end=None):
        stop = len(self) if end is None else min(end, len(self))
        index = bytearray.find(self, sub, start, stop)
        # a search stops at its first hit
        looked_at = (index + len(sub) if index >= 0 else stop) - start
        self.scanned = getattr(self, "scanned", 0) + max(0, looked_at)
        return index


def counted_decoder(**options) -> RequestDecoder:
    decoder = RequestDecoder(**options)
    decoder._input.data = CountingBuffer()
    return decoder


def scanned_for(raw: bytes, piece: int, **options) -> int:
    decoder = counted_decoder(**options)
    for i in range(0, len(raw), piece):
        decoder.receive_data(raw[i:i + piece])
        while decoder.next_event() is not NEED_DATA:
            pass
    assert decoder.state == decoder.IDLE and not decoder._input.data
    return getattr(decoder._input.data, "scanned", 0)


def test_counting_buffer_stays_in_place():
    decoder = counted_decoder()
    decoder.receive_data(b"LIST" + TERM + b"GET a")
    assert decoder.next_event() == Command("LIST")
    assert type(decoder._input.data) is CountingBuffer and decoder._input.data.scanned > 0


def test_upload_scanning_is_linear_in_small_pieces():
    _, raw = big_upload(3 * 1024 * 1024)          # 4 MiB of base64
    scanned = scanned_for(raw, 100)
    assert scanned <= 2 * len(raw)
    _, quarter = big_upload(3 * 1024 * 1024 // 4)
    assert scanned <= 5 * scanned_for(quarter, 100)


def test_skipped_upload_scanning_is_linear():
    _, raw = big_upload(3 * 1024 * 1024 // 4)
    raw = b"UPLOAD x !" + raw[len(b"UPLOAD big.bin "):] + b"LIST" + TERM
    decoder = counted_decoder()
    for i in range(0, len(raw), 100):
        decoder.receive_data(raw[i:i + 100])
        while True:
            try:
                if decoder.next_event() is NEED_DATA:
                    break
            except ProtocolError:
                pass
    assert decoder.state == decoder.IDLE
    assert decoder._input.data.scanned <= 2 * len(raw)


def test_long_line_scanning_is_linear_in_small_pieces():
    line = b"GET " + b"n" * 400_000 + TERM
    scanned = scanned_for(line * 2, 7, max_line_bytes=1 << 20)
    assert scanned <= 2 * 2 * len(line)


def test_many_pipelined_requests_scan_linearly():
    raw = (b"LIST" + TERM + b"GET some-file.txt" + TERM) * 20_000
    assert scanned_for(raw, len(raw)) <= 2 * len(raw)
    assert scanned_for(raw, 1000) <= 2 * len(raw)


def _feed_time(raw: bytes, piece: int) -> float:
    decoder = RequestDecoder()
    start = time.process_time()
    for i in range(0, len(raw), piece):
        decoder.receive_data(raw[i:i + piece])
        while decoder.next_event() is not NEED_DATA:
            pass
    elapsed = time.process_time() - start
    assert decoder.state == decoder.IDLE
    return elapsed


def test_upload_time_grows_linearly():
    """CPU time for 4x the data in 100-byte pieces is far from 16x (quadratic)."""
    _, small = big_upload(750_000)      # 1 MB of base64
    _, large = big_upload(3_000_000)    # 4 MB of base64
    t_small = min(_feed_time(small, 100) for _ in range(3))
    t_large = min(_feed_time(large, 100) for _ in range(2))
    assert t_large < 10 * max(t_small, 0.005), (t_small, t_large)


def test_decoded_upload_matches_base64_module():
    content = os.urandom(20_000)
    for chunker in CHUNKINGS:
        raw = wire.encode_request("UPLOAD", "f", content)
        events = normalize_requests(drive_requests(chunker(raw)))
        assert events[1]["data"] == base64.b64decode(base64.b64encode(content)) == content


def test_whole_request_is_only_for_an_idle_decoder_with_nothing_buffered():
    decoder = wire.RequestDecoder()
    assert decoder.whole_request(b"LIST" + TERM) == wire.Command("LIST")
    decoder.receive_data(b"GET a")
    assert decoder.whole_request(b"LIST" + TERM) is None        # "GET aLIST" is what came
    assert wire.whole_request(b"get a" + TERM) == wire.Command("GET", "a")
    assert wire.whole_request(bytearray(b"LIST" + TERM)) is None  # bytes only: as received
