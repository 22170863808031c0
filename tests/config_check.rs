//! Golden tests of `vigil check`: every malformed config in `tests/config/bad/` prints
//! exactly its `.expected` text (each problem as file:line:col) and exits 2; every
//! config in `tests/config/good/`, and the shipped example, prints `ok` and exits 0.
//!
//! To accept new output after a deliberate change: `UPDATE_GOLDEN=1 cargo test --test
//! config_check`, then read the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["check", "--config"])
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // What the shipped alerts/routing.yaml needs from the environment.
        .env(
            "VIGIL_SNS_CRITICAL_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:vigil-critical",
        )
        .env(
            "VIGIL_SNS_WARNING_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:vigil-warning",
        )
        .env("VIGIL_HEARTBEAT_URL", "https://hc.example.com/ping/x")
        .output()
        .expect("running vigil check")
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| Path::new(dir).join(p.file_name().unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn every_malformed_config_is_reported_with_its_position_and_exit_2() {
    let files = yaml_files("tests/config/bad");
    assert!(files.len() >= 15, "only {} malformed configs", files.len());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for file in files {
        let out = check(&file);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let expected_path = file.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &stdout).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if out.status.code() != Some(2) {
            failures.push(format!(
                "{}: exit {:?}, expected 2",
                file.display(),
                out.status.code()
            ));
        }
        if stdout != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{stdout}",
                file.display()
            ));
        }
        let prefix = format!("{}:", file.display());
        for line in stdout.lines() {
            // A problem in a rule file the config names carries the rule file's path.
            let position = line.split_once(".yaml:").and_then(|(_, rest)| {
                let mut parts = rest.splitn(3, ':');
                let l: u32 = parts.next()?.parse().ok()?;
                let c: u32 = parts.next()?.parse().ok()?;
                Some((l, c))
            });
            let file_level = line.starts_with(&format!("{prefix} no probes"));
            if position.is_none() && !file_level {
                failures.push(format!(
                    "{}: line without file:line:col: {line}",
                    file.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn good_configs_and_the_shipped_example_are_ok() {
    let mut files = yaml_files("tests/config/good");
    files.push(PathBuf::from("vigil.example.yaml"));
    for file in files {
        let out = check(&file);
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).as_ref()
            ),
            (Some(0), "ok\n"),
            "{}",
            file.display()
        );
    }
}

#[test]
fn an_unreadable_file_is_exit_2_with_the_reason() {
    let out = check(Path::new("tests/config/no-such-file.yaml"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tests/config/no-such-file.yaml: cannot read the config file: No such file or directory (os error 2)\n"
    );
}

#[test]
fn version_is_printed() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("vigil {}\n", env!("CARGO_PKG_VERSION"))
    );
}
