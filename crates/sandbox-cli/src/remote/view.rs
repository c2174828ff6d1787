//! The API's JSON answers as text: tables where there are rows, the same
//! wording as the local verbs where there is one.

use crate::render::{fmt_num, grid};
use serde_json::Value;

/// A JSON value as a table cell: strings bare, `null` empty.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn list(v: &Value) -> String {
    items(v).map(text).collect::<Vec<_>>().join(", ")
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// `GET /v1/catalog`: one dataset a row.
pub fn catalog(lines: &Value) -> String {
    let headers = ["dataset", "class", "provider", "title", "status"].map(String::from);
    let rows: Vec<Vec<String>> = items(lines)
        .map(|d| {
            vec![
                text(&d["id"]),
                text(&d["open_class"]),
                text(&d["provider"]),
                text(&d["title"]),
                if d["suspended"] == true {
                    "SUSPENDED"
                } else {
                    "open to jobs"
                }
                .to_string(),
            ]
        })
        .collect();
    grid(&headers, &rows)
}

/// `GET /v1/agreements/{id}/budget`: one dataset a row.
pub fn budget(grant: &str, lines: &Value) -> String {
    let headers = [
        "dataset", "ε total", "ε spent", "ε left", "δ total", "δ spent", "δ left",
    ]
    .map(String::from);
    let rows: Vec<Vec<String>> = items(lines)
        .map(|b| {
            vec![
                text(&b["dataset"]),
                format!("{}", number(&b["epsilon_total"])),
                format!("{}", number(&b["epsilon_spent"])),
                format!("{}", number(&b["epsilon_left"])),
                format!("{:e}", number(&b["delta_total"])),
                format!("{:e}", number(&b["delta_spent"])),
                format!("{:e}", number(&b["delta_left"])),
            ]
        })
        .collect();
    format!("privacy budget of grant `{grant}`:\n{}", grid(&headers, &rows))
}

/// A dry run's report, as `render::dry_run` words it.
pub fn dry_run(r: &Value) -> String {
    let mut out = format!(
        "dry run — nothing read, nothing charged\nmode: {}\nε = {}, δ = {}\n",
        text(&r["mode"]),
        number(&r["epsilon"]),
        number(&r["delta"])
    );
    if text(&r["composition"]) == "zcdp" {
        let epsilon = number(&r["epsilon"]);
        out.push_str(&format!(
            "accounting: zCDP — ρ = ε²/2 = {}; each share is √(2ρ_i) of its part, the parts' ρ add up\n",
            epsilon * epsilon / 2.0
        ));
    }
    for share in items(&r["split"]) {
        out.push_str(&format!("  ε share {:.4} → {}\n", number(&share[1]), text(&share[0])));
    }
    for aggregate in items(&r["aggregates"]) {
        let name = text(&aggregate[0]);
        for c in items(&aggregate[1]["components"]) {
            out.push_str(&format!(
                "  {name}: {} noise scale {} (95% ± {})\n",
                text(&c[0]),
                fmt_num(number(&c[1])),
                fmt_num(number(&c[2]))
            ));
        }
    }
    if let Some(t) = r["selection_threshold"].as_i64() {
        out.push_str(&format!(
            "  a group appears when its noisy count of privacy units reaches {t}\n"
        ));
    }
    if let Some(n) = r["public_groups"].as_u64() {
        out.push_str(&format!("  {n} group(s) from public key sets\n"));
    }
    if let Some(t) = r["target_ci"].as_f64() {
        out.push_str(&format!(
            "target: every aggregate within ±{} (95%) needs ε = {}\n",
            fmt_num(t),
            number(&r["epsilon"])
        ));
    }
    let intervals: Vec<&Value> = items(&r["intervals"]).collect();
    if !intervals.is_empty() {
        out.push_str("expected 95% intervals:\n");
    }
    for i in intervals {
        out.push_str(&format!(
            "  {}: {}\n",
            text(&i["aggregate"]),
            crate::render::interval_text(
                i["half_width"].as_f64(),
                i["per_row"].as_f64(),
                r["target_rows"].as_u64()
            )
        ));
        if let Some(note) = i["bounds_note"].as_str() {
            out.push_str(&format!("    {note}\n"));
        }
    }
    out
}

/// `GET /v1/agreements/{id}`, as the local `agreement` verb words it.
pub fn agreement(a: &Value) -> String {
    let status = match a["status_reason"].as_str() {
        Some(reason) if !reason.is_empty() => format!("{} ({reason})", text(&a["status"])),
        _ => text(&a["status"]),
    };
    format!(
        "{} — holder {}, {status}, expires {}, calls {}/{}\n  scenario: {}\n  datasets: {}\n  columns: {}\n  job kinds: {}\n",
        text(&a["id"]),
        text(&a["holder"]),
        text(&a["expires_at"]),
        text(&a["calls_used"]),
        text(&a["call_quota"]),
        text(&a["terms"]["scenario"]),
        list(&a["terms"]["datasets"]),
        list(&a["terms"]["columns"]),
        list(&a["terms"]["job_kinds"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn catalog_and_budget_are_tables() {
        let c = catalog(&json!([
            {"id": "gov.tax_payments", "open_class": "conditional", "provider": "shanghai-tax",
             "title": "Tax payments", "summary": "…", "suspended": true},
            {"id": "gov.districts", "open_class": "open", "provider": "shanghai-stats",
             "title": "Districts", "summary": "…", "suspended": false}
        ]));
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 4, "{c}");
        assert!(lines[0].starts_with("dataset          │ class"), "{c}");
        assert!(
            lines[2].contains("gov.tax_payments") && lines[2].contains("SUSPENDED"),
            "{c}"
        );
        let b = budget(
            "agreement-a1",
            &json!([{"dataset": "gov.tax_payments", "epsilon_total": 10.0, "epsilon_spent": 1.000000001,
                     "epsilon_left": 8.999999999, "delta_total": 1e-4, "delta_spent": 1e-6, "delta_left": 9.9e-5}]),
        );
        assert!(b.starts_with("privacy budget of grant `agreement-a1`:\n"), "{b}");
        assert!(
            b.contains("gov.tax_payments │ 10      │ 1.000000001 │ 8.999999999 │ 1e-4"),
            "{b}"
        );
        assert!(b.contains("1e-6") && b.contains("9.9e-5"), "{b}");
    }

    #[test]
    fn a_dry_run_reads_like_the_local_one() {
        let r = dry_run(&json!({
            "epsilon": 1.0, "delta": 0.0, "mode": "dp",
            "split": [["AVG(t.tax_paid)", 0.5]],
            "aggregates": [["AVG(t.tax_paid)", {"epsilon": 0.5, "components": [["sum", 120.0, 360.5]]}]],
            "selection_threshold": null, "public_groups": 3
        }));
        assert_eq!(
            r,
            "dry run — nothing read, nothing charged\nmode: dp\nε = 1, δ = 0\n  ε share 0.5000 → AVG(t.tax_paid)\n  \
             AVG(t.tax_paid): sum noise scale 120 (95% ± 360.50)\n  3 group(s) from public key sets\n"
        );
    }
}
