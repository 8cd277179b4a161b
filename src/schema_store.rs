//! The registry's files: `schemas/<name>/<version>.json` and `schemas/<name>/settings.toml`,
//! written atomically so a crash (`kill -9`, power loss) never leaves a half-written file.
//!
//! Every write goes to a temporary file in the same folder (`.<file>.<random>.tmp`, which
//! [`read_folders`] skips), is flushed to disk (`fsync`),
//! then takes its final name in one step and the folder is flushed too, so the new name itself
//! survives a crash. A version file is linked into place (`link` fails when the name exists),
//! so a version is never overwritten; `settings.toml` is renamed over the old one. The file
//! system work runs on tokio's blocking pool, never on the async runtime's threads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use xgate_core::domain::{SchemaName, SchemaVersion};
use xgate_core::registry::{SETTINGS_FILE, SchemaFile, SchemaFolder, Settings};

/// Reads the schema folder `dir` for [`Registry::assemble`](xgate_core::registry::Registry::assemble):
/// each folder (not starting with `.`) with its version files (`*.json`) and its
/// [`SETTINGS_FILE`], sorted by name. Temporary files of interrupted writes
/// (`.<version>.json.<id>.tmp`) and notes are not read. A missing `dir` reads as empty (the
/// caller reports it once, as `registry.dir`). Blocking: called at start and on reloads, on the
/// blocking pool.
pub(crate) fn read_folders(dir: &Path) -> Vec<SchemaFolder> {
    sorted_paths(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|path| path.is_dir())
        .filter_map(|path| {
            let name = path.file_name()?.to_str().unwrap_or("").to_owned();
            if name.starts_with('.') {
                return None;
            }
            let files = read_schema_files(&path);
            Some(SchemaFolder { path, name, files })
        })
        .collect()
}

/// The paths in `folder`, sorted; `None` when it cannot be read.
fn sorted_paths(folder: &Path) -> Option<Vec<PathBuf>> {
    let entries = fs::read_dir(folder).ok()?;
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    Some(paths)
}

fn read_schema_files(folder: &Path) -> Option<Vec<SchemaFile>> {
    let files = sorted_paths(folder)?
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str().unwrap_or("").to_owned();
            let wanted =
                name == SETTINGS_FILE || (!name.starts_with('.') && name.ends_with(".json"));
            if !wanted {
                return None;
            }
            let contents = fs::read(&path).map_err(|error| error.to_string());
            Some(SchemaFile {
                path,
                name,
                contents,
            })
        })
        .collect();
    Some(files)
}

/// The schema folder (`[registry] dir`).
#[derive(Debug, Clone)]
pub(crate) struct SchemaStore {
    dir: PathBuf,
}

/// How a new file takes its name.
#[derive(Clone, Copy)]
enum Placement {
    /// Fails when the name exists.
    New,
    /// Replaces what was there.
    Replace,
}

impl SchemaStore {
    /// The store over `dir`, the folder holding one folder per schema.
    pub fn new(dir: PathBuf) -> SchemaStore {
        SchemaStore { dir }
    }

    /// Writes a new version's document; fails if the version's file already exists.
    pub(crate) async fn write_version(
        &self,
        name: &SchemaName,
        version: SchemaVersion,
        document: &Value,
    ) -> io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(document).map_err(io::Error::other)?;
        bytes.push(b'\n');
        let dir = self.dir.clone();
        let folder = self.dir.join(name.as_str());
        let file_name = format!("{version}.json");
        blocking(move || {
            create_folder(&dir, &folder)?;
            write_atomically(&folder, &file_name, &bytes, Placement::New)
        })
        .await
    }

    /// Replaces a schema's `settings.toml`.
    pub(crate) async fn write_settings(
        &self,
        name: &SchemaName,
        settings: Settings,
    ) -> io::Result<()> {
        let dir = self.dir.clone();
        let folder = self.dir.join(name.as_str());
        let text = settings.to_toml();
        blocking(move || {
            create_folder(&dir, &folder)?;
            write_atomically(&folder, SETTINGS_FILE, text.as_bytes(), Placement::Replace)
        })
        .await
    }

    /// Removes a version's file (gone already counts as removed).
    pub(crate) async fn remove_version(
        &self,
        name: &SchemaName,
        version: SchemaVersion,
    ) -> io::Result<()> {
        let folder = self.dir.join(name.as_str());
        let file = folder.join(format!("{version}.json"));
        blocking(move || {
            match fs::remove_file(&file) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
            sync_folder(&folder)
        })
        .await
    }
}

async fn blocking(work: impl FnOnce() -> io::Result<()> + Send + 'static) -> io::Result<()> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

/// Creates a schema's folder if needed, flushing the parent so the folder survives a crash.
fn create_folder(dir: &Path, folder: &Path) -> io::Result<()> {
    if folder.is_dir() {
        return Ok(());
    }
    match fs::create_dir(folder) {
        Ok(()) => sync_folder(dir),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Temporary file, `fsync`, final name, `fsync` of the folder.
fn write_atomically(
    folder: &Path,
    file_name: &str,
    bytes: &[u8],
    placement: Placement,
) -> io::Result<()> {
    let temporary = folder.join(format!(
        ".{file_name}.{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        let target = folder.join(file_name);
        let linked = matches!(placement, Placement::New);
        match placement {
            Placement::New => match fs::hard_link(&temporary, &target) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Err(error),
                // A file system without hard links: the registry's one writer holds its lock,
                // so checking for the name and renaming is as safe here.
                Err(_) if !target.exists() => fs::rename(&temporary, &target)?,
                Err(error) => return Err(error),
            },
            Placement::Replace => fs::rename(&temporary, &target)?,
        }
        let synced = sync_folder(folder);
        if synced.is_err() && linked {
            // A new version that may not survive a crash is not reported as stored; take the
            // name back so memory and disk agree on which versions exist.
            fs::remove_file(&target).ok();
        }
        synced
    })();
    // After a link (or a failure) the temporary name is left over; after a rename it is gone.
    match fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(%error, "a temporary schema file could not be removed"),
    }
    result
}

/// Flushes a folder's entries (new, renamed and removed names) to disk.
fn sync_folder(folder: &Path) -> io::Result<()> {
    File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use xgate_core::domain::Compatibility;

    #[tokio::test]
    async fn writes_whole_files_never_overwrites_a_version_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let store = SchemaStore::new(dir.path().to_owned());
        let name = SchemaName::parse("person").unwrap();
        let version = SchemaVersion::FIRST;
        store
            .write_version(&name, version, &json!({"type": "object"}))
            .await
            .unwrap();
        let error = store
            .write_version(&name, version, &json!({"type": "string"}))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        let settings = Settings {
            compatibility: Some(Compatibility::Full),
            highest_version: SchemaVersion::new(7),
        };
        store.write_settings(&name, settings).await.unwrap();
        store.write_settings(&name, settings).await.unwrap();

        let folder = dir.path().join("person");
        let mut names: Vec<String> = fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["1.json", "settings.toml"]);
        let stored: Value =
            serde_json::from_slice(&fs::read(folder.join("1.json")).unwrap()).unwrap();
        assert_eq!(stored, json!({"type": "object"}));
        let text = fs::read_to_string(folder.join("settings.toml")).unwrap();
        assert_eq!(Settings::parse(&text), Ok(settings));

        store.remove_version(&name, version).await.unwrap();
        store.remove_version(&name, version).await.unwrap();
        assert!(!folder.join("1.json").exists());
    }
}
