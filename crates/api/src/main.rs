//! `defendable-api`: the server binary. `serve` (the default) runs the API; `check-config`
//! prints the configuration report; `migrate` applies migrations and exits.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use defendable_api::{boot, telemetry, Application};
use defendable_config::{inventory, Config, ConfigError, Env};

/// mimalloc instead of the system allocator: glibc's malloc and free were about 12% of the
/// server's CPU on the receipt list (issue 14's profile). Resident memory after the benchmark's
/// load rose from about 24 to 44 MiB, within the 64 MiB goal (`cargo xtask bench http` prints
/// RSS).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "defendable-api", version, about = "The Defendable API server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print the configuration report and the redacted inventory; exit non-zero when the
    /// configuration would refuse to boot.
    CheckConfig,
    /// Apply database migrations and exit.
    Migrate,
    /// Print a new LEDGER_SIGNING_KEY (Ed25519, PKCS#8, base64url), its public key and, under
    /// LEDGER_NAME, the vkey to publish out of band (docs/receipts.md, release notes).
    GenerateSigningKey,
}

fn main() -> ExitCode {
    defendable_store::install_crypto_provider();
    let cli = Cli::parse();
    let env = Env::from_process();
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config(&env),
        Command::Serve => run(&env, false),
        Command::Migrate => run(&env, true),
        Command::GenerateSigningKey => generate_signing_key(&env),
    }
}

#[allow(clippy::print_stdout)]
fn generate_signing_key(env: &Env) -> ExitCode {
    match defendable_ledger::SigningKey::generate() {
        Ok((key, pkcs8)) => {
            println!("LEDGER_SIGNING_KEY={pkcs8}");
            println!(
                "# public key {} (kid {}); after a rotation, add it to LEDGER_SIGNING_KEYS_PREVIOUS",
                key.public_key().public_key,
                key.public_key().kid
            );
            match env
                .get("LEDGER_NAME")
                .map(defendable_ledger::LedgerName::parse)
            {
                Some(Ok(name)) => println!(
                    "# vkey {}; publish it in docs/receipts.md and the release notes",
                    defendable_ledger::note::vkey(&name, &key.raw_public())
                ),
                Some(Err(e)) => println!("# no vkey: {e}"),
                None => println!("# set LEDGER_NAME to also print the vkey to publish"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn check_config(env: &Env) -> ExitCode {
    let result = Config::load(env);
    let code = match &result {
        Ok((config, warnings)) => {
            println!(
                "configuration OK ({})",
                if config.app_env.is_production() {
                    "production"
                } else {
                    "development"
                }
            );
            if !warnings.is_empty() {
                println!("production rules not met (warnings in development):");
                for w in warnings {
                    println!("  - {w}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    };
    println!("\ninventory (secrets shown as fingerprints only):");
    for row in inventory(env) {
        let shown = match (row.set, &row.value, &row.fingerprint) {
            (false, _, _) => "unset".to_owned(),
            (true, Some(v), _) => v.clone(),
            (true, None, Some(fp)) => format!("set (fingerprint {fp})"),
            (true, None, None) => "set".to_owned(),
        };
        println!("  {:<32} {shown}", row.name);
    }
    code
}

fn run(env: &Env, migrate_only: bool) -> ExitCode {
    let (config, telemetry) = match Config::load(env) {
        Ok((config, warnings)) => {
            let telemetry = telemetry::init(&config);
            for w in &warnings {
                tracing::warn!(var = w.var, fix = %w.fix, "production rule not met (development continues): {}", w.message);
            }
            (config, telemetry)
        }
        Err(e @ (ConfigError::Invalid(_) | ConfigError::ProductionRefused(_))) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match actix_web::rt::System::new().block_on(serve(config, migrate_only)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "server failed");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

async fn serve(mut config: Config, migrate_only: bool) -> anyhow::Result<()> {
    defendable_boot::dev_secrets(&mut config)?;
    let (deps, cluster) = boot::prepare(&config).await?;
    let pool = deps.pool.clone();
    let result = if migrate_only {
        tracing::info!("migrations applied");
        Ok(())
    } else {
        listen(config, deps).await
    };
    // Close our connections first, so stopping the cluster breaks none of them; the cluster is
    // stopped on every exit path, a failed bind included.
    pool.close();
    if let Some(cluster) = cluster {
        tracing::info!("stopping the development PostgreSQL cluster");
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
    }
    tracing::info!("stopped");
    result
}

async fn listen(config: Config, deps: defendable_api::Dependencies) -> anyhow::Result<()> {
    // A socket handed down by the process that started this one (systemd socket activation,
    // `LISTEN_FDS`; the release drill does the same) is used as it is; else BIND_ADDR is bound.
    let app = match listenfd::ListenFd::from_env().take_tcp_listener(0)? {
        Some(listener) => {
            tracing::info!(address = %listener.local_addr()?, "listening on a socket handed down (LISTEN_FDS)");
            Application::build_on(config, deps, listener)?
        }
        None => {
            let ip = config.bind_addr.ip();
            let app = Application::build(config, deps)?;
            tracing::info!(port = app.port(), "listening on http://{ip}:{}", app.port());
            app
        }
    };
    app.run_until_stopped().await?;
    Ok(())
}
