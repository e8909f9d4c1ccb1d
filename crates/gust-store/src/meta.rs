//! Function metadata in SQLite.
//!
//! Each version's configuration is kept as one JSON document: the function model grows with
//! every Lambda feature, and a document with serde defaults absorbs new members without a
//! migration per field. Writes are synchronous (`synchronous=FULL`): a function the API has
//! acknowledged survives a crash.

use std::collections::BTreeMap;
use std::path::Path;

use gust_model::code_signing::CodeSigningConfig;
use gust_model::{
    Alias, EventInvokeConfig, FunctionConfig, FunctionUrlConfig, Policy, ProvisionedConfig,
};
use rusqlite::{Connection, OptionalExtension, params};

/// Schema version recorded in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt metadata for function {name}: {source}")]
    Corrupt {
        name: String,
        source: serde_json::Error,
    },
    #[error("database has schema version {found}, newer than this Gust understands ({supported})")]
    NewerSchema { found: i64, supported: i64 },
    #[error("store i/o failure: {0}")]
    Io(String),
}

/// A function with all its stored versions.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFunction {
    pub name: String,
    pub tags: BTreeMap<String, String>,
    /// The number the next published version will get (never reused).
    pub next_version: u64,
    pub versions: Vec<FunctionConfig>,
    pub aliases: Vec<Alias>,
    /// Policies by qualifier (`""` for the unqualified function).
    pub policies: Vec<(String, Policy)>,
    pub event_invoke_configs: Vec<EventInvokeConfig>,
    pub url_configs: Vec<FunctionUrlConfig>,
    /// Reserved concurrency, when set.
    pub reserved_concurrency: Option<u32>,
    /// PutFunctionRecursionConfig's `RecursiveLoop`, when set.
    pub recursive_loop: Option<String>,
    /// The id of the code signing configuration attached to the function, if any.
    pub code_signing_config: Option<String>,
    pub provisioned: Vec<ProvisionedConfig>,
}

pub struct MetaStore {
    conn: Connection,
}

