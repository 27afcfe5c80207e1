"""The web app in a real browser: Debian's Chromium driven by Playwright (pointed at /usr/bin/chromium; no
browser is ever downloaded) against `monitor serve` in a subprocess. Every page loads with no console
error, no failed request and no horizontal scrolling at 360 px; the search form submits, a facet narrows,
a map cell lands on its search, a result opens its paper page, and the keyboard reaches the content.

``UPDATE_SCREENSHOTS=1`` also writes the README's screenshots (docs/web-*.png) from these pages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, require_program
from tests.test_web_server import Served, served  # noqa: F401 - the module's server fixture

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PAGES = ["/", "/search?q=probiotic&relevant=1", "/search", "/map", "/trends", "/status"]
SHOTS = {"/": "web-home", "/search?q=probiotic&relevant=1": "web-search", "/map": "web-map", "/trends": "web-trends",
         "/status": "web-status"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_program("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Watched:
    """A page with every console error, page error, failed request and error response recorded."""

    def __init__(self, browser: Any, width: int, height: int = 900) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        # net::ERR_ABORTED is Chromium cancelling a request itself when the page navigates away (the icon,
        # which loads after the load event, when a form is submitted at once); a failure of the server shows
        # as another error or an HTTP status.
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}")
                     if r.failure != "net::ERR_ABORTED" else None)
        self.page.on("response", lambda r: self.problems.append(f"HTTP {r.status}: {r.url}")
                     if r.status >= 400 else None)

    def settle(self) -> None:
        """Wait until nothing is loading (the icon loads after the load event; a navigation started before
        it finishes would abort it and count as a failed request)."""
        self.page.wait_for_load_state("networkidle")

    def overflow(self) -> int:
        """How many pixels the document is wider than the viewport (0: no horizontal scrolling)."""
        return int(self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def phone(browser: Any) -> Iterator[Watched]:
    w = Watched(browser, 360, 800)
    yield w
    w.close()


@pytest.mark.parametrize("path", PAGES)
def test_every_page_loads_cleanly_and_fits_a_phone(browser: Any, served: Served, path: str) -> None:  # noqa: F811
    for width in (360, 1280):
        w = Watched(browser, width)
        try:
            response = w.page.goto(served.url.rstrip("/") + path, wait_until="load")
            assert response is not None and response.status == 200
            assert w.page.locator("main h1").count() == 1
            w.settle()
            assert w.problems == [], w.problems
            assert w.overflow() <= 0, f"{path} is {w.overflow()} px wider than a {width} px screen"
            if os.environ.get("UPDATE_SCREENSHOTS") == "1" and path in SHOTS:
                suffix = "" if width == 1280 else "-phone"
                w.page.screenshot(path=str(ROOT / "docs" / f"{SHOTS[path]}{suffix}.png"), full_page=False)
        finally:
            w.close()


def results_count(w: Watched) -> int:
    text = w.page.locator("#results-h").inner_text()
    m = re.match(r"([\d,]+) papers?", text)
    assert m, text
    return int(m.group(1).replace(",", ""))


def test_search_form_facet_and_paper_page(phone: Watched, served: Served) -> None:  # noqa: F811
    page = phone.page
    page.goto(served.url + "search")
    phone.settle()
    page.fill("#f-q", "probiotic")
    page.check("input[name=relevant]")
    page.click("form.search button[type=submit]")
    page.wait_for_url(re.compile(r"/search\?.*q=probiotic"))
    phone.settle()
    total = results_count(phone)
    assert total > 0 and page.locator("article.paper").count() == min(total, 20)
    assert page.locator("article.paper mark").count() > 0  # matched words highlighted

    facet = page.locator(".facets .facet a").first
    label = facet.inner_text()
    expected = int(facet.locator("xpath=following-sibling::span[@class='count']").inner_text())
    facet.click()
    page.wait_for_url(re.compile(r"condition=|intervention=|design="))
    phone.settle()
    assert results_count(phone) == expected <= total
    assert page.locator(".facets a.active").first.inner_text() == "✓ " + label

    first = page.locator("article.paper .paper-title a").first
    title = first.inner_text()
    first.click()
    page.wait_for_url(re.compile(r"/paper/\d+$"))
    phone.settle()
    assert page.locator("main h1").inner_text() == title
    assert page.get_by_role("link", name=re.compile(r"^PubMed \d+$")).count() == 1
    finding = page.locator("details.finding").first  # why the paper is relevant: its skin side
    assert not finding.locator("li mark").first.is_visible()
    finding.locator("summary").click()
    assert finding.locator("li.cause mark").first.is_visible()  # the sentences behind it, words marked
    assert phone.problems == [] and phone.overflow() <= 0


def test_a_map_cell_lands_on_its_search(phone: Watched, served: Served) -> None:  # noqa: F811
    page = phone.page
    page.goto(served.url + "map")
    phone.settle()
    cell = page.locator("table.map td a").first
    shown = int(cell.locator(".n").inner_text())
    cell.scroll_into_view_if_needed()
    cell.click()
    page.wait_for_url(re.compile(r"/search\?.*condition=.*intervention=.*relevant=1"))
    phone.settle()
    assert results_count(phone) == shown
    assert phone.problems == [] and phone.overflow() <= 0


def test_the_keyboard_reaches_the_content_first(phone: Watched, served: Served) -> None:  # noqa: F811
    page = phone.page
    page.goto(served.url)
    phone.settle()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto(served.url + "search")
    phone.settle()
    page.focus("#f-q")
    page.keyboard.type("psoriasis")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=psoriasis"))
    phone.settle()
    assert results_count(phone) > 0 and phone.problems == []


def test_screenshots_are_committed() -> None:
    missing = [name for name in SHOTS.values() if not (Path(ROOT) / "docs" / f"{name}.png").exists()]
    assert not missing, f"run UPDATE_SCREENSHOTS=1 pytest tests/test_web_browser.py to write {missing}"
