//! Integration tests for the `defendable` binary, driven as an auditor would.

mod help;
mod verify;
