//! Logs written by earlier versions keep loading.

use studio_tests::Studio;

fn copy_dir(source: &std::path::Path, target: &std::path::Path) {
    std::fs::create_dir_all(target).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &target.join(entry.file_name()));
        } else {
            std::fs::copy(&path, target.join(entry.file_name())).unwrap();
        }
    }
}

fn studio_with_fixture() -> Studio {
    let mut studio = Studio::new();
    studio.env("TZ", "UTC");
    let fixture = studio_tests::repository().join("tests/fixtures/log-v1/db");
    copy_dir(&fixture, &studio.studio_home().join("db"));
    studio
}

#[test]
fn version_one_log_loads() {
    let studio = studio_with_fixture();
    let listing: serde_json::Value =
        serde_json::from_str(&studio.ok(&["runs", "list", "all", "--json"])).unwrap();
    let experiments = listing.as_array().unwrap();
    assert_eq!(experiments.len(), 3);

    let finished = studio.experiment("fixture_finished");
    assert_eq!(finished["status"], "finished");
    assert_eq!(finished["project"], "demo");
    assert_eq!(finished["tags"]["note"], "kept");
    assert!(!finished["pip_freeze"].as_array().unwrap().is_empty());
    let failed = studio.experiment("fixture_failed");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["exit_code"], 2);
    let stopped = studio.experiment("fixture_stopped");
    assert_eq!(stopped["status"], "stopped");
    assert_eq!(stopped["signal"], 15);

    insta::assert_snapshot!("version_one_table", studio.ok(&["runs", "list", "all"]));
    insta::assert_snapshot!(
        "version_one_projects",
        studio.ok(&["runs", "list", "projects"])
    );
}

#[test]
fn new_events_append_after_old_ones() {
    let studio = studio_with_fixture();
    studio.ok(&["runs", "tag", "fixture_failed", "checked=yes"]);
    studio.ok(&["daemon", "stop"]);
    let record = studio.experiment("fixture_failed");
    assert_eq!(record["tags"]["checked"], "yes");
    assert_eq!(record["status"], "failed");
    let status = studio.ok(&["daemon", "status"]);
    assert!(status.contains("experiments: 3"), "{status}");
}
