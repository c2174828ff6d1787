//! The `[desensitize]` table: one rule per column, checked against the
//! column's type (from the catalog) and role (from `[columns]`).

use super::{Columns, Validator, type_name};
use crate::desensitize::{MAX_BAND_EDGES, MAX_BAND_MAGNITUDE, MAX_KEEP_CHARS};
use crate::raw::RawRule;
use crate::{DateUnit, Desensitization};
use sandbox_model::{ColumnRole, Dataset, FieldType};
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

type RawTable = Spanned<BTreeMap<Spanned<String>, Spanned<RawRule>>>;

impl Validator<'_> {
    /// Validates every rule; returns them by column, or `None` after
    /// reporting an error. Runs only when the columns compiled, so roles
    /// are known.
    pub(super) fn desensitize(
        &mut self,
        raw: Option<&RawTable>,
        entry: Option<&Dataset>,
        columns: Option<&Columns>,
    ) -> Option<BTreeMap<String, Desensitization>> {
        let mut out = BTreeMap::new();
        let Some(raw) = raw else { return Some(out) };
        let mut ok = true;
        for (name, rule) in raw.get_ref() {
            match self.rule(name, rule, entry, columns) {
                Some(r) => {
                    out.insert(name.get_ref().clone(), r);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn rule(
        &mut self,
        name: &Spanned<String>,
        rule: &Spanned<RawRule>,
        entry: Option<&Dataset>,
        columns: Option<&Columns>,
    ) -> Option<Desensitization> {
        let column = name.get_ref();
        let field = format!("desensitize.{column}");
        let field_type = match entry.map(|d| d.field(column)) {
            Some(Some(f)) => Some(f.data_type),
            Some(None) => {
                self.err(
                    name.span(),
                    field,
                    format!("unknown column `{column}`: a desensitization rule needs a column of the dataset"),
                );
                return None;
            }
            None => None,
        };
        if let Some(cp) = columns.and_then(|c| c.policies.get(column)) {
            let why = if cp.roles.is_restricted() {
                Some("is an identifier, privacy unit or join key, which is never released at all")
            } else if cp.has(ColumnRole::Sensitive) {
                Some("is sensitive, which no job may read at all")
            } else {
                None
            };
            if let Some(why) = why {
                self.err(
                    name.span(),
                    field,
                    format!(
                        "`{column}` {why}; a desensitization rule applies only to a dimension, public or measure column"
                    ),
                );
                return None;
            }
        }

        let r = rule.get_ref();
        let given: Vec<(&str, Range<usize>)> = [
            r.band.as_ref().map(|v| ("band", v.span())),
            r.bands.as_ref().map(|v| ("bands", v.span())),
            r.truncate_to.as_ref().map(|v| ("truncate_to", v.span())),
            r.truncate_chars.as_ref().map(|v| ("truncate_chars", v.span())),
            r.mask_keep_first.as_ref().map(|v| ("mask_keep_first", v.span())),
            r.mask_keep_last.as_ref().map(|v| ("mask_keep_last", v.span())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let (key, span) = match given.as_slice() {
            [one] => one.clone(),
            [] => {
                self.err(
                    rule.span(),
                    field,
                    format!(
                        "give `{column}` one rule: band, bands, truncate_to, truncate_chars, mask_keep_first or mask_keep_last"
                    ),
                );
                return None;
            }
            [_, (_, second), ..] => {
                let keys: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
                self.err(
                    second.clone(),
                    field,
                    format!(
                        "`{column}` has {} rules ({}); give exactly one",
                        keys.len(),
                        keys.join(", ")
                    ),
                );
                return None;
            }
        };
        let field = format!("{field}.{key}");

        // A fixed-width band of a float is not exact in floating point
        // (`floor(x / w) · w` is not idempotent at w = 0.1, can label a value
        // below its own band, and is the identity above 2⁵³·w): float
        // columns are banded by their edges, whose comparisons are exact.
        if key == "band" && field_type == Some(FieldType::Float64) {
            self.err(
                span,
                field,
                format!(
                    "`band` needs an int64 column; `{column}` is float64, whose fixed-width bands cannot be computed \
                     exactly: give the band edges instead, e.g. `{column} = {{ bands = [0, 100, 200, 500] }}` \
                     (comparisons with edges are exact)"
                ),
            );
            return None;
        }
        // The type each rule needs.
        let (needs, needs_name): (&[FieldType], &str) = match key {
            "band" => (&[FieldType::Int64], "an int64"),
            "bands" => (&[FieldType::Int64, FieldType::Float64], "a numeric (int64 or float64)"),
            "truncate_to" => (&[FieldType::Date], "a date"),
            _ => (&[FieldType::Utf8], "a text (utf8)"),
        };
        if let Some(t) = field_type
            && !needs.contains(&t)
        {
            self.err(
                span,
                field,
                format!("`{key}` needs {needs_name} column; `{column}` is {}", type_name(t)),
            );
            return None;
        }
        let integer = field_type == Some(FieldType::Int64);

        if let Some(w) = &r.band {
            let w_value = *w.get_ref();
            let whole = w_value.fract() == 0.0 && (1.0..=MAX_BAND_MAGNITUDE).contains(&w_value);
            // Whole and within 1e15: the conversion is exact.
            let rule = if whole {
                Desensitization::band(w_value as u64)
            } else {
                None
            };
            let Some(rule) = rule else {
                self.err(
                    w.span(),
                    field,
                    format!(
                        "the band width of `{column}` must be a whole number from 1 to {MAX_BAND_MAGNITUDE:e}, got {w_value}"
                    ),
                );
                return None;
            };
            return Some(rule);
        }
        if let Some(edges) = &r.bands {
            let values: Vec<f64> = edges.get_ref().iter().map(|e| *e.get_ref()).collect();
            if values.len() < 2 || values.len() > MAX_BAND_EDGES {
                self.err(
                    edges.span(),
                    field,
                    format!(
                        "the bands of `{column}` need 2 to {MAX_BAND_EDGES} edges (each band runs from one edge to the next), got {}",
                        values.len()
                    ),
                );
                return None;
            }
            for (i, e) in edges.get_ref().iter().enumerate() {
                let x = *e.get_ref();
                if !x.is_finite() || x.abs() > MAX_BAND_MAGNITUDE {
                    self.err(
                        e.span(),
                        format!("{field}[{i}]"),
                        format!(
                            "the band edges of `{column}` must be finite and within ±{MAX_BAND_MAGNITUDE:e}, got {x}"
                        ),
                    );
                    return None;
                }
                if integer && x.fract() != 0.0 {
                    self.err(
                        e.span(),
                        format!("{field}[{i}]"),
                        format!("`{column}` is an int64 column: its band edges must be whole numbers, got {x}"),
                    );
                    return None;
                }
                if i > 0 && values[i - 1] >= x {
                    self.err(
                        e.span(),
                        format!("{field}[{i}]"),
                        format!(
                            "the band edges of `{column}` must be strictly increasing: {x} follows {}",
                            values[i - 1]
                        ),
                    );
                    return None;
                }
            }
            return Some(Desensitization::Bands(values));
        }
        if let Some(unit) = &r.truncate_to {
            return match unit.get_ref().as_str() {
                "month" => Some(Desensitization::TruncateDate(DateUnit::Month)),
                "year" => Some(Desensitization::TruncateDate(DateUnit::Year)),
                other => {
                    self.err(
                        unit.span(),
                        field,
                        format!("`{column}` can be truncated to \"month\" or \"year\", not {other:?}"),
                    );
                    None
                }
            };
        }
        let (n, make): (&Spanned<i64>, fn(u32) -> Desensitization) =
            match (&r.truncate_chars, &r.mask_keep_first, &r.mask_keep_last) {
                (Some(n), _, _) => (n, Desensitization::TruncateChars),
                (_, Some(n), _) => (n, Desensitization::MaskKeepFirst),
                (_, _, Some(n)) => (n, Desensitization::MaskKeepLast),
                _ => return None,
            };
        match u32::try_from(*n.get_ref()) {
            Ok(k) if (1..=MAX_KEEP_CHARS).contains(&k) => Some(make(k)),
            _ => {
                self.err(
                    n.span(),
                    field,
                    format!(
                        "`{key}` of `{column}` is a number of characters, 1 to {MAX_KEEP_CHARS}, got {}",
                        n.get_ref()
                    ),
                );
                None
            }
        }
    }
}
