//! Finding the host interpreters that serve each runtime id.
//!
//! Interpreters are resolved once, at start, to real executables: a version-manager shim (a
//! shell script in front of the interpreter, as pyenv installs) costs ~90 ms per start, more
//! than the whole cold-start budget, so only ELF binaries are accepted.

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An interpreter on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub path: PathBuf,
    /// `3.12` for Python, `20.20.2` for Node.js.
    pub version: String,
}

/// Whether `path` is an executable ELF file (not a script or shim).
pub fn is_native_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return false;
    }
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// Directories to search, in order of preference: `PATH` (minus shim directories), the usual
/// system locations, then version-manager installs.
fn search_dirs(version_manager_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            if !dir.to_string_lossy().contains("/shims") {
                dirs.push(dir);
            }
        }
    }
    dirs.push("/usr/local/bin".into());
    dirs.push("/usr/bin".into());
    dirs.push("/bin".into());
    dirs.extend(version_manager_dirs.iter().cloned());
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = fs::canonicalize(d).unwrap_or_else(|_| d.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    dirs
}

/// `<root>/*/bin` for each version-manager root that exists.
fn bin_dirs_under(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.reverse(); // newest patch releases first
    dirs
}

fn home() -> Option<PathBuf> {
    env::var_os("HOME").map(PathBuf::from)
}

/// Python interpreters by minor version (`3.12` → path).
pub fn find_pythons() -> BTreeMap<String, Interpreter> {
    let mut managers = Vec::new();
    let pyenv_root = env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".pyenv")));
    if let Some(root) = pyenv_root {
        managers.extend(bin_dirs_under(&root.join("versions")));
    }
    let mut found: BTreeMap<String, Interpreter> = BTreeMap::new();
    for dir in search_dirs(&managers) {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| python_minor(n).is_some())
            .collect();
        names.sort();
        for name in names {
            let Some(version) = python_minor(&name) else {
                continue;
            };
            if found.contains_key(&version) {
                continue;
            }
            let Ok(real) = fs::canonicalize(dir.join(&name)) else {
                continue;
            };
            if is_native_executable(&real) {
                found.insert(
                    version.clone(),
                    Interpreter {
                        path: real,
                        version,
                    },
                );
            }
        }
    }
    found
}

/// `python3.12` → `3.12`.
fn python_minor(name: &str) -> Option<String> {
    let minor = name.strip_prefix("python3.")?;
    (!minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())).then(|| format!("3.{minor}"))
}

/// Node.js interpreters by major version (`20` → path).
pub fn find_nodes() -> BTreeMap<String, Interpreter> {
    let mut managers = Vec::new();
    if let Some(h) = home() {
        managers.extend(bin_dirs_under(&h.join(".nvm/versions/node")));
    }
    managers.extend(bin_dirs_under(Path::new("/usr/local/n/versions/node")));
    let mut found: BTreeMap<String, Interpreter> = BTreeMap::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in search_dirs(&managers) {
        let Ok(real) = fs::canonicalize(dir.join("node")) else {
            continue;
        };
        if seen.contains(&real) || !is_native_executable(&real) {
            continue;
        }
        seen.push(real.clone());
        let Some(version) = node_version(&real) else {
            continue;
        };
        let major = version.split('.').next().unwrap_or_default().to_string();
        found.entry(major).or_insert(Interpreter {
            path: real,
            version,
        });
    }
    found
}

fn node_version(path: &Path) -> Option<String> {
    let out = Command::new(path).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.trim().strip_prefix('v')?.to_string();
    version
        .split('.')
        .all(|p| p.parse::<u32>().is_ok())
        .then_some(version)
}

/// Picks the interpreter for `wanted` (a `3.12` or `20` style key): the exact one, else the
/// nearest available version (newer on a tie). Returns the choice and whether it is exact.
pub fn closest<'a>(
    available: &'a BTreeMap<String, Interpreter>,
    wanted: &str,
) -> Option<(&'a Interpreter, bool)> {
    if let Some(exact) = available.get(wanted) {
        return Some((exact, true));
    }
    let number = |key: &str| -> i64 {
        key.rsplit('.')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let target = number(wanted);
    available
        .iter()
        .min_by_key(|(key, _)| {
            let n = number(key);
            ((n - target).abs(), -n)
        })
        .map(|(_, interp)| (interp, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interp(v: &str) -> Interpreter {
        Interpreter {
            path: PathBuf::from(format!("/x/{v}")),
            version: v.into(),
        }
    }

    #[test]
    fn prefers_exact_then_nearest_newer() {
        let available: BTreeMap<String, Interpreter> =
            [("3.10", interp("3.10")), ("3.12", interp("3.12"))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        assert_eq!(
            closest(&available, "3.12").unwrap(),
            (&interp("3.12"), true)
        );
        assert_eq!(
            closest(&available, "3.11").unwrap(),
            (&interp("3.12"), false)
        );
        assert_eq!(
            closest(&available, "3.9").unwrap(),
            (&interp("3.10"), false)
        );
        assert!(closest(&BTreeMap::new(), "3.9").is_none());
    }

    #[test]
    fn recognises_python_names() {
        assert_eq!(python_minor("python3.12").as_deref(), Some("3.12"));
        assert_eq!(python_minor("python3.12-config"), None);
        assert_eq!(python_minor("python3"), None);
    }

    #[test]
    fn shims_are_not_native() {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("python3.12");
        fs::write(&shim, "#!/bin/sh\nexec python3 \"$@\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!is_native_executable(&shim));
        assert!(is_native_executable(&fs::canonicalize("/bin/sh").unwrap()));
    }
}
