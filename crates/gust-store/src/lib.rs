//! Gust's persistence layer.
//!
//! Two stores, both under the server's data directory and both usable without any other
//! service: [`MetaStore`] keeps function metadata in SQLite, [`CodeStore`] keeps deployment
//! packages by content address. [`intake`] turns an untrusted zip into an extracted tree or
//! refuses it without leaving anything behind.

pub mod code;
pub mod intake;
pub mod meta;
pub mod queue;
mod sqlite;
pub mod triggers;

pub use code::{CodeError, CodeStore};
pub use intake::IntakeError;
pub use meta::{MetaStore, StoreError, StoredFunction};
pub use queue::{DeadLetter, NewEvent, QueueStore, QueuedEvent};
pub use triggers::{StoredRule, TriggerStore};
