"""locust/server_history.py: the bounded history of the server's /stats and its routes.

The module imports neither locust nor gevent, so it is loaded here in-process (locust/
is not a package); the routes are tried on a plain Flask app with its test client.
"""

import importlib.util
import re

import pytest
from flask import Flask, Response

from tests.support import REPO_ROOT

pytestmark = pytest.mark.unit

LOCUST_DIR = REPO_ROOT / "locust"


def load_module():
    spec = importlib.util.spec_from_file_location(
        "server_history", LOCUST_DIR / "server_history.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


server_history = load_module()
ServerHistory = server_history.ServerHistory


def stats(requests=0, errors=0, busy=0, cpu=12.5, rss=50_000_000, workers=None, **extra):
    """A /stats reply with the fields the history reads (the server's shape)."""
    workers = workers if workers is not None else {"Worker-1": 5.0, "Worker-2": None}
    return {
        "mode": "process", "pool": len(workers), "address": "127.0.0.1:6665",
        "interpreter": {"implementation": "CPython", "version": "3.11.7",
                        "free_threaded": False, "gil_enabled": True},
        "workers_busy": busy, "open_connections": busy + 1,
        "totals": {"requests": requests, "errors": errors},
        "cpu": {"percent": cpu},
        "memory": {"rss_bytes_total": rss, "pss_bytes_total": rss // 2},
        "workers": [{"worker": name, "cpu_percent": value} for name, value in workers.items()],
        **extra,
    }


# ---------------------------------------------------------------------------
# the history

def test_a_sample_holds_what_the_charts_draw():
    history = ServerHistory(interval_seconds=2)
    history.add(stats(requests=100), now=1000.0)
    sample = history.add(stats(requests=160, errors=4, busy=2, cpu=80.0), now=1002.0)
    assert sample == {
        "n": 2, "t": 1002.0, "rps": 30.0, "eps": 2.0, "busy": 2, "pool": 2, "open": 3,
        "cpu": 80.0, "rss_mb": 50.0, "pss_mb": 25.0,
        "workers": {"Worker-1": 5.0, "Worker-2": None},
    }
    assert history.server == {"mode": "process", "pool": 2, "address": "127.0.0.1:6665",
                              "interpreter": stats()["interpreter"]}


def test_rates_are_unknown_for_the_first_poll_and_after_a_server_restart():
    history = ServerHistory(interval_seconds=1)
    assert history.add(stats(requests=500), now=10.0)["rps"] is None
    assert history.add(stats(requests=520), now=11.0)["rps"] == 20.0
    restarted = history.add(stats(requests=3), now=12.0)     # counters went back
    assert restarted["rps"] is None and restarted["eps"] is None
    assert history.add(stats(requests=13), now=14.0)["rps"] == 5.0


def test_a_failed_poll_is_reported_and_the_next_rate_starts_afresh():
    history = ServerHistory(interval_seconds=1)
    history.add(stats(requests=0), now=0.0)
    history.fail("server stats unreachable: connection refused")
    assert history.since(0)["error"] == "server stats unreachable: connection refused"
    # no rate across the outage: the requests of the missing polls are not spread over it
    after = history.add(stats(requests=900), now=30.0)
    assert after["rps"] is None
    assert history.since(0)["error"] is None


def test_optional_fields_of_an_older_server_are_null():
    history = ServerHistory(interval_seconds=1)
    reply = stats()
    for key in ("open_connections", "cpu", "memory"):
        del reply[key]
    reply["workers"] = [{"worker": "Worker-1"}]
    sample = history.add(reply, now=1.0)
    assert (sample["open"], sample["cpu"], sample["rss_mb"], sample["pss_mb"]) == (
        None, None, None, None)
    assert sample["workers"] == {"Worker-1": None}


@pytest.mark.parametrize("missing", ["totals", "workers_busy", "workers"])
def test_a_reply_without_the_needed_fields_is_a_clear_error(missing):
    history = ServerHistory(interval_seconds=1)
    reply = stats()
    del reply[missing]
    with pytest.raises(ValueError, match=f"lacks a field the charts need: KeyError.'{missing}'"):
        history.add(reply, now=1.0)
    assert history.count == 0 and not history.samples


def test_the_history_keeps_the_last_samples_and_numbers_them_on():
    history = ServerHistory(interval_seconds=1, capacity=3)
    for i in range(5):
        history.add(stats(requests=i), now=float(i))
    assert [s["n"] for s in history.samples] == [3, 4, 5]
    assert history.count == 5


def test_since_returns_only_newer_samples():
    history = ServerHistory(interval_seconds=1, capacity=4)
    for i in range(6):
        history.add(stats(requests=i), now=float(i))
    reply = history.since(4)
    assert [s["n"] for s in reply["samples"]] == [5, 6]
    assert (reply["count"], reply["capacity"], reply["interval_seconds"]) == (6, 4, 1)
    assert [s["n"] for s in history.since(0)["samples"]] == [3, 4, 5, 6]
    assert history.since(6)["samples"] == []


def test_a_page_ahead_of_the_history_gets_everything_kept():
    """A page that outlived a restarted master asks for numbers the master never reached."""
    history = ServerHistory(interval_seconds=1)
    history.add(stats(), now=1.0)
    assert [s["n"] for s in history.since(40)["samples"]] == [1]


def test_markers_outside_the_kept_samples_are_left_out():
    history = ServerHistory(interval_seconds=1, capacity=2)
    history.mark("test start", now=0.5)
    for i in range(1, 4):
        history.add(stats(), now=float(i))
    history.mark("test stop", now=3.5)
    assert history.since(0)["markers"] == [{"t": 3.5, "label": "test stop"}]


@pytest.mark.parametrize("kwargs, message", [
    ({"interval_seconds": 1, "capacity": 0}, "capacity must be at least 1"),
    ({"interval_seconds": 0}, "interval must be positive"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServerHistory(**kwargs)


def test_since_refuses_a_negative_number():
    with pytest.raises(ValueError, match="0 or more"):
        ServerHistory(interval_seconds=1).since(-1)


# ---------------------------------------------------------------------------
# the routes

@pytest.fixture
def history():
    history = ServerHistory(interval_seconds=2, capacity=10)
    history.add(stats(requests=10), now=100.0)
    history.add(stats(requests=30), now=102.0)
    return history


def client_for(history, **kwargs):
    app = Flask("test")
    server_history.add_routes(app, history, **kwargs)
    return app.test_client()


def test_the_data_route_serves_the_samples_after_a_number(history):
    client = client_for(history)
    response = client.get("/server-history/data?after=1")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert [s["n"] for s in body["samples"]] == [2]
    assert body["samples"][0]["rps"] == 10.0
    assert body["server"]["mode"] == "process"
    assert (body["count"], body["capacity"], body["interval_seconds"]) == (2, 10, 2)
    assert len(client.get("/server-history/data").get_json()["samples"]) == 2


@pytest.mark.parametrize("after", ["x", "-1", "1.5", ""])
def test_the_data_route_refuses_a_bad_number_plainly(history, after):
    response = client_for(history).get(f"/server-history/data?after={after}")
    assert response.status_code == 400
    assert response.get_json() == {
        "error": f"after must be a whole number, 0 or more; got {after!r}"}


def test_the_page_and_its_scripts_are_served(history):
    client = client_for(history)
    with client.get("/server-history/") as page:      # closed: it holds the file open
        assert page.status_code == 200 and page.mimetype == "text/html"
        assert b'<script src="./server-history.js">' in page.data
    assert client.get("/server-history").status_code == 308      # to the page's folder
    for name in server_history.STATIC_FILES:
        with client.get(f"/server-history/{name}") as script:
            assert script.status_code == 200, name
            assert script.data == (LOCUST_DIR / "static" / name).read_bytes()


@pytest.mark.parametrize("path", ["/server-history/server_history.py",
                                  "/server-history/..%2fserver_history.py",
                                  "/server-history/server-history.html"])
def test_nothing_else_of_the_folder_is_served(history, path):
    assert client_for(history).get(path).status_code == 404


def test_the_routes_follow_the_web_base_path_and_the_login_guard(history):
    guarded = []

    def protect(view):
        def wrapper(*args, **kwargs):
            guarded.append(view.__name__)
            return view(*args, **kwargs)
        wrapper.__name__ = view.__name__
        return wrapper

    client = client_for(history, url_prefix="/locust", protect=protect)
    assert client.get("/locust/server-history/data").status_code == 200
    with client.get("/locust/server-history/") as page:
        assert page.status_code == 200
    assert client.get("/server-history/data").status_code == 404
    assert guarded == ["data", "page"]


def test_the_charts_fetch_nothing_from_elsewhere():
    """The UI must work offline: no address outside the page's own folder."""
    allowed = {"http://www.w3.org/2000/svg"}          # an SVG namespace name, never fetched
    for path in (LOCUST_DIR / "static").iterdir():
        text = path.read_text()
        addresses = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text))
        assert addresses <= allowed, (path.name, addresses - allowed)
        for target in re.findall(r"(?:src|href)=\"([^\"]*)\"", text):
            assert target.startswith("./"), (path.name, target)


# ---------------------------------------------------------------------------
# the index page hook

def test_the_index_page_gets_the_tab_script_once():
    page = Response("<html><body><div id=root></div>\n</body></html>", mimetype="text/html")
    server_history.inject_tab_script(page)
    server_history.inject_tab_script(page)
    body = page.get_data(as_text=True)
    assert body.count("server-tab.js") == 1
    assert '<script src="./server-history/server-tab.js" defer></script>\n</body>' in body


def test_other_responses_are_left_alone():
    json_reply = Response('{"a": "</body>"}', mimetype="application/json")
    server_history.inject_tab_script(json_reply)
    assert json_reply.get_data(as_text=True) == '{"a": "</body>"}'
