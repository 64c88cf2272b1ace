//! The `defendable` command-line client: everything a member does through the API, for
//! operators, CI pipelines and auditors, plus what only a client can do — verify receipts
//! without trusting the server ([`verify`]) and download datasets checked against the catalog's
//! BLAKE3 digest ([`download`]).
//!
//! `main.rs` parses arguments and prints; [`commands::run`] does the work and returns an
//! [`Output`] (JSON for `--json`, text otherwise) or an [`Exit`] naming its exit code.

pub mod cli;
pub mod client;
pub mod commands;
pub mod credentials;
pub mod download;
pub mod monitor;
pub mod output;
pub mod sso;
pub mod trust;
pub mod verify;

pub use verify::{
    check_projection, parse_evidence, verify_v1, verify_v2, Evidence, Failure, Verified,
};

/// Exit code for a usage error: bad arguments, or a request the server refused as invalid.
pub const EXIT_USAGE: i32 = 2;
/// Exit code for an authentication error: no token, an expired or revoked one, or not allowed.
pub const EXIT_AUTH: i32 = 3;
/// Exit code for a verification failure (a receipt, a chain, a checkpoint or a download digest).
pub const EXIT_VERIFY: i32 = 4;
/// Exit code for a server or network error: worth retrying later.
pub const EXIT_SERVER: i32 = 5;
/// Exit code for a limit: a rate limit or the daily dataset quota (retry after the time given).
pub const EXIT_LIMIT: i32 = 6;

/// A failure: the exit code and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// One of the `EXIT_*` codes.
    pub code: i32,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl Exit {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Exit {
        Exit {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// An authentication error.
    pub fn auth(message: impl Into<String>) -> Exit {
        Exit {
            code: EXIT_AUTH,
            message: message.into(),
        }
    }

    /// A verification failure.
    pub fn verify(message: impl Into<String>) -> Exit {
        Exit {
            code: EXIT_VERIFY,
            message: message.into(),
        }
    }

    /// A server or network error.
    pub fn server(message: impl Into<String>) -> Exit {
        Exit {
            code: EXIT_SERVER,
            message: message.into(),
        }
    }

    /// A local file could not be read or written.
    pub fn io(what: &std::path::Path, e: std::io::Error) -> Exit {
        Exit::usage(format!("{}: {e}", what.display()))
    }
}

/// What a command produced: a JSON value for `--json` and a text for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Printed with `--json` (one line).
    pub json: serde_json::Value,
    /// Printed otherwise.
    pub human: String,
}

impl Output {
    /// An output whose text is `human`.
    pub fn new(json: serde_json::Value, human: impl Into<String>) -> Output {
        Output {
            json,
            human: human.into(),
        }
    }

    /// An output of a typed response, printed as its JSON with `--json`.
    pub fn of<T: serde::Serialize>(value: &T, human: impl Into<String>) -> Output {
        Output::new(
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
            human,
        )
    }
}

/// Makes ring the process's TLS crypto provider, once (reqwest is built without a provider of
/// its own, so the whole workspace uses ring; the server does the same through
/// `defendable_store::install_crypto_provider`).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
