//! Source scanners behind the schema rule ([`crate::rules::sources`]).
//!
//! They are heuristics, not parsers, and aim to catch the honest mistake:
//! - [`tables`] reads diesel `table!` blocks and wants every table declared as
//!   `<schema>.<table>` with a schema the module owns.
//! - [`sql`] and [`sql_in_rust`] look for `<schema>.<identifier>` (the schema as a whole
//!   word, case-insensitive) naming a schema of another module: in every line of SQL
//!   files, and in Rust string literals that look like SQL (they contain SELECT, INSERT,
//!   UPDATE, DELETE, CREATE, ALTER, JOIN or FROM as a word). `products.` at the end of a
//!   sentence is not a reference: an identifier must follow the dot.

/// One suspicious spot in a file.
#[derive(Debug, PartialEq)]
pub(crate) struct Finding {
    /// 1-based.
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// Tables in `table!` blocks of `src` that are not schema-qualified with one of `own`.
pub(crate) fn tables(src: &str, own: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (at, _) in src.match_indices("table!") {
        if src[..at].chars().next_back().is_some_and(is_ident) {
            continue; // e.g. `my_table!`
        }
        let after = &src[at + "table!".len()..];
        let Some(rest) = after.trim_start().strip_prefix('{') else {
            continue;
        };
        let mut i = src.len() - rest.len();
        // Walk the block's items: comments, attributes, `use`s and table definitions.
        loop {
            let item = src[i..].trim_start();
            i = src.len() - item.len();
            let skip = if item.is_empty() || item.starts_with('}') {
                break;
            } else if item.starts_with("//") {
                item.find('\n').unwrap_or(item.len())
            } else if item.starts_with('#') {
                item.find(']').map_or(item.len(), |end| end + 1)
            } else if item.starts_with("use ") {
                item.find(';').map_or(item.len(), |end| end + 1)
            } else {
                // `[schema.]name [(primary key)] { columns }`
                let header_end = item.find(['(', '{']).unwrap_or(item.len());
                let header: String = item[..header_end].split_whitespace().collect();
                let line = line_of(src, i);
                match header.split_once('.') {
                    None => findings.push(Finding {
                        line,
                        message: format!(
                            "table `{header}` is not schema-qualified; declare it as `{}.{header}`",
                            own.first().map_or("<schema>", String::as_str)
                        ),
                    }),
                    Some((schema, _)) if !own.iter().any(|s| s == schema) => {
                        findings.push(Finding {
                            line,
                            message: format!(
                                "table `{header}` is in schema {schema}, which this module does not own (it owns: {})",
                                own.join(", ")
                            ),
                        })
                    }
                    Some(_) => {}
                }
                match item.find('{') {
                    Some(open) => block_end(item, open),
                    None => item.len(),
                }
            };
            i += skip;
        }
    }
    findings
}

/// References to any of the `foreign` schemas in SQL text.
pub(crate) fn sql(text: &str, foreign: &[String]) -> Vec<Finding> {
    references(text, foreign)
        .into_iter()
        .map(|(at, schema)| reference(line_of(text, at), schema))
        .collect()
}

/// References to any of the `foreign` schemas in the SQL-looking string literals of `src`.
pub(crate) fn sql_in_rust(src: &str, foreign: &[String]) -> Vec<Finding> {
    string_literals(src)
        .into_iter()
        .filter(|&(_, literal)| looks_like_sql(literal))
        .flat_map(|(start, literal)| {
            references(literal, foreign)
                .into_iter()
                .map(move |(at, schema)| reference(line_of(src, start + at), schema))
        })
        .collect()
}

fn reference(line: usize, schema: &str) -> Finding {
    Finding {
        line,
        message: format!("SQL names schema {schema}, which belongs to another module"),
    }
}

/// Byte offsets in `text` of `<schema>.<identifier>` for each schema in `schemas`.
fn references<'s>(text: &str, schemas: &'s [String]) -> Vec<(usize, &'s str)> {
    let lower = text.to_ascii_lowercase();
    let mut found: Vec<(usize, &str)> = schemas
        .iter()
        .flat_map(|schema| {
            let lower = &lower;
            lower
                .match_indices(schema.as_str())
                .filter_map(move |(at, _)| {
                    // `orders_read.users.version`: after a dot it is a table, not a schema.
                    let whole_word = !lower[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| is_ident(c) || c == '.');
                    let after = &lower[at + schema.len()..];
                    let names_something = after
                        .strip_prefix('.')
                        .and_then(|rest| rest.chars().next())
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '"');
                    (whole_word && names_something).then_some((at, schema.as_str()))
                })
        })
        .collect();
    found.sort_unstable();
    found
}

