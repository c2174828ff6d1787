//! The `[desensitize]` table: valid rules compile, describe and round-trip;
//! each malformed rule is an error naming the column and its line.

use super::{assert_has, shipped_catalog, shipped_policy_sources};
use crate::{DateUnit, Desensitization, Policy, PolicyErrors, PolicySet, PublicKey, parse_policy, to_toml};
use sandbox_model::DatasetId;

/// The shipped policies with `table` appended to `file`'s policy (in place
/// of its own `[desensitize]` table, which comes last); returns the set and
/// the 1-based line where `table` starts.
pub(super) fn with_rules(file: &str, table: &str) -> (Result<PolicySet, PolicyErrors>, usize) {
    let mut sources = shipped_policy_sources();
    let (_, text) = sources.iter_mut().find(|(f, _)| f == file).expect("file");
    // The shipped table (last in the file) is replaced by `table`.
    let kept = text.split("\n[desensitize]").next().unwrap_or(text);
    let text_without = kept.strip_suffix('\n').unwrap_or(kept).to_string();
    let first = text_without.lines().count() + 1;
    *text = format!("{text_without}\n{table}");
    (PolicySet::from_sources(&sources, &shipped_catalog()), first)
}

fn clinic(set: &PolicySet) -> &Policy {
    let id: DatasetId = "health.clinic_visits".parse().expect("id");
    set.get(&id).expect("clinic")
}

#[test]
fn rules_compile_onto_their_columns_and_round_trip() {
    let table = "[desensitize]\nage = { band = 10 }\ncost = { bands = [0, 100, 1000.5] }\n\
                 district = { truncate_chars = 2 }\nsex = { mask_keep_last = 1 }\n";
    let (set, _) = with_rules("health.clinic_visits.toml", table);
    let set = set.unwrap_or_else(|e| panic!("{e}"));
    let p = clinic(&set);
    let rule = |c: &str| p.column(c).expect("column").desensitize.clone();
    assert_eq!(rule("age"), Desensitization::band(10));
    assert_eq!(rule("cost"), Some(Desensitization::Bands(vec![0.0, 100.0, 1000.5])));
    assert_eq!(rule("district"), Some(Desensitization::TruncateChars(2)));
    assert_eq!(rule("sex"), Some(Desensitization::MaskKeepLast(1)));
    assert_eq!(rule("diagnosis_chapter"), None);

    // Public keys: the owner's keys stay (they describe the stored values);
    // the released set is the generalized one, deduplicated.
    let district = p.column("district").expect("district");
    assert_eq!(district.public_keys.as_ref().map(Vec::len), Some(16));
    let released = district.released_public_keys().expect("keys");
    assert_eq!(released[0], PublicKey::Str("黄浦".into()));
    assert!(released.contains(&PublicKey::Str("浦东".into())));
    assert_eq!(released.len(), 16, "{released:?}");
    // `F` and `M` have one character: all stars, one released key.
    let sex = p.column("sex").expect("sex").released_public_keys().expect("keys");
    assert_eq!(sex, [PublicKey::Str("****".into())]);

    // Written back and read again: the same rules.
    let text = to_toml(p);
    let again = parse_policy("again.toml", &text, &shipped_catalog()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again.columns, p.columns);

    // In words.
    let catalog = shipped_catalog();
    let words = p.describe(catalog.get(&p.dataset).expect("entry"));
    let line = |c: &str| {
        words
            .iter()
            .find(|l| l.starts_with(&format!("{c}: ")))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        line("age").contains("desensitized: every job, released row and sample sees it generalized to bands of width 10 (a value shows as its band's lower bound: 30 for 30–39)"),
        "{words:#?}"
    );
    assert!(
        line("cost").contains(
            "desensitized: every job (before clamping to its bounds) and sample reads it generalized to the bands starting at 0, 100, 1000.5"
        ),
        "{words:#?}"
    );
    assert!(
        line("district").contains("truncated to its first 2 characters"),
        "{words:#?}"
    );
    assert!(
        line("sex").contains("masked: ***, then only its last character"),
        "{words:#?}"
    );
    assert!(!line("diagnosis_chapter").contains("desensitized"), "{words:#?}");
}

