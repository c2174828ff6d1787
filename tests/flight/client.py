"""The sandbox's Flight SQL endpoint driven by a third-party client: ADBC's
Flight SQL driver (adbc-driver-flightsql) through its DB-API interface.

An accepted job returns noisy aggregates (with the release in the schema
metadata); a refused one fails naming the rule; a bad token, a data owner's
token and another applicant naming the bank's agreement are refused; the
catalog metadata (GetObjects: catalogs, schemas, tables with columns) lists
the bank's agreed tables and nothing to the others. Then the accepted job
is timed over a few runs.

    python client.py --url grpc://127.0.0.1:PORT --tokens tokens.json [--runs 5]

`tokens.json` (written by the demo server) holds `applicant`,
`other_applicant`, `owner` tokens and the applicant's `agreement`. Exits 1
on the first failed check.
"""

import argparse
import json
import math
import statistics
import sys
import time

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager

UTILITY_SQL = "SELECT month, AVG(electricity_kwh) AS avg_kwh FROM gov.utility_usage GROUP BY month"
TAX_SQL = "SELECT t.year, AVG(t.tax_paid) FROM gov.tax_payments t GROUP BY t.year"
RAW_SQL = "SELECT credit_code FROM gov.utility_usage"
AGREEMENT_HEADER = "adbc.flight.sql.rpc.call_header.x-sandbox-agreement"


def connect(url, token, **extra):
    db_kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {token}"}
    db_kwargs.update(extra)
    # Flight SQL here has no transactions: stay in autocommit mode.
    return flight_sql.connect(url, db_kwargs=db_kwargs, autocommit=True)


def run(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def refusal(conn, sql):
    """The error message of a job that must fail."""
    try:
        table = run(conn, sql)
    except adbc_driver_manager.Error as e:
        return str(e)
    raise AssertionError(f"expected a refusal, got {table.num_rows} rows for {sql!r}")


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def accepted(conn):
    table = run(conn, UTILITY_SQL)
    check(table.num_rows == 24, f"24 months expected, got {table.num_rows}")
    check(table.column_names == ["month", "avg_kwh"], f"columns {table.column_names}")
    months = table.column("month").to_pylist()
    check(months[0] == "2023-01" and months[-1] == "2024-12", f"months {months}")
    values = table.column("avg_kwh").to_pylist()
    check(all(v is not None and 0 <= v <= 500_000 for v in values), f"implausible averages {values}")
    check(any(not float(v).is_integer() for v in values), f"averages look exact, not noisy: {values}")
    metadata = table.schema.metadata or {}
    release = json.loads(metadata[b"sandbox.release"])
    check(release["epsilon_spent"] > 0, "no ε spent")
    for row, value in zip(release["rows"], values):
        cell = row[1]
        check(cell["type"] == "noisy", f"not a noisy cell: {cell}")
        check(math.isclose(cell["value"], value, rel_tol=1e-9), f"{cell['value']} != {value}")
        check(cell["ci95"][0] <= value <= cell["ci95"][1], f"{value} outside its interval {cell['ci95']}")
    print(f"ok   accepted: {table.num_rows} noisy monthly averages, e.g. {months[0]} {values[0]:.2f} "
          f"(95% CI {release['rows'][0][1]['ci95'][0]:.0f}-{release['rows'][0][1]['ci95'][1]:.0f}), "
          f"ε {release['epsilon_spent']}, job {metadata[b'sandbox.job_id'].decode()}")

    table = run(conn, TAX_SQL)
    check(table.column(0).to_pylist() == [2022, 2023, 2024], f"years {table.column(0).to_pylist()}")
    print(f"ok   accepted: tax by year {table.column(1).to_pylist()} (noisy, rounded to whole 万元 by policy)")


def refused(conn):
    message = refusal(conn, RAW_SQL)
    check("refused by rule `identifier-in-output`" in message, f"rule not named: {message}")
    print(f"ok   refused: {message}")
    message = refusal(conn, "SELECT t.year, AVG(t.vat) FROM gov.tax_payments t GROUP BY t.year")
    check("refused by rule `agreement-column`" in message, f"rule not named: {message}")
    print("ok   refused: a column outside the agreement (agreement-column)")
    message = refusal(conn, "DROP TABLE gov.utility_usage")
    check("refused by rule" in message or "INVALID_ARGUMENT" in message, f"DDL: {message}")
    print("ok   refused: DDL")


def others(url, tokens):
    with connect(url, "x" * 40) as conn:
        message = refusal(conn, UTILITY_SQL)
    check("UNAUTHENTICATED" in message.upper(), f"bad token: {message}")
    print("ok   refused: a bad token (Unauthenticated)")
    with connect(url, tokens["owner"]) as conn:
        message = refusal(conn, UTILITY_SQL)
    check("refused by rule `role-applicant`" in message, f"owner: {message}")
    print("ok   refused: a data owner's token (role-applicant)")
    with connect(url, tokens["other_applicant"], **{AGREEMENT_HEADER: tokens["agreement"]}) as conn:
        message = refusal(conn, UTILITY_SQL)
    check("refused by rule `agreement-holder`" in message, f"another's agreement: {message}")
    print("ok   refused: another applicant naming the bank's agreement (agreement-holder)")


def listed(conn):
    """{(schema, table): [columns]} through ADBC's GetObjects, which the
    driver answers with GetCatalogs, GetDbSchemas and GetTables."""
    out = {}
    for catalog in conn.adbc_get_objects(depth="all").read_all().to_pylist():
        for schema in catalog["catalog_db_schemas"] or []:
            for table in schema["db_schema_tables"] or []:
                columns = [c["column_name"] for c in table["table_columns"] or []]
                out[(schema["db_schema_name"], table["table_name"])] = columns
    return out


def metadata(url, conn, tokens):
    tables = listed(conn)
    check(("gov", "utility_usage") in tables, f"the bank's tables: {tables}")
    check(set(tables) <= {("gov", "utility_usage"), ("gov", "tax_payments")}, f"only agreed tables: {tables}")
    check("electricity_kwh" in tables[("gov", "utility_usage")], f"covered columns: {tables}")
    if ("gov", "tax_payments") in tables:
        check("vat" not in tables[("gov", "tax_payments")], f"an uncovered column is listed: {tables}")
    schema = conn.adbc_get_table_schema("utility_usage", db_schema_filter="gov")
    check("electricity_kwh" in schema.names, f"table schema: {schema}")
    print(f"ok   metadata: the bank lists {sorted('.'.join(t) for t in tables)} with their covered columns")
    with connect(url, tokens["other_applicant"]) as other:
        check(listed(other) == {}, "another applicant lists no tables")
    with connect(url, tokens["owner"]) as owner:
        check(listed(owner) == {}, "a data owner lists no tables")
    print("ok   metadata: another applicant and a data owner list nothing")


def timing(conn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        table = run(conn, UTILITY_SQL)
        times.append((time.perf_counter() - start) * 1000)
        check(table.num_rows == 24, "timed run")
    print(f"time per accepted job (execute + fetch, {runs} runs): "
          f"median {statistics.median(times):.0f} ms, min {min(times):.0f} ms, max {max(times):.0f} ms "
          f"[{', '.join(f'{t:.0f}' for t in times)}]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with open(args.tokens) as f:
        tokens = json.load(f)
    try:
        with connect(args.url, tokens["applicant"]) as conn:
            accepted(conn)
            refused(conn)
            others(args.url, tokens)
            metadata(args.url, conn, tokens)
            timing(conn, args.runs)
    except (AssertionError, adbc_driver_manager.Error) as e:
        print(f"FAIL {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("all Flight SQL client checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
