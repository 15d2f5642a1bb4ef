//! Path ownership: which domain owns which paths, as declared by `owns` globs.
//!
//! Semantics (documented in README.md): patterns are relative to the repository root and use `/`
//! separators; `*` and `?` never cross a `/`, `**` matches any number of directories; a pattern
//! without wildcards names a file or a whole directory (`src/api` owns `src/api/**`); a trailing
//! `/` means a directory. Pure: no git, no file system. Imports nothing of ours: plans hand their
//! domains in through [`Claim`] and [`Rules`].

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// What ownership needs to know of a domain: its name and the `owns` patterns it claims.
pub trait Claim {
    fn name(&self) -> &str;
    fn owns(&self) -> &[String];
}

/// What ownership needs to know of a plan: its domains and its shared and ignored globs.
pub trait Rules {
    type Domain: Claim;
    fn domains(&self) -> &[Self::Domain];
    fn shared(&self) -> &[String];
    fn ignore(&self) -> &[String];
}

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

/// How a changed path relates to the domain that changed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum PathClass {
    /// The domain owns it.
    Own,
    /// Listed in `ownership.shared`: any domain may change it.
    Shared,
    /// Listed in `ownership.ignore`: changes never count.
    Ignored,
    /// Owned by other domains.
    Other { owners: Vec<String> },
    /// Owned by no domain.
    Unowned,
}

impl PathClass {
    pub fn is_violation(&self) -> bool {
        matches!(self, PathClass::Other { .. } | PathClass::Unowned)
    }
    /// The owner to name in a report: the other domain, or "nobody".
    pub fn owner(&self) -> Option<String> {
        match self {
            PathClass::Other { owners } => Some(owners.join(", ")),
            _ => None,
        }
    }
}

/// Ownership of every domain of a plan, with the plan's shared and ignored paths.
#[derive(Debug, Clone)]
pub struct OwnershipMap {
    domains: Vec<(String, Owns)>,
    shared: Owns,
    ignore: Owns,
    shared_globs: Vec<String>,
}

impl OwnershipMap {
    pub fn new(domains: &[impl Claim]) -> Result<Self, String> {
        Self::with_rules(domains, &[], &[])
    }

    pub fn with_rules(
        domains: &[impl Claim],
        shared: &[String],
        ignore: &[String],
    ) -> Result<Self, String> {
        Ok(OwnershipMap {
            domains: domains
                .iter()
                .map(|d| Ok((d.name().to_string(), Owns::new(d.owns())?)))
                .collect::<Result<_, String>>()?,
            shared: Owns::new(shared)?,
            ignore: Owns::new(ignore)?,
            shared_globs: shared.iter().flat_map(|p| expand(p)).collect(),
        })
    }

    pub fn for_plan(plan: &impl Rules) -> Result<Self, String> {
        Self::with_rules(plan.domains(), plan.shared(), plan.ignore())
    }

    /// Classify a change of `path` made by `domain`. Own paths win over shared and ignored.
    pub fn classify(&self, domain: &str, path: &str) -> PathClass {
        if self.owns(domain, path) {
            return PathClass::Own;
        }
        if self.ignore.matches(path) {
            return PathClass::Ignored;
        }
        if self.shared.matches(path) {
            return PathClass::Shared;
        }
        let owners: Vec<String> = self
            .owners(path)
            .into_iter()
            .filter(|o| *o != domain)
            .map(str::to_owned)
            .collect();
        if owners.is_empty() {
            PathClass::Unowned
        } else {
            PathClass::Other { owners }
        }
    }

