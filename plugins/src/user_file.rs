//! Reading a file a user named (a system definition, a Rhai script or imported module, a WASM
//! module, an `init_sql_file`), at a bounded cost whatever the path names.
//!
//! A path in a system definition or on the command line can name `/dev/zero`, `/dev/urandom`,
//! a FIFO (opening one with no writer blocks forever) or a 50 GB file. A plain
//! `std::fs::read` would hang or run out of memory on each. Every read of a user-named file goes
//! through [`read`] or [`read_text`], which:
//!
//! - refuse anything that is not a regular file (after following symlinks), from its metadata,
//!   before opening it: a device, FIFO or socket may never end, and opening may block;
//! - refuse a file whose size is past the limit of its [`FileKind`], without opening it;
//! - open without blocking (`O_NONBLOCK` on Unix) and check the opened handle again, so a file
//!   swapped for a FIFO between the two steps cannot block either;
//! - read at most the limit + 1 bytes, so a file that grows while being read is refused too.
//!
//! The limits are fixed: [`MAX_TEXT_FILE_BYTES`] (16 MiB) for definitions, scripts, modules and
//! SQL, [`MAX_WASM_FILE_BYTES`] (256 MiB) for WASM modules (`.wasm` or `.wat`). They are far
//! above any real file of their kind; a file past one is almost always a wrong path.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::PluginError;

/// The most bytes read of a system definition, Rhai script or module, or SQL file: 16 MiB.
pub const MAX_TEXT_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The most bytes read of a WASM module (`.wasm` binary or `.wat` text): 256 MiB.
pub const MAX_WASM_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// What a file is for: how errors name it, its size limit, and what to do about a file past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKind {
    /// How errors name the file, e.g. "Rhai script".
    pub what: &'static str,
    /// The most bytes read; a larger file is refused.
    pub max_bytes: u64,
    /// What to do about a file past `max_bytes`.
    pub too_large_advice: &'static str,
}

/// A system definition (`bilayer check/run/worker FILE`).
pub const SYSTEM_DEFINITION: FileKind = FileKind {
    what: "system definition",
    max_bytes: MAX_TEXT_FILE_BYTES,
    too_large_advice: "check that the path names the system's TOML file",
};

/// A Rhai script: an agent's `script`, the `routing` script, a tool script, `exec FILE`.
pub const RHAI_SCRIPT: FileKind = FileKind {
    what: "Rhai script",
    max_bytes: MAX_TEXT_FILE_BYTES,
    too_large_advice: "check that the path names the script you meant, or split the script \
                       into modules it `import`s",
};

/// A Rhai module a script `import`s.
pub const RHAI_MODULE: FileKind = FileKind {
    what: "Rhai module",
    max_bytes: MAX_TEXT_FILE_BYTES,
    too_large_advice: "check that the import names the module you meant, or split it into \
                       smaller modules",
};

/// A WASM module: an agent's `wasm`, `exec FILE`.
pub const WASM_MODULE: FileKind = FileKind {
    what: "WASM module",
    max_bytes: MAX_WASM_FILE_BYTES,
    too_large_advice: "check that the path names the module you meant, or strip its debug \
                       sections (e.g. `wasm-tools strip`)",
};

/// A database agent's `init_sql_file`.
pub const INIT_SQL_FILE: FileKind = FileKind {
    what: "init_sql_file",
    max_bytes: MAX_TEXT_FILE_BYTES,
    too_large_advice: "check that init_sql_file names the schema you meant; load bulk data \
                       into the database directly, not through init_sql_file",
};

/// A plugin file hot reload watches: its kind by extension (`.wasm`/`.wat` are WASM modules,
/// anything else a script).
pub fn plugin_file_kind(path: &Path) -> FileKind {
    match path.extension().and_then(|e| e.to_str()) {
        Some("wasm" | "wat") => WASM_MODULE,
        _ => RHAI_SCRIPT,
    }
}

/// Why a user-named file was not read.
#[derive(Debug)]
pub struct UserFileError {
    path: PathBuf,
    kind: FileKind,
    problem: Problem,
}

