//! Durable runs: the journal of every run's hops, calls and outcome, in a SQL store (SQLite
//! embedded, or PostgreSQL shared by several processes), so that a run outlives its process.
//!
//! - rows.rs: what is recorded, one type per table;
//! - store/: opening a store, its schema, reading runs back (resume, `bilayer runs`);
//! - writer.rs: group commit (many runs' entries per transaction), and the effects a commit
//!   releases;
//! - run_journal.rs: an agent system's side: the run, hop, call and outcome entries the hop
//!   path appends, and the effects it holds back until their commit ([`RunJournal`]);
//! - resume.rs: a run of an earlier process read back: what it had done, where it goes on.

pub(crate) mod resume;
mod rows;
mod run_journal;
mod store;
mod writer;

pub use rows::{
    BatchRow, CallRow, Entry, HopRow, OutcomeRow, RunRecord, RunRow, RunStatus, RunSummary,
};
pub use run_journal::{unix_ms, RunJournal};
pub use store::{JournalError, JournalStore, StoreOptions, SCHEMA_VERSION};
pub use writer::{JournalWriter, Then};
