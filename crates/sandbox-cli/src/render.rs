//! Plain-text rendering of catalogs, released tables and budgets.

use sandbox_model::{ReleasedCell, ReleasedTable};
use sandbox_runtime::DryRunReport;

pub fn fmt_num(v: f64) -> String {
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
        ReleasedCell::Derived { value: None, .. } => "NULL".into(),
        ReleasedCell::Derived {
            value: Some(v),
            ci95: Some(ci),
        } => format!("{} [{} – {}]", fmt_num(*v), fmt_num(ci[0]), fmt_num(ci[1])),
        ReleasedCell::Derived {
            value: Some(v),
            ci95: None,
        } => format!("{} [no interval]", fmt_num(*v)),
        ReleasedCell::Withheld { rule } => format!("(withheld: {rule})"),
    }
}

/// Columns a text takes on a terminal: CJK ideographs, kana, hangul and
/// full-width forms take two (dataset titles are Chinese), others one.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| match u32::from(c) {
            0x1100..=0x115F
            | 0x2E80..=0x303E
            | 0x3041..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA000..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6
            | 0x20000..=0x3FFFD => 2,
            _ => 1,
        })
        .sum()
}

/// An aligned text table: a header line, a rule, one line a row.
pub fn grid(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| display_width(h)).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(display_width(c));
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(display_width(c)))))
            .collect::<Vec<_>>()
            .join(" │ ")
    };
    let mut out = String::new();
    out.push_str(&line(headers));
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "─".repeat(*w)).collect::<Vec<_>>().join("─┼─"));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// An aligned text table; noisy values show their 95% interval.
pub fn table(t: &ReleasedTable) -> String {
    let headers: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
    let rows: Vec<Vec<String>> = t.rows.iter().map(|r| r.iter().map(cell_text).collect()).collect();
    let mut out = grid(&headers, &rows);
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
    if r.composition == sandbox_runtime::Composition::Zcdp {
        out.push_str(&format!(
            "accounting: zCDP — ρ = ε²/2 = {}; each share is √(2ρ_i) of its part, the parts' ρ add up\n",
            fmt_num(r.epsilon * r.epsilon / 2.0)
        ));
    }
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
    if let Some(t) = r.target_ci {
        out.push_str(&format!(
            "target: every aggregate within ±{} (95%) needs ε = {}\n",
            fmt_num(t),
            r.epsilon
        ));
    }
    if !r.intervals.is_empty() {
        out.push_str("expected 95% intervals:\n");
    }
    for i in &r.intervals {
        out.push_str(&format!(
            "  {}: {}\n",
            i.aggregate,
            interval_text(i.half_width, i.per_row, r.target_rows)
        ));
        if let Some(note) = &i.bounds_note {
            out.push_str(&format!("    {note}\n"));
        }
    }
    out
}

/// An expected interval in words: `± w`, or for means `± K / n`.
pub fn interval_text(half_width: Option<f64>, per_row: Option<f64>, rows: Option<u64>) -> String {
    match (half_width, per_row, rows) {
        (Some(w), Some(k), Some(n)) => format!("± {} at {n} rows per group (≈ ± {} / rows)", fmt_num(w), fmt_num(k)),
        (_, Some(k), _) => format!("≈ ± {} / (rows in the group), at worst", fmt_num(k)),
        (Some(w), None, _) => format!("± {}", fmt_num(w)),
        (None, None, _) => "not forecast (depends on the data's spread)".into(),
    }
}

/// `wasm run --dry-run`: the noise per output and the ε split.
pub fn analysis_dry_run(r: &sandbox_runtime::AnalysisDryRun) -> String {
    let mut out = format!(
        "dry run: nothing read, nothing charged\nε {} over k = {} blocks: {} for the outputs (90 %, split equally), {} for the count of blocks that use the default (10 %)\n",
        r.epsilon, r.blocks, r.epsilon_outputs, r.epsilon_default_count
    );
    out.push_str("output                           range                 noise scale   ±95 %\n");
    for o in &r.outputs {
        out.push_str(&format!(
            "{:<32} [{}, {}]{:>width$}{:>12.4}  {:>8.4}\n",
            o.name,
            o.lower,
            o.upper,
            "",
            o.scale,
            o.half_width_95,
            width = 21usize.saturating_sub(format!("[{}, {}]", o.lower, o.upper).len())
        ));
    }
    out.push_str(&format!(
        "{:<32} [0, {}]{:>width$}{:>12.4}  {:>8.0}\n",
        sandbox_runtime::sandbox::DEFAULTS_ROW,
        r.blocks,
        "",
        r.default_count_scale,
        r.default_count_half_width_95,
        width = 21usize.saturating_sub(format!("[0, {}]", r.blocks).len())
    ));
    out.push_str(
        "noise scale = (upper − lower) · outputs / (k · 0.9 ε): narrower ranges or more blocks give less noise, \
         but fewer rows per block (each block must still be enough for the program)",
    );
    out
}

