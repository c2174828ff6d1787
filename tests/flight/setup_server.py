"""Prepares a running `sandbox serve` for tests/flight/client.py through the
HTTP API (standard library only): accounts for a bank, a second applicant,
the tax bureau and the power grid; the bank's application for tax and
utility data, approved by both owners. Writes the tokens and the agreement
as JSON (the shape client.py reads)."""

import argparse
import json
import urllib.error
import urllib.request


def call(base, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: {e.code} {e.read().decode()}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--operator-token", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    ops = args.operator_token

    def account(id, role, provider=None):
        body = {"id": id, "role": role}
        if provider:
            body["provider"] = provider
        return call(args.base, ops, "POST", "/v1/accounts", body)["token"]

    bank = account("flight-bank", "applicant")
    other = account("flight-other-bank", "applicant")
    tax = account("flight-tax-bureau", "data_owner", "shanghai-tax")
    grid = account("flight-power-grid", "data_owner", "shanghai-utilities")
    call(args.base, bank, "POST", "/v1/applications", {
        "id": "flight-credit",
        "datasets": ["gov.tax_payments", "gov.utility_usage"],
        "columns": ["gov.tax_payments.year", "gov.tax_payments.tax_paid", "gov.tax_payments.credit_code",
                    "gov.utility_usage.*"],
        "job_kinds": ["sql"],
        "scenario": "inclusive-finance credit scoring from standard SQL clients",
        "materials": ["营业执照 business licence"],
    })
    approve = {"decision": "approve", "epsilon": 10, "expires_at": "2999-01-01T00:00:00Z", "call_quota": 100000}
    call(args.base, tax, "POST", "/v1/applications/flight-credit/decision", approve)
    decided = call(args.base, grid, "POST", "/v1/applications/flight-credit/decision", approve)
    agreement = decided["agreement"]
    assert agreement, decided
    with open(args.out, "w") as f:
        json.dump({"applicant": bank, "other_applicant": other, "owner": tax, "operator": ops,
                   "agreement": agreement}, f)


if __name__ == "__main__":
    main()
