//! Rebuilds this crate when a migration is added or edited: `refinery::embed_migrations!` reads
//! the directory at compile time, and cargo would otherwise keep the stale embedded set.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
