//! Aggregate functions of the query: which ones, over what, with which bounds.

use super::*;
use datafusion::logical_expr::expr::AggregateFunctionParams;

impl Checker<'_> {
    pub(super) fn aggregate(
        &mut self,
        e: &Expr,
        name: String,
        schema: &DFSchema,
        facts: &[ColumnFact],
    ) -> Result<AggregateRequest, SqlError> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = strip_alias(e) else {
            return Err(SqlError::Internal("aggregate expression expected".into()));
        };
        let fname = func.name().to_ascii_lowercase();
        self.usage.functions.insert(fname.clone());
        if params.filter.is_some() {
            return Err(refuse(
                "aggregate-filter",
                "FILTER (WHERE …) on aggregates is not supported; use WHERE",
            ));
        }
        let percentile = matches!(fname.as_str(), "percentile_cont" | "approx_percentile_cont");
        if !params.order_by.is_empty() && !percentile {
            return Err(refuse(
                "aggregate-order",
                "ORDER BY inside an aggregate is not supported",
            ));
        }
        let mut quantile = None;
        let function = match fname.as_str() {
            "count" => {
                if params.args.len() != 1 {
                    return Err(refuse("aggregate-not-allowed", "COUNT takes one argument or *"));
                }
                let arg = strip_alias(&params.args[0]);
                if matches!(arg, Expr::Literal(..)) {
                    if params.distinct {
                        return Err(refuse("count-distinct", "COUNT(DISTINCT literal) is not meaningful"));
                    }
                    AggregateFn::CountRows
                } else {
                    let fact = self.expr_fact(arg, schema, facts, Place::Projection)?;
                    if params.distinct {
                        // The release counts the privacy units of each group,
                        // which is COUNT(DISTINCT x) only when x *is* every
                        // row's unit: a unit column of a scan that no outer
                        // join can leave NULL.
                        match (&fact.direct, fact.unit_scan, fact.outer_nullable) {
                            (Some(u), Some(_), false) => {
                                self.usage.aggregated.insert(u.to_string());
                                AggregateFn::CountUnits
                            }
                            (_, Some(_), true) => {
                                return Err(refuse(
                                    "count-distinct",
                                    "COUNT(DISTINCT …) of a privacy unit on the optional side of an outer join is not supported; count the unit of the side every row has",
                                ));
                            }
                            _ => {
                                return Err(refuse(
                                    "count-distinct",
                                    "COUNT(DISTINCT …) is only allowed on the privacy unit column",
                                ));
                            }
                        }
                    } else {
                        for s in &fact.sources {
                            self.usage.aggregated.insert(s.to_string());
                        }
                        AggregateFn::CountValues
                    }
                }
            }
            "sum" => AggregateFn::Sum,
            "avg" | "mean" => AggregateFn::Avg,
            "var" | "var_samp" | "var_pop" | "variance" | "var_population" | "var_sample" => AggregateFn::Variance,
            "stddev" | "stddev_samp" | "stddev_pop" | "std" => AggregateFn::Stddev,
            "median" => {
                quantile = Some(0.5);
                AggregateFn::Quantile
            }
            "min" => {
                quantile = Some(0.0);
                AggregateFn::Quantile
            }
            "max" => {
                quantile = Some(1.0);
                AggregateFn::Quantile
            }
            "percentile_cont" | "approx_percentile_cont" => {
                quantile = Some(percentile_alpha(&fname, params)?);
                AggregateFn::Quantile
            }
            "first_value" | "last_value" | "nth_value" | "array_agg" | "string_agg" => {
                return Err(refuse(
                    "aggregate-not-allowed",
                    format!("{} is not allowed: it releases individual values", fname.to_uppercase()),
                ));
            }
            other => {
                return Err(refuse(
                    "aggregate-not-allowed",
                    format!(
                        "aggregate {} is not supported (use COUNT, SUM, AVG, VARIANCE, STDDEV, MEDIAN, PERCENTILE_CONT, MIN or MAX)",
                        other.to_uppercase()
                    ),
                ));
            }
        };
        let display_arg;
        let mut argument = None;
        let mut bounds = None;
        let mut measure_dataset = None;
        let mut bounds_note = None;
        match function {
            AggregateFn::CountRows => display_arg = "*".to_string(),
            AggregateFn::CountUnits => {
                display_arg = format!("DISTINCT {}", params.args[0].schema_name());
                argument = Some(params.args[0].clone());
            }
            AggregateFn::CountValues => {
                display_arg = params.args[0].schema_name().to_string();
                argument = Some(params.args[0].clone());
            }
            _ => {
                if params.distinct {
                    return Err(refuse(
                        "aggregate-distinct",
                        "DISTINCT inside SUM/AVG/VARIANCE/STDDEV/quantiles is not supported",
                    ));
                }
                if function == AggregateFn::Quantile {
                    self.require_dp_for_quantile(&fname)?;
                }
                let arg = match (params.args.as_slice(), percentile) {
                    // The WITHIN GROUP expression comes first, then α.
                    ([arg, ..], true) => arg,
                    ([arg], false) => arg,
                    _ => {
                        return Err(refuse(
                            "aggregate-not-allowed",
                            format!("{} takes one argument", fname.to_uppercase()),
                        ));
                    }
                };
                let (arg, auto_bound) = match strip_alias(arg) {
                    Expr::ScalarFunction(f) if f.func.name() == crate::clamp_auto::NAME => {
                        if function == AggregateFn::Quantile {
                            return Err(refuse(
                                "clamp-auto-form",
                                "CLAMP_AUTO applies to SUM, AVG, VARIANCE and STDDEV; a quantile needs no clamp",
                            ));
                        }
                        self.require_dp_for_quantile("CLAMP_AUTO")?;
                        (&f.args[0], Some(auto_quantile(&f.args)?))
                    }
                    _ => (arg, None),
                };
                let fname = match (quantile, auto_bound) {
                    (Some(alpha), _) if percentile => format!("{fname}({alpha})"),
                    _ => fname.clone(),
                };
                let fname = fname.as_str();
                if let Some(g) = self.guest_output(arg, schema, facts) {
                    if auto_bound.is_some() {
                        return Err(refuse(
                            "clamp-auto-form",
                            "CLAMP_AUTO applies to measures with public bounds, not to a WebAssembly function's output",
                        ));
                    }
                    let fact = self.expr_fact(arg, schema, facts, Place::Projection)?;
                    let datasets: BTreeSet<DatasetId> = fact.sources.iter().map(|s| s.dataset.clone()).collect();
                    for ds in datasets.iter().filter(|d| self.protected.contains(*d)) {
                        self.require_program_aggregates(
                            ds,
                            super::ROW_FUNCTION_AGGREGATES,
                            &format!("{}(wasm:{})", fname.to_uppercase(), g.function),
                        )?;
                    }
                    return Ok(AggregateRequest {
                        auto_bound: None,
                        quantile,
                        function,
                        name,
                        display: format!("{fname}(wasm:{})", g.function),
                        argument: Some(arg.clone()),
                        bounds: Some(g.bounds),
                        measure_dataset: None,
                        bounds_note: Some(format!(
                            "values clamped to [{}, {}], the bounds the job declared for wasm:{}",
                            g.bounds.0, g.bounds.1, g.function
                        )),
                    });
                }
                let measure = measure_source(arg, schema, facts);
                if let Some(src) = &measure
                    && self.roles_of(src)?.roles.is_restricted()
                {
                    return Err(refuse(
                        "identifier-in-aggregate",
                        format!("{src} is an identifier and cannot be aggregated"),
                    ));
                }
                let fact = self.expr_fact(arg, schema, facts, Place::Projection)?;
                let Some(src) = measure else {
                    let _ = fact;
                    let mut derived = self.derived_aggregate(function, name, fname, arg, schema, facts)?;
                    derived.quantile = quantile;
                    if let Some(q) = auto_bound {
                        let inner = derived.display.trim_start_matches(fname).to_string();
                        let inner = inner.trim_start_matches('(').trim_end_matches(')');
                        derived.display = format!("{fname}(clamp_auto({inner}, {q}))");
                    }
                    derived.auto_bound = auto_bound;
                    return Ok(derived);
                };
                let cp = self.roles_of(&src)?;
                if cp.roles.is_restricted() {
                    return Err(refuse(
                        "identifier-in-aggregate",
                        format!("{src} is an identifier and cannot be aggregated"),
                    ));
                }
                if !cp.has(ColumnRole::Measure) {
                    return Err(refuse(
                        "not-a-measure",
                        format!(
                            "{src} is not a measure; only measures with public bounds can be summed, averaged or ranked"
                        ),
                    ));
                }
                bounds = cp.bounds;
                let Some((lo, hi)) = bounds else {
                    return Err(refuse(
                        "measure-without-bounds",
                        format!("{src} has no public bounds in its policy"),
                    ));
                };
                bounds_note = Some(match auto_bound {
                    None => format!("values clamped to the policy's bounds [{lo}, {hi}]"),
                    Some(q) => format!(
                        "values clamped to [{lo}, u] where u is a DP estimate of the {q} quantile within the policy's bounds [{lo}, {hi}]"
                    ),
                });
                self.usage.aggregated.insert(src.to_string());
                display_arg = match auto_bound {
                    Some(q) => format!("clamp_auto({src}, {q})"),
                    None => src.to_string(),
                };
                argument = Some(arg.clone());
                measure_dataset = Some(src.dataset.clone());
                return Ok(AggregateRequest {
                    function,
                    name,
                    display: format!("{fname}({display_arg})"),
                    argument,
                    bounds,
                    measure_dataset,
                    bounds_note,
                    quantile,
                    auto_bound,
                });
            }
        }
        Ok(AggregateRequest {
            function,
            name,
            display: format!("{fname}({display_arg})"),
            argument,
            bounds,
            measure_dataset,
            bounds_note,
            quantile,
            auto_bound: None,
        })
    }

    /// Quantiles exist only as DP releases: under threshold rules an exact
    /// median or MIN is one individual's value.
    fn require_dp_for_quantile(&mut self, fname: &str) -> Result<(), SqlError> {
        for ds in &self.protected.clone() {
            if !self.policy(ds)?.release.mode.uses_dp() {
                return Err(refuse(
                    "quantile-needs-dp",
                    format!(
                        "{} needs a differentially private release; the policy of {ds} releases under threshold rules only",
                        fname.to_uppercase()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// SUM, AVG, VARIANCE or STDDEV of an expression (see `derived`).
    fn derived_aggregate(
        &mut self,
        function: AggregateFn,
        name: String,
        fname: &str,
        arg: &Expr,
        schema: &DFSchema,
        facts: &[ColumnFact],
    ) -> Result<AggregateRequest, SqlError> {
        // Under threshold rules alone, a CASE could isolate one unit's value
        // inside a group that passes k; only noise covers that.
        let mut any_dp = false;
        for ds in &self.protected {
            any_dp |= self.policy(ds)?.release.mode.uses_dp();
        }
        if !any_dp {
            return Err(refuse(
                "derived-measure-needs-dp",
                "expressions and CLAMP inside aggregates need a differentially private release; the policies here release under threshold rules only",
            ));
        }
        let d = self.derived_measure(arg, schema, facts)?;
        let datasets: BTreeSet<DatasetId> = d.leaves.iter().map(|s| s.dataset.clone()).collect();
        if d.nonlinear {
            for ds in datasets.iter().filter(|ds| self.protected.contains(*ds)) {
                let policy = self.policy(ds)?;
                let missing: Vec<String> = super::ROW_FUNCTION_AGGREGATES
                    .iter()
                    .filter(|k| !policy.release.aggregates.contains(k))
                    .map(|k| k.to_string())
                    .collect();
                if !missing.is_empty() {
                    return Err(refuse(
                        "aggregate-not-allowed-by-policy",
                        format!(
                            "{}({}) multiplies or divides measures of {ds}, which could compute {} (e.g. a sum of squares), which its policy does not allow",
                            fname.to_uppercase(),
                            d.display,
                            missing.join(", ")
                        ),
                    ));
                }
            }
        }
        for leaf in &d.leaves {
            self.usage.aggregated.insert(leaf.to_string());
        }
        // The rounding base that applies (threshold rules with DP): the
        // largest of the datasets whose measures it reads, or, for an
        // expression of conditions and constants (a count), of every
        // protected dataset.
        let candidates: Vec<DatasetId> = if datasets.is_empty() {
            self.protected.iter().cloned().collect()
        } else {
            datasets.iter().cloned().collect()
        };
        let mut measure_dataset: Option<(DatasetId, f64)> = None;
        for ds in candidates {
            let base = self
                .policies
                .policy(&ds)
                .and_then(|p| p.release.rounding_base)
                .unwrap_or(0.0);
            if measure_dataset.as_ref().is_none_or(|(_, b)| base > *b) {
                measure_dataset = Some((ds, base));
            }
        }
        let (lo, hi) = d.bounds;
        let note = match (d.clamps.is_empty(), d.outer) {
            (false, Some((a, b))) => format!(
                "values clamped to [{lo}, {hi}]: the analyst's CLAMP within the bounds [{a}, {b}] the policies give"
            ),
            (false, None) => format!("values clamped to [{lo}, {hi}] (the analyst's CLAMP)"),
            (true, _) => format!(
                "values clamped to [{lo}, {hi}], derived by interval arithmetic from the policies' bounds of {}",
                d.leaves.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
            ),
        };
        Ok(AggregateRequest {
            quantile: None,
            auto_bound: None,
            function,
            name,
            display: format!("{fname}({})", d.display),
            argument: Some(d.expr),
            bounds: Some(d.bounds),
            measure_dataset: measure_dataset.map(|(ds, _)| ds),
            bounds_note: Some(note),
        })
    }
}

/// α of `PERCENTILE_CONT(p) WITHIN GROUP (ORDER BY x [ASC|DESC])` (and
/// the APPROX_ form): `p` must be a literal in [0, 1]; a descending order
/// asks for the `1 - p` quantile. A centroid count (APPROX_) is accepted
/// and ignored: the DP grid decides the resolution.
fn percentile_alpha(fname: &str, params: &AggregateFunctionParams) -> Result<f64, SqlError> {
    let upper = fname.to_uppercase();
    let bad = || {
        refuse(
            "quantile-form",
            format!("{upper} takes a literal percentile in [0, 1]: {upper}(0.9) WITHIN GROUP (ORDER BY column)"),
        )
    };
    let (Some(x), Some(p)) = (params.args.first(), params.args.get(1)) else {
        return Err(bad());
    };
    let ascending = match params.order_by.as_slice() {
        [] => true,
        [sort] if strip_alias(&sort.expr) == strip_alias(x) => sort.asc,
        _ => return Err(bad()),
    };
    let p = match strip_alias(p) {
        Expr::Literal(v, _) => match v {
            ScalarValue::Float64(Some(f)) => *f,
            ScalarValue::Float32(Some(f)) => *f as f64,
            ScalarValue::Int64(Some(i)) => *i as f64,
            ScalarValue::Decimal128(Some(v), _, scale) => *v as f64 / 10f64.powi(*scale as i32),
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    if !(0.0..=1.0).contains(&p) {
        return Err(bad());
    }
    Ok(if ascending { p } else { 1.0 - p })
}

/// The quantile of `CLAMP_AUTO(x [, q])`: a literal in (0, 1], default
/// [`crate::clamp_auto::DEFAULT_QUANTILE`].
fn auto_quantile(args: &[Expr]) -> Result<f64, SqlError> {
    let bad = || {
        refuse(
            "clamp-auto-form",
            "CLAMP_AUTO takes the value and an optional literal quantile in (0, 1]: CLAMP_AUTO(x) or CLAMP_AUTO(x, 0.95)",
        )
    };
    let q = match args {
        [_] => return Ok(crate::clamp_auto::DEFAULT_QUANTILE),
        [_, q] => match strip_alias(q) {
            Expr::Literal(ScalarValue::Float64(Some(f)), _) => *f,
            Expr::Literal(v, _) => match v.cast_to(&datafusion::arrow::datatypes::DataType::Float64) {
                Ok(ScalarValue::Float64(Some(f))) => f,
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    if q > 0.0 && q <= 1.0 { Ok(q) } else { Err(bad()) }
}

/// The measure column an aggregate argument names: the column itself,
/// possibly cast (a cast of a bounded numeric column keeps its bounds).
pub(super) fn measure_source(arg: &Expr, schema: &DFSchema, facts: &[ColumnFact]) -> Option<SourceColumn> {
    let mut e = strip_alias(arg);
    loop {
        match e {
            Expr::Cast(c) => e = strip_alias(&c.expr),
            Expr::TryCast(c) => e = strip_alias(&c.expr),
            Expr::Column(c) => {
                return schema
                    .maybe_index_of_column(c)
                    .and_then(|i| facts.get(i))
                    .and_then(|f| f.direct.clone());
            }
            _ => return None,
        }
    }
}
