"""Source guards on the console's files: no HTML parsing of data, no inline code, key storage.

These are an extra guard; the browser test (tests/e2e/test_console.py) checks behaviour.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources

import pytest

STATIC = resources.files("gateway.console").joinpath("static")
SCRIPTS = ("console-core.js", "console.js")
JS = "\n".join(STATIC.joinpath(name).read_text("utf-8") for name in SCRIPTS)
HTML = STATIC.joinpath("index.html").read_text("utf-8")
CSS = STATIC.joinpath("console.css").read_text("utf-8")


@pytest.mark.parametrize(
    "pattern",
    [
        r"innerHTML",
        r"outerHTML",
        r"insertAdjacentHTML",
        r"document\.write",
        r"\beval\s*\(",
        r"new\s+Function\b",
        r"DOMParser",
        r"createContextualFragment",
        r"srcdoc",
        r"setTimeout\s*\(\s*['\"`]",
        r"setInterval\s*\(\s*['\"`]",
    ],
)
def test_script_never_parses_html_or_code(pattern: str) -> None:
    assert not re.search(pattern, JS), pattern


def test_operator_key_lives_in_session_storage_only() -> None:
    assert "sessionStorage" in JS
    assert "localStorage" not in JS
    assert "document.cookie" not in JS
    assert 'credentials: "omit"' in JS
    # Requests go to this origin only: every fetch path is an absolute path, no scheme.
    assert not re.search(r"https?://", JS)


def test_no_external_resources() -> None:
    for source in (HTML, CSS):
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", source, re.IGNORECASE)
        assert "@import" not in source and "url(" not in source


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.styles = 0
        self.inline_handlers: list[str] = []
        self.style_attrs = 0
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script":
            self.scripts.append(names)
            self._in_script = True
        if tag == "style":
            self.styles += 1
        self.inline_handlers += [n for n in names if n.startswith("on")]
        self.style_attrs += "style" in names

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data


def test_page_has_no_inline_script_or_style() -> None:
    page = _Collector()
    page.feed(HTML)
    assert page.scripts == [{"src": f"/console/{name}", "defer": None} for name in SCRIPTS]
    assert page.script_text.strip() == ""
    assert page.styles == 0 and page.style_attrs == 0
    assert page.inline_handlers == []


def test_forms_cannot_leak_the_key_into_a_url() -> None:
    # A form submitted before the script runs must not put the key in a query string
    # (the CSP's form-action 'none' blocks it too).
    forms = re.findall(r"<form[^>]*>", HTML)
    assert forms and all('method="post"' in f and "action=" not in f for f in forms)
