//! Statement-level checks, before any planning: size caps on the text, one
//! read-only query, and no table functions. The plan checker then inspects
//! whatever the planner builds; this layer only keeps hostile text from
//! reaching the planner at all.

use crate::{EngineLimits, SqlError};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Statement, TableFactor, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use std::ops::ControlFlow;

/// Checks the text and parses it into exactly one query statement.
pub fn parse_query(sql: &str, limits: &EngineLimits) -> Result<DfStatement, SqlError> {
    if sql.len() > limits.max_sql_bytes {
        return Err(SqlError::refused(
            "sql-too-long",
            format!(
                "the query is {} bytes; the limit is {} bytes",
                sql.len(),
                limits.max_sql_bytes
            ),
        ));
    }
    if sql.trim().is_empty() {
        return Err(SqlError::Invalid("the query is empty".into()));
    }
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| SqlError::Invalid(e.to_string()))?;
    let mut significant = 0usize;
    let mut operators = 0usize;
    let mut depth = 0usize;
    let mut max_depth = 0usize;
    for t in &tokens {
        match t {
            Token::Whitespace(_) => continue,
            Token::LParen => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret => operators += 1,
            Token::Word(w) if matches!(w.value.to_ascii_uppercase().as_str(), "AND" | "OR" | "WHEN") => operators += 1,
            _ => {}
        }
        significant += 1;
    }
    if significant > limits.max_tokens {
        return Err(SqlError::refused(
            "sql-too-large",
            format!("the query has {significant} tokens; the limit is {}", limits.max_tokens),
        ));
    }
    if operators > limits.max_operators {
        return Err(SqlError::refused(
            "expression-too-large",
            format!(
                "the query has {operators} operators; the limit is {}",
                limits.max_operators
            ),
        ));
    }
    if max_depth > limits.max_nesting {
        return Err(SqlError::refused(
            "nesting-too-deep",
            format!(
                "the query nests {max_depth} levels deep; the limit is {}",
                limits.max_nesting
            ),
        ));
    }
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .with_recursion_limit(limits.max_nesting * 2 + 8)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| SqlError::Invalid(e.strip_backtrace()))?;
    if statements.len() != 1 {
        return Err(SqlError::refused(
            "single-statement",
            format!("submit exactly one query per job (got {} statements)", statements.len()),
        ));
    }
    let statement = statements
        .pop_front()
        .ok_or_else(|| SqlError::Internal("parser returned no statement".into()))?;
    let query = match &statement {
        DfStatement::Statement(s) => match s.as_ref() {
            Statement::Query(_) => s,
            other => return Err(refuse_statement(other)),
        },
        DfStatement::CreateExternalTable(_) => return Err(ddl("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => {
            return Err(SqlError::refused(
                "statement-not-allowed",
                "COPY is not allowed: results leave only through the release step",
            ));
        }
        DfStatement::Explain(_) => return Err(explain()),
        DfStatement::Reset(_) => {
            return Err(SqlError::refused(
                "statement-not-allowed",
                "RESET is not allowed: session settings are fixed by the sandbox",
            ));
        }
    };
    let mut finder = TableFunctionFinder::default();
    let _ = query.visit(&mut finder);
    if let Some(name) = finder.found {
        return Err(SqlError::refused(
            "table-function",
            format!("table function `{name}` is not available in the sandbox; query the granted datasets"),
        ));
    }
    Ok(statement)
}

fn ddl(what: &str) -> SqlError {
    SqlError::refused(
        "statement-not-allowed",
        format!("{what} is not allowed: jobs are read-only queries"),
    )
}

fn explain() -> SqlError {
    SqlError::refused(
        "statement-not-allowed",
        "EXPLAIN is not allowed: plans and their statistics can reveal data; use a dry run to see a query's cost",
    )
}

fn refuse_statement(s: &Statement) -> SqlError {
    let kind = match s {
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Merge(_) => "MERGE",
        Statement::Copy { .. } => "COPY",
        Statement::Explain { .. } | Statement::ExplainTable { .. } => return explain(),
        Statement::Set(_) => "SET",
        Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. } => "SHOW",
        Statement::CreateTable(_)
        | Statement::CreateView(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateIndex(_)
        | Statement::Drop { .. }
        | Statement::AlterTable(_)
        | Statement::Truncate(_) => return ddl("DDL"),
        _ => "this statement",
    };
    SqlError::refused(
        "statement-not-allowed",
        format!("{kind} is not allowed: a job is one read-only SELECT query"),
    )
}

#[derive(Default)]
struct TableFunctionFinder {
    found: Option<String>,
}

impl Visitor for TableFunctionFinder {
    type Break = ();
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let name = match factor {
            TableFactor::Table {
                name, args: Some(_), ..
            } => Some(name.to_string()),
            TableFactor::TableFunction { expr, .. } => Some(expr.to_string()),
            TableFactor::Function { name, .. } => Some(name.to_string()),
            TableFactor::UNNEST { .. } => Some("unnest".to_string()),
            TableFactor::JsonTable { .. } | TableFactor::OpenJsonTable { .. } => Some("json_table".to_string()),
            _ => None,
        };
        match name {
            Some(n) => {
                self.found = Some(n);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    }
}
