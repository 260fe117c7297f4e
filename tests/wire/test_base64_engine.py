"""The base64 engine (pybase64, or binascii without it) and copy-free decoding.

Like every wire test these run once per engine (tests/wire/conftest.py).
"""

import base64
import binascii
import os
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wire
from wire import streaming
from wire import (NEED_DATA, Base64Decoder, ReplyData, ReplyDecoder,
                  RequestDecoder, UploadData, UploadEnd, UploadStart)
from tests.wire.helpers import (bytewise, coarse, cut, drive_replies, drive_requests,
                                error_kind, get_reply, normalize_replies, normalize_requests,
                                whole)

pytestmark = pytest.mark.unit


# -- which engine -----------------------------------------------------------------------

def test_pybase64_is_the_default_engine():
    # a dependency of the project: without it wire works, at a fraction of the speed
    assert streaming.load_engine().name.startswith("pybase64 ")
    assert streaming.load_engine().refuses_long_padding


def test_without_pybase64_the_standard_library_does_the_work(monkeypatch):
    monkeypatch.setitem(sys.modules, "pybase64", None)     # import pybase64 -> ImportError
    assert streaming.load_engine() is streaming.STDLIB_ENGINE


class SpyEngine:
    """Wraps an engine; records what its functions were given while they ran."""

    def __init__(self, engine):
        self.decoded, self.encoded = [], []
        self.engine = engine._replace(decode=self._decode, encode=self._encode)
        self._inner = engine

    def _decode(self, text):
        self.decoded.append((type(text), getattr(text, "obj", None), bytes(text)))
        return self._inner.decode(text)

    def _encode(self, data):
        self.encoded.append(bytes(data))
        return self._inner.encode(data)


@pytest.fixture
def spy(base64_engine, monkeypatch):
    spy = SpyEngine(base64_engine)
    monkeypatch.setattr(streaming, "BASE64_ENGINE", spy.engine)
    return spy


def test_decoders_and_encoders_use_the_engine_in_force(spy):
    content = os.urandom(3000)
    events = normalize_requests(drive_requests(whole(wire.encode_request("UPLOAD", "a", content))))
    assert events[1] == {"event": "UploadData", "data": content}
    assert b"".join(text for _, _, text in spy.decoded) == base64.b64encode(content)
    stream = wire.get_reply_stream("a")
    stream.encode(content)
    stream.finish()
    assert b"".join(spy.encoded) == content


# -- the padding rule: only the last two characters ---------------------------------------

def test_binascii_alone_lets_long_padding_through_before_python_3_13():
    # why Base64Decoder checks it itself with the standard library's engine: 3.11 and
    # 3.12 let excess padding through strict mode, 3.13 refuses it as the decoder does
    if sys.version_info >= (3, 13):
        with pytest.raises(binascii.Error, match="Excess padding"):
            binascii.a2b_base64(b"YWJj====", strict_mode=True)
    else:
        assert binascii.a2b_base64(b"YWJj====", strict_mode=True) == b"abc"


@pytest.mark.parametrize("pieces", [[b"YWJj===="], [b"YWJj", b"===="], [b"YWJj==", b"=="],
                                    [b"AAYQ===="], [b"YWJjYQ=", b"==="], bytewise(b"YWJj====")])
def test_padding_before_the_last_two_characters_is_refused(pieces):
    decoder = Base64Decoder()
    with pytest.raises(ValueError) as error:
        for piece in pieces:
            decoder.decode(piece)
        decoder.finish()
    assert "padding" in str(error.value)


@pytest.mark.parametrize("chunker", [whole, bytewise], ids=["whole", "bytewise"])
def test_an_upload_with_long_padding_is_refused_and_the_next_request_served(chunker):
    raw = b"UPLOAD a YWJj====\r\n\r\nLIST\r\n\r\n"
    events = normalize_requests(drive_requests(chunker(raw)))
    assert events[0] == {"event": "UploadStart", "name": "a"}
    assert events[1]["event"] == "error" and not events[1]["fatal"]
    assert "not valid base64" in events[1]["message"]
    assert events[2:] == [{"event": "Command", "verb": "LIST", "name": None}]


BAD_QUANTA = [b"YQ==YQ==", b"YQ=A", b"====", b"Y===", b"YW J", b"YW\nJ", b"Y!Jj", b"=AAA",
              b"A=AA", b"YWJj\xffAAA", b"-_AA", b"YQ==YWJj", b"YWJjYWJjYQ==YQ=="]


