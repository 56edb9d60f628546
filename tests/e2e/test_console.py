"""The operators' console in a real browser (Debian's Chromium driven by Playwright).

The gateway runs as a `gateway serve` subprocess without the model: the console only needs
the admin API. What it checks: sign-in with an operator key kept in sessionStorage only,
tenants and keys (the secret shown once), a tenant's budget (set and read back), rate limits,
a key's own limits and budget, and policy, API errors shown, a tenant name full of HTML
rendered as text (no dialog fires, no CSP violation), the other pages, a refused key
returning to sign-in, and sign-out.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import RunningGateway, start_gateway

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
XSS_NAME = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    server = start_gateway(
        tmp_path_factory.mktemp("console"), {"GATEWAY_LOAD_MODEL": "false", "GATEWAY_CONSOLE": "true"}
    )
    yield server
    server.stop()


@pytest.fixture
def browser_page() -> Iterator[tuple[object, dict[str, list[str]]]]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium")
    from playwright.sync_api import sync_playwright

    seen: dict[str, list[str]] = {"dialogs": [], "csp": [], "errors": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(15_000)

            def on_dialog(dialog) -> None:  # an alert here means injected script ran
                seen["dialogs"].append(f"{dialog.type}: {dialog.message}")
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.on(
                "console",
                lambda msg: seen["csp"].append(msg.text) if "Content Security Policy" in msg.text else None,
            )
            page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
            yield page, seen
        finally:
            browser.close()


def _admin_key(server: RunningGateway, name: str) -> str:
    return str(json.loads(server.cli("admin", "key", "create", name, "--json").stdout)["key"])


def _storage(page) -> dict[str, object]:
    return page.evaluate(
        "() => ({session: {...sessionStorage}, local: localStorage.length, cookie: document.cookie})"
    )


def last_error(page):
    return page.locator("#messages .msg.error").last


def last_ok(page):
    return page.locator("#messages .msg.ok").last


def _sign_in(page, key: str) -> None:
    page.fill("#admin-key", key)
    page.click("#sign-in-form button[type=submit]")


def test_console_in_a_browser(browser_page, console_server: RunningGateway, unique: str) -> None:
    from playwright.sync_api import expect

    page, seen = browser_page
    base = console_server.base_url
    operator = _admin_key(console_server, f"ops-{unique}")

    # Sign-in: a tenant-shaped key and an unknown operator key are refused with a message.
    page.goto(f"{base}/console")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#top")).to_be_hidden()
    _sign_in(page, "sk-gw-not-an-operator-key")
    expect(last_error(page)).to_contain_text("starts with sk-gwa-")
    _sign_in(page, "sk-gwa-" + "x" * 43)
    expect(last_error(page)).to_contain_text("Sign-in failed: 401 authentication_error")
    expect(page.locator("#sign-in")).to_be_visible()

    _sign_in(page, operator)
    expect(page.locator("#top")).to_be_visible()
    expect(page.locator("#sign-in")).to_be_hidden()
    expect(page.locator("#app h1")).to_have_text("Tenants")
    stored = _storage(page)
    assert stored == {"session": {"gateway.console.operatorKey": operator}, "local": 0, "cookie": ""}
    assert operator not in page.url

    # Create tenants through the form, one of them named like an HTML injection.
    tenant = f"acme-{unique}"
    for name in (tenant, XSS_NAME):
        page.fill("#tenant-name", name)
        page.click("#create-tenant button[type=submit]")
        expect(page.locator("#tenants a", has_text=name)).to_have_count(1)
    # Creating one twice shows the API's error, not nothing.
    page.fill("#tenant-name", tenant)
    page.click("#create-tenant button[type=submit]")
    expect(last_error(page)).to_contain_text("409")
    expect(last_error(page)).to_contain_text("conflict")

    xss_link = page.locator("#tenants a", has_text=XSS_NAME)
    assert xss_link.text_content() == XSS_NAME
    assert page.locator("#app img").count() == 0

    # The injected name's own page: the name in the title and every API path is encoded.
    xss_link.click()
    expect(page.locator("#tenant-title .name")).to_have_text(XSS_NAME)
    expect(page.locator("#key-list")).to_have_text("No keys.")
    expect(page.locator("#policy-active")).to_contain_text("default policy applies")
    assert page.locator("#app img").count() == 0
    page.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert seen["dialogs"] == []

    # A tenant's page: a key, its secret shown once.
    page.goto(f"{base}/console#/tenants")
    page.locator("#tenants a", has_text=tenant).click()
    expect(page.locator("#tenant-title .name")).to_have_text(tenant)
    page.fill("#key-name", "ci")
    page.click("#create-key button[type=submit]")
    secret_el = page.locator("#new-key-secret")
    expect(secret_el).to_be_visible()
    secret = secret_el.text_content() or ""
    assert re.fullmatch(r"sk-gw-[A-Za-z0-9_-]+", secret), secret
    expect(page.locator("#new-key")).to_contain_text("only time it is shown")
    expect(page.locator("#keys tbody tr")).to_have_count(1)
    assert secret not in (page.locator("#keys").text_content() or "")
    tenant_auth = {"authorization": f"Bearer {secret}"}
    assert httpx.get(f"{base}/v1/models", headers=tenant_auth, timeout=30).status_code == 200
    page.click("#hide-secret")
    expect(page.locator("#new-key")).to_be_hidden()
    assert secret not in page.content()
    page.reload()
    expect(page.locator("#keys tbody tr")).to_have_count(1)
    assert secret not in page.content()

    # Budget: none yet; change it; the stored values come back from the API.
    expect(page.locator("#budget-summary")).to_contain_text("No budget")
    page.fill("#budget-limit", "25.50")
    page.select_option("#budget-period", "day")
    page.select_option("#budget-mode", "soft")
    page.fill("#budget-alerts", "50, 90")
    page.click("#budget-form button[type=submit]")
    expect(page.locator("#budget-summary")).to_contain_text("$25.5 per day")
    expect(last_ok(page)).to_contain_text("set to $25.5 per day (soft)")
    with sqlite3.connect(console_server.data_dir / "gateway.db") as db:
        row = db.execute(
            "SELECT b.limit_units, b.period, b.mode, b.alert_thresholds FROM budgets b "
            "JOIN tenants t ON t.id = b.tenant_id WHERE t.name = ?",
            (tenant,),
        ).fetchone()
    assert row == (25_500_000_000_000, "day", "soft", "[50, 90]")
    # An invalid budget: the API's 400 is shown.
    page.fill("#budget-limit", "-3")
    page.evaluate("() => document.querySelector('#budget-limit').removeAttribute('pattern')")
    page.click("#budget-form button[type=submit]")
    expect(last_error(page)).to_contain_text("400 invalid_request_error")
    # Read back with GET after a reload: the stored budget, this period's spend, the form filled.
    page.reload()
    expect(page.locator("#budget-summary")).to_contain_text("$25.5 per day")
    expect(page.locator("#budget-summary")).to_contain_text("soft")
    expect(page.locator("#budget-summary dd", has_text="$0")).not_to_have_count(0)
    expect(page.locator("#budget-limit")).to_have_value("25.5")

    # Rate limits: set both, read them back after a reload, clear one.
    expect(page.locator("#limits-summary")).to_contain_text("no limit")
    page.fill("#limits-rpm", "120")
    page.fill("#limits-tpm", "50000")
    page.click("#limits-form button[type=submit]")
    expect(last_ok(page)).to_contain_text("120 requests and 50000 tokens per minute")
    page.reload()
    expect(page.locator("#limits-summary dd").first).to_have_text("120")
    expect(page.locator("#limits-summary dd").last).to_have_text("50000")
    page.fill("#limits-tpm", "")
    page.click("#limits-form button[type=submit]")
    expect(page.locator("#limits-summary dd").last).to_have_text("no limit")

    # Policy: an invalid document is refused with the API's reasons; a valid one activates.
    page.fill("#policy-editor", '{"modes": {"allowed": ["warp-speed"]}}')
    page.click("#policy-save")
    expect(last_error(page)).to_contain_text("400 invalid_request_error")
    page.fill("#policy-editor", '{"modes": {"allowed": ["non-think", "think-high"], "default": "non-think"}}')
    page.click("#policy-save")
    expect(last_ok(page)).to_contain_text("Policy version 1 is active")
    expect(page.locator("#policy-versions tbody tr")).to_have_count(1)
    page.fill("#policy-editor", '{"modes": {"allowed": ["non-think"], "default": "non-think"}}')
    page.fill("#policy-comment", "flash only")
    page.click("#policy-save")
    expect(last_ok(page)).to_contain_text("Policy version 2 is active")
    expect(page.locator("#policy-active")).to_contain_text("flash only")
    page.locator("#policy-versions button", has_text="Activate").click()  # roll back to version 1
    expect(last_ok(page)).to_contain_text("Policy version 1 is active")
    expect(page.locator("#policy-active dd").first).to_have_text("1")
    expect(page.locator("#policy-versions tbody tr")).to_have_count(2)
    assert '"think-high"' in page.input_value("#policy-editor")

    # Compliance profile: the default, then a version of our own.
    expect(page.locator("#profile-active")).to_contain_text("none")
    page.fill("#profile-editor", '{"allowed_regions": ["local"], "retention": {"mode": "hash"}}')
    page.click("#profile-save")
    expect(last_ok(page)).to_contain_text("Compliance profile version 1 is active")
    expect(page.locator("#profile-editor")).to_have_value(re.compile("allowed_regions"))

    # Usage: the rollup runs on demand; the month's invoice is a draft with no lines.
    page.locator("#usage-form button", has_text="Refresh rollup now").click()
    expect(last_ok(page)).to_contain_text("Rollup ran")
    expect(page.locator("#usage-total")).to_have_text("$0")
    page.click("#invoice-form button[type=submit]")
    expect(page.locator("#invoice")).to_contain_text("draft")

    # The key's own limits and budget, from the keys table; the API's 400 is shown.
    page.locator("#keys button.key-settings").click()
    expect(page.locator("#key-budget-summary")).to_have_text("No budget of its own.")
    expect(page.locator("#key-limits-summary dd").first).to_have_text("no limit")
    page.fill("#key-limits-rpm", "7")
    page.click("#key-limits-form button[type=submit]")
    expect(last_ok(page)).to_contain_text("7 requests and no limit tokens per minute")
    page.fill("#key-budget-limit", "0.0000000000001")  # finer than the 1e-12 USD unit
    page.click("#key-budget-form button[type=submit]")
    expect(last_error(page)).to_contain_text("400 invalid_request_error")
    page.fill("#key-budget-limit", "2")
    page.click("#key-budget-form button[type=submit]")
    expect(page.locator("#key-budget-summary")).to_contain_text("$2 per month")
    with sqlite3.connect(console_server.data_dir / "gateway.db") as db:
        key_row = db.execute(
            "SELECT k.requests_per_minute, b.limit_units FROM api_keys k "
            "JOIN budgets b ON b.scope = 'key' AND b.scope_id = k.id "
            "JOIN tenants t ON t.id = k.tenant_id WHERE t.name = ?",
            (tenant,),
        ).fetchone()
    assert key_row == (7, 2_000_000_000_000)

    # Revoke the key: two clicks; the key stops working.
    revoke = page.locator("#keys button", has_text="Revoke")
    revoke.click()
    page.locator("#keys button", has_text="Confirm revoke").click()
    expect(page.locator("#keys button", has_text="Revoke")).to_have_count(0)
    # A revoked key's settings are shown, not editable.
    page.locator("#keys button.key-settings", has_text="View").click()
    expect(page.locator("#key-limits-summary dd").first).to_have_text("7")
    expect(page.locator("#key-limits-form")).to_have_count(0)
    expect(page.locator("#key-budget-form")).to_have_count(0)
    assert httpx.get(f"{base}/v1/models", headers=tenant_auth, timeout=30).status_code == 401

    # The other pages render from the admin API.
    page.click("#top nav a[href='#/prices']")
    expect(page.locator("#price-versions tbody tr").first).to_be_visible()
    page.click("#top nav a[href='#/compliance']")
    expect(page.locator("#compliance-artifacts")).not_to_contain_text("Loading")
    page.click("#run-verify")
    expect(page.locator("#audit-verify")).to_contain_text("The audit chain verifies.")
    page.click("#top nav a[href='#/models']")
    expect(page.locator("#models-deployments")).not_to_contain_text("Loading")
    fresh = console_server.create_key(f"models-{unique}")
    page.fill("#tenant-key", fresh["key"])
    page.click("#models-form button[type=submit]")
    expect(page.locator("#models-list")).to_contain_text("deepseek-v4-flash")
    expect(page.locator("#sign-in")).to_be_hidden()  # a tenant key's call never signs out

    # Pools: a worker pool's replica, drained and returned from the page (this process runs no
    # dispatcher: GATEWAY_LOAD_MODEL=false).
    pool = f"gpu-{unique}"
    console_server.cli(
        "compliance",
        "pool",
        "add",
        pool,
        "--device-kind",
        "cuda",
        "--vendor",
        "nvidia",
        "--stack",
        "CUDA",
        "--region",
        "eu-west",
        "--backend",
        "worker",
    )
    console_server.cli("pools", "replica", "add", pool, "http://127.0.0.1:9", "--capacity", "8")
    page.click("#top nav a[href='#/pools']")
    replicas = page.locator("#pools section", has_text=pool).locator("table.replicas")
    expect(replicas).to_contain_text("http://127.0.0.1:9")
    expect(replicas).to_contain_text("not served by this process")
    replicas.locator("button.replica-toggle").click()
    expect(replicas).to_contain_text("drained")
    replicas.locator("button.replica-toggle").click()
    expect(replicas).to_contain_text("not served by this process")

    # Sign out: the key is forgotten and the data leaves the page.
    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#top")).to_be_hidden()
    assert _storage(page) == {"session": {}, "local": 0, "cookie": ""}
    assert page.locator("#app").text_content().strip() == ""
    assert page.url == f"{base}/console"  # no tenant name left in the address bar

    # A key revoked while signed in: the next call returns to sign-in with the reason.
    second = _admin_key(console_server, f"ops2-{unique}")
    _sign_in(page, second)
    expect(page.locator("#tenants")).to_be_visible()
    console_server.cli("admin", "key", "revoke", f"ops2-{unique}")
    page.click("#top nav a[href='#/prices']")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(last_error(page)).to_contain_text("refused the operator key (401")
    assert _storage(page)["session"] == {}

    assert seen["dialogs"] == []
    assert seen["csp"] == []
    assert seen["errors"] == []
