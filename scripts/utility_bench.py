"""The peers' half of the utility benchmark (scripts/utility-bench.sh).

Reads product.json (written by the product's half: the workload, the exact
per-group values, the ε and δ the product spent and its contribution and
clamp bounds), runs the same queries under SmartNoise SQL and OpenDP
(Polars) at equal ε, δ and bounds, and prints one table of median relative
errors (over groups and runs) side by side.

Equal settings, per query:
* ε: the product's ε for the query; SmartNoise charges each mechanism its
  own ε (AVG = SUM and COUNT), so its ε is scaled until its own
  accountant (get_privacy_cost) reports the product's total; OpenDP's
  compositor gets the product's ε for one query.
* δ: the product spends none (public key sets); SmartNoise runs without
  censoring (censor_dims false) and OpenDP with public keys, so no δ either.
* contribution bounds: at most min(G·R, L) rows per privacy unit, the
  product's calibration for one query: SmartNoise's max_ids (which samples
  rows per unit down to it) and OpenDP's row-level contributions (which
  assumes rather than enforces it: the script prints each table's largest
  rows per unit so a reader can see whether the assumption holds).
* clamp bounds: the owners' or the analyst's, as in the product's row. For
  the product's CLAMP_AUTO rows the peers have no bound estimation and run
  at the owners' bounds.
"""

import json
import math
import os
import statistics
import sys
import time
import traceback

import pandas as pd
import pyarrow.parquet as pq


def load(out, table):
    path = os.path.join(out, "data", "data", table)
    frames = [pq.read_table(os.path.join(path, f)).to_pandas() for f in sorted(os.listdir(path)) if f.endswith(".parquet")]
    return pd.concat(frames, ignore_index=True)


def rows_per_unit(case, owners):
    g, r, l = case["max_groups_per_unit"], case["max_rows_per_group"], case["max_rows_per_unit"]
    # The product calibrates with G_eff = min(G, number of public keys).
    g = min(g, max(1, len(case["exact"])))
    return min(g * r, l) if l else g * r


def median_error(exact, releases):
    errors = []
    for released in releases:
        for key, value in released.items():
            x = exact.get(key)
            if x is None or x == 0 or value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            errors.append(abs(value - x) / abs(x))
    return statistics.median(errors) if errors else float("nan")


def bounds_for(case, owners_bounds):
    return case["bounds"] or owners_bounds


def smartnoise(case, df, runs, owners_bounds):
    import snsql
    from snsql import Privacy

    schema, table = case["table"].split("/")
    source_key, measure, unit = case["key"], case["measure"], case["unit"]
    # The group key under a name SmartNoise's grammar accepts (`month` is
    # one of its keywords).
    key = "group_key"
    df = df.rename(columns={source_key: key})
    l = rows_per_unit(case, owners_bounds)
    columns = {unit: {"type": "string", "private_id": True}, key: {"type": "string"}}
    if measure:
        lo, hi = bounds_for(case, owners_bounds)
        columns[measure] = {"type": "float", "lower": lo, "upper": hi, "nullable": True}
    meta = {
        "Collection": {
            schema: {
                table: dict(
                    {"row_privacy": False, "max_ids": l, "sample_max_ids": True, "censor_dims": False, "clamp_counts": False},
                    **columns,
                )
            }
        }
    }
    frame = df[[c for c in columns]].copy()
    frame[key] = frame[key].astype(str)
    frame[unit] = frame[unit].astype(str)
    agg = {"count": "COUNT(*)", "avg": f"AVG({measure})", "sum": f"SUM({measure})"}.get(case["aggregate"])
    if agg is None:
        return None, "no DP median in SmartNoise SQL"
    sql = f"SELECT {key}, {agg} AS v FROM {schema}.{table} GROUP BY {key}"
    # Scale ε until SmartNoise's own accountant reports the product's ε.
    probe = snsql.from_df(frame, privacy=Privacy(epsilon=1.0, delta=1e-9), metadata=meta)
    cost_at_1, _ = probe.get_privacy_cost(sql)
    epsilon = case["epsilon"] / cost_at_1
    reader = snsql.from_df(frame, privacy=Privacy(epsilon=epsilon, delta=1e-9), metadata=meta)
    releases = []
    for _ in range(runs):
        result = reader.execute(sql)
        releases.append({str(r[0]): (float(r[1]) if r[1] is not None else None) for r in result[1:]})
    return median_error(case["exact"], releases), f"ε per mechanism {epsilon:.4f}"


