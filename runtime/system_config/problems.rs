//! Problems of a definition and where they are: each one gets the `file:line:column` of the
//! key, value or table it concerns, found through the text's index (positions.rs) rather than
//! by searching the text, so `check` can report any number of them cheaply and the reader sees
//! which line to change.

#[cfg(any(feature = "rhai", feature = "wasm"))]
use std::path::Path;
use std::sync::Arc;

#[cfg(any(feature = "rhai", feature = "wasm"))]
use bilayer_plugins::PluginError;

use super::positions::Positions;
#[cfg(any(feature = "rhai", feature = "wasm"))]
use super::schema::AgentEntry;
use super::SystemDefinition;

/// One problem found by [`SystemDefinition::check`], with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `file:line:column`, or just the file when no position is known.
    pub location: String,
    /// What is wrong, in words.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl SystemDefinition {
    /// A problem located at the key `path` leads to in the TOML text (or as deep along the path
    /// as the text goes: a key left to its default, a table written in another form).
    pub(super) fn problem_at_key(&self, path: &[Step<'_>], message: &str) -> Problem {
        let location = match self.key_offset(path) {
            Some(offset) => {
                let (line, column) = self.positions().lines.line_column(&self.text, offset);
                format!("{}:{line}:{column}", self.file.display())
            }
            None => self.file.display().to_string(),
        };
        Problem {
            location,
            message: message.to_string(),
        }
    }

    /// The byte offset of the deepest step of `path` found in the text.
    fn key_offset(&self, path: &[Step<'_>]) -> Option<usize> {
        let positions = self.positions();
        let mut at = Vec::with_capacity(path.len());
        let mut offset = None;
        for step in path {
            match step {
                Step::Key(key) => at.push(key.to_string()),
                Step::Table(index) => {
                    let array = at.last().map_or("", String::as_str);
                    at.push(self.written_index(array, *index).to_string());
                }
            }
            match positions.get(&at) {
                Some(position) => offset = Some(position.key),
                None => break,
            }
        }
        offset
    }

    /// The index among the tables the text wrote of the `index`-th `[[array]]` table kept.
    fn written_index(&self, array: &str, index: usize) -> usize {
        self.kept_tables
            .get(array)
            .and_then(|kept| kept.get(index))
            .copied()
            .unwrap_or(index)
    }

    /// Where the items of the text are (indexed once).
    fn positions(&self) -> &Positions {
        self.positions
            .get_or_init(|| Arc::new(Positions::of(&self.text)))
    }

    /// A script or module an agent names (its `key`) that cannot be read (missing, a device,
    /// past its size limit): located at that key, so the reader sees which line to change.
    #[cfg(any(feature = "rhai", feature = "wasm"))]
    pub(super) fn unreadable_agent_file(
        &self,
        index: usize,
        agent: &AgentEntry,
        key: &str,
        error: PluginError,
    ) -> Problem {
        self.problem_at_key(
            &[Step::Key("agents"), Step::Table(index), Step::Key(key)],
            &format!("agent `{}`: `{key}`: {error}", agent.name),
        )
    }

    /// A problem located at the `name` value of the `index`-th `[[agents]]` table (or at the
    /// table's header when it has no name line).
    pub(super) fn problem_in_agent(&self, index: usize, message: &str) -> Problem {
        self.problem_in_table("agents", index, "name", message)
    }

    /// A problem located at the `key` value of the `index`-th `[[array]]` table (or at the
    /// table itself when it has no such key).
    pub(super) fn problem_in_table(
        &self,
        array: &str,
        index: usize,
        key: &str,
        message: &str,
    ) -> Problem {
        let table = [
            array.to_string(),
            self.written_index(array, index).to_string(),
        ];
        let positions = self.positions();
        // Point at the key's value (the agent's name, where the reader looks for the agent).
        let offset = positions
            .get(&[table[0].clone(), table[1].clone(), key.to_string()])
            .map(|position| position.value)
            .or_else(|| positions.get(&table).map(|position| position.key));
        let Some(offset) = offset else {
            return self.problem_at(&format!("[[{array}]]"), message);
        };
        let (line, column) = self.positions().lines.line_column(&self.text, offset);
        Problem {
            location: format!("{}:{line}:{column}", self.file.display()),
            message: message.to_string(),
        }
    }

    /// A problem located at the first occurrence of `needle` in the TOML file.
    pub(super) fn problem_at(&self, needle: &str, message: &str) -> Problem {
        let location = match self.text.find(needle) {
            Some(offset) => {
                let (line, column) = self.positions().lines.line_column(&self.text, offset);
                format!("{}:{line}:{column}", self.file.display())
            }
            None => self.file.display().to_string(),
        };
        Problem {
            location,
            message: message.to_string(),
        }
    }
}

/// One step of a path into the TOML text: a key, or the n-th table (as the definition keeps
/// them) of the array of tables the previous key names.
pub(super) enum Step<'a> {
    Key(&'a str),
    Table(usize),
}

#[cfg(any(feature = "rhai", feature = "wasm"))]
pub(super) fn problem_from_error(path: &Path, error: PluginError) -> Problem {
    match error {
        PluginError::Compile { location, message } => Problem { location, message },
        other => Problem {
            location: path.display().to_string(),
            message: other.to_string(),
        },
    }
}
