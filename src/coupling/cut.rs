//! The coupling a plan cuts: edges whose two files belong to two domains that may run at the same
//! time (no `depends_on` path between them, in either direction), so neither agent sees the other's
//! change to its half.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::graph::{CouplingGraph, Edge, Evidence, by_weight};
use crate::ownership::{OwnershipMap, PathClass};
use crate::plan::{Domain, schedule};

/// One end of a cut edge: the file and the domain owning it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct End {
    pub path: String,
    pub domain: String,
}

/// An edge between files of two independent domains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CutEdge {
    pub a: End,
    pub b: End,
    pub weight: f64,
    pub evidence: Vec<Evidence>,
}

impl CutEdge {
    /// One line: the two ends, the weight and the evidence.
    pub fn describe(&self) -> String {
        let text = self
            .evidence
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        format!(
            "`{}` and `{}` are independent, but {} ({}) and {} ({}) are coupled, weight {:.2}: {text}",
            self.a.domain,
            self.b.domain,
            self.a.path,
            self.a.domain,
            self.b.path,
            self.b.domain,
            self.weight
        )
    }
}

/// The cut between one pair of independent domains, summed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairCut {
    pub a: String,
    pub b: String,
    pub weight: f64,
    pub edges: usize,
}

/// Every cut edge of a plan, heaviest first, and the totals per pair of domains, heaviest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cut {
    pub edges: Vec<CutEdge>,
    pub pairs: Vec<PairCut>,
}

/// Which domains may run together: neither reaches the other through `depends_on`.
#[derive(Debug, Clone)]
pub struct Independence {
    /// Per domain, every domain it depends on or that depends on it, transitively.
    related: BTreeMap<String, BTreeSet<String>>,
}

impl Independence {
    pub fn new(domains: &[Domain]) -> Independence {
        let mut related: BTreeMap<String, BTreeSet<String>> = domains
            .iter()
            .map(|d| (d.name.clone(), BTreeSet::new()))
            .collect();
        for d in domains {
            for dependent in schedule::dependents_of(domains, &d.name) {
                related
                    .entry(d.name.clone())
                    .or_default()
                    .insert(dependent.clone());
                related.entry(dependent).or_default().insert(d.name.clone());
            }
        }
        Independence { related }
    }

    pub fn independent(&self, a: &str, b: &str) -> bool {
        a != b && !self.related.get(a).is_some_and(|r| r.contains(b))
    }
}

/// The owner of `path` when exactly one domain owns it.
fn owner<'a>(map: &'a OwnershipMap, path: &str) -> Option<&'a str> {
    match map.owners(path).as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// The edges of `graph` between files owned by two independent domains. An end that is shared
