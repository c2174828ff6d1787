//! A released table as the job page shows it: the table, every noisy
//! number with its 95% interval, and one bar chart per noisy column drawn
//! as inline SVG on the server (bars for the released values, whiskers for
//! their intervals), so the chart needs no script and no chart library.

use super::{View, number};
use crate::error::ApiError;
use sandbox_model::{ReleasedCell, ReleasedTable};
use serde_json::{Value, json};

/// Layout of a chart, in SVG user units (pixels at 100%).
const LABEL_WIDTH: f64 = 200.0;
const PLOT_WIDTH: f64 = 420.0;
const NUMBERS_WIDTH: f64 = 300.0;
const BAR_HEIGHT: f64 = 16.0;
const ROW_PITCH: f64 = 26.0;
const TOP: f64 = 6.0;
/// Rows drawn per chart (the table below shows them all).
const MAX_BARS: usize = 60;
/// Characters of a group label drawn (the table has it whole).
const MAX_LABEL_CHARS: usize = 28;

fn key_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "NULL".into(),
        other => other.to_string(),
    }
}

/// The page's view of a released table (`table` as the API returns it).
pub(crate) fn released_view(view: &View<'_>, table: &Value) -> Result<Value, ApiError> {
    let table: ReleasedTable = serde_json::from_value(table.clone())
        .map_err(|e| ApiError::internal(format!("a released table is unreadable: {e}")))?;
    let rows: Vec<Vec<Value>> = table
        .rows
        .iter()
        .map(|row| row.iter().map(|cell| cell_view(view, cell)).collect())
        .collect();
    let labels: Vec<String> = table
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let keys: Vec<String> = row
                .iter()
                .filter_map(|c| match c {
                    ReleasedCell::Key { value } => Some(key_text(value)),
                    _ => None,
                })
                .collect();
            if keys.is_empty() {
                format!("#{}", i + 1)
            } else {
                keys.join(" · ")
            }
        })
        .collect();
    let charts: Vec<Value> = table
        .columns
        .iter()
        .enumerate()
        .filter_map(|(c, column)| {
            let bars: Vec<(String, f64, f64, f64)> = table
                .rows
                .iter()
                .zip(&labels)
                .filter_map(|(row, label)| match row.get(c) {
                    Some(ReleasedCell::Noisy { value, ci95, .. }) => Some((label.clone(), *value, ci95[0], ci95[1])),
                    _ => None,
                })
                .take(MAX_BARS)
                .collect();
            (!bars.is_empty()).then(|| chart(&format!("{} ({})", column.name, column.kind), &bars))
        })
        .collect();
    Ok(json!({
        "columns": table.columns,
        "rows": rows,
        "charts": charts,
        "epsilon_spent": number(table.epsilon_spent),
        "delta_spent": table.delta_spent,
        "suppressed": table.suppressed,
        "notes": table.notes,
    }))
}

fn cell_view(view: &View<'_>, cell: &ReleasedCell) -> Value {
    match cell {
        ReleasedCell::Key { value } => json!({"class": "key", "text": key_text(value), "detail": null}),
        ReleasedCell::Noisy { value, ci95, .. } => json!({
            "class": "noisy", "text": number(*value),
            "detail": format!("95%: [{}, {}]", number(ci95[0]), number(ci95[1])),
        }),
        ReleasedCell::Rounded { value, base } => json!({
            "class": "rounded", "text": number(*value),
            "detail": format!("{} {}", view.t("rounded_to"), number(*base)),
        }),
        ReleasedCell::Withheld { rule } => json!({
            "class": "withheld", "text": "—", "detail": format!("{}: {rule}", view.t("withheld")),
        }),
        ReleasedCell::Derived { value, ci95 } => json!({
            "class": "noisy",
            "text": value.map_or_else(|| "—".to_string(), number),
            "detail": ci95.map(|c| format!("95%: [{}, {}]", number(c[0]), number(c[1]))),
        }),
    }
}

/// One horizontal bar chart: `(label, value, ci_low, ci_high)` per bar.
fn chart(title: &str, bars: &[(String, f64, f64, f64)]) -> Value {
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let lo = bars
        .iter()
        .map(|b| finite(b.1).min(finite(b.2)))
        .fold(0.0_f64, f64::min);
    let hi = bars
        .iter()
        .map(|b| finite(b.1).max(finite(b.3)))
        .fold(0.0_f64, f64::max);
    let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
    let x = |v: f64| LABEL_WIDTH + (finite(v) - lo) / span * PLOT_WIDTH;
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let shown: Vec<Value> = bars
        .iter()
        .enumerate()
        .map(|(i, (label, value, low, high))| {
            let y = TOP + i as f64 * ROW_PITCH;
            let (a, b) = (x(0.0), x(*value));
            let label: String = if label.chars().count() > MAX_LABEL_CHARS {
                label.chars().take(MAX_LABEL_CHARS - 1).chain(['…']).collect()
            } else {
                label.clone()
            };
            json!({
                "label": label, "value": number(*value), "lo": number(*low), "hi": number(*high),
                "x": round(a.min(b)), "w": round((a - b).abs().max(1.0)),
                "lo_x": round(x(*low)), "hi_x": round(x(*high)),
                "y": round(y), "y_end": round(y + BAR_HEIGHT), "mid_y": round(y + BAR_HEIGHT / 2.0),
                "text_y": round(y + BAR_HEIGHT - 3.0),
            })
        })
        .collect();
    json!({
        "title": title,
        "width": LABEL_WIDTH + PLOT_WIDTH + NUMBERS_WIDTH,
        "height": round(TOP * 2.0 + bars.len() as f64 * ROW_PITCH),
        "zero_x": round(x(0.0)),
        "value_x": LABEL_WIDTH + PLOT_WIDTH + 10.0,
        "bar_height": BAR_HEIGHT,
        "bars": shown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_whiskers_stay_inside_the_plot() {
        let bars = vec![
            ("2021".to_string(), 10.0, 8.0, 12.0),
            ("2022".to_string(), -5.0, -9.0, -1.0),
            ("NaN".to_string(), f64::NAN, f64::NEG_INFINITY, f64::INFINITY),
        ];
        let c = chart("avg", &bars);
        let zero = c["zero_x"].as_f64().expect("zero");
        assert!(zero > LABEL_WIDTH && zero < LABEL_WIDTH + PLOT_WIDTH);
        for b in c["bars"].as_array().expect("bars") {
            for key in ["x", "lo_x", "hi_x"] {
                let v = b[key].as_f64().expect(key);
                assert!((LABEL_WIDTH..=LABEL_WIDTH + PLOT_WIDTH).contains(&v), "{key} = {v}");
            }
        }
        // The first bar's interval brackets its value.
        let first = &c["bars"][0];
        let end = first["x"].as_f64().expect("x") + first["w"].as_f64().expect("w");
        assert!(first["lo_x"].as_f64().expect("lo") < end && end < first["hi_x"].as_f64().expect("hi"));
        assert_eq!(first["value"], "10.0");
        assert_eq!(first["lo"], "8.000");
    }
}
