"""``python -m bench.connection_cost``: one worker loop and a bare server serve the
same sequential LIST connections, and their CPU per connection is printed."""

import re

import pytest

from bench import connection_cost

from tests.support import usage_error


@pytest.mark.integration
def test_it_serves_every_connection_and_prints_both_costs(capsys):
    assert connection_cost.main(["--connections", "40", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^round [12]: (server|bare) ", out, re.M)) == 4
    for name in ("server", "bare"):
        cost = re.search(rf"^{name} +median +([\d.]+) µs per connection", out, re.M)
        assert cost and float(cost.group(1)) > 0, out


@pytest.mark.unit
@pytest.mark.parametrize("args, message", [
    (["--rounds", "0"], "--connections and --rounds must be at least 1"),
    (["--tree", "/nonexistent"], "--tree /nonexistent: no server package there"),
])
def test_bad_arguments_are_refused_in_one_line(args, message):
    assert usage_error("bench.connection_cost", *args).endswith(message)
