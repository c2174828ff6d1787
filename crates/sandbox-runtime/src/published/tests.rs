//! Publication, pinning and withdrawal on a `file://` store.

use super::*;

fn id() -> DatasetId {
    "gov.inspections".parse().expect("id")
}

/// A version directory with two Parquet files, a manifest and a hidden file.
fn version_dir(root: &std::path::Path) -> std::path::PathBuf {
    let dir = root.join("local/v000002");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("part-00000.parquet"), b"PAR1 first").expect("part");
    std::fs::write(dir.join("part-00001.parquet"), b"PAR1 second").expect("part");
    std::fs::write(dir.join("manifest.json"), b"{}").expect("manifest");
    std::fs::write(dir.join(".partial.parquet"), b"x").expect("hidden");
    dir
}

fn tables(root: &std::path::Path) -> PublishedTables {
    let store = root.join("store");
    std::fs::create_dir_all(&store).expect("mkdir");
    PublishedTables::open(&format!("file://{}", store.display())).expect("open")
}

const SOURCE: &str = "registered v000002 sha256 of its data";

#[tokio::test]
async fn a_published_version_is_pinned_by_its_record() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = version_dir(tmp.path());
    let tables = tables(tmp.path());
    let pin = |v: Option<&'static str>, source: &'static str| {
        let tables = tables.clone();
        async move { tables.pin(&id(), v, source).await }
    };
    assert_eq!(
        pin(Some("v000002"), SOURCE).await.expect("read"),
        None,
        "not yet published"
    );
    let record = tables
        .publish(&dir, &id(), Some("v000002"), SOURCE)
        .await
        .expect("published");
    let names: Vec<&str> = record.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["manifest.json", "part-00000.parquet", "part-00001.parquet"]);
    let pinned = pin(Some("v000002"), SOURCE).await.expect("read").expect("published");
    assert!(
        pinned.location.ends_with("/gov/inspections/v000002/"),
        "{}",
        pinned.location
    );
    let urls: Vec<&str> = pinned.files.iter().map(|p| p.url.as_str()).collect();
    assert_eq!(urls.len(), 2, "only the Parquet files are read: {urls:?}");
    assert!(urls[0].starts_with("file:///") && urls[0].ends_with("/v000002/part-00000.parquet"));
    assert!(pinned.files.iter().all(|p| p.e_tag.is_some() && p.changed_ns.is_some()));
    // Another version, or the same version name holding other data (a
    // registration after a withdrawal, another data directory): not this.
    assert_eq!(pin(Some("v000001"), SOURCE).await.expect("read"), None);
    assert_eq!(pin(None, SOURCE).await.expect("read"), None);
    assert_eq!(
        pin(Some("v000002"), "registered v000002, other data")
            .await
            .expect("read"),
        None
    );
    assert_eq!(pin(Some("v000002"), "").await.expect("read"), None);
}

#[tokio::test]
async fn an_object_changed_after_publication_is_refused_and_a_cut_short_one_unread() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = version_dir(tmp.path());
    let tables = tables(tmp.path());
    tables
        .publish(&dir, &id(), Some("v000002"), SOURCE)
        .await
        .expect("published");
    let part = tmp.path().join("store/gov/inspections/v000002/part-00001.parquet");
    // Same size, other bytes, written in place, the modification time
    // set back: a file system's ETag stays, its change time moves.
    let modified = std::fs::metadata(&part).and_then(|m| m.modified()).expect("mtime");
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&part, b"PAR1 SECOND").expect("overwrite");
    std::fs::File::options()
        .write(true)
        .open(&part)
        .and_then(|f| f.set_modified(modified))
        .expect("mtime back");
    let e = tables.pin(&id(), Some("v000002"), SOURCE).await.expect_err("refused");
    assert!(e.to_string().contains("changed after it was published"), "{e}");
    assert!(!e.to_string().contains("SECOND"), "nothing of the contents: {e}");
    // Publishing again makes it readable; removing the record (an upload
    // cut short before it) makes it unpublished, never half-read.
    tables
        .publish(&dir, &id(), Some("v000002"), SOURCE)
        .await
        .expect("published again");
    assert!(
        tables
            .pin(&id(), Some("v000002"), SOURCE)
            .await
            .expect("read")
            .is_some()
    );
    std::fs::remove_file(tmp.path().join("store/gov/inspections/v000002/_published.json")).expect("rm");
    assert_eq!(tables.pin(&id(), Some("v000002"), SOURCE).await.expect("read"), None);
    // A record naming another version is refused, not followed.
    tables
        .publish(&dir, &id(), Some("v000002"), SOURCE)
        .await
        .expect("published");
    let moved = tmp.path().join("store/gov/inspections/v000003");
    std::fs::create_dir_all(&moved).expect("mkdir");
    std::fs::copy(
        tmp.path().join("store/gov/inspections/v000002/_published.json"),
        moved.join("_published.json"),
    )
    .expect("copy");
    let e = tables.pin(&id(), Some("v000003"), SOURCE).await.expect_err("refused");
    assert!(e.to_string().contains("records gov.inspections v000002"), "{e}");
}