/// (`ownership.shared`) or ignored from the other domain's side, owned by nobody, or claimed by
/// several domains is no cut.
pub fn cut(graph: &CouplingGraph, map: &OwnershipMap, domains: &[Domain]) -> Cut {
    let indep = Independence::new(domains);
    // Each file's owner once, not once per edge.
    let mut owners: HashMap<&str, Option<&str>> = HashMap::new();
    for e in graph.edges() {
        for p in [&e.a, &e.b] {
            owners.entry(p).or_insert_with(|| owner(map, p));
        }
    }
    let cut_between = |e: &Edge| -> Option<(String, String)> {
        let (da, db) = (owners[e.a.as_str()]?, owners[e.b.as_str()]?);
        if !indep.independent(da, db) {
            return None;
        }
        let other = |d: &str, p: &str| matches!(map.classify(d, p), PathClass::Other { .. });
        (other(da, &e.b) && other(db, &e.a)).then(|| (da.to_string(), db.to_string()))
    };
    let mut edges: Vec<(&Edge, String, String)> = graph
        .edges()
        .iter()
        .filter_map(|e| cut_between(e).map(|(a, b)| (e, a, b)))
        .collect();
    edges.sort_by(|x, y| by_weight(x.0, y.0));
    let mut pairs: BTreeMap<(String, String), PairCut> = BTreeMap::new();
    for (e, a, b) in &edges {
        let key = if a < b {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let p = pairs.entry(key.clone()).or_insert(PairCut {
            a: key.0,
            b: key.1,
            weight: 0.0,
            edges: 0,
        });
        p.weight += e.weight;
        p.edges += 1;
    }
    let mut pairs: Vec<PairCut> = pairs.into_values().collect();
    pairs.sort_by(|x, y| {
        y.weight
            .total_cmp(&x.weight)
            .then_with(|| (&x.a, &x.b).cmp(&(&y.a, &y.b)))
    });
    Cut {
        edges: edges
            .into_iter()
            .map(|(e, a, b)| CutEdge {
                a: End {
                    path: e.a.clone(),
                    domain: a,
                },
                b: End {
                    path: e.b.clone(),
                    domain: b,
                },
                weight: e.weight,
                evidence: e.evidence.clone(),
            })
            .collect(),
        pairs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str, owns: &str, deps: &[&str]) -> Domain {
        Domain {
            name: name.into(),
            prompt: String::new(),
            prompt_file: None,
            owns: vec![owns.into()],
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            priority: 0,
            timeout: None,
            verify: None,
            setup: Vec::new(),
            line: None,
        }
    }

    fn link(g: &mut CouplingGraph, a: &str, b: &str, w: f64) {
        g.add(a, b, w, Evidence::SameDirectory { dir: String::new() });
    }

    #[test]
    fn only_edges_between_independent_domains_are_cut_transitively() {
        // db <- api <- ui (a chain), docs alone.
        let domains = [
            domain("db", "db/**", &[]),
            domain("api", "api/**", &["db"]),
            domain("ui", "ui/**", &["api"]),
            domain("docs", "docs/**", &[]),
        ];
        let map = OwnershipMap::with_rules(&domains, &["shared/**".to_string()], &[]).unwrap();
        let mut g = CouplingGraph::new();
        link(&mut g, "ui/a.ts", "db/x.rs", 3.0); // ui depends on db through api: not cut
        link(&mut g, "api/a.rs", "db/x.rs", 2.0); // a direct dependency: not cut
        link(&mut g, "docs/a.md", "ui/a.ts", 1.0); // independent: cut
        link(&mut g, "docs/a.md", "db/x.rs", 5.0); // independent: cut, heavier
        link(&mut g, "docs/b.md", "docs/a.md", 9.0); // one domain: not cut
        link(&mut g, "docs/a.md", "shared/c.txt", 9.0); // shared: not cut
        link(&mut g, "docs/a.md", "README.md", 9.0); // unowned: not cut
        let cut = cut(&g, &map, &domains);
        let got: Vec<(&str, &str, &str, &str)> = cut
            .edges
            .iter()
            .map(|e| {
                (
                    e.a.domain.as_str(),
                    e.a.path.as_str(),
                    e.b.domain.as_str(),
                    e.b.path.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("db", "db/x.rs", "docs", "docs/a.md"),
                ("docs", "docs/a.md", "ui", "ui/a.ts")
            ]
        );
        assert_eq!(
            cut.pairs
                .iter()
                .map(|p| (p.a.as_str(), p.b.as_str(), p.edges))
                .collect::<Vec<_>>(),
            [("db", "docs", 1), ("docs", "ui", 1)]
        );
        let indep = Independence::new(&domains);
        assert!(!indep.independent("db", "ui") && !indep.independent("ui", "db"));
        assert!(indep.independent("api", "docs") && !indep.independent("api", "api"));
        assert!(cut.edges[0].describe().starts_with(
            "`db` and `docs` are independent, but db/x.rs (db) and docs/a.md (docs) are coupled, weight 5.00: "
        ));
    }

    #[test]
    fn siblings_of_one_dependency_are_independent() {
        // a and b both depend on base: a and b may run together.
        let domains = [
            domain("base", "base/**", &[]),
            domain("a", "a/**", &["base"]),
            domain("b", "b/**", &["base"]),
        ];
        let map = OwnershipMap::new(&domains).unwrap();
        let mut g = CouplingGraph::new();
        link(&mut g, "a/x", "b/y", 1.0);
        link(&mut g, "a/x", "base/z", 1.0);
        let c = cut(&g, &map, &domains);
        assert_eq!(c.edges.len(), 1);
        assert_eq!(
            (c.edges[0].a.domain.as_str(), c.edges[0].b.domain.as_str()),
            ("a", "b")
        );
    }
}
