//! A dataset's table whose scan coarsens the columns with a rule before
//! anything else reads them.

use super::function::Desensitize;
use crate::SqlError;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, Result as DfResult, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF, TableType};
use datafusion::physical_plan::ExecutionPlan;
use sandbox_model::DatasetId;
use sandbox_policy::Desensitization;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The files of one dataset, read through the coarsening projection.
#[derive(Debug)]
struct DesensitizedTable {
    schema: SchemaRef,
    /// The scan of the files and the coarsening projection over it.
    plan: LogicalPlan,
}

/// `table` (the files of `dataset`, with `schema`) as a table whose columns
/// with a rule in `rules` are their coarsened values; the other columns
/// pass through. Same column names, order and types as `table`. Errors
/// (`Internal`) when a rule names a column the schema lacks or does not fit
/// its type, which validation rules out.
pub(crate) fn desensitized_table(
    dataset: &DatasetId,
    table: Arc<dyn TableProvider>,
    schema: &SchemaRef,
    rules: &BTreeMap<String, Desensitization>,
) -> Result<Arc<dyn TableProvider>, SqlError> {
    let internal = |e: datafusion::error::DataFusionError| SqlError::Internal(e.strip_backtrace());
    let name = TableReference::partial(dataset.namespace(), dataset.table());
    let mut exprs = Vec::with_capacity(schema.fields().len());
    let mut applied = 0;
    for field in schema.fields() {
        let column = Expr::Column(Column::new(Some(name.clone()), field.name()));
        match rules.get(field.name()) {
            None => exprs.push(column),
            Some(rule) => {
                let f = Desensitize::new(rule, field.data_type()).ok_or_else(|| {
                    SqlError::Internal(format!(
                        "{dataset}.{}: desensitization rule `{}` does not fit its type {}",
                        field.name(),
                        rule.key(),
                        field.data_type()
                    ))
                })?;
                let call = Expr::ScalarFunction(ScalarFunction::new_udf(
                    Arc::new(ScalarUDF::new_from_impl(f)),
                    vec![column],
                ));
                exprs.push(call.alias(field.name()));
                applied += 1;
            }
        }
    }
    if applied != rules.len() {
        return Err(SqlError::Internal(format!(
            "{dataset}: a desensitization rule names a column the table does not have"
        )));
    }
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(table), None)
        .and_then(|b| b.project(exprs))
        .and_then(|b| b.build())
        .map_err(internal)?;
    Ok(Arc::new(DesensitizedTable {
        schema: schema.clone(),
        plan,
    }))
}

impl DesensitizedTable {
    /// The coarsened rows, then the scan's projection and limit (filters
    /// are never pushed into this table: they run above it).
    fn scan_plan(&self, projection: Option<&Vec<usize>>, limit: Option<usize>) -> DfResult<LogicalPlan> {
        let mut builder = LogicalPlanBuilder::from(self.plan.clone());
        if let Some(projection) = projection {
            let columns: Vec<Expr> = projection
                .iter()
                .map(|i| Expr::Column(Column::from(self.plan.schema().qualified_field(*i))))
                .collect();
            builder = builder.project(columns)?;
        }
        if let Some(limit) = limit {
            builder = builder.limit(0, Some(limit))?;
        }
        builder.build()
    }
}

// `TableProvider` is an `async_trait`; its `scan` written out by hand.
impl TableProvider for DesensitizedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn scan<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        state: &'life1 dyn Session,
        projection: Option<&'life2 Vec<usize>>,
        filters: &'life3 [Expr],
        limit: Option<usize>,
    ) -> Pin<Box<dyn Future<Output = DfResult<Arc<dyn ExecutionPlan>>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            if !filters.is_empty() {
                return datafusion::common::internal_err!("filters pushed into a desensitized table");
            }
            let plan = self.scan_plan(projection, limit)?;
            state.create_physical_plan(&plan).await
        })
    }
}
