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

/// Native stack the threads that run scripts get in the `bilayer` binary (its tokio workers,
/// its blocking threads and the thread that drives them), and what a host should give its own
/// runtime threads: `tokio::runtime::Builder::thread_stack_size(SCRIPT_THREAD_STACK)`. It is
/// address space reserved per thread; only the pages a call actually touches are memory. Every
/// [`RhaiConfig`] whose [`native_stack_needed`](RhaiConfig::native_stack_needed) fits in it can
/// run on such a thread without overflowing it, whatever its scripts do; a system definition
/// refuses limits that do not fit.
pub const SCRIPT_THREAD_STACK: usize = 256 << 20;

/// Native stack one level of a nested value costs in the deepest recursion Rhai makes over a
/// value: printing it (`to_string`, `print`, interpolation) or comparing it (`==`, `in`,
/// `contains`) goes through Rhai's function dispatch once per level, ~7.2 KB in a debug build;
/// copying and dropping it cost 0.2-0.7 KB a level. Measured in a debug build, so it holds for
/// release builds too, where frames are smaller.
const VALUE_LEVEL_STACK: usize = 8 << 10;

/// Native stack one level of expression nesting costs while a script is parsed (~17 KB in a
/// debug build; parsing is not watched by the progress hook, only bounded by `max_expr_depth`).
const EXPR_LEVEL_STACK: usize = 20 << 10;

