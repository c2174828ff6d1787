//! The table-driven SQL suite: `tests/sql/queries.test`.

use crate::fixture::{TEST_GRANT, sandbox};
use sandbox_runtime::{SqlJobOptions, SqlJobResult};

#[derive(Debug)]
enum Expect {
    Accept {
        columns: Vec<String>,
        rows: (String, usize),
    },
    Refuse {
        rule: String,
    },
}

fn cases() -> Vec<(usize, Expect, String)> {
    let text = include_str!("../sql/queries.test");
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let expect = match parts.next() {
            Some("accept") => {
                let columns = parts.next().expect("columns").split(',').map(str::to_string).collect();
                let spec = parts.next().expect("rows spec");
                let rows = if spec == "any" {
                    (">=".to_string(), 0)
                } else {
                    let op: String = spec.chars().take_while(|c| !c.is_ascii_digit()).collect();
                    let num = spec[op.len()..].parse().expect("rows number");
                    (op, num)
                };
                Expect::Accept { columns, rows }
            }
            Some("refuse") => Expect::Refuse {
                rule: parts.next().expect("rule").to_string(),
            },
            other => panic!("line {}: unknown header {other:?}", n + 1),
        };
        let mut sql = String::new();
        while let Some((_, l)) = lines.peek() {
            if l.trim().is_empty() {
                break;
            }
            sql.push_str(l);
            sql.push('\n');
            lines.next();
        }
        out.push((n + 1, expect, sql));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_of_the_table_behaves_as_declared() {
    let sandbox = sandbox();
    let cases = cases();
    assert!(cases.len() >= 60, "the suite has {} cases", cases.len());
    let mut failures = Vec::new();
    for (line, expect, sql) in &cases {
        let got = sandbox.run_sql(TEST_GRANT, sql, &SqlJobOptions::default()).await;
        match (expect, got) {
            (Expect::Accept { columns, rows: (op, n) }, Ok(SqlJobResult::Released { table, .. })) => {
                let names: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
                if &names != columns {
                    failures.push(format!("line {line}: columns {names:?}, expected {columns:?}"));
                }
                let r = table.rows.len();
                let ok = match op.as_str() {
                    "=" => r == *n,
                    ">=" => r >= *n,
                    "<=" => r <= *n,
                    _ => false,
                };
                if !ok {
                    failures.push(format!("line {line}: {r} rows, expected {op}{n}"));
                }
                for row in &table.rows {
                    if row.len() != columns.len() {
                        failures.push(format!("line {line}: a row has {} cells", row.len()));
                    }
                }
            }
            (Expect::Accept { .. }, Ok(other)) => failures.push(format!("line {line}: unexpected result {other:?}")),
            (Expect::Accept { .. }, Err(e)) => failures.push(format!("line {line}: refused/failed: {e}")),
            (Expect::Refuse { rule }, Err(e)) => {
                if e.rule() != Some(rule.as_str()) {
                    failures.push(format!("line {line}: expected rule {rule}, got {:?}: {e}", e.rule()));
                }
                if !e.is_refusal() {
                    failures.push(format!("line {line}: not reported as a refusal"));
                }
            }
            (Expect::Refuse { rule }, Ok(_)) => {
                failures.push(format!("line {line}: accepted, expected refusal {rule}"))
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
