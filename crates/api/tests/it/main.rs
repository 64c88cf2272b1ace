//! Integration tests for the API shell: real server on a free port, real PostgreSQL.

mod abuse_http;
mod architecture;
mod boot;
mod browser;
mod contract;
mod datasets_http;
mod edge_http;
mod faults;
mod helpers;
mod http_shell;
mod identity_http;
mod ledger_http;
mod logs;
mod matrix;
mod openapi;
mod otlp;
mod outsider;
mod pages_http;
mod pool_http;
mod prepared;
mod proofs_http;
mod scim_http;
mod smtp;
mod sso_http;
