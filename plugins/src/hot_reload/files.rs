//! The files hot reload knows: which plugin each one became and the hash of the content that
//! was last acted on, so a save that changes nothing reloads nothing.
//!
//! Decisions are taken from what is on disk when a path is looked at, never from the kind of
//! event that named it: editors save by writing in place, by writing a temporary file and
//! renaming it over the original, or by deleting and re-creating, and all of these end with
//! the same question: is the file there, and is its content new?

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What is known about one watched file.
#[derive(Debug, Clone)]
pub(crate) struct FileEntry {
    /// Hash of the content last acted on (loaded, or rejected).
    pub hash: u64,
    /// The plugin the file became, once one did.
    pub plugin_id: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct FileTable {
    entries: HashMap<PathBuf, FileEntry>,
}

impl FileTable {
    pub(super) fn get(&self, path: &Path) -> Option<&FileEntry> {
        self.entries.get(path)
    }

    pub(super) fn set(&mut self, path: PathBuf, entry: FileEntry) {
        self.entries.insert(path, entry);
    }

    pub(super) fn remove(&mut self, path: &Path) -> Option<FileEntry> {
        self.entries.remove(path)
    }

    /// Every known path.
    pub(super) fn paths(&self) -> Vec<PathBuf> {
        self.entries.keys().cloned().collect()
    }

    /// Another file that became `plugin_id`, if any.
    pub(super) fn other_path_of(&self, plugin_id: &str, except: &Path) -> Option<&Path> {
        self.entries
            .iter()
            .find(|(path, entry)| {
                path.as_path() != except && entry.plugin_id.as_deref() == Some(plugin_id)
            })
            .map(|(path, _)| path.as_path())
    }
}

/// Whether `path` names a plugin file: a known extension, and not an editor's lock, backup or
/// hidden temporary file (`.#x.rhai`, `.x.rhai.swp`, `x.rhai~`).
pub(crate) fn is_candidate(path: &Path, extensions: &[String]) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with('.') || name.ends_with('~') {
        return false;
    }
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|known| known == e))
}

pub(crate) use crate::content_hash::content_hash;

/// `path` made absolute with its directory resolved (symlinks, `..`), the way the watcher
/// reports paths. The file itself may be missing (deleted).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|dir| dir.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    }
}

/// The plugin files directly in `dir` (or below it, when `recursive`), sorted.
pub(crate) fn scan(dir: &Path, extensions: &[String], recursive: bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() && recursive => pending.push(path),
                Ok(kind) if !kind.is_dir() && is_candidate(&path, extensions) => found.push(path),
                _ => {}
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_files_are_not_plugins() {
        let known = vec!["rhai".to_string(), "wasm".to_string()];
        assert!(is_candidate(Path::new("/s/order.rhai"), &known));
        assert!(is_candidate(Path::new("/s/echo.wasm"), &known));
        assert!(!is_candidate(Path::new("/s/.#order.rhai"), &known));
        assert!(!is_candidate(Path::new("/s/.order.rhai.swp"), &known));
        assert!(!is_candidate(Path::new("/s/order.rhai~"), &known));
        assert!(!is_candidate(Path::new("/s/order.rhai.tmp"), &known));
        assert!(!is_candidate(Path::new("/s/4913"), &known));
    }

    #[test]
    fn hash_tells_contents_apart() {
        assert_eq!(content_hash(b"abc"), content_hash(b"abc"));
        assert_ne!(content_hash(b"abc"), content_hash(b"abd"));
    }
}
