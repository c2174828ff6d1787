//! The console's interface strings in Chinese and English. Data (catalog
//! titles, policy sentences, API messages) is shown as the sandbox holds it.

use axum::http::{HeaderMap, header};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// An interface language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Lang {
    /// 简体中文, the default.
    #[default]
    Zh,
    En,
}

impl Lang {
    /// `zh` or `en`.
    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language cookie's, else the first of `Accept-Language` that is
    /// Chinese or English, else Chinese.
    pub fn of(headers: &HeaderMap) -> Lang {
        if let Some(lang) = super::cookie(headers, super::LANG_COOKIE).and_then(|c| Lang::parse(&c)) {
            return lang;
        }
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',').find_map(|part| {
                    let tag = part.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
                    if tag.starts_with("zh") {
                        Some(Lang::Zh)
                    } else if tag.starts_with("en") {
                        Some(Lang::En)
                    } else {
                        None
                    }
                })
            })
            .unwrap_or_default()
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The HTML `lang` tag.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    /// The string `key` in this language; an unknown key is shown as
    /// itself (and the tests fail on it).
    pub fn text(self, key: &str) -> &'static str {
        STRINGS
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|&(k, en, zh)| match self {
                Lang::En if en.is_empty() => k,
                Lang::En => en,
                Lang::Zh => zh,
            })
            .unwrap_or("?")
    }

    /// Every string in this language, for the templates (`t.key`).
    pub fn table(self) -> &'static BTreeMap<&'static str, &'static str> {
        static ZH: OnceLock<BTreeMap<&'static str, &'static str>> = OnceLock::new();
        static EN: OnceLock<BTreeMap<&'static str, &'static str>> = OnceLock::new();
        let cell = match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        };
        cell.get_or_init(|| STRINGS.iter().map(|(k, _, _)| (*k, self.text(k))).collect())
    }
}

