//! Extraction of untrusted deployment packages.
//!
//! A zip is hostile until proven otherwise: it may lie about its sizes, name entries outside the
//! root (`../x`, `/etc/x`), plant symbolic links that point outside, or route later entries
//! through such links. Extraction writes only below the destination, never follows a link it
//! created, counts real bytes against the unzipped limit, and validates every link by resolving
//! it inside the extracted tree. Unix mode bits are kept, so a custom runtime's `bootstrap`
//! stays executable.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use gust_model::limits::UNZIPPED_CODE_MAX;

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFDIR: u32 = 0o040_000;
/// Longest symbolic-link target accepted (Linux's PATH_MAX).
const LINK_TARGET_MAX: u64 = 4096;
/// Symbolic links followed while resolving one link, as the kernel's own bound.
const MAX_LINK_HOPS: usize = 40;

/// Why a package was refused.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the zip archive is corrupt or unsupported: {0}")]
    Corrupt(String),
    #[error("the unzipped package exceeds {UNZIPPED_CODE_MAX} bytes")]
    TooLargeUnzipped,
    #[error("entry '{entry}' {reason}")]
    UnsafeEntry { entry: String, reason: &'static str },
    #[error("i/o error while extracting the package: {0}")]
    Io(#[from] io::Error),
}

impl From<zip::result::ZipError> for IntakeError {
    fn from(e: zip::result::ZipError) -> Self {
        match e {
            zip::result::ZipError::Io(io) if io.kind() != io::ErrorKind::InvalidData => {
                // Reading from an in-memory cursor cannot fail for other reasons than bad data.
                IntakeError::Corrupt(io.to_string())
            }
            other => IntakeError::Corrupt(other.to_string()),
        }
    }
}

/// What an extraction produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extracted {
    /// Total bytes of regular files written.
    pub unzipped_size: u64,
    pub files: u64,
}

fn unsafe_entry(entry: &str, reason: &'static str) -> IntakeError {
    IntakeError::UnsafeEntry {
        entry: entry.to_string(),
        reason,
    }
}

/// Splits an entry name into safe relative components, or refuses it.
fn entry_components(name: &str) -> Result<Vec<String>, IntakeError> {
    if name.contains('\0') {
        return Err(unsafe_entry(name, "contains a NUL byte"));
    }
    if name.starts_with('/') {
        return Err(unsafe_entry(name, "is an absolute path"));
    }
    let mut components: Vec<String> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if components.pop().is_none() {
                    return Err(unsafe_entry(
                        name,
                        "would be written outside the package root",
                    ));
                }
            }
            other => components.push(other.to_string()),
        }
    }
    Ok(components)
}

