//! The usage report as Markdown: headings and tables, for people.

use super::UsageReport;

impl UsageReport {
    /// The report as Markdown: headings and tables, for people.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# 数据利用报告 / Data usage report\n\n");
        let from = match &self.period.from {
            Some(t) => format!("{t} (included)"),
            None => "the start of the ledger".into(),
        };
        let to = match &self.period.to {
            Some(t) => format!("{t} (excluded)"),
            None => "the end of the ledger".into(),
        };
        out.push_str(&format!(
            "- Grant: `{}`\n- Holder: {}\n- Period: from {from} to {to}\n",
            self.grant,
            cell(&self.holder)
        ));
        let status = match (&self.status.state[..], &self.status.reason) {
            ("revoked", reason) => format!(
                "revoked at {} by {}: {}",
                self.status.revoked_at.as_deref().unwrap_or("?"),
                self.status.revoked_by.as_deref().unwrap_or("?"),
                cell(reason.as_deref().unwrap_or("no reason recorded"))
            ),
            (state, _) => state.to_string(),
        };
        let expired = if self.status.expired { " (expired)" } else { "" };
        out.push_str(&format!("- Status at the end of the period: {status}{expired}\n"));

        out.push_str("\n## 协议条款 / Agreement terms\n\n");
        match &self.agreement {
            Some(a) => {
                out.push_str("| term | value |\n|---|---|\n");
                let rows = [
                    ("application", a.application.clone()),
                    ("scenario (使用场景)", a.scenario.clone()),
                    ("datasets", a.datasets.join(", ")),
                    ("columns", a.columns.join(", ")),
                    ("job kinds", a.job_kinds.join(", ")),
                    ("ε per dataset", num(a.epsilon_per_dataset)),
                    ("expires at", a.expires_at.clone()),
                    ("call quota", a.call_quota.to_string()),
                    ("signed", format!("{} by {}", a.signed_at, a.signed_by)),
                ];
                for (term, value) in rows {
                    out.push_str(&format!("| {term} | {} |\n", cell(&value)));
                }
            }
            None => out.push_str("No agreement: the grant was created directly (no expiry, quota or scenario).\n"),
        }

        out.push_str("\n## 作业 / Jobs\n\n");
        let j = &self.jobs;
        out.push_str(
            "| submitted | released | released with defaults | failed | cancelled | dry runs | running | refused |\n",
        );
        out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            j.submitted, j.released, j.released_with_defaults, j.failed, j.cancelled, j.dry_runs, j.running, j.refused
        ));
        let quota = match (self.calls.quota, self.calls.left) {
            (Some(q), Some(left)) => format!("; quota {q}, {left} left"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "\nCalls (charged jobs): {} in the period, {} up to its end{quota}.\n",
            self.calls.in_period, self.calls.to_end
        ));
        if !j.refused_by_rule.is_empty() {
            out.push_str("\n| refused by rule | jobs |\n|---|---:|\n");
            for (rule, n) in &j.refused_by_rule {
                out.push_str(&format!("| `{}` | {n} |\n", cell(rule)));
            }
        }

        out.push_str("\n## 隐私预算 / Privacy budget\n\n");
        if self.budgets.is_empty() {
            out.push_str("No budgets.\n");
        } else {
            out.push_str(
                "| dataset | ε granted | ε spent in period | ε spent to end | ε left | δ granted | δ spent in period | δ spent to end | δ left |\n",
            );
            out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            let policy = |x: Option<f64>| x.map_or_else(|| "policy's".to_string(), num);
            for b in &self.budgets {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    cell(&b.dataset),
                    num(b.epsilon_total),
                    num(b.epsilon_spent),
                    num(b.epsilon_spent_to_end),
                    num(b.epsilon_left),
                    policy(b.delta_total),
                    num(b.delta_spent),
                    num(b.delta_spent_to_end),
                    policy(b.delta_left)
                ));
            }
        }

        out.push_str("\n## 使用字段 / Fields used\n\n");
        if self.fields.is_empty() {
            out.push_str("No finished job in the period.\n");
        } else {
            out.push_str("| column | jobs | read | filtered | grouped | aggregated |\n");
            out.push_str("|---|---:|---:|---:|---:|---:|\n");
            for f in &self.fields {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    cell(&f.column),
                    f.jobs,
                    f.read,
                    f.filtered,
                    f.grouped,
                    f.aggregated
                ));
            }
        }

        out.push_str("\n## 函数与算法 / Functions and algorithms\n\n");
        let kinds: Vec<String> = self.job_kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        out.push_str(&format!(
            "Jobs run by kind: {}.\n",
            if kinds.is_empty() {
                "none".into()
            } else {
                kinds.join(", ")
            }
        ));
        if !self.functions.is_empty() {
            out.push_str("\n| function | jobs |\n|---|---:|\n");
            for (f, n) in &self.functions {
                out.push_str(&format!("| `{}` | {n} |\n", cell(f)));
            }
        }
        if !self.webassembly.is_empty() {
            out.push_str(
                "\nWebAssembly jobs (the submission digest covers the submitted query and the module's SHA-256):\n\n",
            );
            out.push_str("| job | kind | functions | submission digest |\n|---|---|---|---|\n");
            for w in &self.webassembly {
                out.push_str(&format!(
                    "| {} | {} | {} | `{}` |\n",
                    cell(&w.job),
                    cell(&w.kind),
                    cell(&w.functions.join(", ")),
                    cell(&w.submission_digest)
                ));
            }
        }
        out.push_str(&format!(
            "\nGroups released: {}; suppressed: {}.\n",
            self.groups_released, self.groups_suppressed
        ));

        out.push_str("\n## 作业清单 / Job list\n\n");
        if self.job_list.is_empty() {
            out.push_str("No jobs in the period.\n");
        } else {
            out.push_str("| job | submitted | kind | status | ε | δ | result digest | detail |\n");
            out.push_str("|---|---|---|---|---:|---:|---|---|\n");
            for l in &self.job_list {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    cell(&l.job),
                    cell(&l.submitted_at),
                    cell(&l.kind),
                    cell(&l.status),
                    num(l.epsilon),
                    num(l.delta),
                    l.result_digest
                        .as_deref()
                        .map(|d| format!("`{}`", cell(d)))
                        .unwrap_or_default(),
                    cell(l.detail.as_deref().unwrap_or(""))
                ));
            }
        }

        out.push_str("\n## 审计账本 / Audit ledger\n\n");
        let l = &self.ledger;
        let range = match (l.first_seq, l.last_seq) {
            (Some(a), Some(b)) => format!("entries {a} to {b}"),
            _ => "no entries".into(),
        };
        out.push_str(&format!(
            "Built from {} ledger entries; the period holds {range}, {} of them about this grant.\n",
            l.entries, l.grant_entries
        ));
        out.push_str(&format!(
            "Head at the end of the period: entry {}, hash `{}`.\n",
            l.head_seq, l.head_hash
        ));
        out.push_str(&format!(
            "Hash chain of the entries read: {}. Check against `sandbox audit verify` and `sandbox audit export`.\n",
            if l.chain_verified { "intact" } else { "BROKEN" }
        ));
        out
    }
}

/// A number for people: up to four decimals, small values in scientific
/// notation.
fn num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() < 1e-3 {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}
