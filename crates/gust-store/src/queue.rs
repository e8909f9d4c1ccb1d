//! The durable queue of asynchronous invocations, and the dead letters of those that failed.
//!
//! All writes go through one writer thread that commits whatever has accumulated in one
//! transaction (group commit): an event is acknowledged only once the transaction holding it is
//! on disk (`synchronous=FULL`), and a burst of events shares one fsync. Reads use their own
//! connection (WAL lets them run beside the writer).

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use rusqlite::{Connection, OptionalExtension, params};

use crate::meta::StoreError;

/// Most commands applied in one transaction.
const BATCH_MAX: usize = 1024;

/// An event waiting to run (or running).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    pub id: i64,
    pub request_id: String,
    pub function: String,
    /// Version or alias the caller invoked, if any.
    pub qualifier: Option<String>,
    pub received_ms: u64,
    /// Invocations made so far that ended in a function error.
    pub attempts: u32,
    pub next_attempt_ms: u64,
}

/// A new event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub request_id: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Vec<u8>,
    pub received_ms: u64,
}

/// An event that failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub request_id: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub received_ms: u64,
    pub failed_ms: u64,
    pub attempts: u32,
    /// Why it failed: `RetriesExhausted`, `EventAgeExceeded`, `FunctionNotFound`.
    pub condition: String,
    /// The last response (function error payload or platform error), if any.
    pub response: Option<String>,
}

/// Called with the ids of inserted events once they are durable (or with the failure).
pub type InsertDone = Box<dyn FnOnce(Result<Vec<i64>, String>) + Send>;

enum Command {
    Insert(Vec<NewEvent>, InsertDone),
    Reschedule {
        id: i64,
        attempts: u32,
        next_attempt_ms: u64,
    },
    Complete(i64),
    DeadLetter {
        id: i64,
        failed_ms: u64,
        attempts: u32,
        condition: String,
        response: Option<String>,
    },
    Redrive(i64, u64, mpsc::Sender<Result<Option<QueuedEvent>, String>>),
    Forget(i64, mpsc::Sender<Result<bool, String>>),
    Flush(mpsc::Sender<()>),
}

/// Handle on the queue database; cheap to clone.
#[derive(Clone)]
pub struct QueueStore {
    commands: mpsc::Sender<Command>,
    reader: Arc<Mutex<Connection>>,
}

fn row_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedEvent> {
    Ok(QueuedEvent {
        id: r.get(0)?,
        request_id: r.get(1)?,
        function: r.get(2)?,
        qualifier: r.get(3)?,
        received_ms: r.get::<_, i64>(4)? as u64,
        attempts: r.get::<_, i64>(5)? as u32,
        next_attempt_ms: r.get::<_, i64>(6)? as u64,
    })
}

fn row_dead_letter(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: r.get(0)?,
        request_id: r.get(1)?,
        function: r.get(2)?,
        qualifier: r.get(3)?,
        received_ms: r.get::<_, i64>(4)? as u64,
        failed_ms: r.get::<_, i64>(5)? as u64,
        attempts: r.get::<_, i64>(6)? as u32,
        condition: r.get(7)?,
        response: r.get(8)?,
    })
}

const EVENT_COLUMNS: &str =
    "id, request_id, function, qualifier, received_ms, attempts, next_attempt_ms";
const DEAD_COLUMNS: &str =
    "id, request_id, function, qualifier, received_ms, failed_ms, attempts, condition, response";

