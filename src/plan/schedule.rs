//! Pure scheduling rules over a plan's dependency graph: cycles, waves, chains, ready order.

use std::collections::{BTreeMap, BTreeSet};

use super::Domain;

/// A cycle in `depends_on`, as the list of names along it (first name repeated at the end).
pub fn find_cycle(domains: &[Domain]) -> Option<Vec<String>> {
    let deps: BTreeMap<&str, Vec<&str>> = domains
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                d.depends_on.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        n: &'a str,
        deps: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n, Mark::Visiting);
        stack.push(n);
        for d in deps.get(n).into_iter().flatten() {
            if d != &n
                && deps.contains_key(d)
                && let Some(c) = visit(d, deps, marks, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(n, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for d in domains {
        let mut stack = Vec::new();
        if let Some(c) = visit(&d.name, &deps, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}

/// Dependency levels: wave 0 has no dependencies, wave k depends only on earlier waves.
/// Assumes an acyclic plan. Within a wave, domains are in start order (see [`start_order`]).
pub fn waves(domains: &[Domain]) -> Vec<Vec<String>> {
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    fn level_of<'a>(
        n: &'a str,
        domains: &'a [Domain],
        level: &mut BTreeMap<&'a str, usize>,
    ) -> usize {
        if let Some(l) = level.get(n) {
            return *l;
        }
        let d = domains.iter().find(|d| d.name == n);
        let l = d
            .map(|d| {
                d.depends_on
                    .iter()
                    .map(|p| level_of(p, domains, level) + 1)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        level.insert(n, l);
        l
    }
    for d in domains {
        level_of(&d.name, domains, &mut level);
    }
    let n = level.values().max().map_or(0, |m| m + 1);
    let mut out: Vec<Vec<String>> = vec![Vec::new(); n];
    for name in start_order(domains, domains.iter().map(|d| d.name.as_str())) {
        out[level[name.as_str()]].push(name);
    }
    out
}

/// For each domain, the number of domains on the longest chain of dependents starting at it
/// (itself included). A domain that unblocks long chains should start early.
pub fn chain_lengths(domains: &[Domain]) -> BTreeMap<String, usize> {
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in domains {
        for p in &d.depends_on {
            dependents.entry(p.as_str()).or_default().push(&d.name);
        }
    }
    fn len<'a>(
        n: &'a str,
        dependents: &BTreeMap<&'a str, Vec<&'a str>>,
        memo: &mut BTreeMap<&'a str, usize>,
    ) -> usize {
        if let Some(v) = memo.get(n) {
            return *v;
        }
        let v = 1 + dependents
            .get(n)
            .into_iter()
            .flatten()
            .map(|c| len(c, dependents, memo))
            .max()
            .unwrap_or(0);
        memo.insert(n, v);
        v
    }
    let mut memo = BTreeMap::new();
    domains
        .iter()
        .map(|d| (d.name.clone(), len(&d.name, &dependents, &mut memo)))
        .collect()
}

/// Orders candidate domains for starting: higher priority first, then the longer chain of
/// dependents, then declaration order.
pub fn start_order<'a>(
    domains: &[Domain],
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let chains = chain_lengths(domains);
    let index: BTreeMap<&str, (usize, i32)> = domains
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), (i, d.priority)))
        .collect();
    let mut c: Vec<&str> = candidates.into_iter().collect();
    c.sort_by_key(|n| {
        let (i, prio) = index.get(n).copied().unwrap_or((usize::MAX, 0));
        (
            std::cmp::Reverse(prio),
            std::cmp::Reverse(chains.get(*n).copied().unwrap_or(0)),
            i,
        )
    });
    c.into_iter().map(str::to_owned).collect()
}

/// Every domain that (transitively) depends on `name`.
pub fn dependents_of(domains: &[Domain], name: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut frontier = vec![name.to_string()];
    while let Some(n) = frontier.pop() {
        for d in domains {
            if d.depends_on.contains(&n) && out.insert(d.name.clone()) {
                frontier.push(d.name.clone());
            }
        }
    }
    out
}

