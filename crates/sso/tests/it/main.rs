//! SSO's core against a real PostgreSQL: client secrets sealed under a rotating key, each
//! change's receipt in the organization's chain, and the sign-in's use cases against a real
//! OpenID Provider.

mod login;
mod store;
