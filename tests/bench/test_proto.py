"""The bench's own client: a GET reply is checked byte for byte against the
reply the stored file must give, piece by piece as it arrives."""

import binascii
import random

import pytest

import wire
from bench import run as bench_run
from bench.proto import BLOCK_BYTES, BenchError, BlockFile, Client, _ExpectedGetReply


def whole_reply(name: str, content: BlockFile, path) -> bytes:
    content.write(str(path))
    data = path.read_bytes()
    assert len(data) == content.size
    return wire.get_reply_prefix(name) + binascii.b2a_base64(data, newline=False) \
        + wire.GET_REPLY_SUFFIX


@pytest.mark.unit
@pytest.mark.parametrize("size", [0, 1, 5, BLOCK_BYTES, 2 * BLOCK_BYTES + 4])
def test_a_block_files_base64_is_its_piece_repeated_then_its_tail(size, tmp_path):
    content = BlockFile(size, seed=3)
    reply = whole_reply("f.bin", content, tmp_path / "f.bin")
    expected = _ExpectedGetReply("f.bin", content)
    assert expected.size == len(reply)
    assert content.base64_size == len(reply) - len(expected.prefix) - len(wire.GET_REPLY_SUFFIX)
    rng = random.Random(size)
    cuts = sorted({0, len(reply), *(rng.randrange(len(reply)) for _ in range(40))})
    for start, end in zip(cuts, cuts[1:]):
        received = bytearray(reply[start:end]) + b"junk after"      # as in a larger buffer
        assert expected.matches(received, end - start, start), (start, end)
        assert expected.bytes_at(start, end - start) == reply[start:end]
        flipped = rng.randrange(start, end)
        received[flipped - start] ^= 0x20
        assert not expected.matches(received, end - start, start), (start, end, flipped)
        assert f"at byte {flipped}:" in expected.describe_difference(received, end - start, start)


@pytest.mark.unit
def test_the_bench_stores_the_files_its_gets_expect(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_run, "SIZES", {"small": 1000, "two-blocks": 2 * BLOCK_BYTES + 1})
    bench_run.write_get_files(str(tmp_path))
    for label in bench_run.SIZES:
        for spec in bench_run._transfer_specs("GET", label, 2):
            BlockFile(spec.size, spec.seed).write(str(tmp_path / "expected"))
            assert (tmp_path / spec.name).read_bytes() == (tmp_path / "expected").read_bytes()


@pytest.mark.unit
def test_another_seed_is_another_file():
    assert BlockFile(10, seed=1).piece != BlockFile(10, seed=2).piece
    assert BlockFile(10, seed=1).piece == BlockFile(10, seed=1).piece


@pytest.mark.integration
def test_get_checks_every_byte_of_the_stored_file(shared_server):
    storage = shared_server.storage
    size = 2 * BLOCK_BYTES + 1000
    BlockFile(size, seed=7).write(str(storage / "right.bin"))
    client = Client(("127.0.0.1", shared_server.port), timeout=10)
    assert client.get("right.bin", BlockFile(size, seed=7)) == size
    assert client.get("right.bin", BlockFile(size, seed=7)) == size   # the buffer is reused

    with pytest.raises(BenchError, match="differs from the file's"):
        client.get("right.bin", BlockFile(size, seed=8))
    data = bytearray((storage / "right.bin").read_bytes())
    flipped = BLOCK_BYTES + 17           # one bit of a byte in the second block
    data[flipped] ^= 1
    (storage / "wrong.bin").write_bytes(data)
    # the lowest bit of a quantum's byte k lands in its base64 character k + 1
    at = len(wire.get_reply_prefix("wrong.bin")) + 4 * (flipped // 3) + flipped % 3 + 1
    with pytest.raises(BenchError, match=rf"wrong\.bin: the reply differs from the file's "
                                         rf"at byte {at}:"):
        client.get("wrong.bin", BlockFile(size, seed=7))
    with pytest.raises(BenchError, match="ERROR"):
        client.get("missing.bin", BlockFile(size, seed=7))       # the server's reply is shown