    /// Claude Code permission rules that refuse edits into other domains' paths, anchored at the
    /// worktree root (`Edit(./src/ui/**)`; a deny rule on Edit covers Write, Edit and the Bash
    /// commands whose targets the CLI can read).
    pub fn deny_rules_for(&self, domain: &str, plan_domains: &[impl Claim]) -> Vec<String> {
        let mut out = Vec::new();
        // Never deny what the domain may change itself: its own paths and the shared ones.
        let allowed: Vec<String> = plan_domains
            .iter()
            .filter(|d| d.name() == domain)
            .flat_map(|d| d.owns().iter().flat_map(|p| expand(p)))
            .chain(self.shared_globs.iter().cloned())
            .collect();
        for d in plan_domains.iter().filter(|d| d.name() != domain) {
            for p in d.owns() {
                for g in expand(p) {
                    if allowed.iter().any(|a| common_path(a, &g).is_some()) {
                        continue;
                    }
                    let rule = format!("Edit(./{g})");
                    if !out.contains(&rule) {
                        out.push(rule);
                    }
                }
            }
        }
        out
    }
    /// Whether `path` is listed in `ownership.ignore`.
    pub fn ignores(&self, path: &str) -> bool {
        self.ignore.matches(path)
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

/// A change in a domain's diff, as the audit sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditChange {
    pub kind: AuditKind,
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub symlink_target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    Added,
    Modified,
    Deleted,
    Renamed,
}

/// A violation found by the audit, with the paths to restore to undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub owner: Option<String>,
    pub change: String,
    pub revert: Vec<String>,
}

