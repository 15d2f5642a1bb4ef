//! Path ownership: which domain owns which paths, as declared by `owns` globs.
//!
//! Semantics (documented in README.md): patterns are relative to the repository root and use `/`
//! separators; `*` and `?` never cross a `/`, `**` matches any number of directories; a pattern
//! without wildcards names a file or a whole directory (`src/api` owns `src/api/**`); a trailing
//! `/` means a directory. Pure: no git, no file system.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::Problem;
use crate::plan::Domain;

/// Expand one `owns` entry into the globs it stands for.
fn expand(pattern: &str) -> Vec<String> {
    let p = pattern.trim_start_matches("./");
    let has_wild = p.contains(['*', '?', '[', '{']);
    if let Some(dir) = p.strip_suffix('/') {
        vec![format!("{dir}/**")]
    } else if has_wild {
        vec![p.to_string()]
    } else {
        vec![p.to_string(), format!("{p}/**")]
    }
}

fn build(g: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(g)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// Check one `owns` entry; the error text is for the user.
pub fn compile_glob(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("empty pattern".into());
    }
    if pattern.starts_with('/') || pattern.split('/').any(|c| c == "..") {
        return Err(format!(
            "`{pattern}`: patterns are relative to the repository root and may not contain `..`"
        ));
    }
    for g in expand(pattern) {
        build(&g).map_err(|e| format!("`{pattern}`: {e}"))?;
    }
    Ok(())
}

/// The compiled globs of one domain.
#[derive(Debug, Clone)]
pub struct Owns {
    set: GlobSet,
}

impl Owns {
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            compile_glob(p)?;
            for g in expand(p) {
                b.add(build(&g).map_err(|e| e.to_string())?);
            }
        }
        Ok(Owns {
            set: b.build().map_err(|e| e.to_string())?,
        })
    }
    pub fn matches(&self, path: &str) -> bool {
        self.set.is_match(path)
    }
}

/// Ownership of every domain of a plan.
#[derive(Debug, Clone)]
pub struct OwnershipMap {
    domains: Vec<(String, Owns)>,
}

impl OwnershipMap {
    pub fn new(domains: &[Domain]) -> Result<Self, String> {
        Ok(OwnershipMap {
            domains: domains
                .iter()
                .map(|d| Ok((d.name.clone(), Owns::new(&d.owns)?)))
                .collect::<Result<_, String>>()?,
        })
    }
    /// The domains owning `path`.
    pub fn owners(&self, path: &str) -> Vec<&str> {
        self.domains
            .iter()
            .filter(|(_, o)| o.matches(path))
            .map(|(n, _)| n.as_str())
            .collect()
    }
    pub fn owns(&self, domain: &str, path: &str) -> bool {
        self.domains
            .iter()
            .any(|(n, o)| n == domain && o.matches(path))
    }

    /// Pairs of domains whose globs both match some of `paths` (files that exist at base),
    /// with up to three example paths per pair.
    pub fn overlaps_in<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(String, String, Vec<String>)> {
        let mut pairs: std::collections::BTreeMap<(String, String), (usize, Vec<String>)> =
            Default::default();
        for p in paths {
            let owners = self.owners(p);
            for i in 0..owners.len() {
                for j in i + 1..owners.len() {
                    let e = pairs
                        .entry((owners[i].to_string(), owners[j].to_string()))
                        .or_default();
                    e.0 += 1;
                    if e.1.len() < 3 {
                        e.1.push(p.to_string());
                    }
                }
            }
        }
        pairs
            .into_iter()
            .map(|((a, b), (_, ex))| (a, b, ex))
            .collect()
    }
}

