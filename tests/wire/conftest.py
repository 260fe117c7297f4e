"""Every wire test runs once per base64 engine: pybase64 (the default) and the
standard library's binascii (the fallback when pybase64 cannot be imported).

Package scope: hypothesis refuses function-scoped fixtures in its tests.
"""

import pytest

from wire import streaming

ENGINES = {"pybase64": streaming.load_engine(), "binascii": streaming.STDLIB_ENGINE}


@pytest.fixture(scope="package", params=sorted(ENGINES), autouse=True)
def base64_engine(request):
    saved = streaming.BASE64_ENGINE
    streaming.BASE64_ENGINE = ENGINES[request.param]
    try:
        yield streaming.BASE64_ENGINE
    finally:
        streaming.BASE64_ENGINE = saved