#[derive(Debug)]
enum Problem {
    Io(std::io::Error),
    NotRegular(&'static str),
    TooLarge,
    NotUtf8(std::str::Utf8Error),
}

impl UserFileError {
    /// Whether the file does not exist (hot reload treats that as a deletion).
    pub fn is_not_found(&self) -> bool {
        matches!(&self.problem, Problem::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    /// The path that was not read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Display for UserFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = self.kind.what;
        let path = self.path.display();
        match &self.problem {
            Problem::Io(e) => write!(f, "cannot read {what} {path}: {e}"),
            Problem::NotRegular(found) => write!(
                f,
                "cannot read {what} {path}: it is {found}, not a regular file (a device or pipe \
                 may never end, so bilayer reads only regular files); name a regular file"
            ),
            Problem::TooLarge => write!(
                f,
                "cannot read {what} {path}: it is larger than the {} limit for a {what} \
                 (bilayer reads no more); {}",
                human_bytes(self.kind.max_bytes),
                self.kind.too_large_advice
            ),
            Problem::NotUtf8(e) => write!(
                f,
                "cannot read {what} {path}: it is not UTF-8 text ({e}); save it as UTF-8"
            ),
        }
    }
}

impl std::error::Error for UserFileError {}

impl From<UserFileError> for PluginError {
    fn from(error: UserFileError) -> Self {
        PluginError::io(error.to_string(), error)
    }
}

/// The bytes of the regular file at `path`, at most `kind.max_bytes` of them (see the module
/// docs for what is refused).
pub fn read(path: &Path, kind: FileKind) -> Result<Vec<u8>, UserFileError> {
    let error = |problem| UserFileError {
        path: path.to_path_buf(),
        kind,
        problem,
    };
    // Metadata first: a FIFO or device is refused without being opened.
    let metadata = std::fs::metadata(path).map_err(|e| error(Problem::Io(e)))?;
    check(&metadata, kind).map_err(error)?;
    let file = open_without_blocking(path).map_err(|e| error(Problem::Io(e)))?;
    // The path may have been replaced since: check what was opened.
    let metadata = file.metadata().map_err(|e| error(Problem::Io(e)))?;
    check(&metadata, kind).map_err(error)?;
    let capacity = usize::try_from(metadata.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(kind.max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(Problem::Io(e)))?;
    if bytes.len() as u64 > kind.max_bytes {
        return Err(error(Problem::TooLarge));
    }
    Ok(bytes)
}

/// The UTF-8 text of the regular file at `path`, at most `kind.max_bytes` of it.
pub fn read_text(path: &Path, kind: FileKind) -> Result<String, UserFileError> {
    let bytes = read(path, kind)?;
    String::from_utf8(bytes).map_err(|e| UserFileError {
        path: path.to_path_buf(),
        kind,
        problem: Problem::NotUtf8(e.utf8_error()),
    })
}

fn check(metadata: &Metadata, kind: FileKind) -> Result<(), Problem> {
    if !metadata.is_file() {
        return Err(Problem::NotRegular(describe(metadata)));
    }
    if metadata.len() > kind.max_bytes {
        return Err(Problem::TooLarge);
    }
    Ok(())
}

#[cfg(unix)]
fn open_without_blocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Reads of a regular file ignore O_NONBLOCK; it only keeps `open` from waiting on a FIFO.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_without_blocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// "a directory", "a FIFO", ... for an error message.
fn describe(metadata: &Metadata) -> &'static str {
    if metadata.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let file_type = metadata.file_type();
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// `16 MiB`, `256 MiB`, or bytes when not a whole number of MiB.
fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bilayer-user-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_regular_file_within_the_limit_is_read() {
        let path = scratch("ok.rhai");
        std::fs::write(&path, "40 + 2").unwrap();
        assert_eq!(read_text(&path, RHAI_SCRIPT).unwrap(), "40 + 2");
    }

    #[test]
    fn a_file_past_the_limit_is_refused_by_its_size() {
        let path = scratch("big.rhai");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_TEXT_FILE_BYTES + 1).unwrap();
        let message = read(&path, RHAI_SCRIPT).unwrap_err().to_string();
        assert!(
            message.contains("larger than the 16 MiB limit"),
            "{message}"
        );
        assert!(message.contains("big.rhai"), "{message}");
    }

    #[test]
    fn a_file_at_the_limit_is_read() {
        let kind = FileKind {
            max_bytes: 8,
            ..RHAI_SCRIPT
        };
        let path = scratch("eight.rhai");
        std::fs::write(&path, "12345678").unwrap();
        assert_eq!(read(&path, kind).unwrap().len(), 8);
        std::fs::write(&path, "123456789").unwrap();
        assert!(read(&path, kind).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_directories_are_refused_without_reading() {
        let message = read(Path::new("/dev/zero"), RHAI_SCRIPT)
            .unwrap_err()
            .to_string();
        assert!(message.contains("character device"), "{message}");
        let dir = std::env::temp_dir();
        let message = read(&dir, RHAI_SCRIPT).unwrap_err().to_string();
        assert!(message.contains("a directory"), "{message}");
    }

    #[test]
    fn a_missing_file_says_so() {
        let error = read(&scratch("missing.rhai"), RHAI_SCRIPT).unwrap_err();
        assert!(error.is_not_found());
        assert!(error.to_string().starts_with("cannot read Rhai script"));
    }

    #[test]
    fn text_that_is_not_utf8_is_refused() {
        let path = scratch("latin1.rhai");
        std::fs::write(&path, [0xff, 0xfe, b'x']).unwrap();
        let message = read_text(&path, RHAI_SCRIPT).unwrap_err().to_string();
        assert!(message.contains("not UTF-8"), "{message}");
    }
}
