"""The web console in a real browser: headless Chromium (Debian's package)
driven by Playwright (PyPI) against a running `sandbox serve`.

1. flow: an applicant applies -> the data owner rejects with a reason -> the
   applicant revises -> the owner approves -> the applicant dry-runs and runs
   a job and sees a chart with intervals -> the operator suspends the
   dataset -> the applicant's next job is refused in the page, the rule named.
2. keyboard: the apply and job forms filled and sent with the keyboard alone
   (Tab, Space, typing, Enter), every stop showing a visible focus.
3. what-if: the owner previews a stricter policy draft on its own data and
   sees what it would withhold, before installing anything.
4. screenshots: the main pages in Chinese and English, written to --shots.

Prints one line per test and `browser: N passed, N failed`; exits non-zero
on any failure."""

import argparse
import json
import pathlib
import sys
import traceback
import urllib.request

from playwright.sync_api import expect, sync_playwright

SQL = "SELECT t.year, AVG(t.tax_paid) FROM gov.tax_payments t GROUP BY t.year"
# Counts per year: noisy values whatever the noise (no dominance rule applies to a count).
COUNT_SQL = "SELECT t.year, COUNT(*) FROM gov.tax_payments t GROUP BY t.year"
COLUMNS = ["gov.tax_payments.year", "gov.tax_payments.tax_paid", "gov.tax_payments.credit_code"]
TIMEOUT_MS = 60_000


