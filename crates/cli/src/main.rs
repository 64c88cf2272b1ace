//! `defendable`: the command-line client. Parsing and printing only; the work is in the library.

use std::process::ExitCode;

use clap::Parser;
use defendable_cli::cli::Cli;
use defendable_cli::commands::{run, Context};
use defendable_cli::credentials::TOKEN_VAR;
use defendable_cli::{Exit, Output, EXIT_SERVER};
use serde_json::json;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut ctx = Context {
        api: cli.api.trim_end_matches('/').to_owned(),
        org: cli.org.clone(),
        json,
        env_token: std::env::var(TOKEN_VAR).ok(),
        input: &mut input,
    };
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli, &mut ctx)),
        Err(e) => Err(Exit::server(format!("cannot start: {e}"))),
    };
    finish(json, result)
}

#[allow(clippy::print_stdout)]
fn finish(json: bool, result: Result<Output, Exit>) -> ExitCode {
    match result {
        Ok(out) => {
            if json {
                println!("{}", out.json);
            } else {
                println!("{}", out.human);
            }
            ExitCode::SUCCESS
        }
        Err(Exit { code, message }) => {
            if json {
                println!("{}", json!({ "ok": false, "exit": code, "error": message }));
            } else {
                eprintln!("defendable: {message}");
            }
            ExitCode::from(u8::try_from(code).unwrap_or(EXIT_SERVER as u8))
        }
    }
}
