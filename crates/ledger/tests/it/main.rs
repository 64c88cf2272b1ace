//! Integration tests for defendable-ledger: the RFC 8785 vectors, the contract, checkpoints, and
//! the PostgreSQL store under contention and tampering.

mod bundle_vectors;
mod chain;
mod checkpoints;
mod contract;
mod jcs;
mod notes;
mod tree;
mod tree_store;
mod worked_example;
