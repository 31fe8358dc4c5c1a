//! Capabilities: which host imports a WASM plugin may link against. Deny by default.
//!
//! A module can only reach the host through the functions it imports, so the grant is checked
//! once, at link time: every import is mapped to the capability that provides it, and a module
//! that imports anything it was not granted fails to load with an error naming the capability
//! (and the import). The linker built for the plugin defines only the granted functions, so
//! nothing ungranted could be linked even if the check were skipped.
//!
//! | capability | host imports |
//! | --- | --- |
//! | `log` | `bilayer.log` |
//! | `config` | `bilayer.config_get` |
//! | `state` | `bilayer.state_get`, `bilayer.state_set` |
//! | `call_plugin` | `bilayer.call_plugin` (optionally only to listed plugin ids) |
//! | `wasi` | every `wasi_snapshot_preview1` function, reaching only what its [`WasiGrant`] opens |
//!
//! WASI is a capability like the others, but it carries a [`WasiGrant`]: the directories,
//! environment variables and arguments the guest may see. Granting `wasi` alone opens none of
//! them (see [`wasi_grant`](super::wasi_grant) for the string form, `wasi:dir=HOST::GUEST:rw`
//! and friends). [`WasmCapabilities::all`] grants every `bilayer` import but not WASI, which
//! must always be granted on purpose. See docs/wasm-abi.md.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use super::WasiGrant;
use crate::{PluginError, PluginResult};

/// One grantable group of host imports.
///
/// | capability | host imports |
/// | --- | --- |
/// | `log` | `bilayer.log` |
/// | `config` | `bilayer.config_get` |
/// | `state` | `bilayer.state_get`, `bilayer.state_set` |
/// | `call_plugin` | `bilayer.call_plugin` (optionally only to listed plugin ids) |
/// | `wasi` | `wasi_snapshot_preview1.*`, limited by a [`WasiGrant`] |
///
/// A module importing a function whose capability it was not granted fails to load, naming
/// the capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `bilayer.log`: write to the host's `tracing` log, tagged with the plugin id.
    Log,
    /// `bilayer.config_get`: read the plugin's configuration.
    Config,
    /// `bilayer.state_get` / `bilayer.state_set`: the plugin's host-owned state store.
    State,
    /// `bilayer.call_plugin`: execute another plugin by id, through its host.
    CallPlugin,
    /// WASI preview 1 (`wasi_snapshot_preview1`), reaching only what the plugin's
    /// [`WasiGrant`] opens. Granted alone ([`WasmCapabilities::grant`]), it opens nothing; see
    /// [`WasmCapabilities::grant_wasi`].
    Wasi,
}

impl Capability {
    /// Every capability of the `bilayer` host imports, in a stable order. [`Capability::Wasi`]
    /// is not among them: WASI is always granted on purpose, with its [`WasiGrant`].
    pub const ALL: [Capability; 4] = [
        Capability::Log,
        Capability::Config,
        Capability::State,
        Capability::CallPlugin,
    ];

    /// The name used in grants, configuration files and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Config => "config",
            Capability::State => "state",
            Capability::CallPlugin => "call_plugin",
            Capability::Wasi => "wasi",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Capability {
    type Err = PluginError;

    fn from_str(name: &str) -> PluginResult<Self> {
        Capability::ALL
            .into_iter()
            .chain([Capability::Wasi])
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                PluginError::Config(format!(
                    "unknown WASM capability `{name}`; known capabilities: log, config, state, \
                     call_plugin, call_plugin:ID, wasi, wasi:dir=HOST::GUEST[:ro|:rw], \
                     wasi:env=KEY=VALUE, wasi:env=KEY, wasi:arg=VALUE"
                ))
            })
    }
}

/// The set of capabilities granted to one plugin. Empty by default: a plugin with no grant
/// can compute on its input and nothing else.
///
/// ```
/// use bilayer_plugins::wasm_runtime::{Capability, WasmCapabilities};
///
/// let grant = WasmCapabilities::none()
///     .grant(Capability::Log)
///     .grant(Capability::State)
///     .grant_call_plugin_to(["database"]);
/// assert!(grant.allows(Capability::State));
/// assert!(!grant.allows(Capability::Config));
/// assert!(grant.may_call("database"));
/// assert!(!grant.may_call("mailer"));
///
/// let from_config = WasmCapabilities::from_names(["log", "call_plugin:database"])?;
/// assert!(from_config.may_call("database"));
///
/// let with_wasi = WasmCapabilities::from_names(["wasi:dir=/srv/data::/data", "wasi:env=MODE=fast"])?;
/// assert!(with_wasi.allows(Capability::Wasi));
/// assert_eq!(with_wasi.wasi().unwrap().preopened_dirs[0].guest_path, "/data");
/// # Ok::<(), bilayer_plugins::PluginError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WasmCapabilities {
    granted: BTreeSet<Capability>,
    /// `None`: any plugin id; `Some`: only these (when `CallPlugin` is granted).
    call_targets: Option<BTreeSet<String>>,
    /// What WASI may reach; `Some` exactly when `Wasi` is granted.
    wasi: Option<WasiGrant>,
}

