//! The command-line interface changes only on purpose.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_defendable"))
        .args(args)
        .arg("--help")
        .env_remove("DEFENDABLE_API")
        .env_remove("DEFENDABLE_ORG")
        .output()
        .expect("runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn help_snapshots() {
    insta::assert_snapshot!("top", help(&[]));
    for group in [
        "login", "logout", "whoami", "orgs", "members", "invites", "keys", "receipts", "ledger",
        "datasets", "verify",
    ] {
        insta::assert_snapshot!(group, help(&[group]));
    }
    for (group, command) in [
        ("receipts", "record"),
        ("datasets", "download"),
        ("ledger", "export"),
    ] {
        insta::assert_snapshot!(format!("{group}-{command}"), help(&[group, command]));
    }
}
