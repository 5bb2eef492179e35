//! What a stylesheet makes Chromium fetch: `@import`ed stylesheets, and the web fonts
//! of its `@font-face` rules that a style rule uses (Chromium loads a face only when
//! text is drawn with it; used by a `font-family` or `font` declaration is the nearest
//! a page load without layout gets). Pure: CSS text in, URLs out.
//!
//! Tokenized with `cssparser` (Servo's CSS tokenizer, also what Servo's selectors
//! use). A face's first `src` with a format Chromium reads (`woff2`, `woff`,
//! `truetype`, `opentype`, or none given) is the one fetched; `local()` faces need no
//! fetch. `unicode-range` is not judged (every used face is fetched).

use std::collections::HashSet;

use cssparser::{Parser, ParserInput, Token};

use super::discover::MAX_FOUND;

/// What one stylesheet asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sheet {
    /// `@import` URLs as written, in order.
    pub imports: Vec<String>,
    /// Font URLs as written, of the faces a style rule uses, in rule order.
    pub fonts: Vec<String>,
    /// Imports and fonts beyond [`MAX_FOUND`] each: counted, not listed.
    pub not_listed: usize,
}

/// Deepest nesting of blocks looked into (`@media` in `@supports` in ...): hostile
/// CSS cannot make the walk recurse without bound.
const MAX_DEPTH: usize = 16;

/// Reads `css`.
pub fn read(css: &str) -> Sheet {
    let mut input = ParserInput::new(css);
    let mut parser = Parser::new(&mut input);
    let mut found = Collected::default();
    rules(&mut parser, &mut found, 0);
    let mut not_listed = 0;
    let mut listed = HashSet::new();
    let mut fonts = Vec::new();
    for (family, url) in found.faces {
        if found.used.contains(&family.to_ascii_lowercase()) && listed.insert(url.clone()) {
            if fonts.len() < MAX_FOUND {
                fonts.push(url);
            } else {
                not_listed += 1;
            }
        }
    }
    let mut imports = found.imports;
    if imports.len() > MAX_FOUND {
        not_listed += imports.len() - MAX_FOUND;
        imports.truncate(MAX_FOUND);
    }
    Sheet {
        imports,
        fonts,
        not_listed,
    }
}

#[derive(Default)]
struct Collected {
    imports: Vec<String>,
    /// (family, the URL to fetch) per `@font-face`.
    faces: Vec<(String, String)>,
    /// Families named by style rules, lower-case (a set: a hostile sheet names
    /// millions).
    used: HashSet<String>,
}

/// What the next `{}` block holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    /// A style rule's declarations.
    Style,
    /// Rules (`@media`, `@supports`, `@layer`, `@container`, `@document`).
    Rules,
    /// A `@font-face`'s declarations.
    FontFace,
    /// Anything else (`@keyframes`, `@page`, ...): skipped.
    Other,
}

fn rules(parser: &mut Parser<'_, '_>, found: &mut Collected, depth: usize) {
    let mut next_block = Block::Style;
    let mut import = false;
    loop {
        let token = match parser.next() {
            Ok(t) => t.clone(),
            Err(_) => return,
        };
        match token {
            Token::AtKeyword(name) => {
                let name = name.to_ascii_lowercase();
                import = name == "import";
                next_block = match name.as_str() {
                    "font-face" => Block::FontFace,
                    "media" | "supports" | "layer" | "container" | "document" | "scope" => {
                        Block::Rules
                    }
                    _ => Block::Other,
                };
            }
            Token::QuotedString(s) | Token::UnquotedUrl(s) if import => {
                found.imports.push(s.to_string());
                import = false;
            }
            Token::Function(name) if import && name.eq_ignore_ascii_case("url") => {
                if let Some(url) = string_argument(parser) {
                    found.imports.push(url);
                }
                import = false;
            }
            Token::Semicolon => {
                import = false;
                next_block = Block::Style;
            }
            Token::CurlyBracketBlock => {
                let block = next_block;
                next_block = Block::Style;
                import = false;
                if depth >= MAX_DEPTH {
                    continue;
                }
                let _ =
                    parser.parse_nested_block(|p| -> Result<(), cssparser::ParseError<'_, ()>> {
                        match block {
                            Block::Rules => rules(p, found, depth + 1),
                            Block::Style => declarations(p, found, false, depth + 1),
                            Block::FontFace => declarations(p, found, true, depth + 1),
                            Block::Other => {}
                        }
                        Ok(())
                    });
            }
            _ => {}
        }
    }
}

/// The declarations of a block: families used (style rules), or a face's family and
/// source (`@font-face`). Nested rules in a style block (CSS nesting) are looked into
/// for their declarations too.
fn declarations(parser: &mut Parser<'_, '_>, found: &mut Collected, face: bool, depth: usize) {
    let mut family: Option<String> = None;
    let mut source: Option<String> = None;
    loop {
        let token = match parser.next() {
            Ok(t) => t.clone(),
            Err(_) => break,
        };
        let Token::Ident(name) = token else {
            if token == Token::CurlyBracketBlock && !face && depth < MAX_DEPTH {
                let _ =
                    parser.parse_nested_block(|p| -> Result<(), cssparser::ParseError<'_, ()>> {
                        declarations(p, found, false, depth + 1);
                        Ok(())
                    });
            }
            continue;
        };
        let name = name.to_ascii_lowercase();
        if parser.expect_colon().is_err() {
            continue;
        }
        let value = value_tokens(parser);
        match (face, name.as_str()) {
            (true, "font-family") => family = families(&value).into_iter().next(),
            (true, "src") => source = face_source(&value),
            (false, "font-family") => found
                .used
                .extend(families(&value).iter().map(|f| f.to_ascii_lowercase())),
            (false, "font") => found.used.extend(
                shorthand_families(&value)
                    .iter()
                    .map(|f| f.to_ascii_lowercase()),
            ),
            _ => {}
        }
    }
    if let (true, Some(family), Some(source)) = (face, family, source) {
        found.faces.push((family, source));
    }
}