impl MetaStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = crate::sqlite::open_versioned(path, SCHEMA_VERSION)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS functions (
                 name TEXT PRIMARY KEY,
                 tags TEXT NOT NULL DEFAULT '{}',
                 next_version INTEGER NOT NULL DEFAULT 1
             );
             CREATE TABLE IF NOT EXISTS function_versions (
                 name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
                 version TEXT NOT NULL,
                 config TEXT NOT NULL,
                 PRIMARY KEY (name, version)
             );
             CREATE TABLE IF NOT EXISTS aliases (
                 name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
                 alias TEXT NOT NULL,
                 config TEXT NOT NULL,
                 PRIMARY KEY (name, alias)
             );
             CREATE TABLE IF NOT EXISTS event_invoke_configs (
                 name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
                 qualifier TEXT NOT NULL,
                 config TEXT NOT NULL,
                 PRIMARY KEY (name, qualifier)
             );
             CREATE TABLE IF NOT EXISTS policies (
                 name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
                 qualifier TEXT NOT NULL,
                 document TEXT NOT NULL,
                 PRIMARY KEY (name, qualifier)
             );
             CREATE TABLE IF NOT EXISTS reserved_concurrency (
                 name TEXT PRIMARY KEY REFERENCES functions(name) ON DELETE CASCADE,
                 reserved INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS code_signing_configs (
                 id TEXT PRIMARY KEY,
                 config TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS function_code_signing (
                 name TEXT PRIMARY KEY REFERENCES functions(name) ON DELETE CASCADE,
                 config_id TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS recursion_config (
                 name TEXT PRIMARY KEY REFERENCES functions(name) ON DELETE CASCADE,
                 recursive_loop TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS provisioned_concurrency (
                 name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
                 qualifier TEXT NOT NULL,
                 config TEXT NOT NULL,
                 PRIMARY KEY (name, qualifier)
             );
             CREATE TABLE IF NOT EXISTS function_urls (
                 name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
                 qualifier TEXT NOT NULL,
                 config TEXT NOT NULL,
                 PRIMARY KEY (name, qualifier)
             );",
        )?;
        crate::sqlite::set_version(&conn, SCHEMA_VERSION)?;
        Ok(Self { conn })
    }

    /// Every function with its versions, ordered by name.
    pub fn load(&self) -> Result<Vec<StoredFunction>, StoreError> {
        let mut functions = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT name, tags, next_version FROM functions ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut versions = self
            .conn
            .prepare("SELECT config FROM function_versions WHERE name = ?1")?;
        let mut aliases = self
            .conn
            .prepare("SELECT config FROM aliases WHERE name = ?1 ORDER BY alias")?;
        let mut policies = self
            .conn
            .prepare("SELECT qualifier, document FROM policies WHERE name = ?1")?;
        let mut invoke_configs = self
            .conn
            .prepare("SELECT config FROM event_invoke_configs WHERE name = ?1")?;
        let mut reserved = self
            .conn
            .prepare("SELECT reserved FROM reserved_concurrency WHERE name = ?1")?;
        let mut provisioned = self.conn.prepare(
            "SELECT config FROM provisioned_concurrency WHERE name = ?1 ORDER BY qualifier",
        )?;
        let mut recursion = self
            .conn
            .prepare("SELECT recursive_loop FROM recursion_config WHERE name = ?1")?;
        let mut signing = self
            .conn
            .prepare("SELECT config_id FROM function_code_signing WHERE name = ?1")?;
        let mut urls = self
            .conn
            .prepare("SELECT config FROM function_urls WHERE name = ?1 ORDER BY qualifier")?;
        for row in rows {
            let (name, tags, next_version) = row?;
            let corrupt = |source| StoreError::Corrupt {
                name: name.clone(),
                source,
            };
            let tags = serde_json::from_str(&tags).map_err(corrupt)?;
            let mut configs = Vec::new();
            for config in versions.query_map([&name], |r| r.get::<_, String>(0))? {
                configs.push(serde_json::from_str(&config?).map_err(corrupt)?);
            }
            let mut function_aliases = Vec::new();
            for alias in aliases.query_map([&name], |r| r.get::<_, String>(0))? {
                function_aliases.push(serde_json::from_str(&alias?).map_err(corrupt)?);
            }
            let mut function_policies = Vec::new();
            for row in policies.query_map([&name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })? {
                let (qualifier, document) = row?;
                function_policies
                    .push((qualifier, serde_json::from_str(&document).map_err(corrupt)?));
            }
            let mut event_invoke_configs = Vec::new();
            for config in invoke_configs.query_map([&name], |r| r.get::<_, String>(0))? {
                event_invoke_configs.push(serde_json::from_str(&config?).map_err(corrupt)?);
            }
            let mut url_configs = Vec::new();
            for config in urls.query_map([&name], |r| r.get::<_, String>(0))? {
                url_configs.push(serde_json::from_str(&config?).map_err(corrupt)?);
            }
            let reserved_concurrency = reserved
                .query_row([&name], |r| r.get::<_, i64>(0))
                .optional()?
                .map(|n| n.clamp(0, u32::MAX as i64) as u32);
            let recursive_loop = recursion
                .query_row([&name], |r| r.get::<_, String>(0))
                .optional()?;
            let code_signing_config = signing
                .query_row([&name], |r| r.get::<_, String>(0))
                .optional()?;
            let mut provisioned_configs = Vec::new();
            for config in provisioned.query_map([&name], |r| r.get::<_, String>(0))? {
                provisioned_configs.push(serde_json::from_str(&config?).map_err(corrupt)?);
            }
            functions.push(StoredFunction {
                event_invoke_configs,
                url_configs,
                reserved_concurrency,
                recursive_loop,
                code_signing_config,
                provisioned: provisioned_configs,
                name,
                tags,
                next_version: next_version.max(1) as u64,
                versions: configs,
                aliases: function_aliases,
                policies: function_policies,
            });
        }
        Ok(functions)
    }

    /// Creates a function with its `$LATEST` version in one transaction.
    pub fn create(
        &mut self,
        latest: &FunctionConfig,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO functions (name, tags) VALUES (?1, ?2)",
            params![latest.name, to_json(tags)],
        )?;
        tx.execute(
            "INSERT INTO function_versions (name, version, config) VALUES (?1, ?2, ?3)",
            params![latest.name, latest.version, to_json(latest)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Writes (inserting or replacing) one version's configuration.
    pub fn put_version(&mut self, config: &FunctionConfig) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO function_versions (name, version, config) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, version) DO UPDATE SET config = excluded.config",
            params![config.name, config.version, to_json(config)],
        )?;
        Ok(())
    }

    /// Stores a newly published version and advances the function's version counter, in one
    /// transaction: a version number is never handed out twice.
    pub fn publish(
        &mut self,
        version: &FunctionConfig,
        next_version: u64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO function_versions (name, version, config) VALUES (?1, ?2, ?3)",
            params![version.name, version.version, to_json(version)],
        )?;
        tx.execute(
            "UPDATE functions SET next_version = ?2 WHERE name = ?1",
            params![version.name, next_version as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes one published version and its policy. Returns whether it existed.
    pub fn delete_version(&mut self, name: &str, version: &str) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM function_versions WHERE name = ?1 AND version = ?2",
            params![name, version],
        )?;
        tx.execute(
            "DELETE FROM policies WHERE name = ?1 AND qualifier = ?2",
            params![name, version],
        )?;
        tx.execute(
            "DELETE FROM event_invoke_configs WHERE name = ?1 AND qualifier = ?2",
            params![name, version],
        )?;
        tx.execute(
            "DELETE FROM provisioned_concurrency WHERE name = ?1 AND qualifier = ?2",
            params![name, version],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Writes (inserting or replacing) an alias.
    pub fn put_alias(&mut self, alias: &Alias) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO aliases (name, alias, config) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, alias) DO UPDATE SET config = excluded.config",
            params![alias.function, alias.name, to_json(alias)],
        )?;
        Ok(())
    }

    /// Deletes an alias and its policy.
    pub fn delete_alias(&mut self, name: &str, alias: &str) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM aliases WHERE name = ?1 AND alias = ?2",
            params![name, alias],
        )?;
        tx.execute(
            "DELETE FROM policies WHERE name = ?1 AND qualifier = ?2",
            params![name, alias],
        )?;
        tx.execute(
            "DELETE FROM event_invoke_configs WHERE name = ?1 AND qualifier = ?2",
            params![name, alias],
        )?;
        tx.execute(
            "DELETE FROM function_urls WHERE name = ?1 AND qualifier = ?2",
            params![name, alias],
        )?;
        tx.execute(
            "DELETE FROM provisioned_concurrency WHERE name = ?1 AND qualifier = ?2",
            params![name, alias],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Writes (inserting or replacing) an event invoke configuration.
    pub fn put_event_invoke_config(
        &mut self,
        config: &EventInvokeConfig,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO event_invoke_configs (name, qualifier, config) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, qualifier) DO UPDATE SET config = excluded.config",
            params![config.function, config.qualifier, to_json(config)],
        )?;
        Ok(())
    }

    pub fn delete_event_invoke_config(
        &mut self,
        name: &str,
        qualifier: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM event_invoke_configs WHERE name = ?1 AND qualifier = ?2",
            params![name, qualifier],
        )?;
        Ok(())
    }

    /// Sets (`Some`) or clears (`None`) a function's reserved concurrency.
    pub fn put_reserved_concurrency(
        &mut self,
        name: &str,
        reserved: Option<u32>,
    ) -> Result<(), StoreError> {
        match reserved {
            Some(n) => self.conn.execute(
                "INSERT INTO reserved_concurrency (name, reserved) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET reserved = excluded.reserved",
                params![name, n as i64],
            )?,
            None => self
                .conn
                .execute("DELETE FROM reserved_concurrency WHERE name = ?1", [name])?,
        };
        Ok(())
    }

    /// Every code signing configuration.
    pub fn load_code_signing_configs(&self) -> Result<Vec<CodeSigningConfig>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT id, config FROM code_signing_configs ORDER BY id")?;
        let rows =
            statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut configs = Vec::new();
        for row in rows {
            let (id, config) = row?;
            configs.push(
                serde_json::from_str(&config)
                    .map_err(|source| StoreError::Corrupt { name: id, source })?,
            );
        }
        Ok(configs)
    }

    /// Writes (inserting or replacing) a code signing configuration.
    pub fn put_code_signing_config(
        &mut self,
        config: &CodeSigningConfig,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO code_signing_configs (id, config) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET config = excluded.config",
            params![config.id, to_json(config)],
        )?;
        Ok(())
    }

    pub fn delete_code_signing_config(&mut self, id: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM code_signing_configs WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Attaches (`Some`) or detaches (`None`) a function's code signing configuration.
    pub fn put_function_code_signing(
        &mut self,
        name: &str,
        config_id: Option<&str>,
    ) -> Result<(), StoreError> {
        match config_id {
            Some(id) => self.conn.execute(
                "INSERT INTO function_code_signing (name, config_id) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET config_id = excluded.config_id",
                params![name, id],
            )?,
            None => self
                .conn
                .execute("DELETE FROM function_code_signing WHERE name = ?1", [name])?,
        };
        Ok(())
    }

    /// Sets a function's `RecursiveLoop` setting.
    pub fn put_recursive_loop(&mut self, name: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO recursion_config (name, recursive_loop) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET recursive_loop = excluded.recursive_loop",
            params![name, value],
        )?;
        Ok(())
    }

    pub fn put_provisioned(&mut self, config: &ProvisionedConfig) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO provisioned_concurrency (name, qualifier, config) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, qualifier) DO UPDATE SET config = excluded.config",
            params![config.function, config.qualifier, to_json(config)],
        )?;
        Ok(())
    }

    pub fn delete_provisioned(&mut self, name: &str, qualifier: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM provisioned_concurrency WHERE name = ?1 AND qualifier = ?2",
            params![name, qualifier],
        )?;
        Ok(())
    }

    /// Writes (inserting or replacing) a function URL configuration.
    pub fn put_url_config(&mut self, config: &FunctionUrlConfig) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO function_urls (name, qualifier, config) VALUES (?1, ?2, ?3)
             ON CONFLICT (name, qualifier) DO UPDATE SET config = excluded.config",
            params![
                config.function,
                config.qualifier.as_deref().unwrap_or_default(),
                to_json(config)
            ],
        )?;
        Ok(())
    }

    pub fn delete_url_config(&mut self, name: &str, qualifier: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM function_urls WHERE name = ?1 AND qualifier = ?2",
            params![name, qualifier],
        )?;
        Ok(())
    }

    /// Writes a policy, or removes it when it has no statements left.
    pub fn put_policy(
        &mut self,
        name: &str,
        qualifier: &str,
        policy: &Policy,
    ) -> Result<(), StoreError> {
        if policy.statements.is_empty() {
            self.conn.execute(
                "DELETE FROM policies WHERE name = ?1 AND qualifier = ?2",
                params![name, qualifier],
            )?;
        } else {
            self.conn.execute(
                "INSERT INTO policies (name, qualifier, document) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, qualifier) DO UPDATE SET document = excluded.document",
                params![name, qualifier, to_json(policy)],
            )?;
        }
        Ok(())
    }

    /// Replaces a function's tags.
    pub fn put_tags(
        &mut self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE functions SET tags = ?2 WHERE name = ?1",
            params![name, to_json(tags)],
        )?;
        Ok(())
    }

    /// Deletes a function and all its versions. Returns whether it existed.
    pub fn delete(&mut self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM functions WHERE name = ?1", [name])?;
        Ok(n > 0)
    }

    pub fn exists(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM functions WHERE name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain data structures cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> FunctionConfig {
        FunctionConfig::sample(name)
    }

    #[test]
    fn functions_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let tags: BTreeMap<String, String> = [("team".to_string(), "a".to_string())].into();
        {
            let mut store = MetaStore::open(&path).unwrap();
            store.create(&config("f"), &tags).unwrap();
            store.create(&config("g"), &BTreeMap::new()).unwrap();
            let mut changed = config("g");
            changed.timeout = 30;
            store.put_version(&changed).unwrap();
            assert!(store.create(&config("f"), &BTreeMap::new()).is_err());
            let mut v1 = config("f");
            v1.version = "1".into();
            store.publish(&v1, 2).unwrap();
            assert!(
                store.publish(&v1, 3).is_err(),
                "a version number is never reused"
            );
            let alias = Alias {
                function: "f".into(),
                name: "live".into(),
                function_version: "1".into(),
                description: String::new(),
                additional_version_weights: Default::default(),
                revision_id: "a".into(),
            };
            store.put_alias(&alias).unwrap();
            let policy = Policy {
                statements: vec![serde_json::json!({"Sid": "s"})],
                revision_id: "p".into(),
            };
            store.put_policy("f", "live", &policy).unwrap();
            store.put_policy("f", "", &policy).unwrap();
            store
                .put_alias(&Alias {
                    function: "g".into(),
                    ..alias.clone()
                })
                .unwrap();
            assert!(store.delete("g").unwrap());
            assert!(!store.delete("g").unwrap());
        }
        let store = MetaStore::open(&path).unwrap();
        let all = store.load().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name, "f");
        assert_eq!(all[0].tags, tags);
        let mut v1 = config("f");
        v1.version = "1".into();
        assert_eq!(all[0].next_version, 2);
        assert_eq!(all[0].versions.len(), 2);
        assert!(all[0].versions.contains(&v1));
        assert!(all[0].versions.contains(&config("f")));
        assert_eq!(all[0].aliases.len(), 1);
        assert_eq!(all[0].policies.len(), 2);
        assert!(store.exists("f").unwrap());
    }
}