#[test]
fn dates_generalize_to_month_or_year() {
    let (set, _) = with_rules(
        "gov.legal_entities.toml",
        "[desensitize]\nfounded = { truncate_to = \"year\" }\n",
    );
    let set = set.unwrap_or_else(|e| panic!("{e}"));
    let id: DatasetId = "gov.legal_entities".parse().expect("id");
    let p = set.get(&id).expect("policy");
    assert_eq!(
        p.column("founded").expect("founded").desensitize,
        Some(Desensitization::TruncateDate(DateUnit::Year))
    );
}

#[test]
fn malformed_rules_name_the_column_and_the_line() {
    // (rules after `[desensitize]`, field, message part); each case is one line.
    let cases: &[(&str, &str, &str)] = &[
        (
            "district = { band = 5 }",
            "desensitize.district.band",
            "`band` needs an int64 column; `district` is utf8",
        ),
        (
            "age = { truncate_chars = 2 }",
            "desensitize.age.truncate_chars",
            "`truncate_chars` needs a text (utf8) column; `age` is int64",
        ),
        (
            "age = { truncate_to = \"month\" }",
            "desensitize.age.truncate_to",
            "`truncate_to` needs a date column; `age` is int64",
        ),
        (
            "cost = { bands = [0, 1000, 500] }",
            "desensitize.cost.bands[2]",
            "the band edges of `cost` must be strictly increasing: 500 follows 1000",
        ),
        (
            "cost = { bands = [0, 0] }",
            "desensitize.cost.bands[1]",
            "strictly increasing",
        ),
        (
            "cost = { bands = [100] }",
            "desensitize.cost.bands",
            "the bands of `cost` need 2 to 256 edges",
        ),
        (
            "cost = { bands = [0, inf] }",
            "desensitize.cost.bands[1]",
            "must be finite",
        ),
        (
            "age = { bands = [0, 10.5, 20] }",
            "desensitize.age.bands[1]",
            "`age` is an int64 column: its band edges must be whole numbers",
        ),
        (
            "age = { band = 2.5 }",
            "desensitize.age.band",
            "the band width of `age` must be a whole number from 1 to 1e15, got 2.5",
        ),
        (
            "age = { band = 0 }",
            "desensitize.age.band",
            "the band width of `age` must be a whole number from 1 to 1e15, got 0",
        ),
        (
            "age = { band = 1e16 }",
            "desensitize.age.band",
            "the band width of `age` must be a whole number from 1 to 1e15",
        ),
        (
            "cost = { band = 10 }",
            "desensitize.cost.band",
            "`band` needs an int64 column; `cost` is float64, whose fixed-width bands cannot be computed exactly: \
             give the band edges instead, e.g. `cost = { bands = [0, 100, 200, 500] }`",
        ),
        (
            "cost = { bands = [0, 1e16] }",
            "desensitize.cost.bands[1]",
            "must be finite and within ±1e15",
        ),
        ("salary = { band = 5 }", "desensitize.salary", "unknown column `salary`"),
        (
            "person_id = { mask_keep_first = 1 }",
            "desensitize.person_id",
            "`person_id` is an identifier, privacy unit or join key, which is never released at all",
        ),
        (
            "visit_date = { truncate_to = \"month\" }",
            "desensitize.visit_date",
            "`visit_date` is sensitive",
        ),
        (
            "age = { band = 5, bands = [0, 10] }",
            "desensitize.age",
            "`age` has 2 rules (band, bands); give exactly one",
        ),
        ("age = {}", "desensitize.age", "give `age` one rule"),
        (
            "sex = { mask_keep_first = 0 }",
            "desensitize.sex.mask_keep_first",
            "`mask_keep_first` of `sex` is a number of characters, 1 to 1000, got 0",
        ),
        (
            "district = { mask_keep_last = 5000 }",
            "desensitize.district.mask_keep_last",
            "1 to 1000, got 5000",
        ),
    ];
    for (rules, field, message) in cases {
        let (set, first) = with_rules("health.clinic_visits.toml", &format!("[desensitize]\n{rules}\n"));
        let errors = match set {
            Ok(_) => panic!("accepted: {rules}"),
            Err(e) => e,
        };
        assert_has(&errors, field, first + 1, message);
    }
    // A misspelt rule is an unknown key, not silently no rule.
    let (set, _) = with_rules("health.clinic_visits.toml", "[desensitize]\nage = { round = 5 }\n");
    let Err(errors) = set else { panic!("accepted") };
    assert!(errors.to_string().contains("unknown field `round`"), "{errors}");

    let (set, first) = with_rules(
        "gov.legal_entities.toml",
        "[desensitize]\nfounded = { truncate_to = \"week\" }\n",
    );
    let Err(errors) = set else { panic!("accepted") };
    assert_has(
        &errors,
        "desensitize.founded.truncate_to",
        first + 1,
        "`founded` can be truncated to \"month\" or \"year\", not \"week\"",
    );
}