/// A declaration's value up to its `;` (functions as one [`Value::Function`]).
fn value_tokens(parser: &mut Parser<'_, '_>) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let token = match parser.next() {
            Ok(t) => t.clone(),
            Err(_) => break,
        };
        match token {
            Token::Semicolon => break,
            Token::Function(name) => {
                let argument = string_argument(parser);
                out.push(Value::Function(name.to_ascii_lowercase(), argument));
            }
            Token::UnquotedUrl(url) => {
                out.push(Value::Function("url".into(), Some(url.to_string())))
            }
            Token::Ident(s) => out.push(Value::Ident(s.to_string())),
            Token::QuotedString(s) => out.push(Value::Text(s.to_string())),
            Token::Comma => out.push(Value::Comma),
            Token::Dimension { .. } | Token::Percentage { .. } | Token::Number { .. } => {
                out.push(Value::Size)
            }
            Token::Delim('/') => out.push(Value::Slash),
            _ => {}
        }
    }
    out
}

/// One piece of a declaration's value.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Ident(String),
    Text(String),
    Comma,
    Slash,
    Size,
    /// A function and its first string argument (`url("x")`, `format("woff2")`).
    Function(String, Option<String>),
}

/// The first string (or ident, or unquoted URL) inside a function's parentheses.
fn string_argument(parser: &mut Parser<'_, '_>) -> Option<String> {
    parser
        .parse_nested_block(
            |p| -> Result<Option<String>, cssparser::ParseError<'_, ()>> {
                let mut first = None;
                while let Ok(t) = p.next() {
                    if first.is_none() {
                        first = match t {
                            Token::QuotedString(s) | Token::Ident(s) | Token::UnquotedUrl(s) => {
                                Some(s.to_string())
                            }
                            _ => None,
                        };
                    }
                }
                Ok(first)
            },
        )
        .ok()
        .flatten()
}

/// A `font-family` list: quoted names, or idents joined by spaces; generic families
/// (`serif`, `sans-serif`, ...) are kept, they simply match no face.
fn families(value: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let flush = |current: &mut Vec<&str>, out: &mut Vec<String>| {
        if !current.is_empty() {
            out.push(current.join(" "));
            current.clear();
        }
    };
    for v in value {
        match v {
            Value::Text(s) => {
                flush(&mut current, &mut out);
                out.push(s.clone());
            }
            Value::Ident(s) => current.push(s),
            Value::Comma => flush(&mut current, &mut out),
            _ => {}
        }
    }
    flush(&mut current, &mut out);
    out
}

/// The families of a `font` shorthand: what follows the size (and `/line-height`).
fn shorthand_families(value: &[Value]) -> Vec<String> {
    let mut at = value
        .iter()
        .rposition(|v| *v == Value::Size)
        .map_or(0, |i| i + 1);
    // `16px/1.5`: the line height is a size too, already past.
    if value.get(at) == Some(&Value::Slash) {
        at += 2;
    }
    families(value.get(at..).unwrap_or_default())
}

/// A face's `src`: the URL of its first entry with a format Chromium reads.
fn face_source(value: &[Value]) -> Option<String> {
    for entry in value.split(|v| *v == Value::Comma) {
        let url = entry.iter().find_map(|v| match v {
            Value::Function(f, Some(u)) if f == "url" => Some(u.clone()),
            _ => None,
        });
        let format = entry.iter().find_map(|v| match v {
            Value::Function(f, arg) if f == "format" => Some(arg.clone().unwrap_or_default()),
            _ => None,
        });
        let readable = format.is_none_or(|f| {
            matches!(
                f.to_ascii_lowercase().as_str(),
                "woff2" | "woff" | "truetype" | "opentype" | "woff2-variations" | "woff-variations"
            )
        });
        if let (Some(url), true) = (url, readable) {
            return Some(url);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_faces_and_imports_are_found() {
        let css = r#"
            @import url("base.css");
            @import 'theme.css' screen;
            @font-face { font-family: "Inter"; src: local(Inter), url(/f/inter.woff2) format("woff2"), url(/f/inter.woff) format("woff"); }
            @font-face { font-family: Mono Sans; src: url('/f/mono.eot') format("embedded-opentype"), url('/f/mono.ttf') format("truetype"); }
            @font-face { font-family: Unused; src: url(/f/unused.woff2); }
            @media (min-width: 600px) { h1 { font: italic bold 16px/1.5 "Inter", serif } }
            code { font-family: 'Mono Sans', monospace; }
            @keyframes spin { from { font-family: Unused } }
        "#;
        let sheet = read(css);
        assert_eq!(sheet.imports, ["base.css", "theme.css"]);
        assert_eq!(sheet.fonts, ["/f/inter.woff2", "/f/mono.ttf"]);
    }

    #[test]
    fn hostile_css_is_bounded_and_does_not_panic() {
        let deep = "@media all {".repeat(10_000);
        assert_eq!(read(&deep), Sheet::default());
        let nested = "a { ".repeat(10_000);
        assert_eq!(read(&nested), Sheet::default());
        for bad in [
            "@font-face {",
            "a { font-family: ",
            "@import",
            "@import url(",
            "}}}{{{",
            "\u{0}\u{feff}",
        ] {
            let _ = read(bad);
        }
        let many = "@font-face{font-family:A;src:url(a.woff2)}b{font-family:A}".repeat(1000);
        assert_eq!(read(&many).fonts, ["a.woff2"], "one URL once");
    }
}
