//! Durable runs: the journal of every run's hops, calls and outcome, in a SQL store (SQLite
//! embedded, or PostgreSQL shared by several processes), so that a run outlives its process.
//!
//! - rows.rs: what is recorded, one type per table;
//! - store/: opening a store, its schema, reading runs back (resume, `bilayer runs`);
//! - writer.rs: group commit (many runs' entries per transaction), and the effects a commit
//!   releases.

mod rows;
mod store;
mod writer;

pub use rows::{
    BatchRow, CallRow, Entry, HopRow, OutcomeRow, RunRecord, RunRow, RunStatus, RunSummary,
};
pub use store::{JournalError, JournalStore, StoreOptions, SCHEMA_VERSION};
pub use writer::{JournalWriter, Then};
