//! DP sample datasets made from a registered version: the schema, fresh
//! keys, no real identifier or pseudonym anywhere in a sample, the charge
//! before anything is computed, and the switch to a new sample.

use super::*;
use crate::sample::{SAMPLE_CSV, SAMPLE_MANIFEST, SAMPLE_PARQUET};

const SAMPLE_TABLE: &str = r#"
[sample]
epsilon = 2.0
fidelity_epsilon = 0.5
epsilon_budget = 10.0
max_rows_per_unit = 5
pairs = [["district", "fine"]]
"#;

/// Registers 3000 rows with a policy allowing samples; the entry, the
/// policy and the stored version's directory.
fn registered(f: &Fixture) -> (sandbox_model::Dataset, sandbox_policy::Policy, PathBuf) {
    let file = f.file("inspections.csv", csv_text(3000).as_bytes());
    let policy_text = format!("{POLICY}{SAMPLE_TABLE}");
    f.register_with(&file, ENTRY, &policy_text, options())
        .expect("register");
    let catalog = sandbox_policy::load_catalog_dir(&f.layout.catalog_dir()).expect("catalog");
    let id: sandbox_model::DatasetId = "gov.inspections".parse().expect("id");
    let entry = catalog.get(&id).expect("entry").clone();
    let text = std::fs::read_to_string(f.layout.policies_dir().join("gov.inspections.toml")).expect("policy");
    let policy = sandbox_policy::parse_policy("gov.inspections.toml", &text, &catalog).expect("parse");
    let dir = stored_file(f).parent().expect("dir").to_path_buf();
    (entry, policy, dir)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_sample_has_the_schema_and_fresh_keys_and_no_real_key_appears_in_it() {
    let f = Fixture::new();
    let (entry, policy, data) = registered(&f);
    let mut charged = Vec::new();
    let manifest = make_sample(
        &f.layout,
        &entry,
        &policy,
        &data,
        Some(1),
        &SampleOptions { seed: Some([3; 32]) },
        |cost| {
            charged.push(cost.clone());
            Ok(())
        },
    )
    .expect("sample");
    assert_eq!(charged.len(), 1);
    assert_eq!((charged[0].epsilon_model, charged[0].epsilon_fidelity), (2.0, 0.5));
    assert_eq!(charged[0].sample_id, manifest.sample_id);
    // About the data's size: 3000 rows, noisy totals.
    assert!((2500..=3500).contains(&manifest.rows), "{} rows", manifest.rows);
    let (dir, current) = current_sample(&f.layout, &entry.id).expect("read").expect("current");
    // (JSON keeps floats to their shortest form; compare what identifies it.)
    assert_eq!(
        (&current.sample_id, current.rows, &current.files),
        (&manifest.sample_id, manifest.rows, &manifest.files)
    );

    // The schema: the catalog's columns, in order, with their types.
    let csv = std::fs::read_to_string(dir.join(SAMPLE_CSV)).expect("csv");
    let header = csv.lines().next().expect("header");
    let names: Vec<&str> = entry.fields.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(header, names.join(","));
    assert_eq!(csv.lines().count() as u64, manifest.rows + 1);
    let batches = read_parquet(&dir.join(SAMPLE_PARQUET));
    let schema = batches[0].schema();
    for (field, declared) in schema.fields().iter().zip(&entry.fields) {
        assert_eq!(field.name(), &declared.name);
        assert_eq!(field.data_type(), &arrow_type(declared.data_type));
    }
    assert_eq!(batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(), manifest.rows);

    // Keys are fresh: 32 hex characters, all different, none a real
    // pseudonym; no raw code or stored pseudonym is in any sample file.
    let keys = column_strings(&dir.join(SAMPLE_PARQUET), "credit_code");
    assert!(
        keys.iter()
            .all(|k| k.len() == PSEUDONYM_HEX && k.bytes().all(|b| b.is_ascii_hexdigit()))
    );
    let distinct: std::collections::HashSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len());
    let real = column_strings(&stored_file(&f), "credit_code");
    assert_eq!(real.len(), 3000);
    let mut needles: Vec<String> = (0..3000).map(code).collect();
    needles.extend(real.iter().cloned());
    let files = files_under(&f.root.join("samples"));
    assert!(files.len() >= 4, "{files:?}");
    for p in &files {
        let bytes = std::fs::read(p).expect("read");
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "a real key is in {}",
                p.display()
            );
        }
    }

    // Measures stay within their public bounds; districts are public keys.
    let text_values = column_strings(&dir.join(SAMPLE_PARQUET), "district");
    assert!(
        text_values
            .iter()
            .all(|d| ["浦东新区", "黄浦区", "徐汇区", ""].contains(&d.as_str()))
    );
    use arrow::array::AsArray;
    for b in &batches {
        let fine = b
            .column_by_name("fine")
            .expect("fine")
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert!(fine.iter().flatten().all(|x| (0.0..=100.0).contains(&x)));
        let staff = b
            .column_by_name("staff")
            .expect("staff")
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert!(staff.iter().flatten().all(|x| (0..=10).contains(&x)));
    }
    // The report covers every modeled column and says how ε was split.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(SAMPLE_MANIFEST)).expect("json")).expect("parse");
    assert_eq!(report["columns"].as_array().expect("columns").len(), 5);
    assert_eq!(manifest.model_split.len(), 1 + 4 + 1, "{:?}", manifest.model_split);
    assert_eq!(manifest.fidelity_split.len(), 4 + 1);
    let district = &manifest.columns[1];
    assert!(district.total_variation.expect("tvd") < 0.15, "{district:?}");
}

