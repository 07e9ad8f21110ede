//! The command line as an operator meets it.

use std::process::Command;

fn firstline(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_firstline"))
        .args(args)
        .current_dir(dir)
        .env_remove("FIRSTLINE_CONFIG")
        .output()
        .expect("run firstline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_without_a_file_explains_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = firstline(dir.path(), &["check-config"]);
    assert_eq!(code, 0);
    assert!(out.contains("configuration OK (embedded default)"), "{out}");
    assert!(out.contains("sqlite://firstline.db"));
    assert!(out.contains("127.0.0.1:8080"));
}

#[test]
fn check_config_names_every_bad_key_with_its_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[server]\nlisten = \"everywhere\"\n\n[incidents]\ndefault_severity = \"P9\"\n",
    )
    .unwrap();
    let (code, _, err) = firstline(dir.path(), &["check-config", "--config", "bad.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(err.contains("server.listen (line 2)"), "{err}");
    assert!(
        err.contains("incidents.default_severity (line 5): \"P9\" is not P1, P2 or P3"),
        "{err}"
    );
}

#[test]
fn incident_commands_on_a_fresh_directory_say_there_is_no_database_yet() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = firstline(dir.path(), &["incident", "list"]);
    assert_ne!(code, 0);
    assert!(err.contains("no database at firstline.db"), "{err}");
    assert!(
        !dir.path().join("firstline.db").exists(),
        "a read must not create a database"
    );
}

#[test]
fn migrate_then_incident_list_and_export_work_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = firstline(dir.path(), &["migrate"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("migrations applied"), "{out}");
    let (code, out, _) = firstline(dir.path(), &["incident", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("no open incidents"), "{out}");
    let (code, _, err) = firstline(
        dir.path(),
        &["incident", "export", "INC-4", "--format", "md"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("INC-4 does not exist"), "{err}");
}

#[test]
fn the_shipped_example_configuration_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/firstline.toml");
    let (code, out, err) = firstline(
        dir.path(),
        &["check-config", "--config", example.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration OK"), "{out}");
}