/// Makes each directory of `components` below `root`, refusing to pass through anything that is
/// not a real directory (in particular a link planted by an earlier entry).
fn make_parents(root: &Path, components: &[String], entry: &str) -> Result<PathBuf, IntakeError> {
    let mut path = root.to_path_buf();
    for component in components {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(unsafe_entry(entry, "passes through a symbolic link"));
            }
            Ok(_) => return Err(unsafe_entry(entry, "is nested below a file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path)?;
                fs::set_permissions(&path, Permissions::from_mode(0o755))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(path)
}

/// Clears the way for a new leaf at `path`: an earlier file or link of the same name is replaced
/// (as `unzip` does); a directory is not.
fn clear_leaf(path: &Path, entry: &str) -> Result<(), IntakeError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_dir() => Err(unsafe_entry(
            entry,
            "conflicts with a directory of the same name",
        )),
        Ok(_) => Ok(fs::remove_file(path)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Regular files keep their permission bits, made readable by everyone (the sandbox user is not
/// the owner) and executable by everyone when executable by anyone.
fn file_mode(mode: Option<u32>) -> u32 {
    let bits = mode.map(|m| m & 0o777).unwrap_or(0);
    if bits == 0 {
        return 0o644;
    }
    let mut out = bits | 0o444;
    if bits & 0o111 != 0 {
        out |= 0o111;
    }
    out
}

/// Extracts `zip` into `dest` (an empty directory). On error, `dest` may hold a partial tree:
/// the caller removes it.
pub fn extract(zip: &[u8], dest: &Path) -> Result<Extracted, IntakeError> {
    extract_limited(zip, dest, UNZIPPED_CODE_MAX)
}

/// A read error from the archive means bad data (for example a CRC mismatch), not a host fault.
fn read_error(e: io::Error) -> IntakeError {
    if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
        IntakeError::Corrupt(e.to_string())
    } else {
        IntakeError::Io(e)
    }
}

fn extract_limited(zip: &[u8], dest: &Path, limit: u64) -> Result<Extracted, IntakeError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip))?;

    // Refuse early on declared sizes; real sizes are counted again while writing.
    let mut declared: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i)?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > limit {
        return Err(IntakeError::TooLargeUnzipped);
    }

    let mut written: u64 = 0;
    let mut files: u64 = 0;
    let mut links: Vec<Vec<String>> = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name()?.to_string();
        let components = entry_components(&name)?;
        let Some((leaf, parents)) = components.split_last() else {
            continue; // the root itself ("./")
        };
        let mode = entry.unix_mode();
        let kind = mode.map(|m| m & S_IFMT);
        let parent = make_parents(dest, parents, &name)?;
        let path = parent.join(leaf);

        if entry.is_dir() || kind == Some(S_IFDIR) {
            make_parents(dest, &components, &name)?;
            let bits = mode.map(|m| m & 0o777).filter(|b| *b != 0).unwrap_or(0o755);
            fs::set_permissions(&path, Permissions::from_mode(bits | 0o555))?;
        } else if kind == Some(S_IFLNK) {
            let mut target = Vec::new();
            entry
                .by_ref()
                .take(LINK_TARGET_MAX + 1)
                .read_to_end(&mut target)
                .map_err(read_error)?;
            let target = String::from_utf8(target)
                .map_err(|_| unsafe_entry(&name, "is a symbolic link with a non-UTF-8 target"))?;
            if target.is_empty() || target.len() as u64 > LINK_TARGET_MAX || target.contains('\0') {
                return Err(unsafe_entry(
                    &name,
                    "is a symbolic link with an invalid target",
                ));
            }
            if target.starts_with('/') {
                return Err(unsafe_entry(
                    &name,
                    "is a symbolic link pointing outside the package",
                ));
            }
            clear_leaf(&path, &name)?;
            symlink(&target, &path)?;
            links.push(components);
        } else {
            clear_leaf(&path, &name)?;
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?;
            let budget = limit - written;
            let copied = copy_entry(&mut entry.by_ref().take(budget + 1), &mut out)?;
            if copied > budget {
                return Err(IntakeError::TooLargeUnzipped);
            }
            // Reading to the end makes the zip reader verify the entry's CRC.
            let mut rest = [0u8; 1];
            if entry.read(&mut rest).map_err(read_error)? != 0 {
                return Err(IntakeError::TooLargeUnzipped);
            }
            out.flush()?;
            fs::set_permissions(&path, Permissions::from_mode(file_mode(mode)))?;
            written += copied;
            files += 1;
        }
    }

    for link in &links {
        if resolves_outside(dest, link)? {
            let shown = link.join("/");
            return Err(unsafe_entry(
                &shown,
                "is a symbolic link pointing outside the package",
            ));
        }
    }
    Ok(Extracted {
        unzipped_size: written,
        files,
    })
}

/// Copies an entry, telling archive read errors (corrupt data) from disk write errors.
fn copy_entry(reader: &mut impl Read, out: &mut impl Write) -> Result<u64, IntakeError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Resolves the link at `link` (components below `root`) the way the kernel would, following
/// links inside the tree, and says whether resolution ever climbs above `root` or jumps to an
/// absolute path.
fn resolves_outside(root: &Path, link: &[String]) -> io::Result<bool> {
    let mut stack: Vec<String> = link[..link.len() - 1].to_vec();
    let mut pending: VecDeque<String> = VecDeque::new();
    let first = fs::read_link(root.join(link.join("/")))?;
    push_front_target(&mut pending, &first.to_string_lossy());
    let mut hops = 0;
    while let Some(component) = pending.pop_front() {
        match component.as_str() {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Ok(true);
                }
            }
            name => {
                stack.push(name.to_string());
                let here = root.join(stack.join("/"));
                let is_link = fs::symlink_metadata(&here)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false);
                if is_link {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        // A loop: it resolves nowhere, which is harmless, but refuse it as the
                        // kernel would refuse to open it.
                        return Ok(true);
                    }
                    let target = fs::read_link(&here)?;
                    let target = target.to_string_lossy();
                    if target.starts_with('/') {
                        return Ok(true);
                    }
                    stack.pop();
                    push_front_target(&mut pending, &target);
                }
            }
        }
    }
    Ok(false)
}

