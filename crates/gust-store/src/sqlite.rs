//! How every Gust database is opened: write-ahead log, writes durable before they are
//! acknowledged (`synchronous=FULL`), and a schema version this Gust understands.

use std::path::Path;

use rusqlite::Connection;

use crate::StoreError;

/// A connection with Gust's durability settings.
pub(crate) fn connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// A connection to a database whose schema (`PRAGMA user_version`) is at most `supported`,
/// with foreign keys enforced. The caller creates its tables, then records the version with
/// [`set_version`].
pub(crate) fn open_versioned(path: &Path, supported: i64) -> Result<Connection, StoreError> {
    let conn = connection(path)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > supported {
        return Err(StoreError::NewerSchema { found, supported });
    }
    Ok(conn)
}

pub(crate) fn set_version(conn: &Connection, version: i64) -> Result<(), StoreError> {
    conn.pragma_update(None, "user_version", version)?;
    Ok(())
}