/// What the host has on the stack below a script call (an actor's turn, tokio's frames) and
/// Rhai's own entry frames.
const HOST_FRAMES_STACK: usize = 2 << 20;

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
/// Rhai bounds how deeply values nest only through those sizes: an array nested N levels deep
/// holds N elements, so a script can build values about `max_array_size + max_map_size` levels
/// deep (plus `max_expr_depth` through one chain of index assignments). Printing, comparing,
/// copying and dropping such a value recurse once per level on the native stack, where no
/// limit can stop them, so the thread a call runs on must hold the deepest value the limits
/// allow: [`RhaiConfig::native_stack_needed`] says how much stack that is (~160 MiB with the
/// defaults, counted as a debug build needs it), and [`SCRIPT_THREAD_STACK`] is what the
/// `bilayer` binary gives its threads. Explicit `curry` is refused at compile time: a function
/// pointer curried with itself nests without counting against any size.
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
    /// Native stack bytes the script's own recursion (function calls, nested expressions) may
    /// use, counted from where the call started and checked once per operation. Deep recursion
    /// in Rhai costs far more native stack in debug builds than in release builds; this turns
    /// an overflow, which would abort the whole process, into an error. The thread also needs
    /// room for the deepest value the size limits allow on top of it: see
    /// [`RhaiConfig::native_stack_needed`].
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

    /// How deeply a script under these limits can nest a value: Rhai counts nested containers
    /// against `max_array_size` and `max_map_size` (one element per level), an index
    /// assignment chain (`a[0][0] = b`) adds at most `max_expr_depth` levels, and a message
    /// converted in nests at most `max_json_depth`.
    pub fn max_value_depth(&self) -> usize {
        self.max_array_size
            .saturating_add(self.max_map_size)
            .saturating_add(self.max_expr_depth)
            .saturating_add(8)
            .max(self.max_json_depth)
    }

    /// Native stack bytes a thread must have for any call (or compilation) of a script under
    /// these limits to finish without overflowing it: the script's own recursion
    /// (`max_native_stack`), the deepest value it can build ([`RhaiConfig::max_value_depth`])
    /// printed or compared, and the host's frames below the call; or parsing the deepest
    /// expression `max_expr_depth` allows, if that needs more. Counted as a debug build needs
    /// it. Run scripts on threads with at least this much stack ([`SCRIPT_THREAD_STACK`]
    /// covers every configuration whose need fits in it).
    pub fn native_stack_needed(&self) -> usize {
        let call = self
            .max_native_stack
            .saturating_add(self.max_value_depth().saturating_mul(VALUE_LEVEL_STACK));
        let compile = self.max_expr_depth.saturating_mul(EXPR_LEVEL_STACK);
        call.max(compile).saturating_add(HOST_FRAMES_STACK)
    }

    /// `Err` naming the limits to lower when calls under this configuration could need more
    /// native stack than a thread of `stack` bytes has ([`RhaiConfig::native_stack_needed`]).
    pub fn check_stack(&self, stack: usize) -> Result<(), String> {
        let needed = self.native_stack_needed();
        if needed <= stack {
            return Ok(());
        }
        let fixed = self
            .max_native_stack
            .saturating_add(HOST_FRAMES_STACK)
            .saturating_add(9 * VALUE_LEVEL_STACK);
        let levels = stack.saturating_sub(fixed) / VALUE_LEVEL_STACK;
        Err(format!(
            "max_array_size ({}) + max_map_size ({}) + max_expr_depth ({}) let a script nest \
             values {} levels deep, and printing, comparing or copying such a value recurses once \
             per level: that needs about {} MiB of native stack, more than the {} MiB the \
             threads running scripts have; lower them to at most {levels} together (and \
             max_expr_depth to at most {})",
            self.max_array_size,
            self.max_map_size,
            self.max_expr_depth,
            self.max_value_depth(),
            needed >> 20,
            stack >> 20,
            stack.saturating_sub(HOST_FRAMES_STACK) / EXPR_LEVEL_STACK,
        ))
    }

    /// Operations one call may run (at least 1).
    pub fn max_operations(mut self, operations: u64) -> Self {
        self.max_operations = operations.max(1);
        self
    }

    /// Depth of nested function calls (at least 1).
    pub fn max_call_stack_depth(mut self, depth: usize) -> Self {
        self.max_call_stack_depth = depth.max(1);
        self
    }

    /// Depth of nested expressions at compile time (at least 1).
    pub fn max_expr_depth(mut self, depth: usize) -> Self {
        self.max_expr_depth = depth.max(1);
        self
    }

    /// Bytes one string may hold (at least 1).
    pub fn max_string_size(mut self, bytes: usize) -> Self {
        self.max_string_size = bytes.max(1);
        self
    }

    /// Elements one array may hold, nested arrays counted together (at least 1).
    pub fn max_array_size(mut self, elements: usize) -> Self {
        self.max_array_size = elements.max(1);
        self
    }

    /// Entries one object map may hold, nested maps counted together (at least 1).
    pub fn max_map_size(mut self, entries: usize) -> Self {
        self.max_map_size = entries.max(1);
        self
    }

    /// Wall-clock time one call may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bytes of native stack one call may use (at least 1).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_fit_the_script_threads_and_name_what_they_need() {
        let defaults = RhaiConfig::default();
        assert_eq!(defaults.max_value_depth(), 10_000 + 10_000 + 64 + 8);
        assert!(defaults.check_stack(SCRIPT_THREAD_STACK).is_ok());
        // Far more than a tokio worker's default 2 MiB: the deepest value printed.
        assert!(defaults.native_stack_needed() > 100 << 20);
    }

    #[test]
    fn limits_whose_values_nest_past_the_stack_are_refused_naming_them() {
        let at_most = RhaiConfig::default()
            .max_array_size(16_000)
            .max_map_size(16_000)
            .max_expr_depth(376);
        assert!(at_most.check_stack(SCRIPT_THREAD_STACK).is_ok());
        let message = at_most
            .clone()
            .max_array_size(16_001)
            .check_stack(SCRIPT_THREAD_STACK)
            .unwrap_err();
        for key in ["max_array_size (16001)", "max_map_size", "max_expr_depth"] {
            assert!(message.contains(key), "{message}");
        }
        // Parsing alone can outgrow the stack too.
        let parse = RhaiConfig::default().max_expr_depth(1 << 20);
        assert!(parse.check_stack(SCRIPT_THREAD_STACK).is_err());
        // Overflowing arithmetic saturates into a refusal.
        let huge = RhaiConfig::default().max_array_size(usize::MAX);
        assert!(huge.check_stack(SCRIPT_THREAD_STACK).is_err());
    }
}
