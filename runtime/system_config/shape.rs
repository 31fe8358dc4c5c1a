//! Reading a system definition's TOML into its typed form while collecting every shape problem
//! (syntax errors, unknown keys, values of the wrong type, missing keys) with its position,
//! instead of stopping at the first one as `toml::from_str` does, so `bilayer check` can list
//! them all at once.
//!
//! The text is parsed once into a tree whose every key and value knows its span in the text.
//! Deserializing the typed form from the tree fails at its first problem, whose span points
//! into the text; the item at fault (the key, the value, or the table missing a key) is taken
//! out of the tree and the typed form deserialized again, until it succeeds. Spans keep
//! pointing into the original text, so every problem keeps its true position. A syntax error
//! ends the reading there: the tree of a broken document would only yield made-up problems.
//!
//! Each problem costs one more pass over the tree, so their number is bounded: at most
//! [`MAX_SHAPE_PROBLEMS`], and fewer for a big file, whose passes together re-read at most
//! [`SHAPE_READ_BUDGET`] bytes (always at least one). A hostile file of a million unknown keys
//! costs one or a few passes, not a million; a definition of a few kilobytes gets all 50.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

/// The most shape problems one reading reports; past it, the reading stops and says so.
pub(crate) const MAX_SHAPE_PROBLEMS: usize = 50;

/// Bytes of text the passes of one reading may re-read together (4 MiB): a 3 MB file gets one
/// pass, a 100 KB one 41, anything up to 80 KB all [`MAX_SHAPE_PROBLEMS`].
pub(crate) const SHAPE_READ_BUDGET: usize = 4 << 20;

/// One shape problem: what is wrong, and where (a byte range of the text, when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShapeProblem {
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// What reading a document gave: the typed form when one could be made (with the faulty items
/// left out), and every problem found on the way.
pub(crate) struct Shaped<T> {
    pub value: Option<T>,
    pub problems: Vec<ShapeProblem>,
    /// For each top-level array of tables (`agents`, `plugins`), the index among the tables the
    /// text wrote of each element `value` kept: a table taken out for its problem shifts the
    /// ones after it.
    pub kept_tables: BTreeMap<String, Vec<usize>>,
}

/// Reads `text` as a `T`, collecting its problems (see the [module docs](self)), in the order
/// they appear in the text.
pub(crate) fn read<T: DeserializeOwned>(text: &str) -> Shaped<T> {
    let mut shaped = read_in_key_order(text);
    // Found in key order (the tree's tables are sorted by key); told in reading order, the
    // position-less note last.
    shaped
        .problems
        .sort_by_key(|problem| problem.span.as_ref().map_or(usize::MAX, |span| span.start));
    shaped
}