def opendp_polars(case, df, runs, owners_bounds):
    import opendp.prelude as dp
    import polars as pl

    dp.enable_features("contrib")
    key, measure = case["key"], case["measure"]
    l = rows_per_unit(case, owners_bounds)
    columns = [key] + ([measure] if measure else [])
    frame = pl.from_pandas(df[columns].copy()).with_columns(pl.col(key).cast(pl.String))
    keys = sorted(case["exact"].keys())
    # A fresh context per run, each at the product's ε for one query.
    context = dp.Context.compositor(
        data=frame.lazy(),
        privacy_unit=dp.unit_of(contributions=l),
        privacy_loss=dp.loss_of(epsilon=case["epsilon"]),
        split_evenly_over=1,
        margins=[dp.polars.Margin(by=[key], invariant="keys", max_length=10_000_000, max_groups=len(keys))],
    )
    if case["aggregate"] == "count":
        expr = dp.len().alias("v")
    else:
        lo, hi = bounds_for(case, owners_bounds)
        x = pl.col(measure).cast(pl.Float64).fill_nan(lo).fill_null(lo)
        if case["aggregate"] == "avg":
            expr = x.dp.mean(bounds=(lo, hi)).alias("v")
        elif case["aggregate"] == "sum":
            expr = x.dp.sum(bounds=(lo, hi)).alias("v")
        else:
            candidates = [lo + (hi - lo) * i / 64 for i in range(65)]
            expr = x.dp.median(candidates=candidates).alias("v")
    # Calibrate once (OpenDP searches for the noise scale), then release
    # `runs` times with the same measurement, each at the product's ε.
    measurement = context.query().group_by(key).agg(expr).resolve()
    releases = []
    for _ in range(runs):
        result = measurement(frame.lazy()).collect()
        releases.append({str(k): float(v) if v is not None else None for k, v in zip(result[key], result["v"])})
    return median_error(case["exact"], releases), ""


def main():
    out = sys.argv[1]
    with open(os.path.join(out, "product.json")) as f:
        product = json.load(f)
    # SmartNoise takes seconds per query; the peers' medians over groups
    # settle with fewer runs than the product's.
    runs = min(product["runs"], int(os.environ.get("UTILITY_BENCH_PEER_RUNS", "10")))
    owners = {}
    for case in product["cases"]:
        if case["bounds"] and case["variant"].startswith("owners"):
            owners[(case["query"])] = case["bounds"]
    frames = {}
    print(
        f"Median relative error over groups and runs ({product['runs']} for the product, {runs} for each peer), "
        "at the product's ε for each query (demo data: 20 000 enterprises, seed 42)"
    )
    print()
    for table in sorted({c["table"] for c in product["cases"]}):
        df = load(out, table)
        frames[table] = df
        unit = next(c["unit"] for c in product["cases"] if c["table"] == table)
        print(f"{table}: {len(df)} rows, at most {df.groupby(unit).size().max()} rows per privacy unit ({unit})")
    print()
    header = "| query | bounds | ε | product | SmartNoise SQL | OpenDP (Polars) |"
    print(header)
    print("|---|---|---|---|---|---|")
    failures = []
    for case in product["cases"]:
        df = frames[case["table"]]
        owners_bounds = owners.get(case["query"])
        cells = []
        for name, peer in (("SmartNoise SQL", smartnoise), ("OpenDP (Polars)", opendp_polars)):
            started = time.time()
            try:
                error, note = peer(case, df, runs, owners_bounds)
                cells.append("n/a" if error is None else f"{100 * error:.2f} %")
                if error is None:
                    failures.append(f"{name}, {case['query']}: {note}")
            except Exception as e:  # a peer's failure is reported, not fatal
                cells.append("failed")
                failures.append(f"{name}, {case['query']} ({case['variant']}): {type(e).__name__}: {e}")
                if os.environ.get("UTILITY_BENCH_TRACEBACK"):
                    traceback.print_exc()
        peer_bounds = case["variant"] if case["bounds"] else f"{case['variant']} (peers: owners' bounds)"
        print(
            f"| {case['query']} | {peer_bounds} | {case['epsilon']:g} | {100 * case['product_error']:.2f} % | {cells[0]} | {cells[1]} |",
            flush=True,
        )
    if failures:
        print()
        print("Peers that could not run a query, and why:")
        for f in failures:
            print(f"- {f}")


if __name__ == "__main__":
    main()
