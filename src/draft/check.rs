//! Checking a proposal with agent-farm's own rules, and the fixes that are mechanical.
//!
//! The checks: the plan validation every `farm.yaml` goes through (names, prompts, globs,
//! dependencies, cycles, overlaps provable from the patterns), overlaps on the files at base,
//! coupling the split cuts between domains that may run at the same time, files the goal
//! probably touches that no domain owns, and more domains than asked for. Globs matching no file
//! are warnings (a domain may only create files).
//!
//! The fixes, each reported in a sentence: names made safe and unique, unknown dependencies
//! dropped, invalid globs dropped, a cycle's domains merged, an overlapping glob narrowed to the
//! files at base the other domain does not own (or the two domains merged when nothing is left),
//! a strong coupling cut turned into a `depends_on` when the imports run one way and into a merge
//! otherwise, an unowned file given to the domain it is most coupled to (or that owns its
//! neighbours), and the most coupled domains merged while there are too many.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::proposal::{Proposal, ProposedDomain};
use super::yaml;
use crate::coupling::{self, CouplingGraph, Cut, Evidence};
use crate::error::PlanError;
use crate::ownership::{self, OwnershipMap, Owns};
use crate::plan::{self, Domain, schedule};

/// A cut between two domains at least this heavy (an import, or files changed together about
/// once recently) must be resolved.
pub const STRONG_CUT: f64 = 1.0;
/// Rounds of mechanical fixes before giving up on what is left: a few, and a few per domain
/// (each round makes one change, or gives every unowned file a home).
fn max_rounds(domains: usize) -> usize {
    (8 + 4 * domains).min(400)
}

impl ownership::Claim for ProposedDomain {
    fn name(&self) -> &str {
        &self.name
    }
    fn owns(&self) -> &[String] {
        &self.owns
    }
}

/// What a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The plan validation of `farm.yaml` failed (names, prompts, globs, cycles, pattern overlaps).
    Invalid,
    /// Two domains own the same files at base.
    Overlap,
    /// Strong coupling between two domains with no dependency between them.
    Cut,
    /// A file the goal probably changes that no domain owns.
    Unowned,
    /// More domains than `--domains` allows.
    TooMany,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub domain: Option<String>,
    pub message: String,
}

/// What the checks are made against.
#[derive(Debug, Clone, Copy)]
pub struct Repo<'a> {
    /// Tracked files at base.
    pub files: &'a [String],
    pub graph: &'a CouplingGraph,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
    /// The coupling the split cuts between independent domains (when the plan is valid).
    pub cut: Cut,
    /// The validated plan (when it is valid).
    pub plan: Option<plan::Plan>,
}

