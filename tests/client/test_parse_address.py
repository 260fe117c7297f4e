import pytest

from client import DEFAULT_PORT, FileClient, parse_address

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, expected", [
    ("tcp://example.org:7000", ("example.org", 7000)),
    ("TCP://example.org:7000/", ("example.org", 7000)),
    ("tcp://example.org", ("example.org", DEFAULT_PORT)),
    ("127.0.0.1:6000", ("127.0.0.1", 6000)),
    ("localhost", ("localhost", DEFAULT_PORT)),
    ("  localhost:1  ", ("localhost", 1)),
    ("host:65535", ("host", 65535)),
    ("[::1]:7000", ("::1", 7000)),
    ("[::1]", ("::1", DEFAULT_PORT)),
    ("tcp://[fe80::1]:80", ("fe80::1", 80)),
    ("::1", ("::1", DEFAULT_PORT)),
    ("2001:db8::5", ("2001:db8::5", DEFAULT_PORT)),
])
def test_parse_address_accepts(text, expected):
    assert parse_address(text) == expected


def test_parse_address_default_port():
    assert parse_address("h", default_port=1234) == ("h", 1234)
    assert parse_address("[::1]", default_port=1234) == ("::1", 1234)


@pytest.mark.parametrize("text, fragment", [
    ("", "host is empty"),
    ("   ", "host is empty"),
    (":6665", "host is empty"),
    ("tcp://", "host is empty"),
    ("http://h:80", "scheme must be tcp"),
    ("h:", "not a number"),
    ("h:port", "not a number"),
    ("h:-1", "not a number"),
    ("h:+80", "not a number"),
    ("h:0", "not in 1..65535"),
    ("h:65536", "not in 1..65535"),
    ("h:123456", "not a number"),
    ("[::1", "missing ']'"),
    ("[::1]x", "expected ':port'"),
    ("[::1]:", "not a number"),
    ("[nothex]:80", "not an IPv6 address"),
    ("[]:80", "not an IPv6 address"),
    ("::1:80:zz", "[host]:port"),
    ("h]:80", "without '['"),
    ("tcp://h:80/path", "expected host"),
    ("user@h:80", "expected host"),
    ("h 80", "expected host"),
])
def test_parse_address_rejects(text, fragment):
    with pytest.raises(ValueError) as info:
        parse_address(text)
    assert fragment in str(info.value)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("bad", [0, 70000, "80", True])
def test_parse_address_rejects_bad_default_port(bad):
    with pytest.raises(ValueError, match="default port"):
        parse_address("h", default_port=bad)


def test_parse_address_rejects_non_strings():
    with pytest.raises(ValueError, match="expected a string"):
        parse_address(None)


def test_from_address():
    client = FileClient.from_address("tcp://[::1]:7001", timeout=2.0, persistent=True)
    assert (client.host, client.port, client.timeout, client.persistent) == ("::1", 7001, 2.0, True)
    assert client.address == "[::1]:7001"


@pytest.mark.parametrize("port", [0, 65536, "6665", None])
def test_client_rejects_bad_port(port):
    with pytest.raises(ValueError, match="invalid port"):
        FileClient("127.0.0.1", port)
