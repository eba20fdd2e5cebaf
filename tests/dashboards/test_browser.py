"""`fairaug dashboard` in a real headless Chromium: the Compare page finishes its script and holds the
per-FST chart; the screenshot is kept as a test artifact (its path is printed). Terminating the command
stops the server (no orphaned Streamlit)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,2600"]  # fmt: skip
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"fairaug dashboard exited: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"no answer from {url} within {timeout} s")


@pytest.fixture
def dashboard(seeded):
    port = free_port()
    fairaug = Path(sys.executable).parent / "fairaug"
    server = subprocess.Popen([str(fairaug), "dashboard", "--port", str(port), "--tracking-uri", seeded["uri"]],
                              cwd=seeded["root"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/_stcore/health", server)
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_terminating_the_command_stops_the_server(dashboard):
    url, server = dashboard
    server.terminate()
    server.wait(timeout=30)
    with pytest.raises(OSError):  # connection refused: nothing serves the port any more
        urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian chromium + chromium-driver not installed "
                    "(`make test` installs them)")  # fmt: skip
def test_compare_page_renders_the_per_fst_chart_in_chromium(dashboard, tmp_path):
    dashboard_url, _ = dashboard
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.get(f"{dashboard_url}/compare")

        def script_finished(driver) -> bool:
            app = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"]')
            return bool(app) and app[0].get_attribute("data-test-script-state") == "notRunning" and bool(
                driver.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"] svg, '
                                                      '[data-testid="stVegaLiteChart"] canvas'))  # fmt: skip

        WebDriverWait(driver, 90, poll_frequency=0.5).until(script_finished)
        time.sleep(1)  # let Vega finish drawing the marks before the screenshot
        headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h3")]
        assert "Fairness per skin type" in headings
        charts = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"]')
        assert len(charts) == 2  # fairness and quality per FST
        assert "FST VI" in charts[0].text or charts[0].find_elements(By.CSS_SELECTOR, "svg, canvas")
        assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
        screenshot = tmp_path / "compare.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        print(f"screenshot: {screenshot}")
    finally:
        driver.quit()
