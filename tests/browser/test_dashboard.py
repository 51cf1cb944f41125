"""The dashboard in headless Chromium: it lists an experiment started with
`studio run`, tails its output live, stops it, and deletes another one."""

import os
from pathlib import Path

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By

from conftest import wait_until

LOOP = """\
import time
for step in range(100000):
    print(f"step {step} loss {1.0 / (step + 1):.4f}", flush=True)
    time.sleep(0.2)
"""


def screenshot(browser, name: str):
    """Saves a PNG into STUDIO_SCREENSHOTS (the docs use them) when set."""
    folder = os.environ.get("STUDIO_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / name))


def open_page(browser, studio, fragment):
    """Opens the address of `studio ui` once, which stores the dashboard
    token in the browser, then the page at `fragment`."""
    if not browser.current_url.startswith(studio.url):
        browser.get(studio.dashboard_url)
        wait_until("the token to move into local storage", lambda: "#token=" not in browser.current_url)
    browser.get(studio.url + fragment)


def row(browser, key):
    rows = browser.find_elements(By.CSS_SELECTOR, f'#experiments tr[data-key="{key}"]')
    return rows[0] if rows else None


def row_text(browser, key):
    """Return the text of the experiment's row, or "" while it is missing or
    being redrawn by a live update."""
    try:
        found = row(browser, key)
        return found.text if found else ""
    except StaleElementReferenceException:
        return ""


def click_in_row(browser, key, by, value):
    """Click an element of the experiment's row; return False when a live
    update redrew the row first, so the caller can try again."""
    try:
        row(browser, key).find_element(by, value).click()
        return True
    except (StaleElementReferenceException, AttributeError):
        return False


def click_by_id(browser, element_id):
    """Click the element with `element_id`. Return False when it is not
    there yet or a live update redrew it first, so the caller can retry."""
    try:
        browser.find_element(By.ID, element_id).click()
        return True
    except (StaleElementReferenceException, NoSuchElementException):
        return False


def output_ended(browser):
    """Return the output panel's `data-ended`, finding the panel afresh."""
    try:
        return browser.find_element(By.ID, "output").get_attribute("data-ended")
    except (StaleElementReferenceException, NoSuchElementException):
        return None


def test_follow_stop_and_delete(studio, browser):
    studio.write("loop.py", LOOP)
    studio.write("hello.py", "print('hello from Studio')\n")
    finished = studio.run("run", "--project", "demo", "hello.py")
    assert "hello from Studio" in finished
    followed = studio.detach("--project", "demo", "loop.py")
    other = studio.detach("--project", "demo", "loop.py")

    open_page(browser, studio, "#/all")
    wait_until("both running experiments in the list", lambda: row(browser, followed) and row(browser, other))
    wait_until("the followed row to show running", lambda: "running" in row_text(browser, followed))
    screenshot(browser, "dashboard-list.png")

    wait_until("the experiment page to open", lambda: click_in_row(browser, followed, By.LINK_TEXT, followed))
    output = wait_until("the output panel", lambda: browser.find_elements(By.ID, "output"))[0]
    wait_until("the first output lines", lambda: "step 2 " in output.text)
    before = len(output.text)
    wait_until("the output to grow while the experiment runs", lambda: len(output.text) > before + 20)
    screenshot(browser, "dashboard-experiment.png")

    # The header with the stop button is redrawn on live updates.
    wait_until("the stop button to be clicked", lambda: click_by_id(browser, "stop"))
    wait_until(
        "the page to show the stop (live, from /api/v1/events)",
        lambda: text_of(browser, "status") == "stopped",
        explain=lambda: f"status {text_of(browser, 'status')!r}, error {text_of(browser, 'error')!r}, "
        f"API status {studio.experiment(followed)['status']!r}, log {browser.get_log('browser')}",
    )
    assert studio.experiment(followed)["status"] == "stopped"
    wait_until("the output stream to end", lambda: output_ended(browser) == "stopped")

    open_page(browser, studio, "#/all")
    wait_until("the list", lambda: row(browser, other))
    wait_until("the row to be selected", lambda: click_in_row(browser, other, By.CSS_SELECTOR, "input.select"))
    delete = browser.find_element(By.ID, "delete-selected")
    assert delete.is_enabled()
    delete.click()
    alert = wait_until("the confirmation", lambda: _alert(browser))
    assert other in alert.text
    alert.accept()
    wait_until("the deleted experiment to leave the list", lambda: row(browser, other) is None)
    assert studio.experiment(other) is None
    assert studio.experiment(followed)["status"] == "stopped"
    assert row(browser, followed) is not None


def test_cancelled_delete_keeps_experiment(studio, browser):
    studio.write("hello.py", "print('hello')\n")
    studio.run("run", "hello.py")
    key = studio.run("runs", "list", "all", "--short").split()[0]
    open_page(browser, studio, "#/all")
    wait_until("the experiment in the list", lambda: row(browser, key))
    wait_until("the row to be selected", lambda: click_in_row(browser, key, By.CSS_SELECTOR, "input.select"))
    browser.find_element(By.ID, "delete-selected").click()
    wait_until("the confirmation", lambda: _alert(browser)).dismiss()
    assert studio.experiment(key) is not None
    assert row(browser, key) is not None


def test_pages_render(studio, browser):
    studio.write("hello.py", "print('hello')\n")
    studio.run("run", "--project", "vision", "hello.py")
    user = studio.get("/api/v1/daemon")[1]["user"]
    pages = {
        "#/": "My experiments",
        "#/projects": "vision",
        "#/project/vision": "Comparison by metric",
        "#/users": user,
        f"#/user/{user}": f"Experiments of {user}",
    }
    for fragment, text in pages.items():
        open_page(browser, studio, fragment)
        wait_until(f"{text!r} on {fragment}", lambda: text in (text_of(browser, "main") or ""))
        assert not browser.find_element(By.ID, "error").is_displayed(), fragment


def text_of(browser, element_id):
    """Text of the element, or None while a re-render has removed it."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        elements = browser.find_elements(By.ID, element_id)
        return elements[0].text if elements else None
    except StaleElementReferenceException:
        return None


def _alert(browser):
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return browser.switch_to.alert
    except NoAlertPresentException:
        return None


def test_experiment_page_links_artifacts(studio, browser):
    studio.write("hello.py", "print('hello')\n")
    studio.run("run", "--experiment", "with-artifacts", "hello.py")
    open_page(browser, studio, "#/experiment/with-artifacts")
    wait_until(
        "the artifact list",
        lambda: "workspace" in (text_of(browser, "artifact-list") or ""),
        explain=lambda: f"artifacts section: {text_of(browser, 'artifacts')!r}",
    )
    link = browser.find_element(By.CSS_SELECTOR, "#artifact-list a[href$='/artifacts/workspace']")
    path = link.get_attribute("href").removeprefix(f"http://{studio.address}")
    status, _ = studio.get("/api/v1/experiments/with-artifacts/artifacts")
    assert status == 200
    import urllib.request

    with urllib.request.urlopen(f"http://{studio.address}{path}", timeout=60) as response:
        assert response.headers["Content-Type"] == "application/gzip"
        assert response.read(2) == b"\x1f\x8b"


SCALARS = """\
import json, os
from tensorboardX import SummaryWriter
tb = json.load(open(os.environ["STUDIOML_ARTIFACT_MAPPING"]))["tb"]
writer = SummaryWriter(tb)
for step in range(5):
    writer.add_scalar("loss", 1.0 / (step + 1), step)
writer.close()
"""


def test_experiment_page_charts_scalars(studio, browser):
    studio.write("tb.py", SCALARS)
    studio.run("run", "--experiment", "charted", "tb.py")
    open_page(browser, studio, "#/experiment/charted")

    def loaded_chart():
        images = browser.find_elements(By.CSS_SELECTOR, "#charts img")
        if not images:
            return None
        width = browser.execute_script("return arguments[0].naturalWidth", images[0])
        return images[0] if width else None

    chart = wait_until(
        "the chart of the loss scalar",
        loaded_chart,
        explain=lambda: f"charts section: {text_of(browser, 'charts')!r}",
    )
    assert "tag=loss" in chart.get_attribute("src")
    assert chart.get_attribute("alt") == "loss by step"
    browser.execute_script("arguments[0].scrollIntoView()", chart)
    screenshot(browser, "dashboard-chart.png")
