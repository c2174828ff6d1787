//! Plain-text rendering of catalogs, released tables and budgets.

use sandbox_model::{ReleasedCell, ReleasedTable};
use sandbox_runtime::DryRunReport;

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn cell_text(c: &ReleasedCell) -> String {
    match c {
        ReleasedCell::Key { value } => match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "NULL".into(),
            other => other.to_string(),
        },
        ReleasedCell::Noisy { value, ci95, .. } => {
            format!("{} [{} – {}]", fmt_num(*value), fmt_num(ci95[0]), fmt_num(ci95[1]))
        }
        ReleasedCell::Rounded { value, .. } => fmt_num(*value),
        ReleasedCell::Withheld { rule } => format!("(withheld: {rule})"),
    }
}

/// An aligned text table; noisy values show their 95% interval.
pub fn table(t: &ReleasedTable) -> String {
    let headers: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
    let rows: Vec<Vec<String>> = t.rows.iter().map(|r| r.iter().map(cell_text).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect::<Vec<_>>()
            .join(" │ ")
    };
    let mut out = String::new();
    out.push_str(&line(&headers));
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "─".repeat(*w)).collect::<Vec<_>>().join("─┼─"));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out.push_str(&format!(
        "({} rows; ε spent {}, δ {})\n",
        t.rows.len(),
        t.epsilon_spent,
        t.delta_spent
    ));
    for s in &t.suppressed {
        out.push_str(&format!("suppressed: {} group(s) — {}\n", s.groups, s.rule));
    }
    for n in &t.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

pub fn dry_run(r: &DryRunReport) -> String {
    let mut out = format!(
        "dry run — nothing read, nothing charged\nmode: {}\nε = {}, δ = {}\n",
        r.mode, r.epsilon, r.delta
    );
    for (label, eps) in &r.split {
        out.push_str(&format!("  ε share {eps:.4} → {label}\n"));
    }
    for (name, f) in &r.aggregates {
        for (stat, scale, hw) in &f.components {
            out.push_str(&format!(
                "  {name}: {stat} noise scale {} (95% ± {})\n",
                fmt_num(*scale),
                fmt_num(*hw)
            ));
        }
    }
    if let Some(t) = r.selection_threshold {
        out.push_str(&format!(
            "  a group appears when its noisy count of privacy units reaches {t}\n"
        ));
    }
    if let Some(n) = r.public_groups {
        out.push_str(&format!("  {n} group(s) from public key sets\n"));
    }
    out
}
