//! Integration tests of the datasets core on a real PostgreSQL, without HTTP: publishing,
//! the catalog, grants under the daily quota.

mod store;
