//! Property tests of the system-definition loader (issue 21 item 11): whatever TOML a user (or
//! an attacker) writes, `SystemDefinition::read`, `load` and `check` (what `bilayer check` and
//! `bilayer run` do first) answer with problems or a definition, never a panic or a hang, and
//! every problem of the TOML itself says where it is.
//!
//! Three kinds of input, 256 cases each (bounded, so CI time is too): arbitrary text, a soup of
//! TOML tokens and the definition's own keys, and the bundled example definitions
//! (examples/*/system.toml) mutated byte- and line-wise. The mutated file is written in a
//! scratch copy of examples/ and scripts/, so `check` compiles and links the examples' scripts
//! and modules as it would for a user, and nothing is written into the repository.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bilayer::system_config::SystemDefinition;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The examples whose definitions are mutated.
const EXAMPLES: &[&str] = &["orders", "moderation", "triage", "mixed"];

/// Pieces of TOML and of the definition's vocabulary, for the token soup and for insertions.
const TOKENS: &[&str] = &[
    "\n",
    " ",
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "\"\"\"",
    "#",
    ".",
    "-",
    "0",
    "1",
    "-1",
    "18446744073709551616",
    "3.5",
    "nan",
    "inf",
    "true",
    "false",
    "1979-05-27T07:32:00Z",
    "\"x\"",
    "\"\"",
    "\\u0000",
    "é",
    "\u{0}",
    "\r\n",
    "[[agents]]",
    "[[plugins]]",
    "[limits]",
    "[transport]",
    "[hot_reload]",
    "[agents.limits]",
    "name",
    "entry",
    "max_hops",
    "max_in_flight",
    "hop_timeout_ms",
    "strategy",
    "routing",
    "limits",
    "agents",
    "plugins",
    "script",
    "wasm",
    "native",
    "builtin",
    "config",
    "capabilities",
    "init_sql_file",
    "max_operations",
    "timeout_ms",
    "max_string_size",
    "kind",
    "url",
    "stream",
    "ack_wait_ms",
    "storage",
    "dirs",
    "\"llm\"",
    "\"database\"",
    "\"http\"",
    "\"nats\"",
    "\"order_intake\"",
    "\"intake.rhai\"",
    "\"log\"",
    "\"one_for_all\"",
    "{ url = \"sqlite::memory:\" }",
];

/// A copy of `from` (files and subdirectories) at `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("scratch dir");
    for entry in std::fs::read_dir(from).expect("a directory to copy") {
        let entry = entry.expect("entry");
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// The directory of `example` in a scratch copy of the repository's examples/ and scripts/
/// (an example may refer to ../../scripts), where the mutated definitions are written. The copy
/// lives in the target directory's scratch space under a fixed name, refreshed by each run,
/// so runs do not pile copies up.
fn example_copy(example: &str) -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("definition_fuzz");
        let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_tree(&repository.join("examples"), &root.join("examples"));
        copy_tree(&repository.join("scripts"), &root.join("scripts"));
        root
    });
    root.join("examples").join(example)
}

fn example_text(example: &str) -> String {
    std::fs::read_to_string(example_copy(example).join("system.toml")).expect("example")
}

/// Reads, loads and checks `text` as a definition in `dir`: problems or a definition, no
/// panic, no hang, and every problem of the TOML located in the TOML file.
fn read_load_check(dir: &Path, text: &str) -> Result<(), TestCaseError> {
    // One file per process and thread: the harness runs the three properties in parallel.
    let path = dir.join(format!(
        "fuzz-{}-{:?}.toml",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, text).expect("write the case");
    let checked = check_file(&path);
    let _ = std::fs::remove_file(&path);
    checked
}

fn check_file(path: &Path) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let (definition, problems) = SystemDefinition::read(path)
        .map_err(|e| TestCaseError::fail(format!("an existing file must be read: {e}")))?;
    let file = path.display().to_string();
    for problem in &problems {
        prop_assert!(
            problem.location.starts_with(&file),
            "a TOML problem is located in the TOML file: {problem}"
        );
        prop_assert!(
            !problem.message.is_empty(),
            "a problem says what: {problem}"
        );
    }
    prop_assert!(
        definition.is_some() || !problems.is_empty(),
        "no definition and no problem"
    );
    // At most 50 problems and the note that it stopped.
    prop_assert!(problems.len() <= 51, "{} problems", problems.len());
    let loaded = SystemDefinition::load(path);
    prop_assert_eq!(
        loaded.is_ok(),
        definition.is_some() && problems.is_empty(),
        "load agrees with read: {:?}",
        loaded.err()
    );
    if let Some(definition) = definition {
        for problem in definition.check() {
            prop_assert!(
                !problem.message.is_empty(),
                "a problem says what: {problem}"
            );
        }
    }
    prop_assert!(
        started.elapsed() < Duration::from_secs(20),
        "read + load + check took {:?}",
        started.elapsed()
    );
    Ok(())
}

/// A change to a definition's text.
#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: &'static str },
    DuplicateLine { line: usize },
    DropLine { line: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop::sample::select(TOKENS);
    prop_oneof![
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), token).prop_map(|(at, token)| Mutation::Insert { at, token }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        any::<usize>().prop_map(|line| Mutation::DropLine { line }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// The nearest char boundary at or before `at % (len + 1)`.
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &mut String, mutation: &Mutation) {
    match mutation {
        Mutation::Delete { at, len } => {
            let start = boundary(text, *at);
            let end = boundary(text, start + len).max(start);
            text.replace_range(start..end, "");
        }
        Mutation::Insert { at, token } => {
            let at = boundary(text, *at);
            text.insert_str(at, token);
        }
        Mutation::DuplicateLine { line } | Mutation::DropLine { line } => {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.is_empty() {
                return;
            }
            let index = line % lines.len();
            if matches!(mutation, Mutation::DuplicateLine { .. }) {
                lines.insert(index, lines[index].clone());
            } else {
                lines.remove(index);
            }
            *text = lines.join("\n");
        }
        Mutation::Truncate { at } => {
            let at = boundary(text, *at);
            text.truncate(at);
        }
    }
}

/// 256 cases per property, or `PROPTEST_CASES` for a longer search.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(256),
        // Nothing written into the repository; a failure prints its minimal case instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_is_answered_with_problems(text in any::<String>()) {
        read_load_check(&example_copy("orders"), &text)?;
    }

    #[test]
    fn a_soup_of_toml_tokens_is_answered_with_problems(
        tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..120)
    ) {
        read_load_check(&example_copy("orders"), &tokens.concat())?;
    }

    #[test]
    fn mutated_example_definitions_are_answered_with_problems(
        example in prop::sample::select(EXAMPLES),
        mutations in prop::collection::vec(mutation(), 1..8)
    ) {
        let mut text = example_text(example);
        for mutation in &mutations {
            apply(&mut text, mutation);
        }
        read_load_check(&example_copy(example), &text)?;
    }
}

/// The examples themselves read and check clean, so the mutations start from valid input.
#[test]
fn the_examples_read_and_check_clean() {
    for example in EXAMPLES {
        let path = example_copy(example).join("system.toml");
        let (definition, problems) = SystemDefinition::read(&path).unwrap();
        assert_eq!(problems, vec![], "{example}");
        assert_eq!(definition.unwrap().check(), vec![], "{example}");
    }
}
