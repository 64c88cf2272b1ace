//! Integration tests for defendable-store against a real PostgreSQL.

mod audit;
mod migrations;
mod ratelimit;
