"""Driving the system Chromium (Debian's package, no `playwright install`) for the report's browser
tests: its launch arguments, and a page that records every console message, page error and dialog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

class Page:
    """A page with every console message, page error and dialog recorded."""

    def __init__(self, browser: Any, path: Path, height: int = 900, bypass_csp: bool = False) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": height}, bypass_csp=bypass_csp)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("dialog", self._dialog)
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector(".item-row")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        self.context.close()

    def errors(self) -> list[str]:
        return [m for m in self.console if m.startswith(("error", "pageerror"))]

    def rows(self) -> int:
        return self.page.locator(".item-row").count()
