//! `RhaiConfig`: the sandbox limits and host options every Rhai script runs under.
//!
//! The builder methods are the seed's (`max_operations`, `max_call_stack_depth`,
//! `max_string_size`, `max_array_size`, `max_map_size`) plus `max_expr_depth`, a wall-clock
//! `timeout`, a native stack budget, a JSON nesting limit, an optional import directory, the
//! word list of `has_profanity`, and whether bounded calls run on the calling thread
//! (`inline_bounded`). Every limit is installed into the plugin's `Engine` when the
//! script is compiled (a limit that is configured but never installed protects nothing), and
//! the name of each builder method is the `limit` that [`PluginError::LimitExceeded`] reports
//! when a script hits it. The error's advice names that builder (`raise
//! RhaiConfig::max_operations`) unless `limit_settings` maps the limit to a front end's own key.
//!
//! [`PluginError::LimitExceeded`]: crate::PluginError::LimitExceeded

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::profanity::ProfanityFilter;
use crate::LimitSettings;

/// Sandbox limits and host options for Rhai scripts.
///
/// | limit | default | what hitting it reports |
/// | --- | --- | --- |
/// | `max_operations` | 1 000 000 | `LimitExceeded { limit: "max_operations" }` |
/// | `max_call_stack_depth` | 64 | `LimitExceeded { limit: "max_call_stack_depth" }` |
/// | `max_expr_depth` | 64 | a compile error ("expression exceeds maximum complexity") |
/// | `max_string_size` | 1 000 000 bytes | `LimitExceeded { limit: "max_string_size" }` |
/// | `max_array_size` | 10 000 elements | `LimitExceeded { limit: "max_array_size" }` |
/// | `max_map_size` | 10 000 entries | `LimitExceeded { limit: "max_map_size" }` |
/// | `timeout` | 1 s wall clock | `LimitExceeded { limit: "timeout" }` |
/// | `max_native_stack` | 1 MiB | `LimitExceeded { limit: "max_native_stack" }` |
/// | `max_json_depth` | 128 levels, inputs and outputs | `LimitExceeded { limit: "max_json_depth" }` |
///
/// Sizes count nested containers together, as Rhai does: an array of 100 arrays of 100
/// elements holds 10 100 elements. Limits of zero are raised to one, because Rhai reads zero
/// as "unlimited".
///
/// `import` is refused unless [`RhaiConfig::allow_imports_from`] names a directory; then only
/// `.rhai` files inside that directory can be imported.
///
/// | option | default | meaning |
/// | --- | --- | --- |
/// | `inline_bounded` | `true` | a call the compiler classified as bounded (no loops, no recursion, no `call_plugin`: see [`RhaiPlugin::is_bounded`]) runs on the calling thread, an async worker included; `false` sends every call through [`run_blocking`] |
///
/// [`RhaiPlugin::is_bounded`]: super::RhaiPlugin::is_bounded
/// [`run_blocking`]: crate::run_blocking
///
/// ```
/// use std::time::Duration;
/// use bilayer_plugins::rhai_runtime::RhaiConfig;
///
/// let config = RhaiConfig::default()
///     .max_operations(10_000) // Limit CPU
///     .max_call_stack_depth(32) // Prevent stack overflow
///     .max_string_size(1_000_000) // Limit memory
///     .max_array_size(10_000)
///     .max_map_size(10_000)
///     .timeout(Duration::from_millis(200));
/// assert_eq!(config.max_operations, 10_000);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RhaiConfig {
    /// Operations (roughly: expressions evaluated) one call may run, closures called by array
    /// and map methods (`map`, `filter`, `reduce`, ...) included.
    pub max_operations: u64,
    /// Nested script function calls (recursion depth).
    pub max_call_stack_depth: usize,
    /// Nesting of expressions and statements, checked when the script is compiled.
    pub max_expr_depth: usize,
    /// Bytes in one string.
    pub max_string_size: usize,
    /// Elements in arrays (and bytes in BLOBs), nested ones included.
    pub max_array_size: usize,
    /// Entries in object maps, nested ones included.
    pub max_map_size: usize,
    /// Wall-clock time one call may take, checked while the script runs (time spent waiting
    /// in `call_plugin` counts too).
    pub timeout: Duration,
    /// Native stack bytes one call may use. Deep recursion in Rhai costs far more native
    /// stack in debug builds than in release builds; this turns an overflow, which would abort
    /// the whole process, into an error. Keep it well below the stack size of the threads that
    /// run scripts (2 MiB for tokio workers unless the runtime sets more).
    pub max_native_stack: usize,
    /// Nesting depth of values crossing the boundary as JSON (inputs, outputs, `state` values,
    /// `parse_json` results). serde_json itself refuses to parse deeper than 128. Of an entry
    /// function's input, only the fields the function can see are converted and measured
    /// (see the module docs).
    pub max_json_depth: usize,
    /// The only directory `import` may load modules from; `None` refuses every import.
    pub import_dir: Option<PathBuf>,
    /// The words `has_profanity` looks for.
    pub profanity: Arc<ProfanityFilter>,
    /// Run calls classified as bounded on the calling thread instead of handing them to the
    /// blocking side of the runtime (see the [module docs](super)). A bounded call still runs
    /// under every limit above, so with the defaults it can hold a worker for at most
    /// `timeout`; turn this off when that is too long for the other tasks of the runtime.
    pub inline_bounded: bool,
    /// How limit errors name the setting to raise: `RhaiConfig::max_operations` by default; a
    /// front end reading limits from a file maps them to its keys ([`LimitSettings::keys`]).
    pub limit_settings: LimitSettings,
}