/// `wasm run --trial`: every block on the sample data.
pub fn trial(r: &sandbox_runtime::TrialReport) -> String {
    let mut out = format!(
        "trial run on public sample data ({}): nothing charged\ninput columns: {}\n",
        r.samples.join(", "),
        r.columns.join(", ")
    );
    let names: Vec<&str> = r.outputs.iter().map(|(n, _, _)| n.as_str()).collect();
    out.push_str(&format!("block  rows   ms      outputs ({})\n", names.join(", ")));
    for (i, b) in r.blocks.iter().enumerate() {
        let values = match &b.outputs {
            Some(v) => v.iter().map(|x| format!("{x:.6}")).collect::<Vec<_>>().join(", "),
            None => "—".into(),
        };
        out.push_str(&format!("{i:>5}  {:>5}  {:>6.1}  {values}", b.rows, b.elapsed_ms));
        if let Some(reason) = &b.default_reason {
            out.push_str(&format!("  DEFAULT: {reason}"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "blocks using the default: {} of {}\nclamped average (before noise): ",
        r.defaults,
        r.blocks.len()
    ));
    out.push_str(
        &names
            .iter()
            .zip(&r.clamped_mean)
            .map(|(n, v)| format!("{n} = {v:.6}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push_str(&format!("\ntrial took {:.0} ms", r.elapsed_ms));
    out
}

/// `sql --trial`: the exact result on the samples and every function's calls.
pub fn sql_trial(r: &sandbox_runtime::SqlTrialReport) -> String {
    let mut out = format!(
        "trial run on public sample data ({}): the query as written, exact, nothing charged\n",
        r.samples.join(", ")
    );
    out.push_str(&grid(&r.columns, &r.rows));
    if r.total_rows > r.rows.len() {
        out.push_str(&format!("… {} more rows\n", r.total_rows - r.rows.len()));
    }
    for f in &r.functions {
        out.push_str(&format!(
            "\nfunction {} [{}, {}]: {} calls, {} failed (the default {} in a real job), {} NaN (NULL), {} outside the bounds (clamped), {:.1} ms\n",
            f.name,
            f.lower,
            f.upper,
            f.calls,
            f.failed,
            (f.lower + f.upper) / 2.0,
            f.nan,
            f.clamped,
            f.elapsed_ms
        ));
        for call in &f.failures {
            let args = call
                .arguments
                .iter()
                .map(|a| a.map_or("NULL".to_string(), |v| v.to_string()))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!("  {}({args}): {}\n", f.name, call.message));
        }
        if f.failed as usize > f.failures.len() {
            out.push_str(&format!(
                "  … {} more failed calls\n",
                f.failed as usize - f.failures.len()
            ));
        }
    }
    out.push_str(&format!(
        "\na real job bounds each privacy unit's rows, clamps and adds noise: see --dry-run for its cost and intervals\ntrial took {:.0} ms",
        r.elapsed_ms
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sql_trial_shows_rows_and_each_failed_call() {
        let report = sandbox_runtime::SqlTrialReport {
            samples: vec!["gov.utility_usage@s000001".into()],
            columns: vec!["month".into(), "v".into()],
            rows: vec![vec!["2023-01".into(), "0.25".into()]],
            total_rows: 3,
            functions: vec![sandbox_runtime::sandbox::FunctionTrial {
                name: "score".into(),
                lower: 0.0,
                upper: 1.0,
                calls: 40,
                failed: 7,
                nan: 1,
                clamped: 2,
                failures: vec![sandbox_runtime::sandbox::FailedCall {
                    arguments: vec![Some(1200.0), None],
                    message: "panicked at src/lib.rs:3: too big".into(),
                }],
                elapsed_ms: 3.0,
            }],
            elapsed_ms: 12.0,
        };
        let text = sql_trial(&report);
        assert!(text.contains("gov.utility_usage@s000001"), "{text}");
        assert!(text.contains("2023-01"), "{text}");
        assert!(text.contains("… 2 more rows"), "{text}");
        assert!(
            text.contains("40 calls, 7 failed (the default 0.5 in a real job), 1 NaN (NULL), 2 outside"),
            "{text}"
        );
        assert!(
            text.contains("score(1200, NULL): panicked at src/lib.rs:3: too big"),
            "{text}"
        );
        assert!(text.contains("… 6 more failed calls"), "{text}");
    }

    #[test]
    fn grids_align_wide_characters() {
        let headers = ["dataset".to_string(), "title".to_string()];
        let rows = [
            vec!["gov.tax_payments".to_string(), "企业纳税信息".to_string()],
            vec!["gov.districts".to_string(), "Districts".to_string()],
        ];
        let g = grid(&headers, &rows);
        let lines: Vec<&str> = g.lines().collect();
        assert_eq!(lines[0], "dataset          │ title       ");
        assert_eq!(lines[2], "gov.tax_payments │ 企业纳税信息");
        assert_eq!(lines[3], "gov.districts    │ Districts   ");
        assert_eq!(display_width(lines[1]), display_width(lines[2]));
    }
}
