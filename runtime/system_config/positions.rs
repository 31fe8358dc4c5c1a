//! Where each key, value and table of a system definition's TOML text is, indexed in one walk,
//! so `check` places any number of problems without re-reading the text for each. (Placing each
//! by searching the text cost a scan of the whole file per problem: 5000 faulty agents in a
//! 200 KB file took minutes.) The index reads the text's own tree, so inline tables
//! (`limits = { ... }`, `agents = [{ ... }]`) are found as well as `[table]` headers. Lines are
//! indexed too, so turning an offset into `line:column` does not count lines from the start.

use std::collections::HashMap;

use toml::de::{DeTable, DeValue};

/// Where one item starts: its key (for an array element, the element) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub key: usize,
    pub value: usize,
}

/// The positions of every item of a TOML text, by path: keys, and array indices written in
/// decimal (`["agents", "2", "name"]`).
#[derive(Clone, Default)]
pub(crate) struct Positions {
    items: HashMap<Vec<String>, Position>,
    pub lines: LineIndex,
}

/// Where each line of a text starts, so an offset becomes `line:column` by a binary search
/// rather than by counting lines from the start (once per problem, that was quadratic).
#[derive(Debug, Clone, Default)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        Self {
            starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(at, _)| at + 1))
                .collect(),
        }
    }

    /// 1-based line and column (in characters) of `offset` in `text`, the text indexed.
    pub(super) fn line_column(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        // A position inside a character counts as that character's.
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|start| *start <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0).min(offset);
        (line, text[start..offset].chars().count() + 1)
    }
}

impl std::fmt::Debug for Positions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Positions({} items)", self.items.len())
    }
}

impl Positions {
    /// The index of `text` (empty when it does not parse: nothing to place then).
    pub(super) fn of(text: &str) -> Self {
        let mut positions = Self {
            items: HashMap::new(),
            lines: LineIndex::new(text),
        };
        if let Ok(root) = DeTable::parse(text) {
            positions.walk_table(&mut Vec::new(), root.get_ref());
        }
        positions
    }

    /// Where the item at `path` is, when the text has it.
    pub(super) fn get(&self, path: &[String]) -> Option<Position> {
        self.items.get(path).copied()
    }

    fn walk_table(&mut self, path: &mut Vec<String>, table: &DeTable<'_>) {
        for (key, value) in table {
            path.push(key.get_ref().to_string());
            self.items.insert(
                path.clone(),
                Position {
                    key: key.span().start,
                    value: value.span().start,
                },
            );
            self.walk_value(path, value.get_ref());
            path.pop();
        }
    }

    fn walk_value(&mut self, path: &mut Vec<String>, value: &DeValue<'_>) {
        match value {
            DeValue::Table(table) => self.walk_table(path, table),
            DeValue::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    path.push(index.to_string());
                    let start = item.span().start;
                    self.items.insert(
                        path.clone(),
                        Position {
                            key: start,
                            value: start,
                        },
                    );
                    self.walk_value(path, item.get_ref());
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(steps: &[&str]) -> Vec<String> {
        steps.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_values_and_tables_of_both_forms_are_placed() {
        let text = "[limits]\nmax_operations = 5\n\n[[agents]]\nname = \"a\"\n\n[[agents]]\nname = \"b\"\nlimits = { timeout_ms = 1 }\n";
        let positions = Positions::of(text);
        let at = |steps: &[&str]| positions.get(&path(steps)).expect("placed");
        assert_eq!(
            at(&["limits", "max_operations"]).key,
            text.find("max_operations").unwrap()
        );
        assert_eq!(
            at(&["agents", "1", "name"]).value,
            text.find("\"b\"").unwrap()
        );
        assert_eq!(at(&["agents", "1"]).key, text.rfind("[[agents]]").unwrap());
        assert_eq!(
            at(&["agents", "1", "limits", "timeout_ms"]).key,
            text.find("timeout_ms").unwrap()
        );
        assert_eq!(positions.get(&path(&["agents", "2"])), None);
        assert_eq!(Positions::of("[[broken").get(&path(&["broken"])), None);
        assert_eq!(positions.lines.line_column(text, 0), (1, 1));
        assert_eq!(
            positions
                .lines
                .line_column(text, text.find("\"b\"").unwrap()),
            (8, 8)
        );
        let accents = "é = 1\nàb = 2\n";
        let index = Positions::of(accents);
        assert_eq!(
            index.lines.line_column(accents, accents.find('b').unwrap()),
            (2, 2)
        );
        // Inside a character: that character.
        assert_eq!(index.lines.line_column(accents, 1), (1, 1));
    }
}
