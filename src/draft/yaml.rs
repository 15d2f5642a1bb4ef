//! Writing a proposal as a commented `farm.yaml`.

use super::proposal::Proposal;
use crate::plan::Preset;

/// How the written plan runs its agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    pub preset: Preset,
    pub program: Option<String>,
    pub model: Option<String>,
}

/// A YAML scalar: JSON's double-quoted string is a YAML double-quoted scalar too.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Whether `s` can be written as a literal block scalar and read back unchanged (apart from
/// the one final newline a `|` block keeps).
fn block_safe(s: &str) -> bool {
    !s.trim().is_empty()
        && !s.starts_with([' ', '\t', '\n'])
        && s.chars().all(|c| c == '\n' || !c.is_control())
        && !s.lines().any(|l| l.ends_with([' ', '\t']))
}

fn comment(out: &mut String, indent: &str, text: &str) {
    for l in text.trim().lines() {
        let l = l.trim_end();
        if l.is_empty() {
            out.push_str(&format!("{indent}#\n"));
        } else {
            out.push_str(&format!("{indent}# {l}\n"));
        }
    }
}

fn list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| quoted(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn domains(out: &mut String, p: &Proposal, with_why: bool) {
    out.push_str("domains:\n");
    for d in &p.domains {
        if with_why && !d.why.trim().is_empty() {
            comment(out, "  ", &format!("why: {}", d.why));
        }
        out.push_str(&format!("  - name: {}\n", quoted(&d.name)));
        if block_safe(&d.prompt) {
            out.push_str("    prompt: |\n");
            for l in d.prompt.trim_end().lines() {
                if l.is_empty() {
                    out.push('\n');
                } else {
                    out.push_str(&format!("      {l}\n"));
                }
            }
        } else {
            out.push_str(&format!("    prompt: {}\n", quoted(&d.prompt)));
        }
        out.push_str(&format!("    owns: {}\n", list(&d.owns)));
        if !d.depends_on.is_empty() {
            out.push_str(&format!("    depends_on: {}\n", list(&d.depends_on)));
        }
    }
}

/// The proposal as a plan without comments (what the checks parse).
pub fn bare(p: &Proposal) -> String {
    let mut out = String::from("version: 1\nagent:\n  preset: sim\n");
    domains(&mut out, p, false);
    out
}

/// The commented plan: `header` (what was measured, checked and changed) at the top, each
/// domain's `why` above it.
pub fn render(p: &Proposal, agent: &AgentSpec, header: &str) -> String {
    let mut out = String::new();
    comment(&mut out, "", header);
    out.push_str(
        "# Reference: README.md, \"The plan\"; check it with `agent-farm plan --coupling`.\n",
    );
    out.push_str("version: 1\n\nagent:\n");
    out.push_str(&format!("  preset: {}\n", agent.preset));
    if let Some(p) = &agent.program {
        out.push_str(&format!("  program: {}\n", quoted(p)));
    }
    if let Some(m) = &agent.model {
        out.push_str(&format!("  model: {}\n", quoted(m)));
    }
    out.push_str("  timeout: 30m      # per attempt\n");
    out.push_str("\n# Run on the merged result before it lands, e.g.:\n# verify: cargo test\n\n");
    domains(&mut out, p, true);
    out
}

#[cfg(test)]
mod tests {
    use super::super::proposal::ProposedDomain;
    use super::*;

    #[test]
    fn the_written_plan_reads_back_the_same() {
        let p = Proposal {
            domains: vec![
                ProposedDomain {
                    name: "api".into(),
                    prompt:
                        "Add caching.\n\nKeep `# comments` and: colons, {braces} and \"quotes\"."
                            .into(),
                    owns: vec!["src/api/**".into(), "src/{a,b}.rs".into()],
                    depends_on: vec![],
                    why: "the handlers\nlive here".into(),
                },
                ProposedDomain {
                    name: "ui".into(),
                    prompt: "  indented first line\twith a tab ".into(),
                    owns: vec!["src/ui/**".into()],
                    depends_on: vec!["api".into()],
                    why: String::new(),
                },
            ],
            ..Default::default()
        };
        let agent = AgentSpec {
            preset: Preset::Claude,
            program: Some("/opt/claude \"x\"".into()),
            model: None,
        };
        let text = render(&p, &agent, "Drafted for: add caching\n\nmeasured: 3 files");
        assert!(
            text.starts_with("# Drafted for: add caching\n#\n# measured"),
            "{text}"
        );
        assert!(
            text.contains("  # why: the handlers\n  # live here\n"),
            "{text}"
        );
        let plan = crate::plan::parse(std::path::Path::new("farm.yaml"), &text, |_| {
            Err("none".into())
        })
        .unwrap();
        assert_eq!(plan.domains[0].prompt, format!("{}\n", p.domains[0].prompt));
        assert_eq!(plan.domains[1].prompt, p.domains[1].prompt);
        assert_eq!(plan.domains[0].owns, p.domains[0].owns);
        assert_eq!(plan.domains[1].depends_on, ["api"]);
        assert_eq!(plan.agent.program.as_deref(), Some("/opt/claude \"x\""));
    }
}
