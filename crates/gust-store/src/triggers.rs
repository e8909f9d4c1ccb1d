//! Rules, their targets and HTTP routes in SQLite (`triggers.db`), so that schedules and
//! routes survive restarts. Each rule also records the last time it fired: a restart never
//! fires the same tick twice.

use std::path::Path;

use gust_model::events::{Rule, StoredRoute, Target};
use rusqlite::{Connection, params};

use crate::StoreError;

const SCHEMA_VERSION: i64 = 1;

/// A rule as loaded: its targets and its last firing (Unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRule {
    pub rule: Rule,
    pub targets: Vec<Target>,
    pub last_fired: Option<i64>,
}

pub struct TriggerStore {
    conn: Connection,
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain data structures cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt {
        name: name.to_string(),
        source,
    })
}

impl TriggerStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = crate::sqlite::open_versioned(path, SCHEMA_VERSION)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS rules (
                 name TEXT PRIMARY KEY,
                 doc TEXT NOT NULL,
                 last_fired INTEGER
             );
             CREATE TABLE IF NOT EXISTS targets (
                 rule TEXT NOT NULL REFERENCES rules(name) ON DELETE CASCADE,
                 id TEXT NOT NULL,
                 doc TEXT NOT NULL,
                 PRIMARY KEY (rule, id)
             );
             CREATE TABLE IF NOT EXISTS routes (
                 route_key TEXT PRIMARY KEY,
                 doc TEXT NOT NULL
             );",
        )?;
        crate::sqlite::set_version(&conn, SCHEMA_VERSION)?;
        Ok(Self { conn })
    }

    pub fn load_rules(&self) -> Result<Vec<StoredRule>, StoreError> {
        let mut rules = self
            .conn
            .prepare("SELECT name, doc, last_fired FROM rules ORDER BY name")?;
        let mut targets = self
            .conn
            .prepare("SELECT doc FROM targets WHERE rule = ?1 ORDER BY id")?;
        let rows = rules.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, doc, last_fired) = row?;
            let mut rule_targets = Vec::new();
            for t in targets.query_map([&name], |r| r.get::<_, String>(0))? {
                rule_targets.push(from_json(&name, &t?)?);
            }
            out.push(StoredRule {
                rule: from_json(&name, &doc)?,
                targets: rule_targets,
                last_fired,
            });
        }
        Ok(out)
    }

    /// Inserts or replaces a rule, keeping its targets and last firing.
    pub fn put_rule(&mut self, rule: &Rule) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO rules (name, doc) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
            params![rule.name, to_json(rule)],
        )?;
        Ok(())
    }

    pub fn delete_rule(&mut self, name: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM rules WHERE name = ?1", [name])?;
        Ok(())
    }

    pub fn put_targets(&mut self, rule: &str, targets: &[Target]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for target in targets {
            tx.execute(
                "INSERT INTO targets (rule, id, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT (rule, id) DO UPDATE SET doc = excluded.doc",
                params![rule, target.id, to_json(target)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn remove_targets(&mut self, rule: &str, ids: &[String]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for id in ids {
            tx.execute(
                "DELETE FROM targets WHERE rule = ?1 AND id = ?2",
                params![rule, id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a firing before its events are sent: a crash in between loses that tick
    /// rather than sending it twice.
    pub fn set_last_fired(&mut self, rule: &str, at: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE rules SET last_fired = ?2 WHERE name = ?1",
            params![rule, at],
        )?;
        Ok(())
    }

    pub fn load_routes(&self) -> Result<Vec<StoredRoute>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT route_key, doc FROM routes ORDER BY route_key")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (key, doc) = row?;
            out.push(from_json(&key, &doc)?);
        }
        Ok(out)
    }

    pub fn put_route(&mut self, route: &StoredRoute) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO routes (route_key, doc) VALUES (?1, ?2)
             ON CONFLICT (route_key) DO UPDATE SET doc = excluded.doc",
            params![route.route_key, to_json(route)],
        )?;
        Ok(())
    }

    pub fn delete_route(&mut self, route_key: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM routes WHERE route_key = ?1", [route_key])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_targets_and_routes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("triggers.db");
        let rule = Rule {
            name: "r".into(),
            schedule_expression: "rate(1 minute)".into(),
            state: "ENABLED".into(),
            description: None,
            role_arn: None,
            tags: Default::default(),
            anchor: 100,
            active_since: 100,
        };
        let target = Target {
            id: "t".into(),
            arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
            input: Some("{}".into()),
            input_path: None,
            input_transformer: None,
            role_arn: None,
        };
        {
            let mut store = TriggerStore::open(&path).unwrap();
            store.put_rule(&rule).unwrap();
            store
                .put_targets("r", std::slice::from_ref(&target))
                .unwrap();
            store.set_last_fired("r", 160).unwrap();
            store.put_rule(&rule).unwrap();
            store
                .put_route(&StoredRoute {
                    route_key: "GET /x".into(),
                    target: "f".into(),
                    created_ms: 1,
                })
                .unwrap();
        }
        let mut store = TriggerStore::open(&path).unwrap();
        let rules = store.load_rules().unwrap();
        assert_eq!(
            rules,
            vec![StoredRule {
                rule,
                targets: vec![target],
                last_fired: Some(160)
            }]
        );
        assert_eq!(store.load_routes().unwrap().len(), 1);
        store.remove_targets("r", &["t".into()]).unwrap();
        store.delete_rule("r").unwrap();
        store.delete_route("GET /x").unwrap();
        assert!(store.load_rules().unwrap().is_empty());
        assert!(store.load_routes().unwrap().is_empty());
    }
}
