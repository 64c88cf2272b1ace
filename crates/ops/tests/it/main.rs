//! Operations against a real PostgreSQL: backups, restore drills, rotation receipts, the packet.

mod docs;
mod ops;
mod release;
mod storage;
