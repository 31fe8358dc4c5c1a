//! `WasiGrant`: what a plugin granted the `wasi` capability may reach through WASI preview 1,
//! and the string form of that grant used by configuration files and `bilayer exec --grant`.
//!
//! WASI is off unless granted, and a grant opens only what it names: the directories listed
//! (read-only unless marked writable), the environment variables listed (the host's
//! environment is never inherited) and the arguments listed. Everything else stays closed
//! whatever the grant says: sockets and name lookups, the host's stdin (the guest reads an
//! empty stream), the host's stdout/stderr (the guest's output goes to the `tracing` log, see
//! [`wasi_output`](super::wasi_output)).
//!
//! The string form (`wasi`, `wasi:dir=HOST::GUEST[:ro|:rw]`, `wasi:env=KEY=VALUE`,
//! `wasi:env=KEY`, `wasi:arg=VALUE`) is tabulated on [`WasiGrant`]. `::` separates the host
//! path from the guest path (as in the `wasmtime` CLI), so a single `:` may appear in a path.

use std::fmt;
use std::path::PathBuf;

use crate::{PluginError, PluginResult};

/// What a plugin granted WASI may reach: the directories, environment variables and arguments
/// listed, nothing else (no inherited environment, no sockets, empty stdin, stdout/stderr to
/// the `tracing` log).
///
/// The string form, for configuration files, `bilayer exec --grant` and
/// [`WasmCapabilities::from_names`](super::WasmCapabilities::from_names):
///
/// | string | grants |
/// | --- | --- |
/// | `wasi` | WASI with nothing opened: clocks, random numbers, stdout/stderr to the log |
/// | `wasi:dir=HOST::GUEST` | the host directory `HOST`, seen by the guest as `GUEST`, read-only |
/// | `wasi:dir=HOST::GUEST:ro` | the same, read-only spelled out |
/// | `wasi:dir=HOST::GUEST:rw` | the same, writable |
/// | `wasi:dir=HOST` | `HOST` under the same path in the guest (`:ro`/`:rw` allowed) |
/// | `wasi:env=KEY=VALUE` | the environment variable `KEY` set to `VALUE` |
/// | `wasi:env=KEY` | `KEY` with the host's value, read when the grant is parsed |
/// | `wasi:arg=VALUE` | one more argument in the guest's `argv` |
///
/// Every `wasi:` entry implies `wasi`; entries add up into one grant.
///
/// ```
/// use bilayer_plugins::wasm_runtime::{WasiGrant, WasmCapabilities};
///
/// let grant = WasiGrant::new()
///     .preopen_dir("/srv/plugin-data", "/data")
///     .preopen_dir_writable("/tmp/plugin-out", "/out")
///     .env("MODE", "strict");
/// let capabilities = WasmCapabilities::none().grant_wasi(grant.clone());
/// assert_eq!(capabilities.wasi(), Some(&grant));
///
/// let parsed = WasmCapabilities::from_names([
///     "wasi:dir=/srv/plugin-data::/data",
///     "wasi:dir=/tmp/plugin-out::/out:rw",
///     "wasi:env=MODE=strict",
/// ])?;
/// assert_eq!(parsed.wasi(), Some(&grant));
/// # Ok::<(), bilayer_plugins::PluginError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WasiGrant {
    /// Directories the guest may open files under, in order: the first is the guest's file
    /// descriptor 3, the next 4, and so on (the WASI preopen convention).
    pub preopened_dirs: Vec<PreopenDir>,
    /// The guest's whole environment, in order. Nothing is inherited from the host.
    pub env: Vec<(String, String)>,
    /// The guest's whole `argv`, in order (include a program name first if the guest expects
    /// one). Empty by default.
    pub args: Vec<String>,
}

/// One host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreopenDir {
    /// The directory on the host; a relative path is resolved against the host process's
    /// working directory each time an instance is created.
    pub host_path: PathBuf,
    /// The name the guest opens it by (`/data`, `.`).
    pub guest_path: String,
    /// Whether the guest may create, write, rename and delete under it (read-only if not).
    pub writable: bool,
}

impl PreopenDir {
    /// `host_path` visible to the guest as `guest_path`, writable or not.
    pub fn new(
        host_path: impl Into<PathBuf>,
        guest_path: impl Into<String>,
        writable: bool,
    ) -> Self {
        Self {
            host_path: host_path.into(),
            guest_path: guest_path.into(),
            writable,
        }
    }
}

impl WasiGrant {
    /// WASI with nothing opened: no directory, no environment, no arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `host_path` visible to the guest as `guest_path`, read-only.
    pub fn preopen_dir(self, host_path: impl Into<PathBuf>, guest_path: impl Into<String>) -> Self {
        self.with_dir(PreopenDir::new(host_path, guest_path, false))
    }

    /// Makes `host_path` visible to the guest as `guest_path`, writable.
    pub fn preopen_dir_writable(
        self,
        host_path: impl Into<PathBuf>,
        guest_path: impl Into<String>,
    ) -> Self {
        self.with_dir(PreopenDir::new(host_path, guest_path, true))
    }

    /// Adds a preopened directory.
    pub fn with_dir(mut self, dir: PreopenDir) -> Self {
        self.preopened_dirs.push(dir);
        self
    }

