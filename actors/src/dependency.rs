//! Orders plugins so that each comes after the plugins it declares as dependencies.
//!
//! Kahn's algorithm over the registered plugins, ties broken by registration order so the
//! result is deterministic. A dependency that is not registered, or a cycle, is reported by
//! name.

use std::collections::{BTreeMap, HashMap};

use bilayer_plugins::{PluginError, PluginResult};

/// One plugin as the sorter sees it.
pub(crate) struct Node {
    pub id: String,
    pub order: u64,
    pub dependencies: Vec<String>,
}

/// Returns the ids in an order where every plugin follows its dependencies.
pub(crate) fn dependency_order(nodes: &[Node]) -> PluginResult<Vec<String>> {
    let by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut missing_deps = HashMap::<&str, usize>::new();
    for node in nodes {
        for dep in &node.dependencies {
            if !by_id.contains_key(dep.as_str()) {
                return Err(PluginError::MissingDependency {
                    plugin: node.id.clone(),
                    dependency: dep.clone(),
                });
            }
        }
        missing_deps.insert(node.id.as_str(), node.dependencies.len());
    }

    // Ready plugins keyed by registration order, so ties resolve deterministically.
    let mut ready: BTreeMap<u64, &str> = nodes
        .iter()
        .filter(|n| n.dependencies.is_empty())
        .map(|n| (n.order, n.id.as_str()))
        .collect();
    let mut ordered = Vec::with_capacity(nodes.len());
    while let Some((_, id)) = ready.pop_first() {
        ordered.push(id.to_string());
        for dependent in nodes
            .iter()
            .filter(|n| n.dependencies.iter().any(|d| d == id))
        {
            let remaining = missing_deps
                .get_mut(dependent.id.as_str())
                .expect("every node was counted above");
            // A plugin may list the same dependency twice; count each listing.
            let listings = dependent.dependencies.iter().filter(|d| *d == id).count();
            *remaining -= listings;
            if *remaining == 0 {
                ready.insert(dependent.order, dependent.id.as_str());
            }
        }
    }

    if ordered.len() < nodes.len() {
        return Err(PluginError::DependencyCycle(find_cycle(nodes, &by_id)));
    }
    Ok(ordered)
}

/// Walks dependencies from an unresolved plugin until one repeats, returning the cycle.
fn find_cycle(nodes: &[Node], by_id: &HashMap<&str, &Node>) -> Vec<String> {
    for start in nodes {
        let mut path: Vec<&str> = vec![start.id.as_str()];
        let mut current = start;
        while let Some(dep) = current.dependencies.first() {
            if let Some(pos) = path.iter().position(|seen| *seen == dep.as_str()) {
                let mut cycle: Vec<String> = path[pos..].iter().map(|s| s.to_string()).collect();
                cycle.push(dep.clone());
                return cycle;
            }
            path.push(dep.as_str());
            current = by_id[dep.as_str()];
        }
    }
    // Following first dependencies can miss a cycle reached only through a later one; fall
    // back to naming every plugin that could not be ordered.
    nodes.iter().map(|n| n.id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, order: u64, deps: &[&str]) -> Node {
        Node {
            id: id.into(),
            order,
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn dependencies_come_first_and_ties_keep_registration_order() {
        let nodes = [
            node("app", 0, &["db", "cache"]),
            node("cache", 1, &[]),
            node("db", 2, &[]),
            node("other", 3, &[]),
        ];
        assert_eq!(
            dependency_order(&nodes).unwrap(),
            ["cache", "db", "app", "other"]
        );
    }

    #[test]
    fn a_missing_dependency_is_named() {
        let err = dependency_order(&[node("app", 0, &["db"])]).unwrap_err();
        assert_eq!(
            err,
            PluginError::MissingDependency {
                plugin: "app".into(),
                dependency: "db".into()
            }
        );
    }

    #[test]
    fn a_cycle_is_named_in_order() {
        let nodes = [
            node("a", 0, &["b"]),
            node("b", 1, &["c"]),
            node("c", 2, &["a"]),
        ];
        let err = dependency_order(&nodes).unwrap_err();
        assert_eq!(
            err,
            PluginError::DependencyCycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
    }
}
