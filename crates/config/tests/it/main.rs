//! Integration tests for defendable-config: boot rules, parsing, docs drift and the inventory.

mod boot_rules;
mod docs;