/// A topological order following [`start_order`] among domains ready at each step: the order
/// in which branches are merged when merging a whole run at once.
pub fn merge_order(domains: &[Domain]) -> Vec<String> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < domains.len() {
        let ready: Vec<&str> = domains
            .iter()
            .filter(|d| !done.contains(&d.name) && d.depends_on.iter().all(|p| done.contains(p)))
            .map(|d| d.name.as_str())
            .collect();
        if ready.is_empty() {
            break; // cycle: validated plans have none
        }
        let next = start_order(domains, ready).remove(0);
        done.insert(next.clone());
        out.push(next);
    }
    out
}

/// The longest path through the DAG, weighting each domain with `weight`; returns the path
/// (dependencies first) and its total weight.
pub fn critical_path(domains: &[Domain], weight: impl Fn(&str) -> f64) -> (Vec<String>, f64) {
    let mut best: BTreeMap<String, (f64, Option<String>)> = BTreeMap::new();
    for name in merge_order(domains) {
        let d = domains
            .iter()
            .find(|d| d.name == name)
            .expect("name from plan");
        let (pred, pw) = d
            .depends_on
            .iter()
            .filter_map(|p| best.get(p).map(|(w, _)| (p.clone(), *w)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or((None, 0.0), |(p, w)| (Some(p), w));
        best.insert(name.clone(), (pw + weight(&name), pred));
    }
    let Some((end, (total, _))) = best
        .iter()
        .max_by(|a, b| a.1.0.total_cmp(&b.1.0))
        .map(|(k, v)| (k.clone(), v.clone()))
    else {
        return (Vec::new(), 0.0);
    };
    let mut path = vec![end.clone()];
    let mut cur = end;
    while let Some((_, Some(p))) = best.get(&cur) {
        path.push(p.clone());
        cur = p.clone();
    }
    path.reverse();
    (path, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, deps: &[&str], prio: i32) -> Domain {
        Domain {
            name: name.into(),
            prompt: "p".into(),
            prompt_file: None,
            owns: vec![format!("{name}/**")],
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            priority: prio,
            timeout: None,
            verify: None,
            setup: vec![],
            line: None,
        }
    }

    #[test]
    fn waves_follow_dependencies() {
        let ds = vec![
            d("ui", &["api"], 0),
            d("api", &["db"], 0),
            d("db", &[], 0),
            d("docs", &[], 0),
        ];
        assert_eq!(
            waves(&ds),
            vec![vec!["db", "docs"], vec!["api"], vec!["ui"]]
        );
    }

    #[test]
    fn priority_then_chain_then_declaration() {
        let ds = vec![
            d("a", &[], 0),
            d("b", &[], 0),
            d("c", &["b"], 0),
            d("z", &[], 5),
        ];
        assert_eq!(start_order(&ds, ["a", "b", "z"]), vec!["z", "b", "a"]);
    }

    #[test]
    fn cycles_are_found() {
        let ds = vec![d("a", &["b"], 0), d("b", &["a"], 0), d("c", &[], 0)];
        assert_eq!(
            find_cycle(&ds),
            Some(vec!["a".into(), "b".into(), "a".into()])
        );
        assert_eq!(find_cycle(&[d("a", &[], 0), d("b", &["a"], 0)]), None);
    }

    #[test]
    fn dependents_are_transitive() {
        let ds = vec![
            d("a", &[], 0),
            d("b", &["a"], 0),
            d("c", &["b"], 0),
            d("x", &[], 0),
        ];
        assert_eq!(
            dependents_of(&ds, "a"),
            ["b".to_string(), "c".to_string()].into()
        );
    }

    #[test]
    fn critical_path_uses_weights() {
        let ds = vec![d("a", &[], 0), d("b", &["a"], 0), d("c", &[], 0)];
        let (path, w) = critical_path(&ds, |n| match n {
            "a" => 1.0,
            "b" => 2.0,
            _ => 2.5,
        });
        assert_eq!(path, vec!["a", "b"]);
        assert_eq!(w, 3.0);
        let (path, _) = critical_path(&ds, |n| if n == "c" { 10.0 } else { 1.0 });
        assert_eq!(path, vec!["c"]);
    }

    #[test]
    fn merge_order_is_topological() {
        let ds = vec![d("ui", &["api"], 9), d("api", &[], 0), d("docs", &[], 1)];
        assert_eq!(merge_order(&ds), vec!["docs", "api", "ui"]);
    }
}