impl Checked {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The proposal's domains as a plan's.
pub fn to_domains(p: &Proposal) -> Vec<Domain> {
    p.domains
        .iter()
        .map(|d| Domain {
            name: d.name.clone(),
            prompt: d.prompt.clone(),
            prompt_file: None,
            owns: d.owns.clone(),
            depends_on: d.depends_on.clone(),
            priority: 0,
            timeout: None,
            verify: None,
            setup: Vec::new(),
            line: None,
        })
        .collect()
}

/// Parse the proposal as the `farm.yaml` it would become.
pub fn validate(p: &Proposal) -> Result<plan::Plan, Vec<crate::error::Problem>> {
    match plan::parse(Path::new("farm.yaml"), &yaml::bare(p), |f| {
        Err(format!("no prompt files in a draft ({})", f.display()))
    }) {
        Ok(plan) => Ok(plan),
        Err(PlanError::Invalid { problems, .. }) => Err(problems),
        Err(e) => Err(vec![crate::error::Problem {
            line: None,
            column: None,
            domain: None,
            message: e.to_string(),
        }]),
    }
}

/// Existing files (at base) among `paths`, normalised.
pub fn existing(paths: impl IntoIterator<Item = String>, files: &[String]) -> BTreeSet<String> {
    let all: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    paths
        .into_iter()
        .filter_map(|p| plan::normalize_relative(p.trim()))
        .filter(|p| all.contains(p.as_str()))
        .collect()
}

/// The directory a glob's literal part names (`src/api/*.rs` → `src/api`; `src/api` →
/// `src/api` when it is a directory at base); `None` at the root or for a single file.
fn covered_dir(glob: &str, files: &[String]) -> Option<String> {
    let g = glob.trim_start_matches("./").trim_end_matches('/');
    let lit: Vec<&str> = g
        .split('/')
        .take_while(|s| !s.contains(['*', '?', '[', '{']))
        .collect();
    if lit.is_empty() {
        return None;
    }
    let d = lit.join("/");
    let prefix = format!("{d}/");
    files.iter().any(|f| f.starts_with(&prefix)).then_some(d)
}

/// Check `p` against agent-farm's rules on the files and coupling of `repo`; `touched` are the
/// existing files the goal probably changes.
pub fn check(
    p: &Proposal,
    touched: &BTreeSet<String>,
    repo: Repo,
    max_domains: Option<usize>,
) -> Checked {
    let mut out = Checked::default();
    // An invalid plan is checked on as far as its globs compile, so that one answer to the
    // planner lists every problem.
    let plan = match validate(p) {
        Ok(plan) => Some(plan),
        Err(problems) => {
            out.problems = problems
                .into_iter()
                .map(|pr| Problem {
                    kind: ProblemKind::Invalid,
                    message: match &pr.domain {
                        Some(d) => format!("domain `{d}`: {}", pr.message),
                        None => pr.message,
                    },
                    domain: pr.domain,
                })
                .collect();
            None
        }
    };
    let domains = plan
        .as_ref()
        .map_or_else(|| to_domains(p), |plan| plan.domains.clone());
    let Ok(map) = OwnershipMap::new(&domains) else {
        return out;
    };
    for (a, b, examples) in map.overlaps_in(repo.files.iter().map(String::as_str)) {
        out.problems.push(Problem {
            kind: ProblemKind::Overlap,
            domain: Some(b.clone()),
            message: format!(
                "domains `{a}` and `{b}` both own existing files: {}",
                examples.join(", ")
            ),
        });
    }
    for d in &domains {
        for g in &d.owns {
            let matches = Owns::new(std::slice::from_ref(g))
                .map(|o| repo.files.iter().any(|f| o.matches(f)))
                .unwrap_or(true);
            if !matches {
                out.warnings.push(format!(
                    "domain `{}`: `{g}` matches no file at base (fine if it only creates files)",
                    d.name
                ));
            }
        }
    }
    let cut = coupling::cut::cut(repo.graph, &map, &domains);
    for pair in cut.pairs.iter().filter(|p| p.weight >= STRONG_CUT) {
        let evidence = cut
            .edges
            .iter()
            .find(|e| {
                (e.a.domain == pair.a && e.b.domain == pair.b)
                    || (e.a.domain == pair.b && e.b.domain == pair.a)
            })
            .map(|e| e.describe())
            .unwrap_or_default();
        out.problems.push(Problem {
            kind: ProblemKind::Cut,
            domain: Some(pair.b.clone()),
            message: format!(
                "strong coupling cut between independent domains `{}` and `{}` ({} edge(s), weight {:.2}): {evidence}",
                pair.a, pair.b, pair.edges, pair.weight
            ),
        });
    }
    out.cut = cut;
    let unowned: BTreeSet<String> = unowned_files(p, touched, repo.files, &map);
    let from_goal: Vec<&String> = unowned.iter().filter(|f| touched.contains(*f)).collect();
    if !from_goal.is_empty() {
        out.problems.push(Problem {
            kind: ProblemKind::Unowned,
            domain: None,
            message: format!(
                "no domain owns {} file(s) the goal probably changes: {}",
                from_goal.len(),
                examples(&from_goal)
            ),
        });
    }
    let beside: Vec<&String> = unowned.iter().filter(|f| !touched.contains(*f)).collect();
    if !beside.is_empty() {
        out.problems.push(Problem {
            kind: ProblemKind::Unowned,
            domain: None,
            message: format!(
                "no domain owns {} file(s) in the directories the domains cover: {}",
                beside.len(),
                examples(&beside)
            ),
        });
    }
    if let Some(n) = max_domains
        && domains.len() > n
    {
        out.problems.push(Problem {
            kind: ProblemKind::TooMany,
            domain: None,
            message: format!("{} domains proposed, at most {n} asked for", domains.len()),
        });
    }
    out.plan = plan;
    out
}

fn examples(files: &[&String]) -> String {
    let mut s: Vec<String> = files.iter().take(8).map(|f| f.to_string()).collect();
    if files.len() > 8 {
        s.push(format!("… {} more", files.len() - 8));
    }
    s.join(", ")
}

/// Files owned by no domain among those the goal touches and those under the directories the
/// domains' globs cover.
fn unowned_files(
    p: &Proposal,
    touched: &BTreeSet<String>,
    files: &[String],
    map: &OwnershipMap,
) -> BTreeSet<String> {
    let dirs: BTreeSet<String> = p
        .domains
        .iter()
        .flat_map(|d| d.owns.iter().filter_map(|g| covered_dir(g, files)))
        .collect();
    let under = |f: &str| dirs.iter().any(|d| f.starts_with(&format!("{d}/")));
    files
        .iter()
        .filter(|f| touched.contains(*f) || under(f))
        .filter(|f| map.owners(f).is_empty())
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Mechanical fixes

/// A name that passes [`plan::check_name`], made from `name`.
fn safe_name(name: &str) -> String {
    let mut s: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("..") {
        s = s.replace("..", ".");
    }
    let mut s = s
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .trim_end_matches(['.', '-'])
        .to_string();
    if let Some(x) = s.strip_suffix(".lock") {
        s = format!("{x}-lock");
    }
    s.truncate(60);
    if s.is_empty() || s == "integration" {
        s = format!("domain-{s}").trim_end_matches('-').to_string();
    }
    s
}

/// Fix what every plan needs: safe, unique names, prompts, valid globs, known dependencies.
fn sanitize(p: &mut Proposal, goal: &str, changes: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    for d in &mut p.domains {
        let mut name = if plan::check_name(&d.name).is_ok() {
            d.name.clone()
        } else {
            safe_name(&d.name)
        };
        let base = name.clone();
        let mut i = 2;
        while seen.contains(&name) {
            name = format!("{base}-{i}");
            i += 1;
        }
        seen.insert(name.clone());
        if name != d.name {
            changes.push(format!(
                "renamed domain `{}` to `{name}` (a safe, unique name)",
                d.name
            ));
            renamed.entry(d.name.clone()).or_insert(name.clone());
            d.name = name;
        }
    }
    let names: BTreeSet<String> = p.domains.iter().map(|d| d.name.clone()).collect();
    for d in &mut p.domains {
        if d.prompt.trim().is_empty() {
            d.prompt = format!("Your part of the goal: {goal}");
            if !d.why.trim().is_empty() {
                d.prompt
                    .push_str(&format!("\n\nThis domain: {}", d.why.trim()));
            }
            changes.push(format!(
                "domain `{}` had no prompt: gave it the goal",
                d.name
            ));
        }
        let mut deps = Vec::new();
        for dep in std::mem::take(&mut d.depends_on) {
            let dep = renamed.get(&dep).cloned().unwrap_or(dep);
            if dep == d.name || !names.contains(&dep) {
                changes.push(format!(
                    "domain `{}`: dropped the dependency on {}",
                    d.name,
                    if dep == d.name {
                        "itself".to_string()
                    } else {
                        format!("unknown domain `{dep}`")
                    }
                ));
            } else if !deps.contains(&dep) {
                deps.push(dep);
            }
        }
        d.depends_on = deps;
        let mut owns = Vec::new();
        for g in std::mem::take(&mut d.owns) {
            let g = g.trim().trim_start_matches("./").to_string();
            match ownership::compile_glob(&g) {
                Ok(()) if !owns.contains(&g) => owns.push(g),
                Ok(()) => {}
                Err(e) => changes.push(format!(
                    "domain `{}`: dropped the invalid glob ({e})",
                    d.name
                )),
            }
        }
        d.owns = owns;
    }
    let before: Vec<String> = p.domains.iter().map(|d| d.name.clone()).collect();
    p.domains.retain(|d| !d.owns.is_empty());
    for name in before {
        if !p.domains.iter().any(|d| d.name == name) {
            changes.push(format!("dropped domain `{name}`: it owns no path"));
            for d in &mut p.domains {
                d.depends_on.retain(|x| *x != name);
            }
        }
    }
}

fn index_of(p: &Proposal, name: &str) -> Option<usize> {
    p.domains.iter().position(|d| d.name == name)
}

/// Merge domain `drop` into domain `keep`: globs, prompts, dependencies; dependents follow.
fn merge(p: &mut Proposal, keep: usize, drop: usize) {
    let gone = p.domains[drop].clone();
    let kept = p.domains[keep].name.clone();
    {
        let k = &mut p.domains[keep];
        for g in gone.owns {
            if !k.owns.contains(&g) {
                k.owns.push(g);
            }
        }
        k.prompt = format!("{}\n\n{}", k.prompt.trim_end(), gone.prompt.trim());
        if !gone.why.trim().is_empty() {
            k.why = format!("{} {}", k.why.trim(), gone.why.trim())
                .trim()
                .to_string();
        }
        for dep in gone.depends_on {
            if !k.depends_on.contains(&dep) {
                k.depends_on.push(dep);
            }
        }
    }
    p.domains.remove(drop);
    for d in &mut p.domains {
        for dep in &mut d.depends_on {
            if *dep == gone.name {
                *dep = kept.clone();
            }
        }
        let name = d.name.clone();
        let mut seen = BTreeSet::new();
        d.depends_on
            .retain(|x| *x != name && seen.insert(x.clone()));
    }
}

fn merge_names(p: &mut Proposal, a: &str, b: &str) -> Option<String> {
    let (i, j) = (index_of(p, a)?, index_of(p, b)?);
    let (keep, drop) = if i < j { (i, j) } else { (j, i) };
    let (kn, dn) = (p.domains[keep].name.clone(), p.domains[drop].name.clone());
    merge(p, keep, drop);
    Some(format!("merged domain `{dn}` into `{kn}`"))
}

fn files_of<'a>(globs: &[String], files: &'a [String]) -> Vec<&'a str> {
    match Owns::new(globs) {
        Ok(o) => files
            .iter()
            .filter(|f| o.matches(f))
            .map(String::as_str)
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn patterns_overlap(a: &[String], b: &[String]) -> bool {
    let claim = |owns: &[String]| ProposedDomain {
        name: "x".into(),
        prompt: String::new(),
        owns: owns.to_vec(),
        depends_on: Vec::new(),
        why: String::new(),
    };
    !ownership::pattern_overlaps(&[claim(a), claim(b)]).is_empty()
}

/// `glob` narrowed to the files at base it matches that `other` does not own: whole directories
/// (`dir/**`) where every file below is kept and no path below can be `other`'s, single files
/// elsewhere. Empty when nothing is left.
pub fn narrow(glob: &str, other: &[String], files: &[String]) -> Vec<String> {
    let (Ok(mine), Ok(theirs)) = (Owns::new(&[glob.to_string()]), Owns::new(other)) else {
        return Vec::new();
    };
    let keep: BTreeSet<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| mine.matches(f) && !theirs.matches(f))
        .collect();
    let prefix = covered_dir(glob, files).unwrap_or_default();
    let within = |d: &str| prefix.is_empty() || d == prefix || d.starts_with(&format!("{prefix}/"));
    // Directories holding a file that is not kept (computed once: a scan per candidate
    // directory would be quadratic on a large repository).
    let mut mixed: BTreeSet<&str> = BTreeSet::new();
    for f in files.iter().filter(|f| !keep.contains(f.as_str())) {
        let mut cur = f.as_str();
        while let Some(i) = cur.rfind('/') {
            cur = &cur[..i];
            if !mixed.insert(cur) {
                break;
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut covered: Vec<String> = Vec::new();
    for f in &keep {
        if covered.iter().any(|d| f.starts_with(&format!("{d}/"))) {
            continue;
        }
        let parts: Vec<&str> = f.split('/').collect();
        let lifted = (1..parts.len()).map(|n| parts[..n].join("/")).find(|d| {
            within(d)
                && !mixed.contains(d.as_str())
                && !patterns_overlap(&[format!("{d}/**")], other)
        });
        match lifted {
            Some(d) => {
                out.push(format!("{d}/**"));
                covered.push(d);
            }
            None => out.push(f.to_string()),
        }
    }
    out
}

/// Resolve one overlap between domains `i` and `j`: narrow the broader glob, or merge.
fn resolve_overlap(p: &mut Proposal, i: usize, j: usize, files: &[String]) -> String {
    let (a, b) = (p.domains[i].clone(), p.domains[j].clone());
    let pair = a
        .owns
        .iter()
        .flat_map(|ga| b.owns.iter().map(move |gb| (ga, gb)))
        .find(|(ga, gb)| {
            let (ga, gb) = ([ga.to_string()], [gb.to_string()]);
            patterns_overlap(&ga, &gb) || {
                let fb: BTreeSet<&str> = files_of(&gb, files).into_iter().collect();
                files_of(&ga, files).iter().any(|f| fb.contains(f))
            }
        });
    let Some((ga, gb)) = pair else {
        return merge_names(p, &a.name, &b.name).unwrap_or_default();
    };
    let (na, nb) = (
        files_of(std::slice::from_ref(ga), files).len(),
        files_of(std::slice::from_ref(gb), files).len(),
    );
    // The broader claim gives way; on a tie the later domain's.
    let (broad, glob, other) = if na > nb {
        (i, ga.clone(), b.owns.clone())
    } else {
        (j, gb.clone(), a.owns.clone())
    };
    let narrowed = narrow(&glob, &other, files);
    let name = p.domains[broad].name.clone();
    let other_name = if broad == i { &b.name } else { &a.name };
    if narrowed == [glob.clone()] {
        return merge_names(p, &a.name, &b.name)
            .map(|m| {
                format!("{m}: `{glob}` overlaps `{other_name}`'s paths and cannot be narrowed")
            })
            .unwrap_or_default();
    }
    let d = &mut p.domains[broad];
    let at = d.owns.iter().position(|g| *g == glob).unwrap_or(0);
    d.owns.splice(at..=at, narrowed.clone());
    let mut seen = BTreeSet::new();
    d.owns.retain(|g| seen.insert(g.clone()));
    if d.owns.is_empty() {
        return merge_names(p, &a.name, &b.name)
            .map(|m| format!("{m}: every path `{name}` owned is `{other_name}`'s too"))
            .unwrap_or_default();
    }
    if narrowed.is_empty() {
        format!("domain `{name}`: dropped `{glob}`, which only covers paths of `{other_name}`")
    } else {
        format!(
            "domain `{name}`: narrowed `{glob}` to {} so it no longer overlaps `{other_name}`",
            narrowed
                .iter()
                .map(|g| format!("`{g}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The first overlap between two domains, from the patterns or the files at base.
fn first_overlap(p: &Proposal, files: &[String]) -> Option<(usize, usize)> {
    if let Some(o) = ownership::pattern_overlaps(&p.domains).first() {
        return Some((o.first, o.second));
    }
    let map = OwnershipMap::new(&p.domains).ok()?;
    let (a, b, _) = map
        .overlaps_in(files.iter().map(String::as_str))
        .into_iter()
        .next()?;
    Some((index_of(p, &a)?, index_of(p, &b)?))
}

/// Resolve the strong cut between `a` and `b`: the importing side depends on the imported one
/// when the imports run one way; otherwise the two are merged.
fn resolve_cut(p: &mut Proposal, cut: &Cut, a: &str, b: &str) -> Option<String> {
    let map = OwnershipMap::new(&p.domains).ok()?;
    let (mut a_uses_b, mut b_uses_a) = (None, None);
    let edges: Vec<_> = cut
        .edges
        .iter()
        .filter(|e| (e.a.domain == a && e.b.domain == b) || (e.a.domain == b && e.b.domain == a))
        .collect();
    for e in &edges {
        for ev in &e.evidence {
            if let Evidence::Import { from, .. } = ev {
                if map.owns(a, from) {
                    a_uses_b.get_or_insert_with(|| ev.to_string());
                } else if map.owns(b, from) {
                    b_uses_a.get_or_insert_with(|| ev.to_string());
                }
            }
        }
    }
    let cochange = edges
        .iter()
        .flat_map(|e| &e.evidence)
        .any(|ev| matches!(ev, Evidence::CoChange { .. }));
    let direction = match (&a_uses_b, &b_uses_a) {
        (Some(ev), None) => Some((a, b, ev.clone())),
        (None, Some(ev)) => Some((b, a, ev.clone())),
        _ => None,
    };
    if let Some((user, used, ev)) = direction {
        let i = index_of(p, user)?;
        p.domains[i].depends_on.push(used.to_string());
        if schedule::find_cycle(&to_domains(p)).is_none() {
            return Some(format!(
                "domain `{user}` now depends on `{used}` ({ev}{})",
                if cochange {
                    "; they also change together"
                } else {
                    ""
                }
            ));
        }
        p.domains[i].depends_on.pop();
    }
    let why = edges.first().map(|e| e.describe()).unwrap_or_default();
    merge_names(p, a, b).map(|m| format!("{m}: coupled both ways or by co-change ({why})"))
}

/// The domain `file` belongs with: the one whose files it is most coupled to, else the one
/// owning most files beside it (in its directory, then up).
fn home_for(p: &Proposal, file: &str, repo: Repo) -> Option<(usize, String)> {
    let map = OwnershipMap::new(&p.domains).ok()?;
    let mut score: BTreeMap<String, f64> = BTreeMap::new();
    for e in repo.graph.edges() {
        let other = if e.a == file {
            &e.b
        } else if e.b == file {
            &e.a
        } else {
            continue;
        };
        if let [owner] = map.owners(other).as_slice() {
            *score.entry(owner.to_string()).or_default() += e.weight;
        }
    }
    if let Some((d, w)) = score
        .iter()
        .max_by(|x, y| x.1.total_cmp(y.1).then_with(|| y.0.cmp(x.0)))
    {
        return Some((
            index_of(p, d)?,
            format!("coupled to its files, weight {w:.2}"),
        ));
    }
    let mut dir = coupling::files::parent(file);
    loop {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for f in repo.files.iter().filter(|f| f.starts_with(&prefix)) {
            if let [owner] = map.owners(f).as_slice() {
                *count.entry(owner.to_string()).or_default() += 1;
            }
        }
        if let Some((d, _)) = count
            .iter()
            .max_by(|x, y| x.1.cmp(y.1).then_with(|| y.0.cmp(x.0)))
        {
            let place = if dir.is_empty() {
                ".".to_string()
            } else {
                dir.to_string()
            };
            return Some((
                index_of(p, d)?,
                format!("it owns files beside it in {place}/"),
            ));
        }
        if dir.is_empty() {
            return None;
        }
        dir = coupling::files::parent(dir);
    }
}

/// Coupling between every pair of domains (cut or not), heaviest first.
fn pair_weights(p: &Proposal, graph: &CouplingGraph) -> Vec<(String, String, f64)> {
    let Ok(map) = OwnershipMap::new(&p.domains) else {
        return Vec::new();
    };
    let mut w: BTreeMap<(String, String), f64> = BTreeMap::new();
    for e in graph.edges() {
        if let ([x], [y]) = (map.owners(&e.a).as_slice(), map.owners(&e.b).as_slice())
            && x != y
        {
            let key = if x < y {
                (x.to_string(), y.to_string())
            } else {
                (y.to_string(), x.to_string())
            };
            *w.entry(key).or_default() += e.weight;
        }
    }
    let mut out: Vec<(String, String, f64)> = w.into_iter().map(|((a, b), w)| (a, b, w)).collect();
    out.sort_by(|x, y| {
        y.2.total_cmp(&x.2)
            .then_with(|| (&x.0, &x.1).cmp(&(&y.0, &y.1)))
    });
    out
}

/// Fix what is mechanical in `p` until it passes [`check`] or nothing more can be done; returns
/// the fixed proposal and what was changed, in order.
pub fn fix(
    mut p: Proposal,
    goal: &str,
    touched: &BTreeSet<String>,
    repo: Repo,
    max_domains: Option<usize>,
) -> (Proposal, Vec<String>) {
    let mut changes = Vec::new();
    for _ in 0..max_rounds(p.domains.len()) {
        sanitize(&mut p, goal, &mut changes);
        if p.domains.is_empty() {
            break;
        }
        if let Some(cycle) = schedule::find_cycle(&to_domains(&p)) {
            let mut names: Vec<String> = cycle.clone();
            names.dedup();
            names.pop();
            let first = names[0].clone();
            for n in &names[1..] {
                merge_names(&mut p, &first, n);
            }
            changes.push(format!(
                "merged the domains of the dependency cycle {} into `{}`: each needs the other's work first",
                cycle.join(" → "),
                p.domains.iter().find(|d| names.contains(&d.name)).map_or(first.as_str(), |d| d.name.as_str())
            ));
            continue;
        }
        if let Some((i, j)) = first_overlap(&p, repo.files) {
            changes.push(resolve_overlap(&mut p, i, j, repo.files));
            continue;
        }
        let checked = check(&p, touched, repo, max_domains);
        if checked.ok() {
            break;
        }
        let mut changed = false;
        if let Some(pair) = checked.cut.pairs.iter().find(|x| x.weight >= STRONG_CUT)
            && let Some(m) = resolve_cut(&mut p, &checked.cut, &pair.a, &pair.b)
        {
            changes.push(m);
            continue;
        }
        if checked
            .problems
            .iter()
            .any(|x| x.kind == ProblemKind::Unowned)
            && let Ok(map) = OwnershipMap::new(&p.domains)
        {
            for f in unowned_files(&p, touched, repo.files, &map) {
                if let Some((i, why)) = home_for(&p, &f, repo) {
                    changes.push(format!(
                        "domain `{}` now owns {f}: {why}",
                        p.domains[i].name
                    ));
                    p.domains[i].owns.push(f);
                    changed = true;
                }
            }
            if changed {
                continue;
            }
        }
        if let Some(n) = max_domains
            && p.domains.len() > n
        {
            let (a, b) = match pair_weights(&p, repo.graph).first() {
                Some((a, b, _)) => (a.clone(), b.clone()),
                None => (
                    p.domains[p.domains.len() - 2].name.clone(),
                    p.domains[p.domains.len() - 1].name.clone(),
                ),
            };
            if let Some(m) = merge_names(&mut p, &a, &b) {
                changes.push(format!(
                    "{m}: at most {n} domain(s) asked for, and these are the most coupled"
                ));
                continue;
            }
        }
        if !changed {
            break;
        }
    }
    (p, changes)
}

// ---------------------------------------------------------------------------------------------
// Whether a farm is worth it

/// Fewer files than this expected to change: one agent does it better than several.
pub const MIN_FILES_FOR_A_FARM: usize = 10;

/// Why a farm is not worth it for `p`, if the rules of thumb say so.
pub fn advise_single(p: &Proposal, touched: usize, proposed: usize) -> Option<String> {
    let expected = p
        .expected_files
        .unwrap_or(0)
        .max(touched)
        .max(p.touches.len());
    if expected > 0 && expected < MIN_FILES_FOR_A_FARM {
        return Some(format!(
            "about {expected} file(s) are expected to change: fewer than {MIN_FILES_FOR_A_FARM} are done better by one agent than split between several"
        ));
    }
    if p.domains.len() <= 1 {
        return Some(if proposed > 1 {
            format!(
                "the coupling between the {proposed} proposed domains joined them into one: there is no cut worth making"
            )
        } else {
            "the planner proposed a single domain".to_string()
        });
    }
    let waves = schedule::waves(&to_domains(p));
    if waves.iter().all(|w| w.len() == 1) {
        return Some(format!(
            "the domains form one chain ({}): none can run while another does, so a farm buys no parallelism",
            waves
                .iter()
                .map(|w| w[0].as_str())
                .collect::<Vec<_>>()
                .join(" → ")
        ));
    }
    None
}

/// The single-domain plan that does the whole goal: the planner's parts (`original`) in one
/// prompt, owning every glob of `original`, and of `fixed` (which holds the files the fixes
/// assigned) those matching files at base that `original`'s do not; globs inside another's
/// `dir/**` left out.
pub fn single_domain(
    fixed: &Proposal,
    original: &Proposal,
    goal: &str,
    reason: &str,
    files: &[String],
) -> Proposal {
    let valid = |g: &String| {
        let g = g.trim().trim_start_matches("./").to_string();
        ownership::compile_glob(&g).is_ok().then_some(g)
    };
    let mut owns: Vec<String> = Vec::new();
    for g in original
        .domains
        .iter()
        .flat_map(|d| &d.owns)
        .filter_map(valid)
    {
        if !owns.contains(&g) {
            owns.push(g);
        }
    }
    let planned = Owns::new(&owns).ok();
    for g in fixed.domains.iter().flat_map(|d| &d.owns).filter_map(valid) {
        let adds = files_of(std::slice::from_ref(&g), files)
            .iter()
            .any(|f| !planned.as_ref().is_some_and(|o| o.matches(f)));
        if adds && !owns.contains(&g) {
            owns.push(g);
        }
    }
    let all = owns.clone();
    let inside = |g: &str, o: &str| {
        o == "**"
            || o.strip_suffix("/**")
                .is_some_and(|dir| g.starts_with(&format!("{dir}/")))
    };
    owns.retain(|g| !all.iter().any(|o| o != g && inside(g, o)));
    if owns.is_empty() {
        owns.push("**".into());
    }
    let parts = if original.domains.is_empty() {
        &fixed.domains
    } else {
        &original.domains
    };
    let mut prompt = goal.trim().to_string();
    if parts.len() > 1 {
        prompt.push_str("\n\nThe parts of the work:");
        for d in parts {
            prompt.push_str(&format!("\n- {}: {}", d.name, d.prompt.trim()));
        }
    } else if let Some(d) = parts.first()
        && d.prompt.trim() != goal.trim()
        && !d.prompt.trim().is_empty()
    {
        prompt.push_str(&format!("\n\n{}", d.prompt.trim()));
    }
    Proposal {
        domains: vec![ProposedDomain {
            name: "work".into(),
            prompt,
            owns,
            depends_on: Vec::new(),
            why: format!("One agent: {reason}."),
        }],
        expected_files: fixed.expected_files,
        touches: fixed.touches.clone(),
        notes: fixed.notes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, owns: &[&str], deps: &[&str]) -> ProposedDomain {
        ProposedDomain {
            name: name.into(),
            prompt: format!("do {name}"),
            owns: owns.iter().map(|s| s.to_string()).collect(),
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            why: String::new(),
        }
    }

    fn files() -> Vec<String> {
        [
            "src/lib.rs",
            "src/api/mod.rs",
            "src/api/routes.rs",
            "src/db/mod.rs",
            "src/db/pool.rs",
            "src/ui/view.rs",
            "src/ui/style.css",
            "docs/a.md",
        ]
        .map(String::from)
        .to_vec()
    }

    fn graph() -> CouplingGraph {
        let mut g = CouplingGraph::new();
        g.add_import(coupling::Import {
            from: "src/ui/view.rs".into(),
            to: "src/api/routes.rs".into(),
            line: 1,
            statement: "use crate::api::routes".into(),
            language: coupling::Language::Rust,
        });
        g
    }

    fn proposal(domains: Vec<ProposedDomain>) -> Proposal {
        Proposal {
            domains,
            expected_files: Some(20),
            ..Default::default()
        }
    }

    #[test]
    fn narrowing_keeps_the_rest_of_a_broad_glob() {
        let f = files();
        assert_eq!(
            narrow("src/**", &["src/api/**".into()], &f),
            ["src/db/**", "src/lib.rs", "src/ui/**"]
        );
        assert!(narrow("src/api/**", &["src/**".into()], &f).is_empty());
        // `*.rs` does not own the css beside it, so `src/ui` is not lifted whole.
        assert_eq!(
            narrow("src/**/*.rs", &["src/api/**".into()], &f),
            ["src/db/**", "src/lib.rs", "src/ui/view.rs"]
        );
    }

    #[test]
    fn each_problem_is_found_and_fixed() {
        let (f, g) = (files(), graph());
        let repo = Repo {
            files: &f,
            graph: &g,
        };
        let touched: BTreeSet<String> = ["docs/a.md".to_string()].into();
        let p = proposal(vec![
            d("core", &["src/**"], &["ui"]),
            d("api", &["src/api/**"], &["core"]),
            d("ui", &["src/ui/**"], &["api"]),
            d("bad name!", &["src/db/pool.rs"], &["ghost"]),
        ]);
        let checked = check(&p, &touched, repo, None);
        let kinds: BTreeSet<ProblemKind> = checked.problems.iter().map(|x| x.kind).collect();
        assert!(
            kinds.contains(&ProblemKind::Invalid),
            "{:?}",
            checked.problems
        );
        let text: Vec<&str> = checked
            .problems
            .iter()
            .map(|x| x.message.as_str())
            .collect();
        assert!(
            text.iter().any(|m| m.contains("dependency cycle")),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|m| m.contains("ownership overlaps")),
            "{text:#?}"
        );

        let (fixed, changes) = fix(p, "goal", &touched, repo, None);
        let after = check(&fixed, &touched, repo, None);
        assert!(after.ok(), "{:?}\n{changes:#?}\n{fixed:#?}", after.problems);
        let all = changes.join("\n");
        for needle in [
            "renamed domain `bad name!` to `bad-name`",
            "unknown domain `ghost`",
            "dependency cycle",
            "docs/a.md",
        ] {
            assert!(all.contains(needle), "{needle}: {all}");
        }
    }

    #[test]
    fn a_strong_cut_becomes_a_dependency_the_way_the_import_goes() {
        let (f, g) = (files(), graph());
        let repo = Repo {
            files: &f,
            graph: &g,
        };
        let p = proposal(vec![
            d("api", &["src/api/**"], &[]),
            d("ui", &["src/ui/**"], &[]),
        ]);
        let none = BTreeSet::new();
        let checked = check(&p, &none, repo, None);
        assert_eq!(checked.problems.len(), 1, "{:?}", checked.problems);
        assert_eq!(checked.problems[0].kind, ProblemKind::Cut);
        assert!(
            checked.problems[0]
                .message
                .contains("src/ui/view.rs:1 imports src/api/routes.rs")
        );
        let (fixed, changes) = fix(p, "goal", &none, repo, None);
        assert_eq!(fixed.domains[1].depends_on, ["api"]);
        assert!(
            changes[0].starts_with("domain `ui` now depends on `api`"),
            "{changes:?}"
        );
    }

    #[test]
    fn a_cut_coupled_by_co_change_merges_the_two_domains() {
        let f = files();
        let mut g = CouplingGraph::new();
        g.add_cochange(
            coupling::cochange::CoChange {
                a: "docs/a.md".into(),
                b: "src/db/pool.rs".into(),
                together: 3,
                weight: 2.5,
                last: "abc1234".into(),
            },
            10,
        );
        let repo = Repo {
            files: &f,
            graph: &g,
        };
        let p = proposal(vec![
            d("db", &["src/db/**"], &[]),
            d("docs", &["docs/**"], &[]),
        ]);
        let none = BTreeSet::new();
        let (fixed, changes) = fix(p, "goal", &none, repo, None);
        assert_eq!(fixed.domains.len(), 1, "{changes:?}");
        assert_eq!(fixed.domains[0].owns, ["src/db/**", "docs/**"]);
        assert!(
            changes[0]
                .starts_with("merged domain `docs` into `db`: coupled both ways or by co-change"),
            "{changes:?}"
        );
        assert!(
            advise_single(&fixed, 0, 2)
                .unwrap()
                .contains("joined them into one")
        );
    }

    #[test]
    fn too_many_domains_are_merged_and_a_tiny_goal_gets_one_agent() {
        let (f, g) = (files(), graph());
        let repo = Repo {
            files: &f,
            graph: &g,
        };
        let p = proposal(vec![
            d("api", &["src/api/**"], &[]),
            d("ui", &["src/ui/**"], &["api"]),
            d("docs", &["docs/**"], &[]),
        ]);
        let none = BTreeSet::new();
        let (fixed, changes) = fix(p.clone(), "goal", &none, repo, Some(2));
        assert_eq!(fixed.domains.len(), 2, "{changes:?}");
        assert!(
            changes[0].contains("merged domain `ui` into `api`"),
            "{changes:?}"
        );
        assert_eq!(advise_single(&fixed, 0, 3), None);

        let mut tiny = p.clone();
        tiny.expected_files = Some(3);
        let reason = advise_single(&tiny, 0, 3).unwrap();
        assert!(reason.contains("about 3 file(s)"), "{reason}");
        let one = single_domain(&tiny, &tiny, "fix the typo", &reason, &f);
        assert_eq!(one.domains.len(), 1);
        assert_eq!(one.domains[0].owns, ["src/api/**", "src/ui/**", "docs/**"]);
        assert!(validate(&one).is_ok());
        let mut broad = tiny.clone();
        broad.domains[0].owns = vec!["src/**".into()];
        let mut assigned = tiny.clone();
        assigned.domains[0].owns.push("src/lib.rs".into());
        assigned.domains[1].owns.push("README.md".into());
        let one = single_domain(&assigned, &broad, "g", &reason, &f);
        assert_eq!(one.domains[0].owns, ["src/**", "docs/**"]);
        let with_readme: Vec<String> = f.iter().cloned().chain(["README.md".into()]).collect();
        let one = single_domain(&assigned, &broad, "g", &reason, &with_readme);
        assert_eq!(one.domains[0].owns, ["src/**", "docs/**", "README.md"]);
        let chain = proposal(vec![
            d("a", &["src/api/**"], &[]),
            d("b", &["src/ui/**"], &["a"]),
        ]);
        assert!(
            advise_single(&chain, 0, 2)
                .unwrap()
                .contains("one chain (a → b)")
        );
        assert!(safe_name("Integration") != "integration");
        assert!(plan::check_name(&safe_name("..x.lock")).is_ok());
    }
}
