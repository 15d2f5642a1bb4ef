//! What the scouts and the planner are told: the repository's measurements and strongest
//! coupling as text, the areas scouts are sent to, and the prompts themselves.

use std::collections::BTreeMap;

use serde::Serialize;

use super::check::Problem;
use super::proposal::{Proposal, ScoutReport};
use crate::coupling::{Analysis, Measurements};

/// Strongest edges shown to the planner.
pub const SHOWN_EDGES: usize = 20;
/// Directories listed to the planner.
pub const SHOWN_DIRS: usize = 40;

/// One coupling edge, as the planner reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrongEdge {
    pub a: String,
    pub b: String,
    pub weight: f64,
    pub evidence: String,
}

/// The measurements of the repository the planner gets.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Facts {
    pub files: usize,
    pub languages: BTreeMap<String, usize>,
    /// Files directly in each directory.
    pub dirs: BTreeMap<String, usize>,
    /// The coupling graph's heaviest edges.
    pub edges: Vec<StrongEdge>,
    pub history_commits: usize,
}

impl Facts {
    pub fn of(analysis: &Analysis) -> Facts {
        Facts::from_parts(
            &analysis.measurements,
            analysis
                .graph
                .strongest(SHOWN_EDGES)
                .into_iter()
                .map(|e| StrongEdge {
                    a: e.a.clone(),
                    b: e.b.clone(),
                    weight: e.weight,
                    evidence: e.describe(),
                })
                .collect(),
            analysis.history.walked,
        )
    }

    pub fn from_parts(m: &Measurements, edges: Vec<StrongEdge>, history_commits: usize) -> Facts {
        Facts {
            files: m.files,
            languages: m.languages.clone(),
            dirs: m.dirs.clone(),
            edges,
            history_commits,
        }
    }