/// Where a symlink at `link` pointing to `target` lands, relative to the repository root;
/// `None` when it points outside the repository.
pub fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// Classify every change of a domain's diff (the authoritative audit). Pure.
pub fn audit(map: &OwnershipMap, domain: &str, changes: &[AuditChange]) -> Vec<Finding> {
    let mut out = Vec::new();
    let check = |path: &str, change: String, out: &mut Vec<Finding>| {
        let class = map.classify(domain, path);
        if class.is_violation() {
            out.push(Finding {
                path: path.to_string(),
                owner: class.owner(),
                change,
                revert: vec![path.to_string()],
            });
            true
        } else {
            false
        }
    };
    for c in changes {
        let (old, new) = (c.old_path.as_deref(), c.new_path.as_deref());
        let flagged_new = match (c.kind, old, new) {
            (AuditKind::Added, _, Some(n)) => check(n, "added".into(), &mut out),
            (AuditKind::Modified, _, Some(n)) => check(n, "modified".into(), &mut out),
            (AuditKind::Deleted, Some(o), _) => {
                check(o, "deleted".into(), &mut out);
                true
            }
            (AuditKind::Renamed, Some(o), Some(n)) => {
                check(o, format!("renamed to {n}"), &mut out);
                check(n, format!("renamed from {o}"), &mut out)
            }
            _ => false,
        };
        if flagged_new {
            continue;
        }
        if let (Some(n), Some(t)) = (new, c.symlink_target.as_deref()) {
            match resolve_link(n, t) {
                None => out.push(Finding {
                    path: n.to_string(),
                    owner: None,
                    change: format!("symlink to {t} (outside the repository)"),
                    revert: vec![n.to_string()],
                }),
                Some(resolved) => {
                    let class = map.classify(domain, &resolved);
                    if class.is_violation() {
                        out.push(Finding {
                            path: n.to_string(),
                            owner: class.owner(),
                            change: format!("symlink to {resolved}"),
                            revert: vec![n.to_string()],
                        });
                    }
                }
            }
        }
    }
    out
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

fn lit_prefix(seg: &str) -> &str {
    &seg[..seg.find(['*', '?', '[', '{', '\\']).unwrap_or(seg.len())]
}

fn lit_suffix(seg: &str) -> &str {
    match seg.rfind(['*', '?', ']', '}']) {
        Some(i) => &seg[i + 1..],
        None => seg,
    }
}

fn seg_matches(glob: &str, s: &str) -> bool {
    build(glob)
        .map(|g| g.compile_matcher().is_match(s))
        .unwrap_or(false)
}

/// A single path segment matching both single-segment globs `x` and `y`, if one is easy to find.
fn common_segment(x: &str, y: &str) -> Option<String> {
    let candidates = [
        witness(x),
        witness(y),
        format!("{}{}", lit_prefix(y), lit_suffix(x)),
        format!("{}{}", lit_prefix(x), lit_suffix(y)),
        format!(
            "{}{}{}{}",
            lit_prefix(x),
            lit_prefix(y),
            lit_suffix(x),
            lit_suffix(y)
        ),
        format!(
            "{}{}{}{}",
            lit_prefix(y),
            lit_prefix(x),
            lit_suffix(y),
            lit_suffix(x)
        ),
    ];
    candidates
        .into_iter()
        .find(|c| !c.is_empty() && seg_matches(x, c) && seg_matches(y, c))
}

/// A path matched by both globs, found by unifying them segment by segment (`**` may stand for
/// any number of the other glob's segments). Sound (the result matches both), not complete.
pub fn common_path(a: &str, b: &str) -> Option<String> {
    fn go(a: &[&str], b: &[&str], depth: usize) -> Option<Vec<String>> {
        if depth > 64 {
            return None;
        }
        match (a.first(), b.first()) {
            (None, None) => Some(Vec::new()),
            // `**` standing for one more of b's segments first (a path must end in a file),
            // then for none.
            (Some(&"**"), _) => b
                .split_first()
                .and_then(|(first, rest)| {
                    let seg = if *first == "**" {
                        "w".to_string()
                    } else {
                        witness(first)
                    };
                    let mut tail = go(a, rest, depth + 1)?;
                    tail.insert(0, seg);
                    Some(tail)
                })
                .or_else(|| go(&a[1..], b, depth + 1)),
            (_, Some(&"**")) => go(b, a, depth + 1),
            (Some(x), Some(y)) => {
                let seg = common_segment(x, y)?;
                let mut tail = go(&a[1..], &b[1..], depth + 1)?;
                tail.insert(0, seg);
                Some(tail)
            }
            _ => None,
        }
    }
    let sa: Vec<&str> = a.split('/').collect();
    let sb: Vec<&str> = b.split('/').collect();
    let path = go(&sa, &sb, 0)?.join("/");
    (seg_matches(a, &path) && seg_matches(b, &path)).then_some(path)
}

/// A path inside the directory `dir` that the `owns` entry `pattern` owns, if one can be found
/// (`vendor/**` owns `vendor/lib/w` inside `vendor/lib`).
pub fn owned_inside(pattern: &str, dir: &str) -> Option<String> {
    let escaped: String = dir
        .chars()
        .flat_map(|c| {
            let special = matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\');
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect();
    let inside = format!("{escaped}/**");
    expand(pattern).iter().find_map(|g| common_path(g, &inside))
}

/// Two domains whose patterns both own some path, provably from the patterns alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// Index of the earlier domain in the list given.
    pub first: usize,
    /// Index of the later domain.
    pub second: usize,
    /// A path both own.
    pub example: String,
}

/// Overlaps provable from the patterns alone: one domain's pattern matches a path that another
/// domain's pattern also matches (`src/**` and `src/api/**` both own `src/api/w`).
pub fn pattern_overlaps(domains: &[impl Claim]) -> Vec<Overlap> {
    let compiled: Vec<(usize, Vec<String>, Owns)> = domains
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let globs = d.owns().iter().flat_map(|p| expand(p)).collect();
            Owns::new(d.owns()).ok().map(|o| (i, globs, o))
        })
        .collect();
    let mut out = Vec::new();
    for (n, (a, ga, oa)) in compiled.iter().enumerate() {
        for (b, gb, ob) in &compiled[n + 1..] {
            let example = ga
                .iter()
                .flat_map(|x| gb.iter().map(move |y| (x, y)))
                .find_map(|(x, y)| common_path(x, y))
                .filter(|w| oa.matches(w) && ob.matches(w));
            if let Some(example) = example {
                out.push(Overlap {
                    first: *a,
                    second: *b,
                    example,
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

    struct Dom(String, Vec<String>);

    impl Claim for Dom {
        fn name(&self) -> &str {
            &self.0
        }
        fn owns(&self) -> &[String] {
            &self.1
        }
    }

    fn dom(name: &str, owns: &[&str]) -> Dom {
        Dom(name.into(), owns.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn pattern_overlap_is_proven() {
        let p = pattern_overlaps(&[dom("all", &["src/**"]), dom("api", &["src/api/**"])]);
        assert_eq!(
            p,
            vec![Overlap {
                first: 0,
                second: 1,
                example: "src/api/w".into()
            }]
        );
        assert!(pattern_overlaps(&[dom("a", &["src/a/**"]), dom("b", &["src/b/**"])]).is_empty());
        assert_eq!(
            pattern_overlaps(&[dom("a", &["*.md"]), dom("b", &["README.md"])]).len(),
            1
        );
    }

    #[test]
    fn classification() {
        let m = OwnershipMap::with_rules(
            &[dom("api", &["src/api/**"]), dom("ui", &["src/ui/**"])],
            &["Cargo.lock".to_string()],
            &["target/**".to_string()],
        )
        .unwrap();
        assert_eq!(m.classify("api", "src/api/x.rs"), PathClass::Own);
        assert_eq!(m.classify("api", "Cargo.lock"), PathClass::Shared);
        assert_eq!(m.classify("api", "target/debug/x"), PathClass::Ignored);
        assert_eq!(
            m.classify("api", "src/ui/x.ts"),
            PathClass::Other {
                owners: vec!["ui".into()]
            }
        );
        assert_eq!(m.classify("api", "README.md"), PathClass::Unowned);
        assert!(m.classify("api", "README.md").is_violation());
        assert_eq!(
            m.deny_rules_for(
                "api",
                &[dom("api", &["src/api/**"]), dom("ui", &["src/ui", "web/"])]
            ),
            vec!["Edit(./src/ui)", "Edit(./src/ui/**)", "Edit(./web/**)"]
        );
    }

    #[test]
    fn audit_catches_deletes_renames_and_symlinks() {
        let m = OwnershipMap::with_rules(
            &[dom("api", &["src/api/**"]), dom("ui", &["src/ui/**"])],
            &["CHANGELOG.md".to_string()],
            &[],
        )
        .unwrap();
        let ch = |kind, old: Option<&str>, new: Option<&str>, link: Option<&str>| AuditChange {
            kind,
            old_path: old.map(str::to_owned),
            new_path: new.map(str::to_owned),
            symlink_target: link.map(str::to_owned),
        };
        let f = audit(
            &m,
            "api",
            &[
                ch(AuditKind::Added, None, Some("src/api/ok.rs"), None),
                ch(
                    AuditKind::Modified,
                    Some("CHANGELOG.md"),
                    Some("CHANGELOG.md"),
                    None,
                ),
                ch(AuditKind::Deleted, Some("src/ui/gone.ts"), None, None),
                ch(
                    AuditKind::Renamed,
                    Some("src/ui/a.ts"),
                    Some("src/api/a.ts"),
                    None,
                ),
                ch(
                    AuditKind::Added,
                    None,
                    Some("src/api/link"),
                    Some("../ui/secret.ts"),
                ),
                ch(
                    AuditKind::Added,
                    None,
                    Some("src/api/out"),
                    Some("../../../etc/passwd"),
                ),
                ch(AuditKind::Added, None, Some("src/api/fine"), Some("ok.rs")),
                ch(
                    AuditKind::Modified,
                    Some("README.md"),
                    Some("README.md"),
                    None,
                ),
            ],
        );
        let got: Vec<(String, String, Option<String>)> = f
            .iter()
            .map(|f| (f.path.clone(), f.change.clone(), f.owner.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("src/ui/gone.ts".into(), "deleted".into(), Some("ui".into())),
                (
                    "src/ui/a.ts".into(),
                    "renamed to src/api/a.ts".into(),
                    Some("ui".into())
                ),
                (
                    "src/api/link".into(),
                    "symlink to src/ui/secret.ts".into(),
                    Some("ui".into())
                ),
                (
                    "src/api/out".into(),
                    "symlink to ../../../etc/passwd (outside the repository)".into(),
                    None
                ),
                ("README.md".into(), "modified".into(), None),
            ]
        );
    }

    #[test]
    fn reaching_inside_a_directory() {
        assert_eq!(
            owned_inside("vendor/**", "vendor/lib").as_deref(),
            Some("vendor/lib/w")
        );
        assert!(owned_inside("vendor/lib", "vendor/lib").is_some());
        assert!(owned_inside("**/*.md", "vendor/lib").is_some());
        assert!(owned_inside("vendor/*", "vendor/lib").is_none());
        assert!(owned_inside("vendor/x/**", "vendor/lib").is_none());
        assert!(owned_inside("src/**", "vendor/lib").is_none());
        assert!(owned_inside("**", "a[1]").is_some());
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