/// `(key, English, 中文)`.
const STRINGS: &[(&str, &str, &str)] = &[
    ("product", "Data Sandbox", "数据沙箱"),
    ("skip_to_content", "Skip to content", "跳到正文"),
    ("main_menu", "Main menu", "主菜单"),
    ("switch_language", "中文", "English"),
    (
        "footer",
        "Only differentially private or threshold-controlled results leave the sandbox; every action is recorded in the audit ledger.",
        "只有经差分隐私或阈值控制的结果才能离开沙箱；每项操作都记入审计账本。",
    ),
    ("sign_in", "Sign in", "登录"),
    ("sign_out", "Sign out", "退出"),
    (
        "sign_in_help",
        "Sign in with your API token (the operator issues it; it is the same token the API and the command line use).",
        "请使用 API 令牌登录（由平台运营方签发，与 API 和命令行使用的令牌相同）。",
    ),
    ("api_token", "API token", "API 令牌"),
    (
        "login_failed",
        "That token is not valid. Check it and try again.",
        "令牌无效，请检查后重试。",
    ),
    (
        "login_expired",
        "The sign-in form expired. Please sign in again.",
        "登录表单已过期，请重新登录。",
    ),
    ("error_title", "Something went wrong", "出错了"),
    ("rule", "Rule", "规则"),
    ("back_to_catalog", "Back to the catalog", "返回开放清单"),
    ("back_to_dataset", "Back to the dataset", "返回数据集"),
    ("catalog", "Catalog", "开放清单"),
    ("catalog_title", "Open data catalog (开放清单)", "公共数据开放清单"),
    ("applications", "Applications", "申请"),
    ("agreements", "Agreements", "协议"),
    ("jobs", "Jobs", "作业"),
    ("complaints", "Complaints", "投诉"),
    ("operator", "Operations", "运营管理"),
    ("audit", "Audit ledger", "审计账本"),
    ("role_operator", "operator", "平台运营方"),
    ("role_applicant", "applicant", "申请人"),
    ("role_data_owner", "data owner", "数据提供方"),
    ("search", "Search", "搜索"),
    ("search_catalog", "Search the catalog", "搜索开放清单"),
    ("all", "All", "全部"),
    ("filter", "Filter", "筛选"),
    (
        "datasets_shown",
        "{shown} of {total} datasets",
        "共 {total} 个数据集，显示 {shown} 个",
    ),
    ("dataset", "Dataset", "数据集"),
    ("datasets", "Datasets", "数据集"),
    ("open_class", "Open class", "开放类型"),
    ("class_open", "open (无条件开放)", "无条件开放"),
    ("class_conditional", "conditional (有条件开放)", "有条件开放"),
    ("class_closed", "closed (非开放)", "非开放"),
    ("provider", "Provider", "数据提供方"),
    ("domain", "Domain", "领域"),
    ("update_frequency", "Updated", "更新频率"),
    ("time_coverage", "Time coverage", "时间范围"),
    ("area_coverage", "Area coverage", "空间范围"),
    ("open_conditions", "Open conditions", "开放条件"),
    ("summary", "Summary", "摘要"),
    ("suspended", "Suspended", "已中止开放"),
    ("fields", "Fields", "字段"),
    ("sample_dataset", "Sample dataset", "样本数据"),
    (
        "sample_explained",
        "A synthetic sample with the same fields, generated with differential privacy from the real data's marginals; anyone may download it without applying, to write and test jobs.",
        "与真实数据字段相同的合成样本，由真实数据的边缘分布在差分隐私下生成；无需申请即可下载，用于编写和测试作业。",
    ),
    ("sample_report", "fidelity report (JSON)", "保真度报告（JSON）"),
    ("field", "Field", "字段"),
    ("type", "Type", "类型"),
    ("unit", "Unit", "单位"),
    ("description", "Description", "说明"),
    ("policy_in_words", "Output policy in words", "输出规则说明"),
    ("policy_version", "Policy version", "规则版本"),
    (
        "no_policy",
        "No output policy is installed: no job may run on this dataset.",
        "尚未设置输出规则：该数据集不能运行作业。",
    ),
    ("apply_for_this", "Apply for this dataset", "申请使用该数据集"),
    ("edit_policy", "Edit the output policy", "编辑输出规则"),
    ("suspension", "Suspension", "中止开放"),
    ("suspend", "Suspend", "中止开放"),
    ("resume", "Resume", "恢复开放"),
    ("reason", "Reason", "理由"),
    ("file_complaint", "File a complaint", "提交投诉"),
    ("complaint_text", "Complaint", "投诉内容"),
    (
        "complaint_where",
        "The operator sees every complaint; a data owner those about its datasets; everyone else those they filed.",
        "运营方可见全部投诉；数据提供方可见涉及其数据集的投诉；其他账户只见本人提交的投诉。",
    ),
    ("filed_at", "Filed", "提交时间"),
    ("filed_by", "Filed by", "提交人"),
    ("apply_title", "Apply for conditionally open data", "申请有条件开放数据"),
    (
        "apply_help",
        "Choose the datasets and columns you need, the kinds of jobs you will run and describe your usage scenario. The data owners decide; you will see their decision and reasons here.",
        "请选择所需的数据集和字段、作业类型，并说明使用场景。由数据提供方审核，审核结果和理由将显示在此处。",
    ),
    ("datasets_and_columns", "Datasets and columns", "数据集和字段"),
    ("columns_of", "Columns of", "字段："),
    ("columns", "Columns", "字段"),
    ("job_kinds", "Job kinds", "作业类型"),
    ("kind_sql", "SQL queries", "SQL 查询"),
    ("kind_wasm", "WebAssembly analyses", "WebAssembly 分析"),
    ("scenario", "Usage scenario", "使用场景"),
    (
        "scenario_hint",
        "What the results are for and who will use them.",
        "说明结果的用途和使用者。",
    ),
    ("requested_epsilon", "Requested privacy budget ε", "申请的隐私预算 ε"),
    (
        "requested_epsilon_hint",
        "Optional. Shown to the owners with your scenario; they set the ε granted.",
        "可选。将随使用场景提交给数据提供方，由其确定批准的 ε。",
    ),
    ("materials", "Materials", "申请材料"),
    (
        "materials_hint",
        "One per line, as the open conditions ask (e.g. business licence).",
        "每行一项，按开放条件要求填写（如营业执照）。",
    ),
    ("submit_application", "Submit application", "提交申请"),
    ("new_application", "New application", "新申请"),
    ("application", "Application", "申请"),
    ("applicant", "Applicant", "申请人"),
    ("revision", "Revision", "版本"),
    ("status", "Status", "状态"),
    ("status_submitted", "submitted, awaiting decision", "已提交，待审核"),
    ("status_rejected", "rejected", "已驳回"),
    ("status_approved", "approved", "已批准"),
    ("status_active", "active", "有效"),
    ("status_revoked", "revoked", "已撤销"),
    ("none_yet", "Nothing here yet.", "暂无记录。"),
    ("approvals", "Approvals", "批准情况"),
    ("owner", "Owner", "数据提供方"),
    ("expires_at", "Expires", "到期日"),
    ("call_quota", "Call quota", "调用次数上限"),
    ("open_agreement", "Open the agreement", "查看协议"),
    ("decide", "Decision", "审核决定"),
    ("approve_with_terms", "Approve with terms", "附条件批准"),
    (
        "epsilon_granted",
        "ε granted for your datasets",
        "批准的 ε（本方数据集）",
    ),
    ("approve", "Approve", "批准"),
    ("reject_with_reason", "Reject with a reason", "驳回并说明理由"),
    ("reject", "Reject", "驳回"),
    ("revise_and_resubmit", "Revise and resubmit", "修改后重新提交"),
    ("agreement", "Agreement", "协议"),
    ("holder", "Holder", "持有人"),
    ("calls", "Calls", "已调用次数"),
    ("budget", "Privacy budget", "隐私预算"),
    ("budget_left", "Budget left on", "剩余预算"),
    ("new_job", "New job", "新建作业"),
    ("usage_report", "Usage report (数据利用报告)", "数据利用报告"),
    ("usage_reports", "Usage reports", "数据利用报告"),
    ("revoke", "Revoke the agreement", "撤销协议"),
    ("job", "Job", "作业"),
    ("kind", "Kind", "类型"),
    ("state", "State", "状态"),
    ("state_queued", "queued", "排队中"),
    ("state_running", "running", "运行中"),
    ("state_succeeded", "succeeded", "已完成"),
    ("state_refused", "refused", "已拒绝"),
    ("state_failed", "failed", "失败"),
    ("state_cancelled", "cancelled", "已取消"),
    ("created_at", "Created", "创建时间"),
    (
        "job_pending",
        "The job is in progress; this page refreshes itself every second.",
        "作业进行中，本页每秒自动刷新。",
    ),
    ("refresh", "Refresh", "刷新"),
    (
        "dry_run_result",
        "Dry run: cost and expected intervals",
        "试运行：成本与预计区间",
    ),
    ("would_cost", "Running it would spend", "正式运行将花费"),
    ("mode", "mode", "模式"),
    (
        "selection_threshold",
        "groups need a noisy unit count of at least",
        "分组所需的加噪主体数下限",
    ),
    ("epsilon_split", "ε split", "ε 分配"),
    ("aggregate", "Aggregate", "聚合"),
    ("statistic", "Statistic", "统计量"),
    ("noise_scale", "Noise scale", "噪声尺度"),
    ("ci_half_width", "95% interval half-width", "95% 区间半宽"),
    (
        "dry_run_note",
        "A dry run reads no data and spends no budget.",
        "试运行不读取数据，也不消耗预算。",
    ),
    ("released_result", "Released result", "发布结果"),
    ("spent", "Spent", "已花费"),
    (
        "chart_caption",
        "bars are the released values, whiskers their 95% intervals.",
        "柱为发布值，须线为其 95% 置信区间。",
    ),
    (
        "released_table",
        "Released table; each noisy number with its 95% interval",
        "发布表；每个加噪数值附 95% 区间",
    ),
    ("suppressed", "Groups withheld", "被抑制的分组"),
    ("rounded_to", "rounded to a multiple of", "取整到"),
    ("withheld", "withheld by", "被规则抑制"),
    ("sql", "SQL", "SQL"),
    (
        "sql_hint",
        "Aggregates only (COUNT, SUM, AVG …) over the columns your agreement covers.",
        "仅限聚合查询（COUNT、SUM、AVG 等），且仅限协议覆盖的字段。",
    ),
    ("epsilon_to_spend", "ε to spend", "本次花费的 ε"),
    (
        "epsilon_to_spend_hint",
        "Optional; empty means the owners' per-query cap.",
        "可选；留空则使用数据提供方规定的单次上限。",
    ),
    ("dry_run", "Dry run (free)", "试运行（不花费预算）"),
    ("trial", "Trial on samples (free)", "在样本数据上试跑（不花费预算）"),
    (
        "trial_result",
        "Trial on the public sample data",
        "公开样本数据上的试跑",
    ),
    (
        "trial_note",
        "Exact values on the public DP samples, not the real data; nothing was charged. Samples read:",
        "以下为公开差分隐私样本上的精确值，并非真实数据；未花费预算。所读样本：",
    ),
    ("run", "Run", "运行"),
    (
        "kind_sql_job",
        "SQL (a module, if attached, gives it row functions)",
        "SQL（如附模块，则作为 SQL 的行函数）",
    ),
    (
        "kind_analysis_job",
        "WebAssembly analysis of the rows the SQL selects (module required)",
        "对 SQL 选出的行做 WebAssembly 分析（须附模块）",
    ),
    (
        "wasm_module",
        "WebAssembly module (optional for SQL)",
        "WebAssembly 模块（SQL 作业可不附）",
    ),
    (
        "wasm_module_hint",
        "A .wasm file built with the guest SDK; it is checked before it runs. Attach it again for each job.",
        "使用 guest SDK 构建的 .wasm 文件，运行前先经检查。每个作业需重新附加。",
    ),
    (
        "policy_help",
        "The policy is checked with every other policy before it is installed; it is recorded in the ledger and applies to jobs that start afterwards.",
        "规则在安装前与其他所有规则一起校验；安装记入账本，对此后开始的作业生效。",
    ),
    ("policy_file", "Policy file (TOML)", "规则文件（TOML）"),
    ("install_policy", "Check and install", "校验并安装"),
    (
        "typical_queries",
        "Typical queries for the what-if view",
        "用于预演的典型查询",
    ),
    (
        "what_if_hint",
        "One a line, at most {n}. They run on your own data under the policy in force and under the text above; nothing is installed, charged or released to anyone else.",
        "每行一条，最多 {n} 条。分别在现行规则和上方规则文本下对本方数据运行；不安装、不计费，结果不向任何其他人提供。",
    ),
    ("what_if", "What if? (preview)", "预演效果"),
    ("what_if_result", "What the draft would change", "规则草案的影响"),
    (
        "what_if_owner_only",
        "Shown to you, the data owner, only: these numbers come from your data and are never shown to applicants.",
        "仅向数据提供方本人显示：这些数字来自本方数据，不会向申请人显示。",
    ),
    ("query", "Query", "查询"),
    ("policy_in_force", "Policy in force", "现行规则"),
    ("policy_draft", "Draft", "草案"),
    ("refused", "refused", "拒绝"),
    ("values_released", "values released", "发布数值"),
    ("values_withheld", "values withheld", "抑制数值"),
    ("groups_suppressed", "groups suppressed", "被抑制分组"),
    ("mean_half_width", "mean 95% interval half-width", "95% 区间平均半宽"),
    ("datasets_and_suspension", "Datasets and suspension", "数据集与中止开放"),
    ("open_for_jobs", "open for jobs", "正常开放"),
    ("action", "Action", "操作"),
    ("accounts", "Accounts", "账户"),
    ("account_id", "Account id", "账户名"),
    ("role", "Role", "角色"),
    (
        "provider_for_owner",
        "Provider (data owners only)",
        "数据提供方编号（仅数据提供方账户）",
    ),
    ("create_account", "Create account", "创建账户"),
    (
        "token_shown_once",
        "The new account's token, shown only once:",
        "新账户的令牌（仅显示一次）：",
    ),
    ("verification", "Verification", "校验"),
    ("ledger_intact", "The hash chain is intact", "哈希链完整"),
    (
        "ledger_broken",
        "The ledger is broken at entry",
        "账本在以下条目处损坏：",
    ),
    ("entries", "entries", "条"),
    ("head", "head", "链头"),
    ("database_check", "Database file check", "数据库文件校验"),
    ("latest_entries", "Latest entries", "最新条目"),
    ("time", "Time", "时间"),
    ("actor", "Actor", "操作者"),
    ("event", "Event", "事件"),
    ("details", "Details", "详情"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_exists_in_both_languages_once() {
        let mut keys = std::collections::BTreeSet::new();
        for (key, en, zh) in STRINGS {
            assert!(keys.insert(*key), "`{key}` twice");
            assert!(!en.is_empty() && !zh.is_empty(), "`{key}` lacks a language");
        }
        assert_eq!(Lang::Zh.text("sign_in"), "登录");
        assert_eq!(Lang::En.text("sign_in"), "Sign in");
    }

    #[test]
    fn language_from_cookie_then_browser() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_LANGUAGE, "fr-FR, en-GB;q=0.8".parse().expect("header"));
        assert_eq!(Lang::of(&headers), Lang::En);
        headers.insert(header::COOKIE, "sbx_lang=zh".parse().expect("header"));
        assert_eq!(Lang::of(&headers), Lang::Zh);
        assert_eq!(Lang::of(&HeaderMap::new()), Lang::Zh);
    }
}
