//! SSO's store against a real PostgreSQL: client secrets sealed under a rotating key, and each
//! change's receipt in the organization's chain.

mod store;