@pytest.mark.parametrize("text", BAD_QUANTA)
def test_errors_read_as_the_standard_library_words_them(text):
    """Whichever engine decodes, the message is the one binascii would give
    (or "misplaced base64 padding", the project's own rule, checked first)."""
    if 0 <= text.find(b"=") < len(text) - 2:
        expected = "misplaced base64 padding"
    else:
        with pytest.raises(binascii.Error) as reference:
            binascii.a2b_base64(text, strict_mode=True)
        expected = str(reference.value)
    with pytest.raises(ValueError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        Base64Decoder().decode(text)


@given(text=st.lists(st.sampled_from([b"YWJj", b"YQ==", b"YR==", b"YWK=", b"=", b"A", b"+/",
                                      b"\x00", b"YW", b"=="]), max_size=10).map(b"".join))
def test_engines_accept_the_same_text(text):
    """The engine in force accepts exactly what the standard library's does
    (under the project's padding rule)."""
    def decode(engine):
        decoder = Base64Decoder(engine)
        try:
            out = decoder.decode(text)
            decoder.finish()
        except ValueError as exc:
            return str(exc)
        return out
    assert decode(streaming.BASE64_ENGINE) == decode(streaming.STDLIB_ENGINE)


# -- decoding without copies --------------------------------------------------------------

def test_whole_quanta():
    decoder = Base64Decoder()
    assert decoder.whole_quanta(b"") == 0
    assert decoder.whole_quanta(b"YWJ") == 0
    assert decoder.whole_quanta(b"YWJjYQ") == 4
    assert decoder.whole_quanta(b"YQ==Y") == 5       # what follows padding is an error now
    decoder.decode(b"YQ==")
    assert decoder.finished and decoder.whole_quanta(b"Y") == 1


def test_upload_text_is_decoded_from_the_receive_buffer_itself(spy):
    decoder = RequestDecoder()
    content = os.urandom(30_000)
    text = base64.b64encode(content)
    decoder.receive_data(b"UPLOAD a ")
    assert decoder.next_event() == UploadStart("a")
    out = []
    for i in range(0, len(text), 1001):          # pieces that cut quanta
        decoder.receive_data(text[i:i + 1001])
        while (event := decoder.next_event()) is not NEED_DATA:
            out.append(event.data)
        assert len(decoder._input) <= 3           # at most a cut quantum waits
        assert not decoder._b64._pending          # ... in the buffer, not copied aside
    decoder.receive_data(wire.TERMINATOR)
    while (event := decoder.next_event()) is not NEED_DATA:
        out.append(event.data if isinstance(event, UploadData) else event)
    assert out[-1] == UploadEnd(len(content))
    assert b"".join(out[:-1]) == content
    for kind, obj, _ in spy.decoded:
        assert kind is memoryview and obj is decoder._input.data


def test_get_reply_text_is_decoded_from_the_receive_buffer_itself(spy):
    decoder = ReplyDecoder()
    content = os.urandom(20_000)
    raw = get_reply("f", content)
    out = []
    for i in range(0, len(raw), 777):
        decoder.receive_data(raw[i:i + 777])
        while (event := decoder.next_event()) is not NEED_DATA:
            if isinstance(event, ReplyData):
                out.append(event.data)
    assert b"".join(out) == content
    assert spy.decoded and all(kind is memoryview and obj is decoder._input.data
                               for kind, obj, _ in spy.decoded)


# -- the middle of a file: decoded with no search for its end --------------------------------

def test_decode_plain_takes_only_whole_unpadded_quanta_of_base64_characters():
    decoder = Base64Decoder()
    assert decoder.decode_plain(b"YWJjZGVm") == b"abcdef"
    for refused in (b"", b"YWJjZ", b"YWJjZA==", b"YWJjZGV=", b"YWJj\r\n\r\n", b"YW!jZGVm",
                    b"YQ==YWJj", b"YWJj YWJ"):
        assert decoder.decode_plain(refused) is None, refused
    # nothing changed by the refusals: the same decoder goes on as if they never came
    assert decoder.decode(b"YWJjZA==") == b"abcd" and decoder.finished
    assert decoder.decode_plain(b"YWJj") is None        # finished: what follows is an error
    cut_open = Base64Decoder()
    assert cut_open.decode(b"YWJjZ") == b"abc"          # a cut quantum held aside
    assert cut_open.decode_plain(b"GVmYWJj") is None and cut_open.decode_plain(b"YWJj") is None


@pytest.fixture
def decode_calls(monkeypatch):
    """Counts Base64Decoder.decode_plain calls that decoded, and decode calls
    (what the search for the end of the text leads to)."""
    calls = {"plain": 0, "searched": 0}
    plain, searched = Base64Decoder.decode_plain, Base64Decoder.decode

    def counted_plain(self, quanta):
        out = plain(self, quanta)
        calls["plain"] += out is not None
        return out

    def counted_decode(self, text):
        calls["searched"] += 1
        return searched(self, text)

    monkeypatch.setattr(Base64Decoder, "decode_plain", counted_plain)
    monkeypatch.setattr(Base64Decoder, "decode", counted_decode)
    return calls


def test_an_uploads_middle_pieces_are_decoded_with_no_search_for_its_end(decode_calls):
    content = os.urandom(60_000)
    raw = b"UPLOAD a " + base64.b64encode(content) + wire.TERMINATOR
    chunks = cut(raw, range(4099, len(raw), 4099))      # pieces that cut quanta
    events = normalize_requests(drive_requests(chunks))
    assert events[-1] == {"event": "UploadEnd", "size": len(content)}
    assert b"".join(e["data"] for e in events if e["event"] == "UploadData") == content
    assert decode_calls["plain"] == len(chunks) - 1     # all but the piece with the terminator
    assert decode_calls["searched"] == 1


def test_a_get_replys_middle_pieces_are_decoded_with_no_search_for_its_end(decode_calls):
    content = os.urandom(60_000)
    raw = get_reply("f", content)
    chunks = cut(raw, range(4099, len(raw), 4099))
    assert normalize_replies(drive_replies(chunks)) == [
        ("start", {"status": "OK", "data_namafile": "f"}, True), ("data", content), ("end",)]
    assert decode_calls["plain"] >= len(chunks) - 2      # the first piece holds the head
    assert decode_calls["searched"] <= 2


def test_an_upload_cut_by_the_end_of_the_stream_is_refused_before_any_data():
    """At the end of the stream the text is not decoded ahead of the search:
    what arrived of a file that cannot be complete is not handed out first."""
    decoder = RequestDecoder()
    decoder.receive_data(b"UPLOAD a YWJjYWJj")
    decoder.receive_data(b"")
    assert decoder.next_event() == UploadStart("a")
    with pytest.raises(wire.ProtocolError, match="closed in the middle of an upload"):
        decoder.next_event()


@pytest.mark.parametrize("bad", [b"!", b"\r", b"\r\n\r", b"=", b"YQ==", b"\n"])
@pytest.mark.parametrize("at", [1, 5003, 40_001])
def test_a_bad_character_amid_a_large_piece_is_refused_as_when_it_comes_whole(bad, at):
    """The same refusal (its detail may name what the piece showed), and the
    request after it served, however the text is cut around the bad character."""
    text = base64.b64encode(os.urandom(45_000))
    raw = b"UPLOAD a " + text[:at] + bad + text[at:] + wire.TERMINATOR + b"LIST" + wire.TERMINATOR
    reference = coarse(normalize_requests(drive_requests([raw])))
    assert [e["event"] for e in reference] == ["UploadStart", "error", "Command"]
    for chunks in (cut(raw, range(8192, len(raw), 8192)), cut(raw, [at + 9, at + 10]),
                   cut(raw, range(3, len(raw), 30_000))):
        assert coarse(normalize_requests(drive_requests(chunks))) == reference

    def outline(events):
        return [(e[0], error_kind(e[1])) if e[0] == "error" else e[:1]
                for e in normalize_replies(events) if e[0] != "data"]
    reply = get_reply("f", os.urandom(45_000))
    start = len(wire.get_reply_prefix("f"))
    broken = reply[:start + at] + bad + reply[start + at:]
    reply_reference = outline(drive_replies([broken]))
    assert reply_reference[-1][0] == "error"
    for chunks in (cut(broken, range(8192, len(broken), 8192)), cut(broken, [start + at + 1])):
        assert outline(drive_replies(chunks)) == reply_reference
