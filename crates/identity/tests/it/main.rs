//! Integration tests for defendable-identity: domain parsing and the PostgreSQL operations.

mod domain;
mod flows;