#[test]
fn a_refused_charge_or_no_consent_computes_and_writes_nothing() {
    let f = Fixture::new();
    let (entry, policy, data) = registered(&f);
    let refused = make_sample(
        &f.layout,
        &entry,
        &policy,
        &data,
        Some(1),
        &SampleOptions::default(),
        |_| Err("sample budget exhausted".into()),
    );
    assert!(
        matches!(refused, Err(IngestError::Record(ref m)) if m.contains("exhausted")),
        "{refused:?}"
    );
    assert!(current_sample(&f.layout, &entry.id).expect("read").is_none());
    let leftovers = files_under(&f.root.join("samples"));
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let mut no_consent = policy.clone();
    no_consent.sample = None;
    let mut called = false;
    let e = make_sample(
        &f.layout,
        &entry,
        &no_consent,
        &data,
        Some(1),
        &SampleOptions::default(),
        |_| {
            called = true;
            Ok(())
        },
    )
    .expect_err("no [sample]");
    assert!(e.to_string().contains("no-sample-consent"), "{e}");
    assert!(!called, "nothing is charged without consent");
}

#[test]
fn a_new_sample_replaces_the_served_one() {
    let f = Fixture::new();
    let (entry, policy, data) = registered(&f);
    let first = make_sample(
        &f.layout,
        &entry,
        &policy,
        &data,
        Some(1),
        &SampleOptions::default(),
        |_| Ok(()),
    )
    .expect("first");
    let second = make_sample(
        &f.layout,
        &entry,
        &policy,
        &data,
        Some(1),
        &SampleOptions::default(),
        |_| Ok(()),
    )
    .expect("second");
    assert_ne!(first.sample_id, second.sample_id);
    let (dir, current) = current_sample(&f.layout, &entry.id).expect("read").expect("current");
    assert_eq!(current.sample_id, second.sample_id);
    assert!(dir.ends_with(&second.sample_id));
    assert!(!dir.parent().expect("parent").join(&first.sample_id).exists());
}