fn looks_like_sql(text: &str) -> bool {
    const KEYWORDS: [&str; 8] = [
        "select", "insert", "update", "delete", "create", "alter", "join", "from",
    ];
    text.split(|c: char| !is_ident(c))
        .any(|word| KEYWORDS.iter().any(|k| word.eq_ignore_ascii_case(k)))
}

/// The contents of the string literals (`"..."`, `r"..."`, `r#"..."#`) in Rust source,
/// with their byte offsets; comments and char literals are skipped.
fn string_literals(src: &str) -> Vec<(usize, &str)> {
    let mut literals = Vec::new();
    let mut i = 0;
    while let Some(c) = src[i..].chars().next() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |end| end + 2);
        } else if c == '\'' {
            // A char literal ('x', '\n', '"') or a lifetime ('a).
            let mut chars = rest[1..].chars();
            i += match (chars.next(), chars.next()) {
                (Some('\\'), _) => rest[3..].find('\'').map_or(rest.len(), |end| end + 4),
                (Some(c), Some('\'')) => 2 + c.len_utf8(),
                _ => 1,
            };
        } else if c == '"' {
            let body = &rest[1..];
            let mut end = 0;
            let mut escaped = false;
            for (at, c) in body.char_indices() {
                end = at;
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => break,
                    _ => {}
                }
            }
            literals.push((i + 1, &body[..end]));
            i += end + 2;
        } else if c == 'r' && !src[..i].chars().next_back().is_some_and(is_ident) {
            let hashes = rest[1..].len() - rest[1..].trim_start_matches('#').len();
            if rest[1 + hashes..].starts_with('"') {
                let body = &rest[2 + hashes..];
                let close = format!("\"{}", "#".repeat(hashes));
                let end = body.find(&close).unwrap_or(body.len());
                literals.push((i + 2 + hashes, &body[..end]));
                i += 2 + hashes + end + close.len();
            } else {
                i += 1;
            }
        } else {
            i += c.len_utf8();
        }
        i = i.min(src.len());
    }
    literals
}

/// The index just past the `}` that closes the `{` at `open`.
fn block_end(text: &str, open: usize) -> usize {
    let mut depth = 0;
    for (at, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + at + 1;
                }
            }
            _ => {}
        }
    }
    text.len()
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn lines(findings: &[Finding]) -> Vec<usize> {
        findings.iter().map(|f| f.line).collect()
    }

    #[test]
    fn qualified_tables_pass() {
        let src = "diesel::table! {\n    users.users (id) {\n        id -> Uuid,\n    }\n}\n\n\
                   table! {\n    /// Sessions.\n    #[sql_name = \"s\"]\n    users.sessions {\n        id -> Uuid,\n    }\n}\n";
        assert_eq!(tables(src, &strings(&["users"])), []);
    }

    #[test]
    fn unqualified_and_foreign_tables_fail() {
        let src = "diesel::table! {\n    users (id) {\n        id -> Uuid,\n    }\n\n    products.products (id) {\n        id -> Uuid,\n    }\n}\n";
        let found = tables(src, &strings(&["users"]));
        assert_eq!(lines(&found), [2, 6], "{found:?}");
        assert!(found[0].message.contains("not schema-qualified"));
        assert!(found[1].message.contains("schema products"));
    }

    #[test]
    fn other_macros_are_not_tables() {
        let src = "diesel::joinable!(lines -> products (product_id));\n\
                   diesel::allow_tables_to_appear_in_same_query!(products, lines);\n";
        assert_eq!(tables(src, &strings(&["users"])), []);
    }

    #[test]
    fn foreign_schema_in_sql_fails() {
        let text = "-- Reserves stock in products.\nCREATE TABLE orders.lines (\n  id uuid REFERENCES Products.products (id)\n);\n";
        let found = sql(text, &strings(&["products", "users"]));
        assert_eq!(lines(&found), [3], "{found:?}");
        assert!(found[0].message.contains("schema products"));
    }

    #[test]
    fn own_schema_in_sql_passes() {
        let text = "CREATE TABLE users.users (id uuid PRIMARY KEY);\nSELECT * FROM my_products.x;\n\
                    UPDATE orders_read.products SET name = $1 WHERE orders_read.products.version < 3;\n";
        assert_eq!(sql(text, &strings(&["products"])), []);
    }

    #[test]
    fn foreign_schema_in_rust_sql_strings_fails() {
        let src = "// SELECT * FROM products.products\n\
                   let c = '\"';\n\
                   let path = \"products.json\";\n\
                   fn f<'a>(x: &'a str) {}\n\
                   sql_query(\"SELECT id FROM users.users\");\n\
                   sql_query(r#\"\n    SELECT \"x\"\n    FROM products.products\"#);\n";
        let found = sql_in_rust(src, &strings(&["products"]));
        assert_eq!(lines(&found), [8], "{found:?}");
    }
}
