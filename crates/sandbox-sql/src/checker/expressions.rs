//! Expressions: their lineage, the allow-list of expression kinds and
//! functions, and the rules that depend on where an expression sits.

use super::*;

impl Checker<'_> {
    /// Computes an expression's lineage and applies the rules of its place.
    pub(super) fn expr_fact(
        &mut self,
        e: &Expr,
        schema: &DFSchema,
        facts: &[ColumnFact],
        place: Place,
    ) -> Result<ColumnFact, SqlError> {
        let mut sources = BTreeSet::new();
        self.saw_guest = false;
        self.walk(e, schema, facts, &mut sources, 0)?;
        let guest_derived = self.saw_guest;
        let input = match strip_alias(e) {
            Expr::Column(c) => schema.maybe_index_of_column(c).and_then(|i| facts.get(i)),
            _ => None,
        };
        let direct = input.and_then(|f| f.direct.clone());
        let guest = self.guest_output(e, schema, facts);
        if guest_derived && place == Place::GroupBy {
            return Err(refuse(
                "measure-in-group-by",
                "the output of a WebAssembly function is a measure and may only appear inside an aggregate",
            ));
        }
        for s in &sources {
            self.usage.read.insert(s.to_string());
            let cp = self.roles_of(s)?;
            if cp.has(ColumnRole::Sensitive) {
                return Err(refuse(
                    "sensitive-column",
                    format!("{s} is sensitive and cannot be used by jobs"),
                ));
            }
            match place {
                Place::Filter => {
                    self.usage.filtered.insert(s.to_string());
                    if cp.roles.is_restricted() {
                        return Err(refuse(
                            "identifier-in-filter",
                            format!("{s} is an identifier and cannot be compared with a literal or used in a filter"),
                        ));
                    }
                }
                Place::GroupBy => {
                    if cp.roles.is_restricted() {
                        return Err(refuse(
                            "identifier-in-group-by",
                            format!("{s} is an identifier and cannot appear in GROUP BY"),
                        ));
                    }
                    if cp.has(ColumnRole::Measure) {
                        return Err(refuse(
                            "measure-in-group-by",
                            format!("{s} is a measure and may only appear inside an aggregate, not in GROUP BY"),
                        ));
                    }
                }
                Place::Projection => {
                    if direct.is_none() && cp.roles.is_restricted() {
                        return Err(refuse(
                            "identifier-transformed",
                            format!(
                                "{s} is an identifier; it may only be passed through, joined on or counted distinct"
                            ),
                        ));
                    }
                }
            }
        }
        let mut fact = match direct {
            Some(d) => ColumnFact::direct(d),
            None => ColumnFact::derived(sources),
        };
        if let Some(input) = input.filter(|f| f.direct.is_some()) {
            fact.unit_scan = input.unit_scan;
            fact.outer_nullable = input.outer_nullable;
            // An outer join's conditions stay in the lineage of its
            // null-supplying side.
            fact.sources.extend(input.sources.iter().cloned());
        }
        fact.guest = guest;
        fact.guest_derived = guest_derived;
        Ok(fact)
    }

    /// The row-function output an expression *is* (a call, possibly cast
    /// or aliased, or a column carrying one), if any.
    pub(super) fn guest_output(&self, e: &Expr, schema: &DFSchema, facts: &[ColumnFact]) -> Option<GuestOutput> {
        let mut e = strip_alias(e);
        loop {
            match e {
                Expr::Cast(c) => e = strip_alias(&c.expr),
                Expr::TryCast(c) => e = strip_alias(&c.expr),
                Expr::Column(c) => {
                    return schema
                        .maybe_index_of_column(c)
                        .and_then(|i| facts.get(i))
                        .and_then(|f| f.guest.clone());
                }
                Expr::ScalarFunction(f) => {
                    return self.guests.get(f.func.name()).map(|b| GuestOutput {
                        function: f.func.name().to_string(),
                        bounds: *b,
                    });
                }
                _ => return None,
            }
        }
    }

    pub(super) fn walk(
        &mut self,
        e: &Expr,
        schema: &DFSchema,
        facts: &[ColumnFact],
        acc: &mut BTreeSet<SourceColumn>,
        depth: usize,
    ) -> Result<(), SqlError> {
        if depth > MAX_EXPR_DEPTH {
            return Err(refuse("expression-too-large", "an expression nests too deeply"));
        }
        let d = depth + 1;
        match e {
            Expr::Column(c) => {
                let i = schema
                    .maybe_index_of_column(c)
                    .ok_or_else(|| SqlError::Internal(format!("column {c} not found in its input")))?;
                let f = facts
                    .get(i)
                    .ok_or_else(|| SqlError::Internal("lineage out of step with schema".into()))?;
                acc.extend(f.sources.iter().cloned());
                if f.guest.is_some() || f.guest_derived {
                    self.saw_guest = true;
                }
            }
            Expr::Literal(..) => {}
            Expr::Alias(a) => self.walk(&a.expr, schema, facts, acc, d)?,
            Expr::BinaryExpr(b) => {
                if !ALLOWED_OPERATORS.contains(&b.op) {
                    return Err(refuse(
                        "operator-not-allowed",
                        format!("the operator `{}` is not available in sandbox SQL", b.op),
                    ));
                }
                self.walk(&b.left, schema, facts, acc, d)?;
                self.walk(&b.right, schema, facts, acc, d)?;
            }
            Expr::Not(x)
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsTrue(x)
            | Expr::IsFalse(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotTrue(x)
            | Expr::IsNotFalse(x)
            | Expr::IsNotUnknown(x)
            | Expr::Negative(x) => self.walk(x, schema, facts, acc, d)?,
            Expr::Like(l) => {
                check_like_pattern(l)?;
                self.walk(&l.expr, schema, facts, acc, d)?;
            }
            Expr::SimilarTo(_) => {
                return Err(refuse(
                    "operator-not-allowed",
                    "SIMILAR TO is not available in sandbox SQL; use LIKE with a literal pattern",
                ));
            }
            Expr::Between(b) => {
                self.walk(&b.expr, schema, facts, acc, d)?;
                self.walk(&b.low, schema, facts, acc, d)?;
                self.walk(&b.high, schema, facts, acc, d)?;
            }
            Expr::Case(c) => {
                if let Some(x) = &c.expr {
                    self.walk(x, schema, facts, acc, d)?;
                }
                for (w, t) in &c.when_then_expr {
                    self.walk(w, schema, facts, acc, d)?;
                    self.walk(t, schema, facts, acc, d)?;
                }
                if let Some(x) = &c.else_expr {
                    self.walk(x, schema, facts, acc, d)?;
                }
            }
            Expr::Cast(c) => self.walk(&c.expr, schema, facts, acc, d)?,
            Expr::TryCast(c) => self.walk(&c.expr, schema, facts, acc, d)?,
            Expr::ScalarFunction(f) => {
                let name = f.func.name().to_ascii_lowercase();
                if self.guests.contains_key(f.func.name()) {
                    self.usage.functions.insert(format!("wasm:{}", f.func.name()));
                    self.uses_guests = true;
                    self.saw_guest = true;
                    for a in &f.args {
                        self.walk(a, schema, facts, acc, d)?;
                    }
                    return Ok(());
                }
                if !ALLOWED_SCALAR_FUNCTIONS.contains(&name.as_str()) {
                    return Err(refuse(
                        "function-not-allowed",
                        format!("function `{name}` is not available in sandbox SQL"),
                    ));
                }
                self.usage.functions.insert(name);
                for a in &f.args {
                    self.walk(a, schema, facts, acc, d)?;
                }
            }
            Expr::InList(l) => {
                self.walk(&l.expr, schema, facts, acc, d)?;
                for x in &l.list {
                    self.walk(x, schema, facts, acc, d)?;
                }
            }
            Expr::AggregateFunction(_) => {
                return Err(refuse(
                    "aggregate-position",
                    "aggregates may only appear in the SELECT list of the aggregating query",
                ));
            }
            Expr::WindowFunction(_) => {
                return Err(refuse(
                    "window-function",
                    "window functions emit one value per row and are not allowed",
                ));
            }
            Expr::Exists(_)
            | Expr::InSubquery(_)
            | Expr::ScalarSubquery(_)
            | Expr::SetComparison(_)
            | Expr::OuterReferenceColumn(..) => {
                return Err(refuse(
                    "subquery-expression",
                    "subqueries inside expressions are not allowed; use a JOIN on a permitted key",
                ));
            }
            Expr::Placeholder(_) => return Err(refuse("placeholder", "query parameters ($1) are not supported")),
            Expr::ScalarVariable(..) => return Err(refuse("variable", "session variables are not available")),
            Expr::GroupingSet(_) => {
                return Err(refuse(
                    "grouping-sets",
                    "GROUPING SETS, ROLLUP and CUBE are not supported",
                ));
            }
            Expr::Unnest(_) => return Err(refuse("unnest", "UNNEST is not allowed")),
            other => {
                return Err(refuse(
                    "expression-not-allowed",
                    format!(
                        "the expression kind `{}` is not allowed in sandbox SQL",
                        other.variant_name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Binary operators a query may use: comparisons, logic, arithmetic (made
/// total before execution, see `crate::total`) and string concatenation.
const ALLOWED_OPERATORS: &[Operator] = &[
    Operator::Eq,
    Operator::NotEq,
    Operator::Lt,
    Operator::LtEq,
    Operator::Gt,
    Operator::GtEq,
    Operator::IsDistinctFrom,
    Operator::IsNotDistinctFrom,
    Operator::And,
    Operator::Or,
    Operator::Plus,
    Operator::Minus,
    Operator::Multiply,
    Operator::Divide,
    Operator::Modulo,
    Operator::StringConcat,
];

/// A LIKE pattern must be a literal that the engine accepts, so that
/// evaluating it cannot fail on some rows and not others.
fn check_like_pattern(l: &datafusion::logical_expr::Like) -> Result<(), SqlError> {
    use datafusion::arrow::array::{Scalar, StringArray};
    let pattern = match strip_alias(&l.pattern) {
        Expr::Literal(
            ScalarValue::Utf8(Some(p)) | ScalarValue::Utf8View(Some(p)) | ScalarValue::LargeUtf8(Some(p)),
            _,
        ) => p,
        _ => {
            return Err(refuse("like-pattern", "LIKE patterns must be string literals"));
        }
    };
    if l.escape_char.is_some() {
        return Err(refuse("like-pattern", "LIKE … ESCAPE is not supported"));
    }
    let probe = StringArray::from(vec![""]);
    let pattern = Scalar::new(StringArray::from(vec![pattern.as_str()]));
    let checked = if l.case_insensitive {
        datafusion::arrow::compute::kernels::comparison::ilike(&probe, &pattern)
    } else {
        datafusion::arrow::compute::kernels::comparison::like(&probe, &pattern)
    };
    checked
        .map(|_| ())
        .map_err(|_| refuse("like-pattern", "the LIKE pattern is not valid"))
}

pub(super) fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        other => other,
    }
}