def api(base, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


class World:
    """Accounts, browser contexts (one per account: separate cookies) and
    what the flow leaves for the later tests."""

    def __init__(self, browser, base, operator_token, lang="en"):
        self.base = base
        self.browser = browser
        account = lambda id, role, provider=None: api(base, operator_token, "POST", "/v1/accounts",
                                                      {"id": id, "role": role, **({"provider": provider} if provider else {})})["token"]
        self.tokens = {
            "bank": account("console-bank", "applicant"),
            "tax": account("console-tax-bureau", "data_owner", "shanghai-tax"),
            "operator": operator_token,
        }
        self.pages = {}
        self.application = None
        self.agreement = None
        self.job_page = None
        self.lang = lang

    def page(self, who):
        if who not in self.pages:
            context = self.browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
            context.set_default_timeout(TIMEOUT_MS)
            context.add_cookies([{"name": "sbx_lang", "value": self.lang, "url": self.base + "/console"}])
            page = context.new_page()
            page.goto(self.base + "/console/login")
            page.fill("#token", self.tokens[who])
            page.press("#token", "Enter")
            expect(page).to_have_url(self.base + "/console/catalog")
            self.pages[who] = page
        return self.pages[who]

    def set_lang(self, lang):
        for page in self.pages.values():
            page.context.add_cookies([{"name": "sbx_lang", "value": lang, "url": self.base + "/console"}])


def test_flow(w):
    bank, tax, ops = w.page("bank"), w.page("tax"), w.page("operator")
    base = w.base
    # The applicant finds the dataset in the catalog and applies.
    bank.goto(base + "/console/catalog")
    bank.fill("#q", "tax")
    bank.press("#q", "Enter")
    bank.click('a[href="/console/catalog/gov.tax_payments"]')
    bank.click('a[href="/console/apply?dataset=gov.tax_payments"]')
    expect(bank.locator('input[name=datasets][value="gov.tax_payments"]')).to_be_checked()
    for column in COLUMNS:
        bank.check(f'input[name=columns][value="{column}"]')
    bank.fill("#scenario", "SME credit scoring")
    bank.fill("#requested_epsilon", "5")
    bank.fill("#materials", "营业执照 business licence")
    bank.click("#apply-submit")
    expect(bank.locator("#application-status")).to_be_visible()
    w.application = bank.url.rsplit("/", 1)[1]
    app_url = bank.url

    # The owner rejects with a reason.
    tax.goto(base + "/console/applications")
    tax.click(f'a[href="/console/applications/{w.application}"]')
    tax.fill("#reject-reason", "Say which model the scores feed and who sees them.")
    tax.click("#reject")
    expect(tax.locator("#rejection-reason")).to_have_text("Say which model the scores feed and who sees them.")

    # The applicant reads the reason, revises and resubmits.
    bank.goto(app_url)
    expect(bank.locator("#rejection-reason")).to_contain_text("which model")
    bank.fill("#scenario", "SME credit scoring: a logistic model; scores go to the bank's credit committee only")
    bank.click("#apply-submit")
    expect(bank.locator("#application-status")).to_have_class("badge submitted")

    # The owner approves with terms.
    tax.goto(app_url)
    expect(tax.locator("#epsilon")).to_have_value("5")
    tax.fill("#expires_at", "2999-01-01")
    tax.fill("#call_quota", "100")
    tax.click("#approve")
    expect(tax.locator("#application-status")).to_have_class("badge approved")
    w.agreement = f"agreement-{w.application}"

    # The applicant dry-runs, then runs; the chart shows intervals.
    bank.goto(base + "/console/agreements")
    expect(bank.locator("meter").first).to_be_visible()
    bank.click(f'a[href="/console/jobs/new?agreement={w.agreement}"]')
    bank.fill("#sql", COUNT_SQL)
    bank.fill("#job-epsilon", "1")
    bank.click("#dry-run-button")
    expect(bank.locator("#dry-run")).to_be_visible()
    expect(bank.locator("#dry-epsilon")).to_have_text("1.000")
    bank.click("#run-button")
    expect(bank.locator("#result")).to_be_visible()
    chart = bank.locator("svg.bars").first
    expect(chart).to_be_visible()
    bars = chart.locator("g.bar")
    assert bars.count() > 0, "the chart has bars"
    for i in range(bars.count()):
        bar = bars.nth(i)
        assert bar.locator("line.interval").count() == 3, "every bar has its interval whisker"
        assert "[" in bar.locator("text.num").text_content(), "every number shows its interval"
    for cell in bank.locator("#result-table td.noisy").all():
        assert "95%" in cell.inner_text(), cell.inner_text()
    w.job_page = bank.url

    # A WebAssembly module travels with the job: bytes that are no module
    # are refused at admission, the rule named in the page.
    bank.set_input_files("#wasm-module", files=[{"name": "broken.wasm", "mimeType": "application/wasm",
                                                  "buffer": b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff"}])
    bank.click("#run-button")
    expect(bank.locator("#refusal-rule")).to_have_text("wasm-module")

    # The operator suspends the dataset.
    ops.goto(base + "/console/operator")
    row = ops.locator("tr", has=ops.locator('[id="suspend-gov.tax_payments"]'))
    row.locator("input[name=reason]").fill("complaint 2026-17: under review")
    row.locator('[id="suspend-gov.tax_payments"]').click()
    expect(ops.locator('[id="resume-gov.tax_payments"]')).to_be_visible()

    # The applicant's next job is refused in the page, the rule named.
    bank.goto(w.job_page)
    bank.click("#run-button")
    expect(bank.locator("#refusal-rule, #form-rule")).to_have_text("dataset-suspended")


def focus_info(page):
    return page.evaluate("""() => { const e = document.activeElement;
        return {id: e.id, name: e.getAttribute('name'), value: e.getAttribute('value'), tag: e.tagName,
                visible: e.matches(':focus-visible')}; }""")


def tab_to(page, predicate, limit=200):
    """Presses Tab until `predicate(focus)`; every stop must show its focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        info = focus_info(page)
        assert info["visible"], f"focus not visible on {info}"
        if predicate(info):
            return info
    raise AssertionError("never reached by Tab")


def test_keyboard(w):
    base = w.base
    context = w.browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    # Sign in with the keyboard: the skip link is the first stop.
    page.goto(base + "/console/login")
    page.keyboard.press("Tab")
    assert focus_info(page)["tag"] == "A", "the skip link comes first"
    tab_to(page, lambda f: f["id"] == "token")
    page.keyboard.type(w.tokens["bank"])
    page.keyboard.press("Enter")
    expect(page).to_have_url(base + "/console/catalog")

    # The apply form, by Tab, Space and typing alone.
    page.goto(base + "/console/apply")
    tab_to(page, lambda f: f["name"] == "datasets" and f["value"] == "gov.utility_usage")
    page.keyboard.press("Space")
    tab_to(page, lambda f: f["name"] == "columns" and (f["value"] or "").startswith("gov.utility_usage."))
    page.keyboard.press("Space")
    stops = []
    info = tab_to(page, lambda f: f["id"] == "scenario")
    page.keyboard.type("keyboard-only application")
    for expected in ["requested_epsilon", "materials", "apply-submit"]:
        info = tab_to(page, lambda f: bool(f["id"]))
        stops.append(info["id"])
        if info["id"] == "requested_epsilon":
            page.keyboard.type("2")
        if info["id"] == "materials":
            page.keyboard.type("营业执照")
    assert stops == ["requested_epsilon", "materials", "apply-submit"], stops
    page.keyboard.press("Enter")
    expect(page.locator("#application-status")).to_be_visible()
    expect(page.locator("dd.pre")).to_contain_text("keyboard-only application")

    # The job form, by keyboard: SQL, ε, then the dry-run button.
    page.goto(f"{base}/console/jobs/new?agreement={w.agreement}")
    tab_to(page, lambda f: f["id"] == "sql")
    page.keyboard.type("SELECT COUNT(*) FROM gov.tax_payments t")
    order = []
    for _ in range(4):
        order.append(tab_to(page, lambda f: bool(f["id"]) or f["name"] == "kind")["id"] or "kind")
    assert order == ["kind", "wasm-module", "job-epsilon", "dry-run-button"], order
    page.keyboard.press("Tab")
    assert focus_info(page)["id"] == "trial-button"
    page.keyboard.press("Tab")
    assert focus_info(page)["id"] == "run-button"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert focus_info(page)["id"] == "dry-run-button"
    page.keyboard.press("Enter")
    # The dataset is suspended by now: the refusal is announced in the page.
    expect(page.locator("#job-state, #form-rule")).to_be_visible()
    context.close()


def test_what_if(w, folder):
    """The owner previews a stricter draft on its own data: the draft
    column withholds what the policy in force releases; nothing is
    installed. Screenshots of the comparison in both languages."""
    folder.mkdir(parents=True, exist_ok=True)
    tax = w.page("tax")
    for lang in ["zh", "en"]:
        w.set_lang(lang)
        tax.goto(w.base + "/console/policies/gov.tax_payments")
        current = tax.locator("#policy-toml").input_value()
        assert "min_units = 10\n" in current, current
        tax.fill("#policy-toml", current.replace("min_units = 10\n", "min_units = 100000000\n")
                 .replace("epsilon_per_query = 1.0", "epsilon_per_query = 0.5"))
        tax.fill("#whatif-queries", SQL + "\nSELECT COUNT(*) FROM gov.tax_payments t")
        tax.click("#what-if-button")
        expect(tax.locator("#what-if")).to_be_visible()
        rows = tax.locator("#what-if tbody tr")
        expect(rows).to_have_count(2)
        in_force = rows.nth(0).locator("td").nth(1).inner_text()
        draft = rows.nth(0).locator("td.draft").inner_text()
        assert "k-threshold" not in in_force and "k-threshold" in draft, (in_force, draft)
        tax.screenshot(path=str(folder / f"what-if.{lang}.png"), full_page=True)
        assert "min_units = 100000000" in tax.locator("#policy-toml").input_value(), "the draft is kept"
    tax.goto(w.base + "/console/policies/gov.tax_payments")
    assert "min_units = 10\n" in tax.locator("#policy-toml").input_value(), "nothing was installed"


SHOTS = [
    ("bank", "login", None),
    ("bank", "catalog", "/console/catalog"),
    ("bank", "dataset", "/console/catalog/gov.tax_payments"),
    ("bank", "apply", "/console/apply?dataset=gov.tax_payments"),
    ("tax", "review", "/console/applications/{review}"),
    ("bank", "agreements", "/console/agreements"),
    ("bank", "job-result", "{job_page}"),
    ("tax", "policy-editor", "/console/policies/gov.tax_payments"),
    ("operator", "operator", "/console/operator"),
    ("operator", "audit", "/console/audit"),
]


def test_screenshots(w, folder):
    folder.mkdir(parents=True, exist_ok=True)
    # An application awaiting the owner's decision, for the review page.
    review = api(w.base, w.tokens["bank"], "POST", "/v1/applications", {
        "datasets": ["gov.tax_payments"], "columns": COLUMNS, "job_kinds": ["sql"],
        "scenario": "Regional SME tax trends for a policy brief", "materials": ["营业执照 business licence"]})["id"]
    for lang in ["zh", "en"]:
        w.set_lang(lang)
        for who, name, path in SHOTS:
            page = w.page(who)
            if path is None:
                context = w.browser.new_context(viewport={"width": 1280, "height": 800})
                context.add_cookies([{"name": "sbx_lang", "value": lang, "url": w.base + "/console"}])
                page = context.new_page()
                page.goto(w.base + "/console/login")
            else:
                page.goto(w.base + path.format(review=review, job_page=w.job_page.replace(w.base, "")))
            expect(page.locator("html")).to_have_attribute("lang", "zh-CN" if lang == "zh" else "en")
            # The ledger grows without end: its page is shown as far as the screen goes.
            page.screenshot(path=str(folder / f"{name}.{lang}.png"), full_page=name != "audit")
            if path is None:
                page.context.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--operator-token", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--shots", required=True, type=pathlib.Path)
    args = parser.parse_args()
    passed = failed = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True)
        w = World(browser, args.base, args.operator_token)
        for name, test in [("flow", lambda: test_flow(w)), ("keyboard", lambda: test_keyboard(w)),
                           ("what-if", lambda: test_what_if(w, args.shots)),
                           ("screenshots", lambda: test_screenshots(w, args.shots))]:
            try:
                test()
                passed += 1
                print(f"browser test {name}: ok", flush=True)
            except Exception:
                failed += 1
                print(f"browser test {name}: FAILED", flush=True)
                traceback.print_exc()
                for who, page in w.pages.items():
                    print(f"-- {who} at {page.url}", file=sys.stderr)
        browser.close()
    print(f"browser: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