    /// Files in `dir` and below (`.`: all).
    pub fn files_under(&self, dir: &str) -> usize {
        if dir == "." || dir.is_empty() {
            return self.files;
        }
        let prefix = format!("{dir}/");
        self.dirs
            .iter()
            .filter(|(d, _)| *d == dir || d.starts_with(&prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// The measurements as the planner reads them.
    pub fn render(&self) -> String {
        let mut langs: Vec<(&String, &usize)> = self.languages.iter().collect();
        langs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let langs: Vec<String> = langs.iter().map(|(l, n)| format!("{l} {n}")).collect();
        let mut s = format!(
            "Repository measurements (tracked files at base): {} file(s); languages: {}.\n",
            self.files,
            langs.join(", ")
        );
        s.push_str("Files per directory (files directly in it / in it and below):\n");
        // Each directory's total once: sorting by totals computed per comparison is quadratic.
        let mut dirs: Vec<(&String, &usize, usize)> =
            self.dirs.iter().map(|(d, n)| (d, n, 0)).collect();
        let mut below: BTreeMap<&str, usize> = BTreeMap::new();
        for (d, n) in &self.dirs {
            if d == "." {
                continue;
            }
            let mut cur = d.as_str();
            loop {
                *below.entry(cur).or_default() += n;
                match cur.rfind('/') {
                    Some(i) => cur = &cur[..i],
                    None => break,
                }
            }
        }
        for d in &mut dirs {
            d.2 = if d.0 == "." {
                self.files
            } else {
                below.get(d.0.as_str()).copied().unwrap_or(*d.1)
            };
        }
        dirs.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
        for (d, n, total) in dirs.iter().take(SHOWN_DIRS) {
            s.push_str(&format!("  {d}/  {n} / {total}\n"));
        }
        if dirs.len() > SHOWN_DIRS {
            s.push_str(&format!(
                "  … and {} more directories\n",
                dirs.len() - SHOWN_DIRS
            ));
        }
        if self.edges.is_empty() {
            s.push_str("The coupling graph has no edges.\n");
        } else {
            s.push_str(&format!(
                "Strongest coupling between files (static imports, and co-changes in the last {} commit(s)); files coupled this strongly belong to one domain, or the importing side depends on the imported one:\n",
                self.history_commits
            ));
            for e in &self.edges {
                s.push_str(&format!(
                    "  {} <-> {}  weight {:.2}: {}\n",
                    e.a, e.b, e.weight, e.evidence
                ));
            }
        }
        s
    }
}

/// The directory clusters scouts are sent to: top-level directories by files below them (root
/// files as `.`), the largest split into its subdirectories while it holds most of the files;
/// the `k` largest.
pub fn areas(facts: &Facts, k: usize) -> Vec<(String, usize)> {
    if k == 0 {
        return Vec::new();
    }
    let children = |dir: &str| -> Vec<(String, usize)> {
        let mut out: BTreeMap<String, usize> = BTreeMap::new();
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        for (d, n) in &facts.dirs {
            if d == "." || (dir.is_empty() && d.is_empty()) {
                continue;
            }
            let Some(rest) = d.strip_prefix(&prefix) else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            let first = rest.split('/').next().unwrap_or(rest);
            *out.entry(format!("{prefix}{first}")).or_default() += n;
        }
        out.into_iter().collect()
    };
    let mut list = children("");
    let root = facts.dirs.get(".").copied().unwrap_or(0);
    if root > 0 {
        list.push((".".into(), root));
    }
    // Split the largest area while it holds more than half the files and has subdirectories.
    for _ in 0..3 {
        list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let Some((top, n)) = list.first().cloned() else {
            break;
        };
        if top == "." || n * 2 <= facts.files {
            break;
        }
        let sub = children(&top);
        if sub.is_empty() {
            break;
        }
        let inside: usize = sub.iter().map(|(_, n)| n).sum();
        list.remove(0);
        list.extend(sub);
        if n > inside {
            list.push((top, n - inside));
        }
    }
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    list.truncate(k);
    list
}

/// Words that start every scout prompt (a test's mock tells scouts from the planner by them).
pub const SCOUT_MARK: &str = "You are a scout for agent-farm";
/// Words that start the planner's first prompt.
pub const PLANNER_MARK: &str = "You are the planner of agent-farm";
/// Words that start the planner's second prompt, with the problems of its first answer.
pub const REPAIR_MARK: &str = "Your plan failed agent-farm's checks";

pub fn scout_prompt(goal: &str, area: &str, files: usize, facts: &Facts) -> String {
    format!(
        "{SCOUT_MARK}, reading one area of this repository before a planner splits a goal into domains that coding agents will work on in parallel. Read only; do not change any file.\n\n\
Goal:\n{goal}\n\n\
Your area: `{area}` ({files} file(s){}).\n\n\
{}\n\
Report on your area for the goal: what in it the goal concerns, which of its files the goal probably changes (paths relative to the repository root), and how it depends on other areas (what it imports, what imports it). Answer with one JSON object as the last thing you print, of the shape {{\"summary\": \"…\", \"files\": [\"path\", …]}}.\n",
        if area == "." {
            ", the files at the repository root"
        } else {
            ""
        },
        facts.render()
    )
}

/// What one scout found, or why it found nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scouted {
    pub area: String,
    pub report: Option<ScoutReport>,
    pub error: Option<String>,
}

fn render_findings(findings: &[Scouted]) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let mut s = String::from("Scouts' findings, one per area:\n");
    for f in findings {
        match (&f.report, &f.error) {
            (Some(r), _) => {
                s.push_str(&format!("- area `{}`: {}\n", f.area, r.summary.trim()));
                if !r.files.is_empty() {
                    s.push_str(&format!(
                        "  files it expects to change: {}\n",
                        r.files.join(", ")
                    ));
                }
            }
            (None, e) => s.push_str(&format!(
                "- area `{}`: no finding ({})\n",
                f.area,
                e.as_deref().unwrap_or("no answer")
            )),
        }
    }
    s.push('\n');
    s
}

const SHAPE: &str = r#"{"domains": [{"name": "api", "prompt": "what this domain's agent must do, complete and self-contained", "owns": ["src/api/**"], "depends_on": [], "why": "why this split"}], "expected_files": 14, "touches": ["src/api/handlers.rs"], "notes": ""}"#;

const RULES: &str = "Rules agent-farm checks your plan against (a plan that breaks them is sent back or changed):
- Each domain's agent works alone in its own worktree and may change only files matching its `owns` globs (relative to the repository root; `*` stays within a directory, `**` spans directories; a path without wildcards owns that file or directory). No two domains may own the same file.
- Names: letters, digits, `-`, `_`, `.`; unique; not `integration`.
- `depends_on` lists domains that must be merged before this one starts; no cycles. A service must exist before the route that uses it: the importing side depends on the imported side.
- Tightly coupled files (the strongest edges above) belong to the same domain, or the two domains need a dependency between them.
- Every existing file the goal changes must be owned by some domain.
- Features of 10 or more files benefit from parallel agents; 3 to 10 files are better done by one agent: then propose a single domain.
";

pub fn planner_prompt(
    goal: &str,
    facts: &Facts,
    findings: &[Scouted],
    max_domains: Option<usize>,
) -> String {
    format!(
        "{PLANNER_MARK}: split a goal into domains that coding agents can work on in parallel on one git repository, each in its own worktree and branch, merged in dependency order. Read only; do not change any file.\n\n\
Goal:\n{goal}\n\n\
{}\n\
{}\
{RULES}{}\n\
Answer with one JSON object as the last thing you print, of exactly this shape:\n{SHAPE}\n\
`expected_files`: how many files the goal changes in all, new files included; `touches`: the existing files it probably changes.\n",
        facts.render(),
        render_findings(findings),
        max_domains
            .map(|n| format!("- At most {n} domain(s).\n"))
            .unwrap_or_default(),
    )
}

pub fn repair_prompt(
    goal: &str,
    facts: &Facts,
    proposal: &Proposal,
    problems: &[Problem],
) -> String {
    let mut list = String::new();
    for p in problems {
        list.push_str(&format!("- {}\n", p.message));
    }
    format!(
        "{REPAIR_MARK}. Fix every problem below and answer with the whole corrected plan. Read only; do not change any file.\n\n\
Goal:\n{goal}\n\n\
Problems:\n{list}\n\
Your plan:\n{}\n\n\
{}\n\
{RULES}\n\
Answer with one JSON object as the last thing you print, of exactly this shape:\n{SHAPE}\n",
        serde_json::to_string_pretty(proposal).unwrap_or_default(),
        facts.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        let mut f = Facts {
            files: 20,
            ..Default::default()
        };
        for (d, n) in [
            (".", 2),
            ("src", 1),
            ("src/api", 8),
            ("src/ui", 6),
            ("docs", 3),
        ] {
            f.dirs.insert(d.into(), n);
        }
        f.languages.insert("rust".into(), 15);
        f.edges.push(StrongEdge {
            a: "src/api/a.rs".into(),
            b: "src/ui/b.rs".into(),
            weight: 2.0,
            evidence: "src/ui/b.rs:1 imports src/api/a.rs (`use x`)".into(),
        });
        f
    }

    #[test]
    fn areas_split_the_directory_holding_most_files() {
        let f = facts();
        assert_eq!(
            areas(&f, 3),
            [
                ("src/api".to_string(), 8),
                ("src/ui".into(), 6),
                ("docs".into(), 3)
            ]
        );
        assert_eq!(areas(&f, 1), [("src/api".to_string(), 8)]);
        assert!(areas(&f, 0).is_empty());
    }

    #[test]
    fn prompts_carry_the_measurements_and_findings() {
        let f = facts();
        let text = f.render();
        assert!(text.contains("20 file(s); languages: rust 15"), "{text}");
        assert!(text.contains("src/api/  8 / 8"), "{text}");
        assert!(
            text.contains("src/api/a.rs <-> src/ui/b.rs  weight 2.00"),
            "{text}"
        );
        let found = [Scouted {
            area: "src/api".into(),
            report: Some(ScoutReport {
                summary: "handlers live here".into(),
                files: vec!["src/api/a.rs".into()],
            }),
            error: None,
        }];
        let p = planner_prompt("add caching", &f, &found, Some(3));
        assert!(p.starts_with(PLANNER_MARK));
        for needle in [
            "add caching",
            "handlers live here",
            "At most 3 domain(s)",
            "src/ui/b.rs:1 imports",
        ] {
            assert!(p.contains(needle), "{needle}: {p}");
        }
        assert!(scout_prompt("g", "src/api", 8, &f).contains("Your area: `src/api` (8 file(s))"));
    }
}