impl QueueStore {
    /// Opens (creating) the queue database and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let writer = crate::sqlite::connection(path)?;
        writer.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 request_id TEXT NOT NULL,
                 function TEXT NOT NULL,
                 qualifier TEXT,
                 payload BLOB NOT NULL,
                 received_ms INTEGER NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_attempt_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS dead_letters (
                 id INTEGER PRIMARY KEY,
                 request_id TEXT NOT NULL,
                 function TEXT NOT NULL,
                 qualifier TEXT,
                 payload BLOB NOT NULL,
                 received_ms INTEGER NOT NULL,
                 failed_ms INTEGER NOT NULL,
                 attempts INTEGER NOT NULL,
                 condition TEXT NOT NULL,
                 response TEXT
             );
             CREATE INDEX IF NOT EXISTS dead_letters_by_function ON dead_letters (function);",
        )?;
        let reader = crate::sqlite::connection(path)?;
        let (commands, rx) = mpsc::channel();
        thread::Builder::new()
            .name("gust-queue-writer".into())
            .spawn(move || write_loop(writer, rx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Self {
            commands,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        self.commands
            .send(command)
            .map_err(|_| StoreError::Io("the queue writer has stopped".into()))
    }

    /// Stores events durably and calls `done` with their ids once they are on disk.
    pub fn insert_then(&self, events: Vec<NewEvent>, done: InsertDone) -> Result<(), StoreError> {
        self.send(Command::Insert(events, done))
    }

    /// Stores events durably; returns their ids once they are on disk. Blocking.
    pub fn insert(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, StoreError> {
        let (tx, rx) = mpsc::channel();
        self.insert_then(
            events,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        )?;
        rx.recv()
            .map_err(|_| StoreError::Io("the queue writer has stopped".into()))?
            .map_err(StoreError::Io)
    }

    /// Records a failed attempt and when to try again (durable at the next commit).
    pub fn reschedule(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_ms: u64,
    ) -> Result<(), StoreError> {
        self.send(Command::Reschedule {
            id,
            attempts,
            next_attempt_ms,
        })
    }

    /// Removes a finished event. If Gust dies before this commits, the event runs again: the
    /// queue delivers at least once.
    pub fn complete(&self, id: i64) -> Result<(), StoreError> {
        self.send(Command::Complete(id))
    }

    /// Moves an event to the dead letters.
    pub fn dead_letter(
        &self,
        id: i64,
        failed_ms: u64,
        attempts: u32,
        condition: &str,
        response: Option<String>,
    ) -> Result<(), StoreError> {
        self.send(Command::DeadLetter {
            id,
            failed_ms,
            attempts,
            condition: condition.to_string(),
            response,
        })
    }

    /// Moves a dead letter back into the queue, to run now with fresh attempts. Blocking.
    pub fn redrive(
        &self,
        dead_letter: i64,
        now_ms: u64,
    ) -> Result<Option<QueuedEvent>, StoreError> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Redrive(dead_letter, now_ms, tx))?;
        rx.recv()
            .map_err(|_| StoreError::Io("the queue writer has stopped".into()))?
            .map_err(StoreError::Io)
    }

    /// Deletes a dead letter. Blocking.
    pub fn forget(&self, dead_letter: i64) -> Result<bool, StoreError> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Forget(dead_letter, tx))?;
        rx.recv()
            .map_err(|_| StoreError::Io("the queue writer has stopped".into()))?
            .map_err(StoreError::Io)
    }

    /// Waits until every command sent so far is committed. Blocking.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.send(Command::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Every event still queued, oldest first.
    pub fn pending(&self) -> Result<Vec<QueuedEvent>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY id"))?;
        let rows = stmt.query_map([], row_event)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn payload(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .reader()
            .query_row("SELECT payload FROM events WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn dead_letters(&self, function: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEAD_COLUMNS} FROM dead_letters WHERE ?1 IS NULL OR function = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([function], row_dead_letter)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One dead letter with its payload.
    pub fn dead_letter_with_payload(
        &self,
        id: i64,
    ) -> Result<Option<(DeadLetter, Vec<u8>)>, StoreError> {
        let conn = self.reader();
        Ok(conn
            .query_row(
                &format!("SELECT {DEAD_COLUMNS}, payload FROM dead_letters WHERE id = ?1"),
                [id],
                |r| Ok((row_dead_letter(r)?, r.get::<_, Vec<u8>>(9)?)),
            )
            .optional()?)
    }

    /// Dead letters per function.
    pub fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare("SELECT function, COUNT(*) FROM dead_letters GROUP BY function")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, command: &Command) -> rusqlite::Result<()> {
    match command {
        Command::Reschedule {
            id,
            attempts,
            next_attempt_ms,
        } => {
            tx.execute(
                "UPDATE events SET attempts = ?2, next_attempt_ms = ?3 WHERE id = ?1",
                params![id, attempts, *next_attempt_ms as i64],
            )?;
        }
        Command::Complete(id) => {
            tx.execute("DELETE FROM events WHERE id = ?1", [id])?;
        }
        Command::DeadLetter {
            id,
            failed_ms,
            attempts,
            condition,
            response,
        } => {
            tx.execute(
                "INSERT INTO dead_letters (id, request_id, function, qualifier, payload, received_ms, failed_ms, attempts, condition, response)
                 SELECT id, request_id, function, qualifier, payload, received_ms, ?2, ?3, ?4, ?5 FROM events WHERE id = ?1",
                params![id, *failed_ms as i64, attempts, condition, response],
            )?;
            tx.execute("DELETE FROM events WHERE id = ?1", [id])?;
        }
        Command::Insert(..) | Command::Redrive(..) | Command::Forget(..) | Command::Flush(_) => {}
    }
    Ok(())
}

fn insert(tx: &rusqlite::Transaction<'_>, events: &[NewEvent]) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO events (request_id, function, qualifier, payload, received_ms, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?;
    events
        .iter()
        .map(|e| {
            stmt.execute(params![
                e.request_id,
                e.function,
                e.qualifier,
                e.payload,
                e.received_ms as i64
            ])?;
            Ok(tx.last_insert_rowid())
        })
        .collect()
}

fn redrive(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    now_ms: u64,
) -> rusqlite::Result<Option<QueuedEvent>> {
    let moved = tx.execute(
        "INSERT INTO events (request_id, function, qualifier, payload, received_ms, attempts, next_attempt_ms)
         SELECT request_id, function, qualifier, payload, ?2, 0, ?2 FROM dead_letters WHERE id = ?1",
        params![id, now_ms as i64],
    )?;
    if moved == 0 {
        return Ok(None);
    }
    let new_id = tx.last_insert_rowid();
    tx.execute("DELETE FROM dead_letters WHERE id = ?1", [id])?;
    tx.query_row(
        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"),
        [new_id],
        row_event,
    )
    .optional()
}

/// The writer: takes whatever commands are waiting, applies them in one transaction, commits,
/// then answers the callers who wait for durability.
fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Command>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let result = (|| -> rusqlite::Result<Vec<Option<Reply>>> {
            let tx = conn.transaction()?;
            let mut replies = Vec::with_capacity(batch.len());
            for command in &batch {
                replies.push(match command {
                    Command::Insert(events, _) => Some(Reply::Ids(insert(&tx, events)?)),
                    Command::Redrive(id, now, _) => Some(Reply::Redriven(redrive(&tx, *id, *now)?)),
                    Command::Forget(id, _) => Some(Reply::Forgotten(
                        tx.execute("DELETE FROM dead_letters WHERE id = ?1", [id])? > 0,
                    )),
                    other => {
                        apply(&tx, other)?;
                        None
                    }
                });
            }
            tx.commit()?;
            Ok(replies)
        })();
        match result {
            Ok(replies) => {
                for (command, reply) in batch.into_iter().zip(replies) {
                    match (command, reply) {
                        (Command::Insert(_, done), Some(Reply::Ids(ids))) => done(Ok(ids)),
                        (Command::Redrive(_, _, tx), Some(Reply::Redriven(event))) => {
                            let _ = tx.send(Ok(event));
                        }
                        (Command::Forget(_, tx), Some(Reply::Forgotten(found))) => {
                            let _ = tx.send(Ok(found));
                        }
                        (Command::Flush(tx), _) => {
                            let _ = tx.send(());
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "queue write failed");
                for command in batch {
                    match command {
                        Command::Insert(_, done) => done(Err(e.to_string())),
                        Command::Redrive(_, _, tx) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                        Command::Forget(_, tx) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                        Command::Flush(tx) => {
                            let _ = tx.send(());
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

enum Reply {
    Ids(Vec<i64>),
    Redriven(Option<QueuedEvent>),
    Forgotten(bool),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> NewEvent {
        NewEvent {
            request_id: format!("r{n}"),
            function: "f".into(),
            qualifier: None,
            payload: format!("{{\"n\":{n}}}").into_bytes(),
            received_ms: 1000 + n as u64,
        }
    }

    #[test]
    fn events_survive_reopening_until_completed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        {
            let queue = QueueStore::open(&path).unwrap();
            let ids = queue.insert((0..3).map(event).collect()).unwrap();
            assert_eq!(ids.len(), 3);
            queue.complete(ids[0]).unwrap();
            queue.reschedule(ids[1], 1, 99_999).unwrap();
            queue
                .dead_letter(
                    ids[2],
                    5000,
                    3,
                    "RetriesExhausted",
                    Some("{\"errorMessage\":\"x\"}".into()),
                )
                .unwrap();
            queue.flush();
        }
        let queue = QueueStore::open(&path).unwrap();
        let pending = queue.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].attempts, 1);
        assert_eq!(pending[0].next_attempt_ms, 99_999);
        assert_eq!(queue.payload(pending[0].id).unwrap().unwrap(), b"{\"n\":1}");
        let dead = queue.dead_letters(Some("f")).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].condition, "RetriesExhausted");
        assert_eq!(
            queue.dead_letter_counts().unwrap(),
            vec![("f".to_string(), 1)]
        );
        let (letter, payload) = queue.dead_letter_with_payload(dead[0].id).unwrap().unwrap();
        assert_eq!(letter.attempts, 3);
        assert_eq!(payload, b"{\"n\":2}");

        let back = queue.redrive(dead[0].id, 7000).unwrap().unwrap();
        assert_eq!(back.attempts, 0);
        assert_eq!(back.request_id, "r2");
        assert!(queue.dead_letters(None).unwrap().is_empty());
        assert_eq!(queue.pending().unwrap().len(), 2);
        assert!(queue.redrive(dead[0].id, 7000).unwrap().is_none());
        assert!(!queue.forget(12345).unwrap());
    }
}
