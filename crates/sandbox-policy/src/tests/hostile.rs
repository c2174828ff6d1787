//! Hostile input: anything may be in a file; the answer is an error, never
//! a panic or a hang.

use super::{shipped_catalog, shipped_policy_sources};
use crate::{PolicySet, parse_catalog_entry, parse_policy};

fn rejected(text: &str) -> String {
    let catalog = shipped_catalog();
    match parse_policy("h.toml", text, &catalog) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => {
            assert!(!e.is_empty());
            e.to_string()
        }
    }
}

fn utility() -> String {
    shipped_policy_sources()
        .into_iter()
        .find(|(f, _)| f == "gov.utility_usage.toml")
        .expect("utility policy")
        .1
}

#[test]
fn empty_and_blank_files() {
    for text in ["", "\n\n", "# only a comment\n", "   "] {
        let report = rejected(text);
        assert!(report.contains("missing field"), "{report}");
        assert!(parse_catalog_entry("c.toml", text).is_err());
    }
}

#[test]
fn huge_numbers() {
    let u = utility();
    for (from, to) in [
        ("min_units = 10", "min_units = 99999999999999999999999999"),
        ("min_units = 10", "min_units = -9223372036854775808"),
        ("max_groups_per_unit = 24", "max_groups_per_unit = 9223372036854775807"),
        ("epsilon_per_query = 1.0", "epsilon_per_query = 1e400"),
        ("[0.0, 500000.0]", "[-1e308, 1e400]"),
        // Finite, but beyond what the store and the grid account for.
        ("epsilon_budget = 10.0", "epsilon_budget = 1.7976931348623157e308"),
        ("[0.0, 500000.0]", "[-1e308, 1e308]"),
    ] {
        let text = u.replacen(from, to, 1);
        assert_ne!(text, u);
        rejected(&text);
    }
    // Large but within every rule: accepted, not a panic.
    let catalog = shipped_catalog();
    let text = u
        .replacen("epsilon_budget = 10.0", "epsilon_budget = 10000.0", 1)
        .replacen("[0.0, 500000.0]", "[-1e15, 1e15]", 1);
    assert!(parse_policy("h.toml", &text, &catalog).is_ok());
}

#[test]
fn nan_and_infinities() {
    let u = utility();
    for (from, to) in [
        ("epsilon_per_query = 1.0", "epsilon_per_query = nan"),
        ("epsilon_per_query = 1.0", "epsilon_per_query = -nan"),
        ("delta = 1e-6", "delta = nan"),
        ("epsilon_budget = 10.0", "epsilon_budget = nan"),
        ("[0.0, 500000.0]", "[nan, 1.0]"),
        ("[0.0, 500000.0]", "[-inf, inf]"),
        ("min_units = 10", "min_units = nan"),
    ] {
        let text = u.replacen(from, to, 1);
        assert_ne!(text, u);
        rejected(&text);
    }
    let with_rounding = u.replacen("min_units = 10", "min_units = 10\nrounding_base = nan", 1);
    assert!(rejected(&with_rounding).contains("release.rounding_base"));
    let with_dominance = u.replacen(
        "min_units = 10",
        "min_units = 10\ndominance = { n = 1, percent = nan }",
        1,
    );
    assert!(rejected(&with_dominance).contains("release.dominance.percent"));
}

#[test]
fn binary_garbage() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in [1, 7, 64, 1000, 20_000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        rejected(&text);
        assert!(parse_catalog_entry("c.toml", &text).is_err());
    }
    rejected("\0\0\0\u{1}\u{7f}");
    rejected("\u{feff}dataset = \"gov.utility_usage\"\n\u{202e}");
}

#[test]
fn non_utf8_files_in_a_directory() {
    let catalog = shipped_catalog();
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in shipped_policy_sources() {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    std::fs::write(dir.path().join("zz.toml"), b"dataset = \"\xff\xfe\"\n").expect("write");
    let errors = PolicySet::load_dir(dir.path(), &catalog).expect_err("not UTF-8");
    assert_eq!(errors.len(), 1, "{errors}");
    assert!(errors.0[0].message.contains("not UTF-8"));
}

#[test]
fn deeply_nested_values_and_tables() {
    let depth = 100_000;
    let arrays = format!("dataset = {}{}", "[".repeat(depth), "]".repeat(depth));
    rejected(&arrays);
    let inline = format!("dataset = {}1{}", "{ a = ".repeat(depth), " }".repeat(depth));
    rejected(&inline);
    let dotted = format!("[{}]\nx = 1", vec!["a"; depth].join("."));
    rejected(&dotted);
    let keys = format!("{} = 1", vec!["a"; depth].join("."));
    rejected(&keys);
    // Nesting where the policy expects a list of values.
    let u = utility();
    let text = u.replacen(
        "public_keys = [",
        &format!("public_keys = [{}{} ,", "[".repeat(500), "]".repeat(500)),
        1,
    );
    rejected(&text);
}

#[test]
fn every_prefix_of_a_policy_is_handled() {
    let u = utility();
    let catalog = shipped_catalog();
    for (i, _) in u.char_indices() {
        // Some prefixes happen to be complete policies; none may panic.
        let _ = parse_policy("prefix.toml", &u[..i], &catalog);
    }
}

#[test]
fn every_single_byte_deletion_is_handled() {
    let u = utility();
    let catalog = shipped_catalog();
    for (i, c) in u.char_indices().step_by(3) {
        let text = format!("{}{}", &u[..i], &u[i + c.len_utf8()..]);
        let _ = parse_policy("cut.toml", &text, &catalog);
    }
}