impl WasmCapabilities {
    /// No capability at all (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Every `bilayer` host import, `call_plugin` to any plugin. For trusted modules. WASI is
    /// not included: grant it with [`grant_wasi`](Self::grant_wasi), naming what it may reach.
    pub fn all() -> Self {
        Capability::ALL
            .into_iter()
            .fold(Self::none(), |grant, c| grant.grant(c))
    }

    /// Grants `capability`. [`Capability::Wasi`] granted this way opens no directory, no
    /// environment variable and no argument (a grant made earlier is kept).
    pub fn grant(mut self, capability: Capability) -> Self {
        self.granted.insert(capability);
        if capability == Capability::Wasi {
            self.wasi.get_or_insert_with(WasiGrant::new);
        }
        self
    }

    /// Grants WASI preview 1, reaching exactly what `grant` opens (replacing an earlier WASI
    /// grant).
    pub fn grant_wasi(mut self, grant: WasiGrant) -> Self {
        self.granted.insert(Capability::Wasi);
        self.wasi = Some(grant);
        self
    }

    /// Grants `call_plugin`, limited to the given plugin ids (calls to others return an error
    /// to the guest). Calling it again adds ids.
    pub fn grant_call_plugin_to<I, S>(mut self, targets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let set = self.call_targets.get_or_insert_with(BTreeSet::new);
        set.extend(targets.into_iter().map(Into::into));
        self.granted.insert(Capability::CallPlugin);
        self
    }

    /// Parses names as written in configuration and `bilayer exec --grant`: `log`, `config`,
    /// `state`, `call_plugin`, `call_plugin:ID` for `call_plugin` limited to plugin `ID`
    /// (repeatable), and `wasi` with its entries `wasi:dir=HOST::GUEST[:ro|:rw]`,
    /// `wasi:env=KEY=VALUE`, `wasi:env=KEY` and `wasi:arg=VALUE` (repeatable, adding up; see
    /// [`WasiGrant`]).
    pub fn from_names<I, S>(names: I) -> PluginResult<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut grant = Self::none();
        let mut unrestricted_calls = false;
        for name in names {
            let name = name.as_ref().trim();
            if WasiGrant::is_spec(name) {
                let wasi = grant.wasi.take().unwrap_or_default().add_spec(name)?;
                grant = grant.grant_wasi(wasi);
                continue;
            }
            match name.split_once(':') {
                Some(("call_plugin", target)) if !target.is_empty() => {
                    grant = grant.grant_call_plugin_to([target]);
                }
                _ => {
                    let capability: Capability = name.parse()?;
                    unrestricted_calls |= capability == Capability::CallPlugin;
                    grant = grant.grant(capability);
                }
            }
        }
        if unrestricted_calls {
            grant.call_targets = None;
        }
        Ok(grant)
    }

    /// Whether `capability` is granted.
    pub fn allows(&self, capability: Capability) -> bool {
        self.granted.contains(&capability)
    }

    /// Whether `call_plugin` may reach `target`.
    pub fn may_call(&self, target: &str) -> bool {
        self.allows(Capability::CallPlugin)
            && self
                .call_targets
                .as_ref()
                .is_none_or(|targets| targets.contains(target))
    }

    /// The plugin ids `call_plugin` is limited to (`None`: any).
    pub fn call_targets(&self) -> Option<impl Iterator<Item = &str>> {
        self.call_targets
            .as_ref()
            .map(|targets| targets.iter().map(String::as_str))
    }

    /// What WASI may reach, when [`Capability::Wasi`] is granted.
    pub fn wasi(&self) -> Option<&WasiGrant> {
        self.wasi.as_ref()
    }

    /// The granted capabilities, in order.
    pub fn iter(&self) -> impl Iterator<Item = Capability> + '_ {
        self.granted.iter().copied()
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.granted.is_empty()
    }
}

impl fmt::Display for WasmCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.granted.is_empty() {
            return f.write_str("(none)");
        }
        let mut first = true;
        for capability in &self.granted {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            match (capability, &self.call_targets) {
                (Capability::CallPlugin, Some(targets)) => {
                    let list: Vec<&str> = targets.iter().map(String::as_str).collect();
                    write!(f, "call_plugin:{}", list.join("|"))?;
                }
                (Capability::Wasi, _) => match &self.wasi {
                    Some(wasi) => write!(f, "{wasi}")?,
                    None => f.write_str("wasi")?,
                },
                _ => f.write_str(capability.name())?,
            }
        }
        Ok(())
    }
}
