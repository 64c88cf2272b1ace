//! Integration tests for defendable-store against a real PostgreSQL.

mod audit;
mod loader;
mod migrations;
mod ratelimit;
