"""The /ui explorer in a real browser: Debian's chromium driven by selenium against a real
``taskgram serve`` process on 127.0.0.1 (with an API key). Every page runs a real query; the numbers on
screen must equal the API's. Screenshots go to the test's tmp folder (and to ``docs/screenshots/`` when
``TASKGRAM_UPDATE_SCREENSHOTS=1``). Skipped, with the reason, when chromium, chromedriver or selenium is
missing (``.ci/run`` installs them)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
KEY = "ui-test-key-0123456789abcdef"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
TRACE_TEXT = (
    "Python's support for detecting and collecting garbage which involves circular references is "
    "provided by the garbage collector, and most types never need to think about it."
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser (apt-get install chromium)"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="no chromedriver (apt-get install chromium-driver)"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extra)")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Fixtures: an evaluation run, a real server, a browser


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (small) ``taskgram eval`` run directory: report.json, tables, figures."""
    from tests.unit.clients.test_eval_fakes import BruteForceBackend
    from tests.unit.clients.test_eval_pipeline import DOCS, _config, _run

    run_dir = tmp_path_factory.mktemp("ui-run") / "demo-run"
    _, report, _, _ = _run(_config(run_dir, figures=True), BruteForceBackend(DOCS))
    assert report["ok"], report["errors"]
    return run_dir


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sample_index: Path, eval_run: Path) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TASKGRAM_API_KEYS": json.dumps([KEY])}
    argv = [
        sys.executable,
        "-m",
        "taskgram.cli",
        "serve",
        f"--name=sample={sample_index}",
        "--host",
        "127.0.0.1",
    ]
    argv += ["--port", str(port), "--eval-run", str(eval_run), "--log-level", "WARNING"]
    log = tmp_path_factory.mktemp("ui-server") / "serve.log"
    out = log.open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"taskgram serve exited with {proc.returncode}: {tail}")
            try:
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("taskgram serve did not start in 120 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    if os.environ.get("TASKGRAM_UPDATE_SCREENSHOTS") == "1":
        target = REPO / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        for png in sorted(folder.glob("*.png")):
            shutil.copy(png, target / png.name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1366,900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def api(url: str, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(
        method, url + "/v1" + path, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
    )
    assert response.status_code == 200, response.text
    return response.json()


def wait(driver: Any, css: str, timeout: float = 60) -> Any:
    try:
        return WebDriverWait(driver, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        error = driver.find_element(By.ID, "error").text
        raise AssertionError(f"{css} did not appear (error banner: {error!r})") from None


def number(text: str) -> int:
    return int(text.replace(",", "").strip())


def snap(driver: Any, shots: Path, name: str) -> None:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1366, min(max(900, height + 40), 4000))
    driver.save_screenshot(str(shots / f"{name}.png"))
    driver.set_window_size(1366, 900)


def enter_key(driver: Any) -> None:
    box = driver.find_element(By.ID, "api-key")
    box.clear()
    box.send_keys(KEY)
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()


# --------------------------------------------------------------------------------------------------
# The pages, in order (one browser session, as a user would go)


def test_api_key_problem_message_then_indexes(browser: Any, server: str, shots: Path) -> None:
    browser.get(server + "/ui")
    browser.execute_script("localStorage.clear()")
    browser.get(server + "/ui/#/")
    error = wait(browser, "#error")
    assert "requires an API key" in error.text and "401" in error.text  # the problem+json detail
    snap(browser, shots, "0-api-key-error")
    enter_key(browser)
    wait(browser, "#index-table")
    summary = api(server, "GET", "/indexes")["indexes"][0]
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-index="sample"]')
    assert number(row.find_element(By.CSS_SELECTOR, '[data-field="n_tokens"]').text) == summary["n_tokens"]
    assert number(row.find_element(By.CSS_SELECTOR, '[data-field="n_docs"]').text) == summary["n_docs"]
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
    snap(browser, shots, "1-indexes")


def test_phrase_search(browser: Any, server: str, shots: Path) -> None:
    browser.find_element(By.CSS_SELECTOR, 'nav a[href="#/search"]').click()
    box = wait(browser, "#phrase")
    box.send_keys("a list of\n")  # Enter submits: keyboard-usable
    wait(browser, "#ntd-chart")
    phrase = "a list of"
    count = api(server, "POST", "/count", {"index": "sample", "queries": [phrase]})["results"][0]
    df = api(server, "POST", "/doc_freq", {"index": "sample", "queries": [phrase]})["results"][0]
    ntd = api(server, "POST", "/ntd", {"index": "sample", "queries": [phrase], "top_k": 20})["results"][0]
    assert count > 10 and number(browser.find_element(By.ID, "count").text) == count
    assert number(browser.find_element(By.ID, "doc-freq").text) == df
    bars = browser.find_elements(By.CSS_SELECTOR, "#ntd-chart .n")
    assert [int(b.get_attribute("data-count")) for b in bars] == [t["count"] for t in ntd["tokens"]]
    page1 = api(
        server, "POST", "/documents", {"index": "sample", "queries": [[phrase]], "limit": 10, "window": 60}
    )
    page1 = page1["results"][0]
    assert f"of {page1['total']:,}" in browser.find_element(By.ID, "page-info").text
    shown = [
        int(d.get_attribute("data-doc-id")) for d in browser.find_elements(By.CSS_SELECTOR, "#documents .doc")
    ]
    assert shown == [d["doc_id"] for d in page1["docs"]]
    marks = browser.find_elements(By.CSS_SELECTOR, "#documents mark")
    assert marks and all(m.text.lower().strip() == phrase for m in marks[:3])
    snap(browser, shots, "2-search")
    if page1["total"] > 10:
        first = shown[0]
        browser.find_element(By.ID, "next-page").click()
        WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: (
                int(d.find_element(By.CSS_SELECTOR, "#documents .doc").get_attribute("data-doc-id")) != first
            )
        )
        page2 = api(server, "POST", "/documents", {"index": "sample", "queries": [[phrase]], "offset": 10})
        shown = [
            int(d.get_attribute("data-doc-id"))
            for d in browser.find_elements(By.CSS_SELECTOR, "#documents .doc")
        ]
        assert shown == [d["doc_id"] for d in page2["results"][0]["docs"]]


def test_cooccurrence(browser: Any, server: str, shots: Path) -> None:
    browser.find_element(By.CSS_SELECTOR, 'nav a[href="#/cooccurrence"]').click()
    wait(browser, "#phrase-rows")
    inputs = browser.find_elements(By.CSS_SELECTOR, "#phrase-rows input")
    inputs[0].send_keys("garbage collector | garbage collection")
    inputs[1].send_keys("reference")
    browser.find_element(By.ID, "add-phrase").click()
    browser.find_elements(By.CSS_SELECTOR, "#phrase-rows input")[2].send_keys("object")
    window = browser.find_element(By.ID, "window")
    window.clear()
    window.send_keys("100\n")
    wait(browser, "#cooc-documents")
    specs = [{"any": ["garbage collector", "garbage collection"]}, "reference", "object"]
    docs = api(server, "POST", "/cooccurrence", {"index": "sample", "queries": [specs]})["results"][0]
    windowed = api(
        server, "POST", "/cooccurrence/windowed", {"index": "sample", "queries": [specs], "window": 100}
    )
    assert docs > 0 and number(browser.find_element(By.ID, "cooc-docs").text) == docs
    assert number(browser.find_element(By.ID, "cooc-windowed").text) == windowed["results"][0]
    examples = browser.find_elements(By.CSS_SELECTOR, "#cooc-documents .doc")
    assert len(examples) == min(5, docs)
    snap(browser, shots, "3-cooccurrence")


def test_trace(browser: Any, server: str, shots: Path) -> None:
    browser.find_element(By.CSS_SELECTOR, 'nav a[href="#/trace"]').click()
    box = wait(browser, "#trace-text")
    box.send_keys(TRACE_TEXT)
    browser.find_element(By.ID, "trace-button").click()
    wait(browser, "#traced-text")
    body = {"index": "sample", "queries": [TRACE_TEXT], "min_len": 2, "max_count": 10, "boundary": "word"}
    result = api(server, "POST", "/trace", {**body, "docs_per_span": 10, "context": 60})["results"][0]
    assert result["spans"], "the text shares spans with the sample corpus"
    assert number(browser.find_element(By.ID, "span-count").text) == len(result["spans"])
    assert number(browser.find_element(By.ID, "token-count").text) == result["n_tokens"]
    assert browser.find_element(By.ID, "span-density").text == f"{result['span_density']:.3f}"
    rows = browser.find_elements(By.CSS_SELECTOR, "#span-table tbody tr")
    by_rank = sorted(result["spans"], key=lambda s: s["rank"])
    assert [
        int(r.find_element(By.CSS_SELECTOR, "[data-count]").get_attribute("data-count")) for r in rows
    ] == [s["count"] for s in by_rank]
    # keyboard: Tab to the first highlighted span, Enter shows its documents
    first = browser.find_element(By.CSS_SELECTOR, "#traced-text .hl")
    browser.execute_script("arguments[0].focus()", first)
    first.send_keys("\n")
    wait(browser, "#span-documents")
    ranks = [int(r) for r in first.get_attribute("data-spans").split()]
    covering = [s for s in result["spans"] if s["rank"] in ranks]
    chosen = max(covering, key=lambda s: (s["length"], -covering.index(s)))
    docs = browser.find_elements(By.CSS_SELECTOR, "#span-documents .doc")
    assert [int(d.get_attribute("data-doc-id")) for d in docs] == [d["doc_id"] for d in chosen["documents"]]
    assert docs[0].find_element(By.TAG_NAME, "mark").text.strip() == chosen["text"].strip()
    snap(browser, shots, "4-trace")


def test_cancel_a_long_query(browser: Any, server: str, shots: Path) -> None:
    """A query held back for 5 s shows the spinner; Cancel aborts it and says so."""
    browser.execute_script(
        """
        const real = window.fetch;
        window.fetch = (url, opts) => new Promise((resolve, reject) => {
          opts.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
          setTimeout(() => real(url, opts).then(resolve, reject), 5000);
        });
        """
    )
    browser.find_element(By.ID, "trace-button").click()
    wait(browser, "#busy")
    snap(browser, shots, "5-spinner")
    browser.find_element(By.ID, "cancel").click()
    assert wait(browser, "#error").text == "Cancelled."
    browser.refresh()  # the real fetch again


def test_evaluation_runs(browser: Any, server: str, shots: Path, eval_run: Path) -> None:
    browser.get(server + "/ui/#/runs")
    wait(browser, "#runs-table")
    browser.find_element(By.CSS_SELECTOR, '[data-run="demo-run"]').click()
    wait(browser, "#memorization-table")
    report = api(server, "GET", "/runs/demo-run")
    mem_rows = browser.find_elements(By.CSS_SELECTOR, "#memorization-table tbody tr")
    assert len(mem_rows) == len(report["report"]["memorization"]) > 0
    first = report["report"]["memorization"][0]
    cells = [c.text for c in mem_rows[0].find_elements(By.TAG_NAME, "td")]
    assert cells[0] == first["task"] and cells[6] == f"{first['pairs']:,}"
    assert (
        len(browser.find_elements(By.CSS_SELECTOR, "#bins-table tbody tr"))
        == len(report["performance_bins"])
        > 0
    )
    WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#figures img")) == len(report["figures"])
    )
    loaded = browser.execute_script(
        "return [...document.querySelectorAll('#figures img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert loaded and len(report["figures"]) > 0
    assert browser.find_element(By.ID, "run-errors").text == "No errors."
    snap(browser, shots, "6-evaluation-run")