#[test]
fn the_shipped_clinic_policy_releases_ages_in_five_year_bands() {
    let set = PolicySet::from_sources(&shipped_policy_sources(), &shipped_catalog()).unwrap_or_else(|e| panic!("{e}"));
    let p = clinic(&set);
    assert_eq!(p.column("age").expect("age").desensitize, Desensitization::band(5));
    let catalog = shipped_catalog();
    let words = p.describe(catalog.get(&p.dataset).expect("entry"));
    assert!(
        words.iter().any(|l| l.starts_with("age: dimension")
            && l.ends_with("desensitized: every job, released row and sample sees it generalized to bands of width 5 (a value shows as its band's lower bound: 15 for 15–19)")),
        "{words:#?}"
    );
}

/// The effective digest follows the compiled policy, not the file: a
/// comment changes nothing, a rule does.
#[test]
fn the_effective_digest_changes_with_a_rule_and_not_with_a_comment() {
    let sources = shipped_policy_sources();
    let (_, text) = sources
        .iter()
        .find(|(f, _)| f == "health.clinic_visits.toml")
        .expect("file");
    let catalog = shipped_catalog();
    let shipped = parse_policy("c.toml", text, &catalog).expect("parses");
    let commented = parse_policy("c.toml", &format!("# a note\n{text}"), &catalog).expect("parses");
    assert_ne!(commented.digest, shipped.digest);
    assert_eq!(commented.effective_digest(), shipped.effective_digest());
    let (stricter, _) = with_rules(
        "health.clinic_visits.toml",
        "[desensitize]\nage = { band = 5 }\ndistrict = { mask_keep_last = 1 }\n",
    );
    let stricter = stricter.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(clinic(&stricter).effective_digest(), shipped.effective_digest());
}

/// The sample terms change with anything a sample is made from (a rule, a
/// role, a key set, a bound, the `[sample]` table, k, δ) and not with what
/// concerns jobs only (their budgets).
#[test]
fn the_sample_terms_follow_what_a_sample_is_made_from() {
    let sources = shipped_policy_sources();
    let (_, text) = sources
        .iter()
        .find(|(f, _)| f == "health.clinic_visits.toml")
        .expect("file");
    let catalog = shipped_catalog();
    let terms = |t: &str| {
        parse_policy("c.toml", t, &catalog)
            .unwrap_or_else(|e| panic!("{e}"))
            .sample_terms_digest()
    };
    let shipped = terms(text);
    for (what, from, to) in [
        ("a job budget", "epsilon_budget = 5.0", "epsilon_budget = 4.0"),
        ("ε per query", "epsilon_per_query = 0.5", "epsilon_per_query = 0.4"),
        ("WebAssembly jobs", "wasm = false", "wasm = true"),
    ] {
        assert!(text.contains(from), "{from}");
        assert_eq!(
            terms(&text.replacen(from, to, 1)),
            shipped,
            "{what} is not a sample term"
        );
    }
    for (what, from, to) in [
        ("a rule", "age = { band = 5 }", "age = { band = 10 }"),
        (
            "a new rule",
            "age = { band = 5 }",
            "age = { band = 5 }\ndistrict = { mask_keep_last = 1 }",
        ),
        (
            "a role",
            "age = { role = \"dimension\" }",
            "age = { role = \"public\" }",
        ),
        (
            "a key set",
            "public_keys = [\"F\", \"M\"]",
            "public_keys = [\"F\", \"M\", \"X\"]",
        ),
        ("a bound", "bounds = [0.0, 20000.0]", "bounds = [0.0, 30000.0]"),
        ("k", "min_units = 10", "min_units = 11"),
        ("δ", "delta = 1e-7", "delta = 1e-8"),
        ("the sample's ε", "epsilon = 0.5\nfidelity", "epsilon = 0.4\nfidelity"),
    ] {
        assert!(text.contains(from), "{from}");
        assert_ne!(terms(&text.replacen(from, to, 1)), shipped, "{what} is a sample term");
    }
}
