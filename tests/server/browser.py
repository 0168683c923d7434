"""Debian's chromium for the dashboard's browser tests, driven by Playwright through its
``executable_path`` (nothing downloaded), and where their screenshots go."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ARTIFACTS = Path(
    os.environ.get("SIGNALBOX_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)
# as root, without a sandbox; no background traffic (this machine's network is closed)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(browser: Any, *, height: int = 860, csp: bool = False) -> Any:
    """A page of 1280 x ``height``. ``csp`` False bypasses the pages' Content-Security-
    Policy, which refuses the ``eval`` Playwright polls ``wait_for_function`` with: the
    tests then check escaping on its own; the policy has its own test (``csp`` True)."""
    return browser.new_page(viewport={"width": 1280, "height": height}, bypass_csp=not csp)


def screenshot(page: Any, name: str) -> None:
    """The whole page as ``ARTIFACTS/name``, for people to look at (tests assert on the DOM)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