/// Only names that are one key segment as written are published or
/// pinned: others would be read at another key than the one checked.
#[tokio::test]
async fn names_outside_the_plain_set_are_neither_published_nor_pinned() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = version_dir(tmp.path());
    std::fs::write(dir.join("part~1.parquet"), b"PAR1 x").expect("part");
    let tables = tables(tmp.path());
    let e = tables
        .publish(&dir, &id(), Some("v000002"), SOURCE)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("part~1.parquet"), "{e}");
    std::fs::remove_file(dir.join("part~1.parquet")).expect("rm");
    tables
        .publish(&dir, &id(), Some("v000002"), SOURCE)
        .await
        .expect("published");
    let record_path = tmp.path().join("store/gov/inspections/v000002/_published.json");
    for name in ["part%7E1.parquet", "../other/part-00000.parquet", ".hidden.parquet"] {
        let mut record: Publication =
            serde_json::from_slice(&std::fs::read(&record_path).expect("record")).expect("json");
        record.files[1].name = name.to_string();
        std::fs::write(&record_path, serde_json::to_vec(&record).expect("json")).expect("write");
        let e = tables.pin(&id(), Some("v000002"), SOURCE).await.expect_err(name);
        assert!(e.to_string().contains("lists a file named"), "{e}");
    }
}

#[tokio::test]
async fn registering_removes_the_generated_copy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = version_dir(tmp.path());
    let tables = tables(tmp.path());
    tables.publish(&dir, &id(), None, "generated").await.expect("published");
    let generated = tmp.path().join("store/gov/inspections/part-00000.parquet");
    assert!(generated.exists());
    tables
        .publish(&dir, &id(), Some("v000002"), SOURCE)
        .await
        .expect("published");
    assert!(
        !generated.exists(),
        "the generated copy is gone once a version is published"
    );
    assert!(tmp.path().join("store/gov/inspections/CURRENT").exists());
    assert!(tables.check_reachable(std::time::Duration::from_secs(5)).is_ok());
}

#[tokio::test]
async fn a_withdrawal_removes_every_published_object() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = version_dir(tmp.path());
    let tables = tables(tmp.path());
    tables
        .publish(&dir, &id(), Some("v000002"), SOURCE)
        .await
        .expect("published");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("store/gov/inspections/CURRENT")).expect("CURRENT"),
        "v000002\n"
    );
    let removed = tables.withdraw(&id()).await.expect("withdrawn");
    assert_eq!(removed, 5, "three files, the record and CURRENT");
    assert_eq!(tables.pin(&id(), Some("v000002"), SOURCE).await.expect("read"), None);
    assert_eq!(tables.withdraw(&id()).await.expect("again"), 0);
}

#[test]
fn a_location_is_s3_or_file_and_never_holds_credentials() {
    for bad in [
        "http://store/x",
        "hdfs://nn/x",
        "not a url",
        "s3://key:secret@bucket/x",
        "s3://bucket/x?token=t",
    ] {
        let e = PublishedTables::open(bad).expect_err(bad).to_string();
        assert!(!e.contains("secret") && !e.contains("token=t"), "{e}");
    }
    for (bad, says) in [
        ("s3:///x", "name the bucket"),
        ("file://host/x", "absolute path on this machine"),
        ("file:///no/such/dir/anywhere", "no such directory"),
    ] {
        let e = PublishedTables::open(bad).expect_err(bad).to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
    let tables = PublishedTables::open("s3://open-data/sandbox").expect("s3");
    assert_eq!(tables.root().as_str(), "s3://open-data/sandbox/");
    assert_eq!(
        tables.url_of(&tables.version_prefix(&id(), Some("v000001")).join("part-00000.parquet")),
        "s3://open-data/sandbox/gov/inspections/v000001/part-00000.parquet"
    );
}