/// A concrete path that `glob` matches: wildcards replaced by plain names.
fn witness(glob: &str) -> String {
    let mut out = String::new();
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                out.push('w');
            }
            '?' => out.push('w'),
            '[' => {
                let mut first = None;
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if first.is_none() && c != '!' && c != '^' {
                        first = Some(c);
                    }
                }
                out.push(first.unwrap_or('w'));
            }
            '{' => {
                let mut alt = String::new();
                let mut done = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    if c == ',' {
                        done = true;
                    }
                    if !done {
                        alt.push(c);
                    }
                }
                out.push_str(&alt);
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Overlaps provable from the patterns alone: one domain's pattern matches a path that another
/// domain's pattern also matches (`src/**` and `src/api/**` both own `src/api/w`).
pub fn pattern_overlaps(domains: &[Domain]) -> Vec<Problem> {
    let compiled: Vec<(&Domain, Owns)> = domains
        .iter()
        .filter_map(|d| Owns::new(&d.owns).ok().map(|o| (d, o)))
        .collect();
    let mut out = Vec::new();
    for i in 0..compiled.len() {
        for j in i + 1..compiled.len() {
            let (a, oa) = &compiled[i];
            let (b, ob) = &compiled[j];
            let example = a
                .owns
                .iter()
                .flat_map(|p| expand(p))
                .map(|g| witness(&g))
                .find(|w| ob.matches(w) && oa.matches(w))
                .or_else(|| {
                    b.owns
                        .iter()
                        .flat_map(|p| expand(p))
                        .map(|g| witness(&g))
                        .find(|w| oa.matches(w) && ob.matches(w))
                });
            if let Some(w) = example {
                out.push(Problem {
                    line: b.line,
                    column: None,
                    domain: Some(b.name.clone()),
                    message: format!(
                        "ownership overlaps with domain `{}`: both own paths like `{w}` ({} vs {})",
                        a.name,
                        a.owns.join(", "),
                        b.owns.join(", ")
                    ),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owns(p: &[&str]) -> Owns {
        Owns::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn glob_semantics() {
        let o = owns(&["src/api/**", "docs/*.md", "Makefile", "web/"]);
        assert!(o.matches("src/api/a.rs"));
        assert!(o.matches("src/api/deep/b.rs"));
        assert!(o.matches("docs/x.md"));
        assert!(!o.matches("docs/sub/x.md"));
        assert!(o.matches("Makefile"));
        assert!(o.matches("web/index.html"));
        assert!(!o.matches("src/ui/a.rs"));
        let dir = owns(&["src/db"]);
        assert!(dir.matches("src/db") && dir.matches("src/db/x.sql"));
        assert!(!dir.matches("src/dbx"));
    }

    #[test]
    fn bad_globs_are_rejected() {
        assert!(compile_glob("src/[").is_err());
        assert!(compile_glob("../etc/**").is_err());
        assert!(compile_glob("/abs/**").is_err());
        assert!(compile_glob("").is_err());
    }

    fn dom(name: &str, owns: &[&str]) -> Domain {
        Domain {
            name: name.into(),
            prompt: "p".into(),
            prompt_file: None,
            owns: owns.iter().map(|s| s.to_string()).collect(),
            depends_on: vec![],
            priority: 0,
            timeout: None,
            verify: None,
            setup: vec![],
            line: Some(1),
        }
    }

    #[test]
    fn pattern_overlap_is_proven() {
        let p = pattern_overlaps(&[dom("all", &["src/**"]), dom("api", &["src/api/**"])]);
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("`all`"), "{}", p[0].message);
        assert!(pattern_overlaps(&[dom("a", &["src/a/**"]), dom("b", &["src/b/**"])]).is_empty());
        assert_eq!(
            pattern_overlaps(&[dom("a", &["*.md"]), dom("b", &["README.md"])]).len(),
            1
        );
    }

    #[test]
    fn overlaps_in_existing_files() {
        let m = OwnershipMap::new(&[dom("a", &["src/*.rs"]), dom("b", &["src/lib.rs", "b/**"])])
            .unwrap();
        let o = m.overlaps_in(["src/lib.rs", "src/main.rs", "b/x"]);
        assert_eq!(o, vec![("a".into(), "b".into(), vec!["src/lib.rs".into()])]);
        assert_eq!(m.owners("b/x"), vec!["b"]);
    }
}