/// Red team: rows whose privacy unit is NULL belong to no known unit. The
/// SQL path drops them (`__u IS NOT NULL`); a sample counted each as a unit
/// of its own, so one enterprise whose code is missing on many rows pushed
/// its rare value (here an inspection month no coded enterprise has) past
/// partition selection, with every one of its rows kept.
#[test]
fn rows_without_a_privacy_unit_are_not_units_of_their_own() {
    let f = Fixture::new();
    let mut text = csv_text(3000);
    for i in 0..300 {
        text.push_str(&format!(",浦东新区,2019-12-2{},{}.5,1\n", i % 10, i % 50));
    }
    let file = f.file("inspections.csv", text.as_bytes());
    f.register_with(&file, ENTRY, &format!("{POLICY}{SAMPLE_TABLE}"), options())
        .expect("register");
    let catalog = sandbox_policy::load_catalog_dir(&f.layout.catalog_dir()).expect("catalog");
    let id: sandbox_model::DatasetId = "gov.inspections".parse().expect("id");
    let entry = catalog.get(&id).expect("entry").clone();
    let policy_text = std::fs::read_to_string(f.layout.policies_dir().join("gov.inspections.toml")).expect("policy");
    let policy = sandbox_policy::parse_policy("gov.inspections.toml", &policy_text, &catalog).expect("parse");
    let data = stored_file(&f).parent().expect("dir").to_path_buf();
    let manifest = make_sample(
        &f.layout,
        &entry,
        &policy,
        &data,
        Some(1),
        &SampleOptions { seed: Some([5; 32]) },
        |_| Ok(()),
    )
    .expect("sample");
    let inspected = manifest
        .columns
        .iter()
        .find(|c| c.name == "inspected")
        .expect("inspected");
    assert!(
        !inspected.categories.is_empty(),
        "the coded months are released: {inspected:?}"
    );
    assert!(
        !inspected.categories.iter().any(|c| c.contains("2019-12")),
        "a month only unit-less rows have was released: {:?}",
        inspected.categories
    );
}

/// Red team: the released values of a column chosen by DP selection were
/// listed (and coded) in the order they first appear in the stored file, so
/// the manifest's order told which value the first rows hold: the value of
/// the file's first row was listed first, a fact about one unit that no
/// noise covers. The same rows in another order must give the same
/// categories in the same order.
#[test]
fn released_values_do_not_reveal_the_order_of_the_rows() {
    let categories = |reverse: bool| {
        let f = Fixture::new();
        let text = csv_text(3000);
        let mut lines: Vec<&str> = text.lines().collect();
        let header = lines.remove(0);
        if reverse {
            lines.reverse();
        }
        let body = format!("{header}\n{}\n", lines.join("\n"));
        let file = f.file("inspections.csv", body.as_bytes());
        f.register_with(&file, ENTRY, &format!("{POLICY}{SAMPLE_TABLE}"), options())
            .expect("register");
        let catalog = sandbox_policy::load_catalog_dir(&f.layout.catalog_dir()).expect("catalog");
        let id: sandbox_model::DatasetId = "gov.inspections".parse().expect("id");
        let entry = catalog.get(&id).expect("entry").clone();
        let policy_text =
            std::fs::read_to_string(f.layout.policies_dir().join("gov.inspections.toml")).expect("policy");
        let policy = sandbox_policy::parse_policy("gov.inspections.toml", &policy_text, &catalog).expect("parse");
        let data = stored_file(&f).parent().expect("dir").to_path_buf();
        let manifest = make_sample(
            &f.layout,
            &entry,
            &policy,
            &data,
            Some(1),
            &SampleOptions { seed: Some([7; 32]) },
            |_| Ok(()),
        )
        .expect("sample");
        manifest
            .columns
            .iter()
            .find(|c| c.name == "inspected")
            .expect("inspected")
            .categories
            .clone()
    };
    let (forward, backward) = (categories(false), categories(true));
    assert!(forward.len() > 3, "{forward:?}");
    assert_eq!(forward, backward, "the categories' order depends on the rows' order");
}