    /// Sets one environment variable of the guest.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Appends one argument to the guest's `argv`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds one `wasi:...` entry of the string form (see [`WasiGrant`]) to this grant; `wasi`
    /// alone adds nothing. This is what `WasmCapabilities::from_names` calls for
    /// entries starting with `wasi`.
    pub fn add_spec(self, spec: &str) -> PluginResult<Self> {
        let spec = spec.trim();
        if spec == "wasi" {
            return Ok(self);
        }
        let Some(entry) = spec.strip_prefix("wasi:") else {
            return Err(syntax_error(spec, "it does not start with `wasi`"));
        };
        let Some((kind, value)) = entry.split_once('=') else {
            return Err(syntax_error(
                spec,
                "expected `dir=`, `env=` or `arg=` after `wasi:`",
            ));
        };
        match kind {
            "dir" => parse_dir(spec, value).map(|dir| self.with_dir(dir)),
            "env" => parse_env(spec, value).map(|(key, value)| self.env(key, value)),
            "arg" => Ok(self.arg(value)),
            _ => Err(syntax_error(spec, &format!("unknown WASI grant `{kind}`"))),
        }
    }

    /// Parses a list of `wasi` / `wasi:...` entries into one grant.
    pub fn parse<I, S>(specs: I) -> PluginResult<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        specs
            .into_iter()
            .try_fold(Self::new(), |grant, spec| grant.add_spec(spec.as_ref()))
    }

    /// Whether `name` is an entry of the string form (`wasi` or `wasi:...`).
    pub fn is_spec(name: &str) -> bool {
        let name = name.trim();
        name == "wasi" || name.starts_with("wasi:")
    }
}

fn parse_dir(spec: &str, value: &str) -> PluginResult<PreopenDir> {
    let (rest, writable) = if let Some(rest) = value.strip_suffix(":rw") {
        (rest, true)
    } else if let Some(rest) = value.strip_suffix(":ro") {
        (rest, false)
    } else {
        (value, false)
    };
    let (host, guest) = rest.split_once("::").unwrap_or((rest, rest));
    if host.is_empty() || guest.is_empty() {
        return Err(syntax_error(
            spec,
            "a directory needs a host path and a guest path: `wasi:dir=HOST::GUEST[:ro|:rw]`",
        ));
    }
    Ok(PreopenDir::new(host, guest, writable))
}

fn parse_env(spec: &str, value: &str) -> PluginResult<(String, String)> {
    match value.split_once('=') {
        Some(("", _)) => Err(syntax_error(spec, "the variable has no name")),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None if value.is_empty() => Err(syntax_error(spec, "the variable has no name")),
        None => std::env::var(value)
            .map(|host_value| (value.to_string(), host_value))
            .map_err(|_| {
                syntax_error(
                    spec,
                    &format!(
                        "`{value}` is not set (or not UTF-8) in the host's environment; set it, \
                         or give the value with `wasi:env={value}=VALUE`"
                    ),
                )
            }),
    }
}

fn syntax_error(spec: &str, problem: &str) -> PluginError {
    PluginError::Config(format!(
        "invalid WASI grant `{spec}`: {problem}; the forms are `wasi`, \
         `wasi:dir=HOST::GUEST[:ro|:rw]`, `wasi:env=KEY=VALUE`, `wasi:env=KEY` and \
         `wasi:arg=VALUE` (docs/wasm-abi.md)"
    ))
}

/// The grant in its string form, environment values hidden (they may be secrets).
impl fmt::Display for WasiGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wasi")?;
        for dir in &self.preopened_dirs {
            let mode = if dir.writable { "rw" } else { "ro" };
            write!(
                f,
                ", wasi:dir={}::{}:{mode}",
                dir.host_path.display(),
                dir.guest_path
            )?;
        }
        for (key, _) in &self.env {
            write!(f, ", wasi:env={key}=…")?;
        }
        for arg in &self.args {
            write!(f, ", wasi:arg={arg}")?;
        }
        Ok(())
    }
}

/// Like `Display`: environment values are not printed.
impl fmt::Debug for WasiGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_keys: Vec<&str> = self.env.iter().map(|(key, _)| key.as_str()).collect();
        f.debug_struct("WasiGrant")
            .field("preopened_dirs", &self.preopened_dirs)
            .field("env_keys", &env_keys)
            .field("args", &self.args)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_entries_parse_with_their_modes() {
        let grant = WasiGrant::parse([
            "wasi",
            "wasi:dir=/srv/in::/in",
            "wasi:dir=/srv/out::/out:rw",
            "wasi:dir=/srv/ro::/ro:ro",
            "wasi:dir=/same",
            "wasi:dir=C:/odd::/odd",
        ])
        .unwrap();
        assert_eq!(
            grant.preopened_dirs,
            vec![
                PreopenDir::new("/srv/in", "/in", false),
                PreopenDir::new("/srv/out", "/out", true),
                PreopenDir::new("/srv/ro", "/ro", false),
                PreopenDir::new("/same", "/same", false),
                PreopenDir::new("C:/odd", "/odd", false),
            ]
        );
    }

    #[test]
    fn env_and_arg_entries_parse_and_values_stay_hidden() {
        let grant = WasiGrant::parse(["wasi:env=A=1=2", "wasi:arg=--fast", "wasi:arg=x"]).unwrap();
        assert_eq!(grant.env, vec![("A".to_string(), "1=2".to_string())]);
        assert_eq!(grant.args, vec!["--fast", "x"]);
        assert_eq!(
            grant.to_string(),
            "wasi, wasi:env=A=…, wasi:arg=--fast, wasi:arg=x"
        );
        assert!(!format!("{grant:?}").contains("1=2"));
    }

    #[test]
    fn malformed_entries_say_which_forms_exist() {
        for bad in [
            "wasi:dir=",
            "wasi:dir=::/g",
            "wasi:dir=/h::",
            "wasi:env==x",
            "wasi:net=1",
            "wasi:dir",
            "wasi:env=BILAYER_SURELY_UNSET_VARIABLE",
        ] {
            let message = WasiGrant::parse([bad]).unwrap_err().to_string();
            assert!(message.contains("wasi:dir=HOST::GUEST"), "{bad}: {message}");
        }
    }
}
