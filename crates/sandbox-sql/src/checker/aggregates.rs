//! Aggregate functions of the query: which ones, over what, with which bounds.

use super::*;

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
        if !params.order_by.is_empty() {
            return Err(refuse(
                "aggregate-order",
                "ORDER BY inside an aggregate is not supported",
            ));
        }
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
            "min" | "max" | "first_value" | "last_value" | "nth_value" | "array_agg" | "string_agg" | "median" => {
                return Err(refuse(
                    "aggregate-not-allowed",
                    format!("{} is not allowed: it releases individual values", fname.to_uppercase()),
                ));
            }
            other => {
                return Err(refuse(
                    "aggregate-not-allowed",
                    format!(
                        "aggregate {} is not supported (use COUNT, SUM, AVG, VARIANCE or STDDEV)",
                        other.to_uppercase()
                    ),
                ));
            }
        };
        let display_arg;
        let mut argument = None;
        let mut bounds = None;
        let mut measure_dataset = None;
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
                        "DISTINCT inside SUM/AVG/VARIANCE/STDDEV is not supported",
                    ));
                }
                let [arg] = params.args.as_slice() else {
                    return Err(refuse(
                        "aggregate-not-allowed",
                        format!("{} takes one argument", fname.to_uppercase()),
                    ));
                };
                if let Some(g) = self.guest_output(arg, schema, facts) {
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
                        function,
                        name,
                        display: format!("{fname}(wasm:{})", g.function),
                        argument: Some(arg.clone()),
                        bounds: Some(g.bounds),
                        measure_dataset: None,
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
                    let names: Vec<String> = fact.sources.iter().map(|s| s.to_string()).collect();
                    return Err(refuse(
                        "derived-measure",
                        format!(
                            "{}({}) aggregates an expression, which has no public bounds; aggregate a measure column itself",
                            fname.to_uppercase(),
                            names.join(", ")
                        ),
                    ));
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
                        format!("{src} is not a measure; only measures with public bounds can be summed or averaged"),
                    ));
                }
                bounds = cp.bounds;
                if bounds.is_none() {
                    return Err(refuse(
                        "measure-without-bounds",
                        format!("{src} has no public bounds in its policy"),
                    ));
                }
                self.usage.aggregated.insert(src.to_string());
                display_arg = src.to_string();
                argument = Some(arg.clone());
                measure_dataset = Some(src.dataset.clone());
            }
        }
        Ok(AggregateRequest {
            function,
            name,
            display: format!("{fname}({display_arg})"),
            argument,
            bounds,
            measure_dataset,
        })
    }
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
