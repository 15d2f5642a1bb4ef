//! C and C++: `#include "x.h"` and `#include <x.h>`.
//!
//! A quoted include is looked up relative to the including file first, as compilers do; then, for
//! both forms, in the repository's include directories (every directory named `include`), nearest
//! to the including file first; then, for a quoted include or one with a directory in it, any file
//! whose path ends with the included path (the nearest one). `<stdio.h>` and other system headers
//! match nothing and are no edge.

use super::files::{FileIndex, common_components, file_name, join, parent};
use super::imports::Found;

/// The repository's include directories.
#[derive(Debug, Default)]
pub(crate) struct IncludeDirs {
    dirs: Vec<String>,
}

impl IncludeDirs {
    pub(crate) fn new(ix: &FileIndex) -> IncludeDirs {
        let mut dirs: Vec<String> = ix
            .dirs_with_files()
            .filter_map(|d| {
                let comps: Vec<&str> = d.split('/').collect();
                let i = comps.iter().position(|c| *c == "include")?;
                Some(comps[..=i].join("/"))
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        IncludeDirs { dirs }
    }
}

fn resolve(
    ix: &FileIndex,
    inc: &IncludeDirs,
    from: &str,
    spec: &str,
    quoted: bool,
) -> Option<String> {
    if quoted
        && let Some(p) = join(parent(from), spec)
        && ix.contains(&p)
    {
        return Some(p);
    }
    let mut dirs: Vec<&String> = inc.dirs.iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(common_components(d, from)));
    if let Some(p) = dirs
        .iter()
        .filter_map(|d| join(d, spec))
        .find(|p| ix.contains(p))
    {
        return Some(p);
    }
    if !(quoted || spec.contains('/')) {
        return None;
    }
    let spec = spec.trim_start_matches("./");
    let suffix = format!("/{spec}");
    // The nearest file with that path suffix; none when several are equally near (a guess).
    let mut best: Option<(usize, &str, bool)> = None;
    for p in ix.named(file_name(spec)) {
        if p == spec || p.ends_with(&suffix) {
            let score = common_components(p, from);
            match best {
                Some((s, _, _)) if score < s => {}
                Some((s, q, _)) if score == s => best = Some((s, q, true)),
                _ => best = Some((score, p, false)),
            }
        }
    }
    match best {
        Some((_, p, false)) => Some(p.to_string()),
        _ => None,
    }
}

/// The lines of `text` with comments removed (block comments may span lines).
fn code_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        let mut code = String::new();
        let mut rest = line;
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(e) => {
                        rest = &rest[e + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            } else {
                let lc = rest.find("//");
                let bc = rest.find("/*");
                match (lc, bc) {
                    (Some(l), b) if b.is_none_or(|b| l < b) => {
                        code.push_str(&rest[..l]);
                        break;
                    }
                    (_, Some(b)) => {
                        code.push_str(&rest[..b]);
                        code.push(' ');
                        rest = &rest[b + 2..];
                        in_block = true;
                    }
                    _ => {
                        code.push_str(rest);
                        break;
                    }
                }
            }
        }
        out.push(code);
    }
    out
}

pub(crate) fn imports(ix: &FileIndex, inc: &IncludeDirs, path: &str, text: &str) -> Vec<Found> {
    let mut out = Vec::new();
    for (n, line) in code_lines(text).iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(rest) = rest
            .strip_prefix("include")
            .or_else(|| rest.strip_prefix("import"))
        else {
            continue;
        };
        let rest = rest.trim_start();
        let (quoted, close) = match rest.chars().next() {
            Some('"') => (true, '"'),
            Some('<') => (false, '>'),
            _ => continue,
        };
        let Some(end) = rest[1..].find(close) else {
            continue;
        };
        let spec = &rest[1..1 + end];
        if let Some(to) = resolve(ix, inc, path, spec, quoted) {
            let (o, c) = if quoted { ('"', '"') } else { ('<', '>') };
            out.push(Found {
                to,
                line: n + 1,
                statement: format!("#include {o}{spec}{c}"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_relative_include_dirs_and_suffixes() {
        let ix = FileIndex::new(
            [
                "include/git2/common.h",
                "include/git2.h",
                "src/util/str.h",
                "src/util/str.c",
                "src/net/http.c",
                "src/net/http.h",
                "deps/zlib/zlib.h",
                "other/str.h",
            ]
            .map(String::from),
        );
        let inc = IncludeDirs::new(&ix);
        let text = "#include \"http.h\"\n#include <git2/common.h>\n#  include \"util/str.h\"\n#include <stdio.h>\n\
                    /* #include \"gone.h\"\n */ #include \"zlib.h\" // a vendored header\n#include <string.h>\n";
        let got: Vec<String> = imports(&ix, &inc, "src/net/http.c", text)
            .into_iter()
            .map(|f| f.to)
            .collect();
        assert_eq!(
            got,
            [
                "src/net/http.h",
                "include/git2/common.h",
                "src/util/str.h",
                "deps/zlib/zlib.h"
            ]
        );
        // The nearest of several files with the included name; none when two are as near.
        let got = imports(&ix, &inc, "src/util/str.c", "#include \"../util/str.h\"\n");
        assert_eq!(got[0].to, "src/util/str.h");
        let got = imports(&ix, &inc, "src/net/http.c", "#include \"str.h\"\n");
        assert_eq!(got[0].to, "src/util/str.h");
        assert!(imports(&ix, &inc, "main.c", "#include \"str.h\"\n").is_empty());
    }
}
