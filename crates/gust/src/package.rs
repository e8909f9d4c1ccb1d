//! Building a deployment package from a directory (or taking a ready .zip).
//!
//! The zip is deterministic — sorted entries, fixed timestamps — so deploying an unchanged
//! directory yields the same CodeSha256, and publishing it again creates no new version.

use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use zip::write::SimpleFileOptions;

/// The zip bytes for `path`: the file itself if it is a zip, else the directory zipped.
pub fn package(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_file() {
        let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        zip::ZipArchive::new(Cursor::new(&bytes)).with_context(|| {
            format!(
                "{} is not a zip file: pass a directory or a .zip",
                path.display()
            )
        })?;
        return Ok(bytes);
    }
    if !meta.is_dir() {
        bail!("{} is neither a directory nor a .zip file", path.display());
    }
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    add_dir(&mut writer, path, "")?;
    Ok(writer.finish()?.into_inner())
}

fn options(mode: u32) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(mode & 0o777)
}

fn add_dir(
    writer: &mut zip::ZipWriter<Cursor<Vec<u8>>>,
    dir: &Path,
    prefix: &str,
) -> anyhow::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            bail!("{} has a name that is not UTF-8", entry.path().display());
        };
        let zip_name = format!("{prefix}{name}");
        let meta = fs::symlink_metadata(entry.path())?;
        let mode = meta.permissions().mode();
        if meta.file_type().is_symlink() {
            let target = fs::read_link(entry.path())?;
            writer.add_symlink(zip_name, target.to_string_lossy(), options(0o777))?;
        } else if meta.is_dir() {
            writer.add_directory(format!("{zip_name}/"), options(mode))?;
            add_dir(writer, &entry.path(), &format!("{zip_name}/"))?;
        } else {
            writer.start_file(
                zip_name,
                options(mode).compression_method(zip::CompressionMethod::Deflated),
            )?;
            let data = fs::read(entry.path())
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            writer.write_all(&data)?;
        }
    }
    Ok(())
}
