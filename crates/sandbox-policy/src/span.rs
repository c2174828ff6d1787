//! From byte spans to what a person can find in an editor: 1-based
//! line:column, and the dotted field path of the value at a span.

use crate::PolicyError;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where one file's problems are reported, and how its byte offsets map to
/// lines.
pub(crate) struct Source<'a> {
    file: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            file,
            text,
            line_starts,
        }
    }

    pub(crate) fn file(&self) -> &str {
        self.file
    }

    /// 1-based (line, column) of a byte offset; columns count characters.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        // Offsets come from the parser and sit on character boundaries; fall
        // back to bytes rather than fail if one ever does not.
        let column = match self.text.get(start..offset) {
            Some(s) => s.chars().count(),
            None => offset - start,
        };
        (line, column + 1)
    }

    pub(crate) fn error(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> PolicyError {
        let (line, column) = self.position(span.start);
        PolicyError {
            file: self.file.to_string(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Turns a TOML syntax or type error into ours, finding the field path
    /// from the error's span.
    pub(crate) fn toml_error(&self, e: &toml::de::Error) -> PolicyError {
        let message = e.message().trim().to_string();
        let missing = missing_field(&message).map(str::to_string);
        match e.span() {
            // serde reports a key missing at the top level with an empty
            // span; it has no place in the text.
            Some(span) if !(missing.is_some() && span.is_empty()) => {
                let mut field = self.path_at(&span);
                if let Some(name) = &missing {
                    field = join(&field, name);
                }
                self.error(span, field, message)
            }
            _ => PolicyError::unplaced(self.file, missing.unwrap_or_default(), message),
        }
    }

    /// The span of the value at `path` (keys and array indices), if the
    /// text has one there.
    pub(crate) fn span_of(&self, path: &[Step<'_>]) -> Option<Range<usize>> {
        let (root, _) = DeTable::parse_recoverable(self.text);
        let mut here: Spanned<DeValue<'_>> = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
        for step in path {
            let next = match (step, here.get_ref()) {
                (Step::Key(k), DeValue::Table(t)) => t.get(*k).cloned(),
                (Step::Index(i), DeValue::Array(a)) => a.get(*i).cloned(),
                _ => None,
            }?;
            here = next;
        }
        Some(here.span())
    }

    /// A top-level string value, read even from a file that fails to
    /// deserialize (to learn which dataset a broken file is about).
    pub(crate) fn top_level_str(&self, key: &str) -> Option<String> {
        let (root, _) = DeTable::parse_recoverable(self.text);
        root.get_ref().get(key)?.get_ref().as_str().map(str::to_string)
    }

    /// The dotted path of the innermost key whose key or value contains
    /// `span`, e.g. `columns.amount.bounds` or `fusion[1].on`.
    pub(crate) fn path_at(&self, span: &Range<usize>) -> String {
        // Recovery parsing gives a best-effort tree even for broken files.
        let (root, _) = DeTable::parse_recoverable(self.text);
        find_in_table(root.get_ref(), span).unwrap_or_else(|| self.path_by_line(span.start))
    }

    /// For syntax errors, where recovery drops the broken key: the key
    /// written at the start of the error's line, under the last table
    /// header above it. Empty when the line has no plain `key =`.
    fn path_by_line(&self, offset: usize) -> String {
        let (line, _) = self.position(offset);
        let lines: Vec<&str> = self.text.split('\n').collect();
        let Some(key) = lines.get(line - 1).and_then(|l| leading_key(l)) else {
            return String::new();
        };
        let above = lines.get(..line - 1).unwrap_or_default();
        let table = above.iter().enumerate().rev().find_map(|(i, l)| {
            let h = header(l)?;
            if !h.array {
                return Some(h.name.to_string());
            }
            // Which element of the array of tables this header opens.
            let index = above[..i]
                .iter()
                .filter(|l| header(l).is_some_and(|o| o.array && o.name == h.name))
                .count();
            Some(format!("{}[{index}]", h.name))
        });
        match table {
            Some(t) => join(&t, key),
            None => key.to_string(),
        }
    }
}

/// A bare (dotted) key followed by `=`, at the start of a line.
fn leading_key(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    (!key.is_empty() && rest.trim_start().starts_with('=')).then_some(key)
}

struct Header<'a> {
    name: &'a str,
    array: bool,
}

/// `[name]` or `[[name]]` on its own line (comments allowed after it).
fn header(line: &str) -> Option<Header<'_>> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("[[") {
        let name = rest.split("]]").next()?.trim();
        return Some(Header { name, array: true });
    }
    let rest = line.strip_prefix('[')?;
    let name = rest.split(']').next()?.trim();
    Some(Header { name, array: false })
}

/// One step of a path into a TOML document.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step<'k> {
    Key(&'k str),
    Index(usize),
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

// A `[header]` table's span covers only its header line, not its body, so
// the search looks inside every table rather than only in containing ones.
fn find_in_table(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    for (key, value) in table.iter() {
        if contains(&key.span(), span) {
            return Some(key.get_ref().to_string());
        }
        if let Some(sub) = find_in_value(value, span) {
            return Some(match sub.strip_prefix('[') {
                Some(_) => format!("{}{sub}", key.get_ref()),
                None => join(key.get_ref(), &sub),
            });
        }
        if contains(&value.span(), span) {
            return Some(key.get_ref().to_string());
        }
    }
    None
}

/// The path below `value` that holds `span` (`""` never: `None` instead).
fn find_in_value(value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(t) => find_in_table(t, span),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| match find_in_value(item, span) {
                Some(sub) if sub.starts_with('[') => Some(format!("[{i}]{sub}")),
                Some(sub) => Some(format!("[{i}].{sub}")),
                None => contains(&item.span(), span).then(|| format!("[{i}]")),
            }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let s = Source::new("f", "a = 1\nb = \"黄浦区\" x\n");
        assert_eq!(s.position(0), (1, 1));
        assert_eq!(s.position(6), (2, 1));
        let x = "a = 1\nb = \"黄浦区\" ".len();
        assert_eq!(s.position(x), (2, 11));
        assert_eq!(s.position(10_000), (3, 1));
    }

    #[test]
    fn paths_follow_tables_and_arrays() {
        let text = "[columns]\namount = { role = \"measure\", bounds = [1.0, 0.0] }\n[[fusion]]\ndataset = \"a.b\"\n[[fusion]]\non = [[\"x\", \"y\"]]\n";
        let s = Source::new("f", text);
        let at = |needle: &str| {
            let start = text.find(needle).expect("needle");
            s.path_at(&(start..start + needle.len()))
        };
        assert_eq!(at("[1.0, 0.0]"), "columns.amount.bounds");
        assert_eq!(at("\"measure\""), "columns.amount.role");
        assert_eq!(at("\"a.b\""), "fusion[0].dataset");
        assert_eq!(at("\"y\""), "fusion[1].on[0][1]");
    }
}