fn read_in_key_order<T: DeserializeOwned>(text: &str) -> Shaped<T> {
    let (mut tree, syntax_errors) = DeTable::parse_recoverable(text);
    let mut shaped = Shaped {
        value: None,
        problems: Vec::new(),
        kept_tables: BTreeMap::new(),
    };
    if !syntax_errors.is_empty() {
        shaped.problems = syntax_errors
            .iter()
            .take(MAX_SHAPE_PROBLEMS)
            .map(|e| ShapeProblem {
                span: e.span(),
                message: e.message().to_string(),
            })
            .collect();
        return shaped;
    }
    let written = array_spans(tree.get_ref());
    let max_problems = (SHAPE_READ_BUDGET / text.len().max(1)).clamp(1, MAX_SHAPE_PROBLEMS);
    loop {
        let error = match T::deserialize(toml::de::Deserializer::from(tree.clone())) {
            Ok(value) => {
                shaped.value = Some(value);
                shaped.kept_tables = array_spans(tree.get_ref())
                    .into_iter()
                    .map(|(name, kept)| {
                        // Each written table by where it starts (no two start at one offset).
                        let index_of: std::collections::HashMap<usize, usize> = written
                            .get(&name)
                            .map(|all| all.iter().enumerate().map(|(i, s)| (s.start, i)).collect())
                            .unwrap_or_default();
                        let indices = kept
                            .iter()
                            .filter_map(|span| index_of.get(&span.start).copied())
                            .collect();
                        (name, indices)
                    })
                    .collect();
                return shaped;
            }
            Err(error) => error,
        };
        // A value of the wrong type or range names its key: serde's message only says what
        // it expected ("invalid value: integer `-1`, expected usize").
        let message = match error
            .span()
            .and_then(|span| key_of_value(tree.get_ref(), &span))
        {
            Some(key) => format!("`{key}`: {}", error.message()),
            None => error.message().to_string(),
        };
        shaped.problems.push(ShapeProblem {
            span: error.span(),
            message,
        });
        if shaped.problems.len() == max_problems {
            shaped.problems.push(ShapeProblem {
                span: None,
                message: format!(
                    "stopped after {max_problems} problem{}; fix {} and check again",
                    if max_problems == 1 { "" } else { "s" },
                    if max_problems == 1 { "it" } else { "these" },
                ),
            });
            return shaped;
        }
        let removed = match error.span() {
            Some(span) => remove_at(tree.get_mut(), &span),
            None => false,
        };
        if !removed {
            return shaped;
        }
    }
}

/// The spans of the elements of each top-level array.
fn array_spans(table: &DeTable<'_>) -> BTreeMap<String, Vec<Range<usize>>> {
    table
        .iter()
        .filter_map(|(key, value)| match value.get_ref() {
            DeValue::Array(array) => Some((
                key.get_ref().to_string(),
                array.iter().map(Spanned::span).collect(),
            )),
            _ => None,
        })
        .collect()
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The key whose value (a number, a string, a boolean, an array: not a table) has exactly
/// `span`, searched at every depth.
fn key_of_value(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    table.iter().find_map(|(key, value)| match value.get_ref() {
        DeValue::Table(inner) => key_of_value(inner, span),
        // An array of tables spans its first header: a problem there is the table's.
        DeValue::Array(array) if array.iter().any(|item| item.get_ref().is_table()) => {
            array.iter().find_map(|item| match item.get_ref() {
                DeValue::Table(inner) => key_of_value(inner, span),
                _ => None,
            })
        }
        _ => (value.span() == *span).then(|| key.get_ref().to_string()),
    })
}

/// Takes out of `table` the innermost key (with its value), array element or value whose span
/// is or holds `span`; false when nothing there does. Every branch is searched, not only the
/// ones whose span holds `span`: an array of tables spans its first header, not its tables.
fn remove_at(table: &mut DeTable<'_>, span: &Range<usize>) -> bool {
    let keys: Vec<_> = table.keys().cloned().collect();
    for key in keys {
        let Some(value) = table.get_mut(&key) else {
            continue;
        };
        // The innermost item first: an array of tables has the span of its first table.
        if remove_inside(value, span) {
            return true;
        }
        if contains(&key.span(), span) || contains(&value.span(), span) {
            table.remove(&key);
            return true;
        }
    }
    false
}

/// Takes the item at `span` out of a table or array value (not the value itself).
fn remove_inside(value: &mut Spanned<DeValue<'_>>, span: &Range<usize>) -> bool {
    match value.get_mut() {
        DeValue::Table(table) => remove_at(table, span),
        DeValue::Array(array) => {
            let items = array.as_mut();
            let mut at = None;
            for (index, item) in items.iter_mut().enumerate() {
                if remove_inside(item, span) {
                    return true;
                }
                if contains(&item.span(), span) {
                    at = Some(index);
                    break;
                }
            }
            let Some(index) = at else {
                return false;
            };
            let mut kept = DeArray::new();
            for (i, item) in array.iter().enumerate() {
                if i != index {
                    kept.push(item.clone());
                }
            }
            *array = kept;
            true
        }
        _ => false,
    }
}