impl Default for RhaiConfig {
    fn default() -> Self {
        Self {
            max_operations: 1_000_000,
            max_call_stack_depth: 64,
            max_expr_depth: 64,
            max_string_size: 1_000_000,
            max_array_size: 10_000,
            max_map_size: 10_000,
            timeout: Duration::from_secs(1),
            max_native_stack: 1 << 20,
            max_json_depth: 128,
            import_dir: None,
            profanity: Arc::new(ProfanityFilter::default()),
            inline_bounded: true,
            limit_settings: LimitSettings::rust(),
        }
    }
}

impl RhaiConfig {
    /// Same as [`RhaiConfig::default`].
    pub fn new() -> Self {
        Self::default()
    }

    pub fn max_operations(mut self, operations: u64) -> Self {
        self.max_operations = operations.max(1);
        self
    }

    pub fn max_call_stack_depth(mut self, depth: usize) -> Self {
        self.max_call_stack_depth = depth.max(1);
        self
    }

    pub fn max_expr_depth(mut self, depth: usize) -> Self {
        self.max_expr_depth = depth.max(1);
        self
    }

    pub fn max_string_size(mut self, bytes: usize) -> Self {
        self.max_string_size = bytes.max(1);
        self
    }

    pub fn max_array_size(mut self, elements: usize) -> Self {
        self.max_array_size = elements.max(1);
        self
    }

    pub fn max_map_size(mut self, entries: usize) -> Self {
        self.max_map_size = entries.max(1);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn max_native_stack(mut self, bytes: usize) -> Self {
        self.max_native_stack = bytes.max(1);
        self
    }

    /// How deeply JSON crossing the script boundary may nest arrays and objects, both ways: a
    /// message converted into Rhai values and every value leaving the script.
    pub fn max_json_depth(mut self, depth: usize) -> Self {
        self.max_json_depth = depth.max(1);
        self
    }

    /// Lets `import "name"` load `dir/name.rhai` (and nothing outside `dir`).
    pub fn allow_imports_from(mut self, dir: impl Into<PathBuf>) -> Self {
        self.import_dir = Some(dir.into());
        self
    }

    /// Whether calls classified as bounded run on the calling thread (`true`, the default) or,
    /// like every other call, through [`run_blocking`](crate::run_blocking) (`false`).
    pub fn inline_bounded(mut self, inline: bool) -> Self {
        self.inline_bounded = inline;
        self
    }

    /// How limit errors name the setting to raise (see [`LimitSettings`]).
    pub fn limit_settings(mut self, settings: LimitSettings) -> Self {
        self.limit_settings = settings;
        self
    }

    /// Replaces the word list of `has_profanity` (matched as whole words, ignoring case).
    pub fn profanity_words<I, S>(mut self, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.profanity = Arc::new(ProfanityFilter::new(words));
        self
    }
}
