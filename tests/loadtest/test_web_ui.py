"""The Locust web UI in a real browser: start a run, open the Server tab, watch its charts.

Needs Debian's chromium (``apt-get install chromium``) and Python Playwright;
it never downloads a browser.  Without chromium the test is skipped on a
developer machine and fails in CI (FS_REQUIRE_BROWSER=1, set by .ci/run).
"""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from tests.loadtest.test_locust import locust_command
from tests.support import REPO_ROOT, ServerProcess, command, free_port

pytestmark = pytest.mark.integration

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def require_chromium():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("FS_REQUIRE_BROWSER"):
            pytest.fail(f"FS_REQUIRE_BROWSER is set but {CHROMIUM} does not exist")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")


class LocustWebUI:
    def __init__(self, server: ServerProcess, cwd, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            locust_command(server, "--web-host", "127.0.0.1", "--web-port", str(self.port),
                           *extra),
            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError("locust web UI did not come up")

    def server_rows(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/stats/requests", timeout=5) as response:
            body = json.loads(response.read())
        return next(s["data"] for s in body["extended_stats"] if s["key"] == "server")

    def history(self, after: int = 0) -> dict:
        url = f"{self.url}/server-history/data?after={after}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


CHARTS = ("rps", "busy", "cpu", "memory", "workers")


@pytest.mark.browser
@pytest.mark.slow
def test_server_tab_shows_table_and_live_charts_in_a_real_browser(tmp_path):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    srv = ServerProcess(tmp_path / "files", mode="process", pool=7, log_level="WARNING")
    ui = LocustWebUI(srv, tmp_path)
    elsewhere = []          # requests leaving the Locust master: the UI must work offline
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.on("request", lambda r: None if r.url.startswith(ui.url)
                        else elsewhere.append(r.url))
                page.goto(ui.url)
                page.fill("input[name=userCount]", "20")
                page.fill("input[name=spawnRate]", "10")
                page.get_by_role("button", name="Start").click()
                page.get_by_role("tab", name="Server").click()
                expect(page.get_by_text("server: process pool of 7")).to_be_visible(timeout=15000)
                expect(page.get_by_role("cell", name="Worker-7", exact=True)).to_be_visible()
                expect(page.get_by_text("busy /")).to_be_visible()
                # live figures: the server's request rate climbs above zero
                expect(page.get_by_text(re.compile(r"^[1-9][\d.]* req/s$"))).to_be_visible(
                    timeout=30000)

                # the charts, in a frame under the table
                charts = page.frame_locator("#server-history-frame")
                expect(charts.get_by_text("process pool of 7 · CPython")).to_be_visible()
                for chart in CHARTS:
                    expect(charts.locator(f"#chart-{chart} svg")).to_be_visible()
                    # a flat line at zero has no height, so "attached", not "visible"
                    expect(charts.locator(f"#chart-{chart} path.series").first).to_have_attribute(
                        "d", re.compile(r"^M[\d.]+,[\d.]+L"))
                expect(charts.locator("#chart-workers path.series")).to_have_count(7)
                expect(charts.locator("#chart-rps .now")).to_have_text(
                    re.compile(r"^requests/s [1-9]"), timeout=15000)

                # they move: a later look has more samples and another line
                frame = page.frame(url=re.compile(r"/server-history/$"))
                first = chart_look(frame)
                frame.wait_for_function(
                    "n => Number(document.querySelector('#chart-rps svg').dataset.samples) > n",
                    arg=first["samples"], timeout=15000)
                second = chart_look(frame)
                assert second["samples"] > first["samples"]
                assert second["points"] > first["points"]
                assert second["d"] != first["d"]

                # hovering reads the values at that moment
                charts.locator("#chart-rps svg").hover()
                expect(charts.locator("#chart-rps .readout")).to_contain_text("requests/s")

                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "locust-server-tab.png"), full_page=True)
            finally:
                browser.close()
        assert srv.stats()["totals"]["requests"] > 0     # the swarm really ran
        assert elsewhere == []
    finally:
        ui.stop()
        assert srv.stop() == 0


def chart_look(frame) -> dict:
    """What the requests/s chart draws now."""
    return frame.evaluate("""() => {
        const svg = document.querySelector('#chart-rps svg');
        const line = svg.querySelector('path[data-series=rps]');
        return {samples: Number(svg.dataset.samples), points: Number(line.dataset.points),
                d: line.getAttribute('d')};
    }""")


def test_the_master_keeps_a_history_of_the_server_and_the_index_loads_the_charts(tmp_path):
    srv = ServerProcess(tmp_path / "files", mode="thread", pool=3, log_level="WARNING")
    ui = LocustWebUI(srv, tmp_path)
    try:
        with urllib.request.urlopen(ui.url, timeout=5) as response:
            assert b'<script src="./server-history/server-tab.js" defer>' in response.read()
        deadline = time.monotonic() + 20
        history = ui.history()
        while time.monotonic() < deadline and not any(
                s["rps"] for s in history["samples"]):
            for _ in range(10):
                command(srv.port, "LIST")
            time.sleep(0.5)
            history = ui.history()
        assert history["error"] is None
        assert history["server"]["mode"] == "thread" and history["server"]["pool"] == 3
        rates = [s["rps"] for s in history["samples"]]
        assert rates[0] is None and any(rates), rates
        newest = history["samples"][-1]
        assert set(newest["workers"]) == {"Worker-1", "Worker-2", "Worker-3"}
        assert newest["busy"] == 0 and newest["rss_mb"] > 0
        # only what is new, by number
        assert ui.history(after=history["count"])["samples"] == []
        assert [s["n"] for s in ui.history(after=history["count"] - 1)["samples"]] == [
            history["count"]]
    finally:
        ui.stop()
        assert srv.stop() == 0


def test_server_tab_says_plainly_when_stats_are_unreachable(tmp_path):
    srv = ServerProcess(tmp_path / "files", mode="thread", pool=2, log_level="WARNING")
    closed = free_port()
    ui = LocustWebUI(srv, tmp_path, "--server-stats-url", f"http://127.0.0.1:{closed}/stats")
    try:
        deadline = time.monotonic() + 15
        rows = ui.server_rows()
        while rows[0]["worker"] == "waiting for the first poll" and time.monotonic() < deadline:
            time.sleep(0.2)
            rows = ui.server_rows()
        assert rows[0]["worker"] == "server stats unreachable"
        assert f"127.0.0.1:{closed}/stats" in rows[0]["state"]
        assert "refused" in rows[0]["state"].lower()
        history = ui.history()
        assert history["samples"] == []
        assert history["error"].startswith(f"server stats unreachable: http://127.0.0.1:{closed}")
    finally:
        ui.stop()
        assert srv.stop() == 0
