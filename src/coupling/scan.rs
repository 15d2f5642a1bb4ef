//! A small tokenizer shared by the import scanners: identifiers, string literals and punctuation,
//! with comments skipped, for the C-like and Python-like syntaxes the scanners read.
//!
//! It is deliberately forgiving: it never fails, and what it cannot read (a regex literal, an
//! unterminated string) costs at most a missed or a spurious import, never a wrong graph elsewhere.

/// One token and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok<'a> {
    Ident(&'a str),
    /// A string literal's contents, escapes left as written.
    Str(&'a str),
    Punct(u8),
}

/// How a language writes comments and strings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Syntax {
    /// `//` line comments and `/* */` block comments.
    pub c_comments: bool,
    /// Block comments nest (Rust).
    pub nested_blocks: bool,
    /// `#` line comments (Python).
    pub hash_comments: bool,
    /// `'…'` is a string (JS, Python, Go runes); otherwise Rust's char literals and lifetimes.
    pub single_quote_strings: bool,
    /// `` `…` `` strings (JS templates, Go raw strings).
    pub backtick_strings: bool,
    /// `'''…'''` and `"""…"""` (Python).
    pub triple_quotes: bool,
    /// `r"…"`, `r#"…"#` (Rust).
    pub rust_raw_strings: bool,
}

pub(crate) const RUST: Syntax = Syntax {
    c_comments: true,
    nested_blocks: true,
    hash_comments: false,
    single_quote_strings: false,
    backtick_strings: false,
    triple_quotes: false,
    rust_raw_strings: true,
};

pub(crate) const JS: Syntax = Syntax {
    c_comments: true,
    nested_blocks: false,
    hash_comments: false,
    single_quote_strings: true,
    backtick_strings: true,
    triple_quotes: false,
    rust_raw_strings: false,
};

pub(crate) const GO: Syntax = JS;

pub(crate) const PYTHON: Syntax = Syntax {
    c_comments: false,
    nested_blocks: false,
    hash_comments: true,
    single_quote_strings: true,
    backtick_strings: false,
    triple_quotes: true,
    rust_raw_strings: false,
};

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_ident(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// The tokens of `src` with their lines.
pub(crate) fn tokens<'a>(src: &'a str, syn: Syntax) -> Vec<(Tok<'a>, usize)> {
    let s = src.as_bytes();
    let mut out = Vec::with_capacity(src.len() / 6);
    let mut i = 0;
    let mut line = 1;
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    while i < s.len() {
        let c = s[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if (syn.c_comments && c == b'/' && at(i + 1) == b'/')
            || (syn.hash_comments && c == b'#')
        {
            while i < s.len() && s[i] != b'\n' {
                i += 1;
            }
        } else if syn.c_comments && c == b'/' && at(i + 1) == b'*' {
            let mut depth = 0usize;
            while i < s.len() {
                if s[i] == b'/' && at(i + 1) == b'*' {
                    depth += 1;
                    i += 2;
                } else if s[i] == b'*' && at(i + 1) == b'/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 || !syn.nested_blocks {
                        break;
                    }
                } else {
                    if s[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if syn.rust_raw_strings
            && (c == b'r' || (c == b'b' && at(i + 1) == b'r'))
            && (i == 0 || !is_ident(s[i - 1]))
            && {
                let r = if c == b'b' { i + 2 } else { i + 1 };
                let h = s[r..].iter().take_while(|&&b| b == b'#').count();
                at(r + h) == b'"'
            }
        {
            let r = if c == b'b' { i + 2 } else { i + 1 };
            let hashes = s[r..].iter().take_while(|&&b| b == b'#').count();
            let start = r + hashes + 1;
            let mut j = start;
            loop {
                if j >= s.len() {
                    break;
                }
                if s[j] == b'"'
                    && s[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&b| b == b'#')
                        .count()
                        == hashes
                {
                    break;
                }
                if s[j] == b'\n' {
                    line += 1;
                }
                j += 1;
            }
            let end = j.min(s.len());
            out.push((Tok::Str(src.get(start..end).unwrap_or_default()), line));
            i = (j + 1 + hashes).min(s.len());
        } else if syn.triple_quotes && (c == b'"' || c == b'\'') && at(i + 1) == c && at(i + 2) == c
        {
            let start_line = line;
            let start = i + 3;
            let mut j = start;
            while j < s.len() && !(s[j] == c && at(j + 1) == c && at(j + 2) == c) {
                if s[j] == b'\\' {
                    j += 1;
                }
                if at(j) == b'\n' {
                    line += 1;
                }
                j += 1;
            }
            let end = j.min(s.len());
            out.push((
                Tok::Str(src.get(start..end).unwrap_or_default()),
                start_line,
            ));
            i = (j + 3).min(s.len());
        } else if c == b'"'
            || (c == b'\'' && syn.single_quote_strings)
            || (c == b'`' && syn.backtick_strings)
        {
            let start_line = line;
            let start = i + 1;
            let mut j = start;
            let multiline = c == b'`';
            while j < s.len() && s[j] != c {
                if s[j] == b'\\' {
                    j += 1;
                } else if s[j] == b'\n' {
                    if !multiline && c != b'"' {
                        break; // an unterminated quote ends at the line
                    }
                    line += 1;
                }
                j += 1;
            }
            let end = j.min(s.len());
            out.push((
                Tok::Str(src.get(start..end).unwrap_or_default()),
                start_line,
            ));
            i = (j + 1).min(s.len());
        } else if c == b'\'' {
            // Rust: a char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if at(i + 1) == b'\\' {
                let mut j = i + 2;
                while j < s.len() && s[j] != b'\'' && s[j] != b'\n' {
                    j += 1;
                }
                i = j + 1;
            } else if at(i + 2) == b'\'' {
                i += 3;
            } else if at(i + 1) >= 0x80 {
                // A multibyte char literal: skip to the closing quote on this line, if any.
                let rest = &s[i + 1..];
                match rest.iter().take(5).position(|&b| b == b'\'') {
                    Some(p) => i += p + 2,
                    None => i += 1,
                }
            } else {
                i += 1; // a lifetime's quote
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            out.push((Tok::Ident(&src[start..i]), line));
        } else if c.is_ascii_digit() {
            while i < s.len() && (is_ident(s[i]) || s[i] == b'.') {
                i += 1;
            }
        } else {
            out.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(src: &str, syn: Syntax) -> Vec<String> {
        tokens(src, syn)
            .into_iter()
            .map(|(t, _)| match t {
                Tok::Ident(s) => s.to_string(),
                Tok::Str(s) => format!("{s:?}"),
                Tok::Punct(p) => (p as char).to_string(),
            })
            .collect()
    }

    #[test]
    fn comments_and_strings_are_not_code() {
        let got = idents(
            "use a; // use b;\n/* use c; /* nested */ still */ let s = \"use d;\"; let r = r#\"x\"#; 'a' '\\n' &'b x",
            RUST,
        );
        assert_eq!(
            got,
            [
                "use",
                "a",
                ";",
                "let",
                "s",
                "=",
                "\"use d;\"",
                ";",
                "let",
                "r",
                "=",
                "\"x\"",
                ";",
                "&",
                "b",
                "x"
            ]
        );
        let got = idents(
            "import x # import y\n'''import z'''\nfrom a import b",
            PYTHON,
        );
        assert_eq!(
            got,
            ["import", "x", "\"import z\"", "from", "a", "import", "b"]
        );
        let toks = tokens("a\n`x\ny`\nb", JS);
        assert_eq!(toks.last().unwrap(), &(Tok::Ident("b"), 4));
    }
}
