//! Deployment packages, stored by the SHA-256 of the zip.
//!
//! Layout: `<root>/<hex digest>/package.zip` (what GetFunction's `Code.Location` serves) and
//! `<root>/<hex digest>/task/` (the extracted tree an execution environment runs). A package is
//! built in a `.tmp-*` directory and renamed into place only once it is whole and valid, so a
//! refused or interrupted upload leaves nothing behind.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use gust_model::function::CodeRef;
use gust_model::limits::ZIPPED_CODE_MAX;
use sha2::{Digest, Sha256};

use crate::intake::{self, IntakeError};

const TMP_PREFIX: &str = ".tmp-";
const PACKAGE_FILE: &str = "package.zip";
const TASK_DIR: &str = "task";

/// Why a package could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("the zipped package is {size} bytes, over the {ZIPPED_CODE_MAX}-byte limit")]
    TooLargeZipped { size: u64 },
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("i/o error in the code store: {0}")]
    Io(#[from] io::Error),
}

/// The content-addressed package directory.
#[derive(Debug, Clone)]
pub struct CodeStore {
    root: PathBuf,
}

impl CodeStore {
    /// Opens (creating) the store and removes leftovers of interrupted uploads.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, digest_hex: &str) -> PathBuf {
        self.root.join(digest_hex)
    }

    /// The extracted tree of a stored package.
    pub fn task_dir(&self, digest_hex: &str) -> PathBuf {
        self.dir(digest_hex).join(TASK_DIR)
    }

    /// The original zip of a stored package.
    pub fn package_path(&self, digest_hex: &str) -> PathBuf {
        self.dir(digest_hex).join(PACKAGE_FILE)
    }

    /// Validates, extracts and stores a zip. Storing the same bytes twice is free.
    pub fn store(&self, zip: &[u8]) -> Result<CodeRef, CodeError> {
        self.intake(zip, true)
    }

    /// Validates a zip as [`store`](Self::store) would, and keeps nothing (UpdateFunctionCode's
    /// `DryRun`).
    pub fn validate(&self, zip: &[u8]) -> Result<CodeRef, CodeError> {
        self.intake(zip, false)
    }

    fn intake(&self, zip: &[u8], keep: bool) -> Result<CodeRef, CodeError> {
        let size = zip.len() as u64;
        if size > ZIPPED_CODE_MAX {
            return Err(CodeError::TooLargeZipped { size });
        }
        let digest = Sha256::digest(zip);
        let digest_hex = hex(&digest);
        let sha256 = base64::engine::general_purpose::STANDARD.encode(digest);
        let final_dir = self.dir(&digest_hex);
        if let Some(unzipped_size) = self.unzipped_size_of(&final_dir) {
            return Ok(CodeRef {
                sha256,
                digest_hex,
                size,
                unzipped_size,
            });
        }

        let tmp = self
            .root
            .join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        let result = self.build(zip, &tmp, keep.then_some(final_dir.as_path()));
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        let unzipped_size = result?;
        Ok(CodeRef {
            sha256,
            digest_hex,
            size,
            unzipped_size,
        })
    }

    /// Builds a package in `tmp` and, when `final_dir` is given, renames it into place.
    fn build(&self, zip: &[u8], tmp: &Path, final_dir: Option<&Path>) -> Result<u64, CodeError> {
        fs::create_dir(tmp)?;
        let task = tmp.join(TASK_DIR);
        fs::create_dir(&task)?;
        let extracted = intake::extract(zip, &task)?;
        let Some(final_dir) = final_dir else {
            return Ok(extracted.unzipped_size);
        };
        let mut package = File::create(tmp.join(PACKAGE_FILE))?;
        package.write_all(zip)?;
        package.sync_all()?;
        fs::write(
            tmp.join("unzipped-size"),
            extracted.unzipped_size.to_string(),
        )?;
        match fs::rename(tmp, final_dir) {
            Ok(()) => {}
            // Another upload of the same bytes won the race: theirs is identical.
            Err(_) if final_dir.is_dir() => {}
            Err(e) => return Err(e.into()),
        }
        File::open(&self.root)?.sync_all()?;
        Ok(extracted.unzipped_size)
    }

    fn unzipped_size_of(&self, dir: &Path) -> Option<u64> {
        fs::read_to_string(dir.join("unzipped-size"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether a package is present.
    pub fn contains(&self, digest_hex: &str) -> bool {
        self.package_path(digest_hex).is_file()
    }

    /// Removes every package whose digest is not in `keep`. Returns how many were removed.
    pub fn collect_garbage(&self, keep: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_package = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if is_package && !keep.contains(&name) {
                fs::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use zip::write::SimpleFileOptions;

    fn zip_of(name: &str, data: &[u8]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file(name, SimpleFileOptions::default()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap().into_inner()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn stores_by_content_and_reports_lambdas_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path()).unwrap();
        let zip = zip_of("app.py", b"def handler(e, c): return 1\n");
        let code = store.store(&zip).unwrap();
        assert_eq!(code.size, zip.len() as u64);
        assert_eq!(code.sha256.len(), 44);
        assert_eq!(code.unzipped_size, 28);
        assert!(store.task_dir(&code.digest_hex).join("app.py").is_file());
        assert_eq!(fs::read(store.package_path(&code.digest_hex)).unwrap(), zip);
        let again = store.store(&zip).unwrap();
        assert_eq!(again, code);
        assert_eq!(entries(dir.path()), vec![code.digest_hex.clone()]);
    }

    #[test]
    fn a_refused_package_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path()).unwrap();
        assert!(store.store(&zip_of("../escape", b"x")).is_err());
        assert!(store.store(b"garbage").is_err());
        assert!(store.validate(&zip_of("ok", b"x")).is_ok());
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn garbage_collection_keeps_referenced_packages() {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path()).unwrap();
        let a = store.store(&zip_of("a", b"a")).unwrap();
        let b = store.store(&zip_of("b", b"b")).unwrap();
        let keep: HashSet<String> = [a.digest_hex.clone()].into();
        assert_eq!(store.collect_garbage(&keep).unwrap(), 1);
        assert!(store.contains(&a.digest_hex));
        assert!(!store.contains(&b.digest_hex));
    }

    #[test]
    fn digest_matches_the_reference_vector() {
        let empty = Sha256::digest(b"");
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(empty),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
