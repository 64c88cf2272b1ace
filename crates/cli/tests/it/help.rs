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
        "login",
        "logout",
        "whoami",
        "orgs",
        "members",
        "invites",
        "keys",
        "receipts",
        "ledger",
        "datasets",
        "verify",
        "completions",
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

/// `completions` prints a script generated from the command line itself: it names the commands
/// (a new one appears without editing anything), and an unknown shell is a usage error.
#[test]
fn completions_are_generated_for_each_shell() {
    let run = |shell: &str| {
        Command::new(env!("CARGO_BIN_EXE_defendable"))
            .args(["completions", shell])
            .env_remove("DEFENDABLE_API")
            .env_remove("DEFENDABLE_ORG")
            .output()
            .expect("runs")
    };
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(shell);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).expect("utf8");
        for word in ["receipts", "verify", "datasets", "completions", "json"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let out = run("tcsh");
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}
