//! The command-line interface changes only on purpose.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_defendable"))
        .args(args)
        .arg("--help")
        .env_remove("DEFENDABLE_API")
        .output()
        .expect("runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn help_snapshots() {
    insta::assert_snapshot!("top", help(&[]));
    insta::assert_snapshot!("verify", help(&["verify"]));
}