/// Desensitization rules hold in samples: the marginals are over the
/// coarsened domain (the released categories are coarsened values) and
/// every value the sample shows is coarsened, including the values drawn
/// within a measure's bin or a date's month.
#[test]
fn a_sample_shows_only_desensitized_values() {
    let f = Fixture::new();
    let file = f.file("inspections.csv", csv_text(3000).as_bytes());
    let rules = "\n[desensitize]\ninspected = { truncate_to = \"year\" }\ndistrict = { truncate_chars = 2 }\n\
                 fine = { bands = [0, 10, 50] }\nstaff = { band = 5 }\n";
    f.register_with(&file, ENTRY, &format!("{POLICY}{SAMPLE_TABLE}{rules}"), options())
        .expect("register");
    let catalog = sandbox_policy::load_catalog_dir(&f.layout.catalog_dir()).expect("catalog");
    let id: sandbox_model::DatasetId = "gov.inspections".parse().expect("id");
    let entry = catalog.get(&id).expect("entry").clone();
    let policy_text = std::fs::read_to_string(f.layout.policies_dir().join("gov.inspections.toml")).expect("policy");
    let policy = sandbox_policy::parse_policy("gov.inspections.toml", &policy_text, &catalog).expect("parse");
    assert!(policy.column("staff").expect("staff").desensitize.is_some());
    let data = stored_file(&f).parent().expect("dir").to_path_buf();
    let manifest = make_sample(
        &f.layout,
        &entry,
        &policy,
        &data,
        Some(1),
        &SampleOptions { seed: Some([9; 32]) },
        |_| Ok(()),
    )
    .expect("sample");
    let (dir, _) = current_sample(&f.layout, &entry.id).expect("read").expect("current");

    // The released categories: the coarsened key set and coarsened dates
    // (the stored dates span nine months of 2024; their year is one value).
    let categories = |name: &str| {
        manifest
            .columns
            .iter()
            .find(|c| c.name == name)
            .expect("column")
            .categories
            .clone()
    };
    let district = categories("district");
    for k in ["浦东", "黄浦", "徐汇"] {
        assert!(district.contains(&k.to_string()), "{district:?}");
    }
    assert!(
        district.iter().all(|c| c.chars().count() == 2 || c.starts_with('(')),
        "{district:?}"
    );
    let inspected = categories("inspected");
    assert!(inspected.contains(&"2024-01".to_string()), "{inspected:?}");
    assert!(
        inspected.iter().all(|c| c == "2024-01" || c.starts_with('(')),
        "{inspected:?}"
    );

    // Every value in the sample is coarsened.
    let csv = std::fs::read_to_string(dir.join(SAMPLE_CSV)).expect("csv");
    let mut rows = 0;
    let (mut fines, mut staffs) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for line in csv.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 5, "{line}");
        assert!(["浦东", "黄浦", "徐汇", ""].contains(&cells[1]), "{line}");
        assert!(["2024-01-01", ""].contains(&cells[2]), "{line}");
        if !cells[3].is_empty() {
            fines.insert(cells[3].to_string());
        }
        if !cells[4].is_empty() {
            staffs.insert(cells[4].to_string());
        }
        rows += 1;
    }
    assert!(rows > 1000, "{rows} rows");
    assert!(
        fines.iter().all(|x| ["0", "10", "50"].contains(&x.as_str())),
        "{fines:?}"
    );
    assert!(fines.len() >= 2, "{fines:?}");
    assert!(
        staffs.iter().all(|x| ["0", "5", "10"].contains(&x.as_str())),
        "{staffs:?}"
    );
    assert!(staffs.len() >= 2, "{staffs:?}");
}

/// A sample records the sample terms of the policy it was made under; it
/// matches that policy, not one with a rule added later, and a manifest
/// from before the record (no `policy_terms`) matches none.
#[test]
fn a_sample_is_made_under_its_policys_terms_only() {
    let f = Fixture::new();
    let (entry, policy, data) = registered(&f);
    let manifest = make_sample(
        &f.layout,
        &entry,
        &policy,
        &data,
        Some(1),
        &SampleOptions { seed: Some([4; 32]) },
        |_| Ok(()),
    )
    .expect("sample");
    assert_eq!(manifest.policy_terms, Some(policy.sample_terms_digest()));
    let (_, stored) = current_sample(&f.layout, &entry.id).expect("read").expect("current");
    assert!(stored.made_under(&policy));

    let catalog = sandbox_policy::load_catalog_dir(&f.layout.catalog_dir()).expect("catalog");
    let text = std::fs::read_to_string(f.layout.policies_dir().join("gov.inspections.toml")).expect("policy");
    let stricter = format!("{text}\n[desensitize]\ndistrict = {{ truncate_chars = 2 }}\n");
    let stricter = sandbox_policy::parse_policy("gov.inspections.toml", &stricter, &catalog).expect("parse");
    assert!(!stored.made_under(&stricter), "a rule added since withdraws the sample");

    let mut old = serde_json::to_value(&stored).expect("json");
    old.as_object_mut().expect("object").remove("policy_terms");
    let old: crate::SampleManifest = serde_json::from_value(old).expect("an old manifest still reads");
    assert_eq!(old.policy_terms, None);
    assert!(!old.made_under(&policy), "a manifest without terms matches no policy");

    let message = crate::stale_sample_message(&entry.id);
    assert!(
        message.contains("gov.inspections") && message.contains("sandbox sample gov.inspections --generate"),
        "{message}"
    );
}
