//! Integration tests for the `defendable` binary, driven as a user, a CI job and an auditor
//! would drive it.

mod e2e;
mod help;
mod ledger_v2;
mod server;
mod sso;
mod verify;