fn push_front_target(pending: &mut VecDeque<String>, target: &str) {
    for part in target.split('/').rev() {
        pending.push_front(part.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    enum Entry<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Link(&'a str, &'a str),
    }

    fn build(entries: &[Entry]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for e in entries {
            match e {
                Entry::File(name, data, mode) => {
                    w.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode))
                        .unwrap();
                    w.write_all(data).unwrap();
                }
                Entry::Dir(name) => {
                    w.add_directory(*name, SimpleFileOptions::default())
                        .unwrap();
                }
                Entry::Link(name, target) => {
                    w.add_symlink(*name, *target, SimpleFileOptions::default())
                        .unwrap();
                }
            }
        }
        w.finish().unwrap().into_inner()
    }

    fn extract_to_temp(zip: &[u8]) -> (tempfile::TempDir, Result<Extracted, IntakeError>) {
        let dir = tempfile::tempdir().unwrap();
        let result = extract(zip, dir.path());
        (dir, result)
    }

    #[test]
    fn keeps_files_and_exec_bits() {
        let zip = build(&[
            Entry::File("bootstrap", b"#!/bin/sh\n", 0o755),
            Entry::Dir("lib/"),
            Entry::File("lib/data.txt", b"hello", 0o600),
            Entry::Link("lib/current", "data.txt"),
        ]);
        let (dir, result) = extract_to_temp(&zip);
        let out = result.unwrap();
        assert_eq!(out.files, 2);
        assert_eq!(out.unzipped_size, 15);
        let mode = fs::metadata(dir.path().join("bootstrap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let mode = fs::metadata(dir.path().join("lib/data.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(fs::read(dir.path().join("lib/current")).unwrap(), b"hello");
    }

    #[test]
    fn refuses_escaping_names() {
        for name in ["../evil", "a/../../evil", "/etc/evil"] {
            let zip = build(&[Entry::File(name, b"x", 0o644)]);
            let (dir, result) = extract_to_temp(&zip);
            assert!(
                matches!(result, Err(IntakeError::UnsafeEntry { .. })),
                "{name}: {result:?}"
            );
            assert!(!dir.path().parent().unwrap().join("evil").exists());
        }
    }

    #[test]
    fn refuses_links_that_leave_the_root() {
        let cases: Vec<Vec<Entry>> = vec![
            vec![Entry::Link("l", "/etc/passwd")],
            vec![Entry::Link("l", "../outside")],
            vec![Entry::Dir("d/"), Entry::Link("d/l", "../../outside")],
            // Lexically inside, but d/e/up resolves to the root, so up/.. climbs out.
            vec![
                Entry::Dir("d/e/"),
                Entry::Link("d/e/up", "../.."),
                Entry::Link("m", "d/e/up/.."),
            ],
            // A later entry written through an earlier link.
            vec![Entry::Link("l", "."), Entry::File("l/x", b"x", 0o644)],
            vec![Entry::Link("loop", "loop")],
        ];
        for entries in cases {
            let zip = build(&entries);
            let (_dir, result) = extract_to_temp(&zip);
            assert!(
                matches!(result, Err(IntakeError::UnsafeEntry { .. })),
                "{result:?}"
            );
        }
    }

    #[test]
    fn refuses_corrupt_archives() {
        let (_dir, result) = extract_to_temp(b"this is not a zip");
        assert!(matches!(result, Err(IntakeError::Corrupt(_))));
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("a.txt", stored).unwrap();
        w.write_all(&[7u8; 4096]).unwrap();
        let mut zip = w.finish().unwrap().into_inner();
        // Flip a byte of the stored data so the CRC no longer matches.
        let pos = zip.windows(4).position(|w| w == [7, 7, 7, 7]).unwrap();
        zip[pos] ^= 0xff;
        let (_dir, result) = extract_to_temp(&zip);
        assert!(matches!(result, Err(IntakeError::Corrupt(_))), "{result:?}");
    }

    #[test]
    fn refuses_packages_that_unzip_too_large() {
        let zip = build(&[
            Entry::File("a", &[0u8; 600], 0o644),
            Entry::File("b", &[0u8; 600], 0o644),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let result = extract_limited(&zip, dir.path(), 1000);
        assert!(
            matches!(result, Err(IntakeError::TooLargeUnzipped)),
            "{result:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(extract_limited(&zip, dir.path(), 1200).is_ok());
    }
}
