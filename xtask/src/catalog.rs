//! `cargo xtask docs [--check]` and `cargo xtask asyncapi`: the event catalog and the
//! module diagram, generated, never written by hand.
//!
//! - `docs/asyncapi.json`: what `emporium asyncapi` prints (the document `GET
//!   /asyncapi.json` serves, made from the `-api` crates' `events::LOG` and the
//!   subscribers' `SUBSCRIBES`).
//! - `docs/events.md`: the same facts for a reader: every event type, its module, version,
//!   subject and subscribers, its payload's fields, and a sample.
//! - The module diagram in ARCHITECTURE.md (Mermaid, between its `module-diagram` markers):
//!   the module crates and their dependencies from `cargo metadata` (crate `tidy`), and the
//!   events that flow between them from the catalog.
//!
//! `--check` writes nothing and fails when a file differs from what would be written (CI).
//! `asyncapi` validates `docs/asyncapi.json` with `@asyncapi/parser`, and each message's
//! examples against its schemas with Ajv (npm, into `target/asyncapi`).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::{apt, cargo, succeed};

const ASYNCAPI: &str = "docs/asyncapi.json";
const EVENTS: &str = "docs/events.md";
const ARCHITECTURE: &str = "ARCHITECTURE.md";
const DIAGRAM_START: &str = "<!-- module-diagram:start (cargo xtask docs writes this) -->";
const DIAGRAM_END: &str = "<!-- module-diagram:end -->";
/// The parser CI validates the document with and the JSON Schema validator for its
/// examples: `package.json` pins them, `package-lock.json` everything they pull in, and
/// `npm ci` installs exactly that.
const PACKAGE: &str = include_str!("catalog/package.json");
const LOCK: &str = include_str!("catalog/package-lock.json");
const VALIDATE: &str = include_str!("catalog/validate.mjs");

/// Writes the three files, or with `check` fails unless each is current.
pub(crate) fn docs(root: &Path, check: bool) -> Result<()> {
    let document = asyncapi_text(root)?;
    let catalog: Value = serde_json::from_str(&document).context("emporium asyncapi")?;
    let architecture = fs::read_to_string(root.join(ARCHITECTURE))?;
    let files = [
        (ASYNCAPI, document.clone()),
        (EVENTS, events_md(&catalog)?),
        (
            ARCHITECTURE,
            with_diagram(&architecture, &diagram(root, &catalog)?)?,
        ),
    ];
    let mut stale = Vec::new();
    for (path, text) in &files {
        let current = fs::read_to_string(root.join(path)).unwrap_or_default();
        if current == *text {
            continue;
        }
        if check {
            stale.push(*path);
        } else {
            fs::create_dir_all(root.join(path).parent().expect("a file in a folder"))?;
            fs::write(root.join(path), text)?;
            eprintln!("xtask: wrote {path}");
        }
    }
    if !stale.is_empty() {
        bail!(
            "{} differ(s) from what the code generates: run `cargo xtask docs` and commit",
            stale.join(", ")
        );
    }
    eprintln!("xtask: the event catalog and the module diagram are current");
    Ok(())
}

/// Validates `docs/asyncapi.json` with the real AsyncAPI parser.
pub(crate) fn validate(root: &Path) -> Result<()> {
    let node = apt::ensure_installed(Path::new("/usr/bin/node"), "nodejs")?;
    let npm = apt::ensure_installed(Path::new("/usr/bin/npm"), "npm")?;
    let dir = root.join("target").join("asyncapi");
    fs::create_dir_all(&dir)?;
    // Installed again when the lock changes (what `npm ci` installed is its copy).
    let installed = dir.join("node_modules").join(".emporium-lock.json");
    if fs::read_to_string(&installed).ok().as_deref() != Some(LOCK) {
        fs::write(dir.join("package.json"), PACKAGE)?;
        fs::write(dir.join("package-lock.json"), LOCK)?;
        eprintln!(
            "xtask: npm ci (the AsyncAPI parser and Ajv, xtask/src/catalog/package-lock.json)"
        );
        succeed(
            std::process::Command::new(npm)
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
        )
        .context("installing the AsyncAPI parser (needs node and npm)")?;
        fs::write(&installed, LOCK)?;
    }
    fs::write(dir.join("validate.mjs"), VALIDATE)?;
    succeed(
        std::process::Command::new(node)
            .arg(dir.join("validate.mjs"))
            .arg(root.join(ASYNCAPI)),
    )
    .context("docs/asyncapi.json is not a valid AsyncAPI document")
}

/// The catalog as the binary prints it.
fn asyncapi_text(root: &Path) -> Result<String> {
    let output = cargo(root, &["run", "-q", "-p", "emporium", "--", "asyncapi"])
        .output()
        .context("running emporium asyncapi")?;
    ensure!(
        output.status.success(),
        "emporium asyncapi failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// The catalog's messages, in the order of the channels (module, then event type).
fn messages(catalog: &Value) -> Vec<&Value> {
    let mut messages: Vec<&Value> = catalog["components"]["messages"]
        .as_object()
        .map(|m| m.values().collect())
        .unwrap_or_default();
    messages.sort_by_key(|m| (m["x-producer"].as_str(), m["name"].as_str()));
    messages
}

fn events_md(catalog: &Value) -> Result<String> {
    let schemas = &catalog["components"]["schemas"];
    let mut md = String::from(
        "# Event catalog\n\n\
         <!-- Generated by `cargo xtask docs` from the code; do not edit. -->\n\n\
         Made from each `-api` crate's `events::LOG` (types, payloads, versions) and each \
         subscriber's `SUBSCRIBES`. The same facts as an AsyncAPI 3 document: \
         [asyncapi.json](asyncapi.json), which the server also serves at \
         `GET /asyncapi.json`.\n\n",
    );
    md.push_str(catalog["info"]["description"].as_str().unwrap_or_default());
    md.push_str(
        "\n\n| event type | module | schema_version | NATS subject | subscribers | what happened |\n\
         |---|---|---|---|---|---|\n",
    );
    let channels = catalog["channels"].as_object().context("no channels")?;
    let subject = |name: &str| {
        channels
            .values()
            .find(|c| c["title"] == name)
            .and_then(|c| c["address"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    for message in messages(catalog) {
        let name = message["name"].as_str().unwrap_or_default();
        writeln!(
            md,
            "| [`{name}`](#{anchor}) | {} | {} | `{}` | {} | {} |",
            message["x-producer"].as_str().unwrap_or_default(),
            message["x-schema-version"],
            subject(name),
            list(&message["x-subscribers"]),
            message["summary"].as_str().unwrap_or_default(),
            anchor = name.replace('.', ""),
        )?;
    }
    md.push_str(
        "\n## Subscribers\n\n| subscriber | crate | reads | what it does |\n|---|---|---|---|\n",
    );
    for subscriber in catalog["x-subscribers"].as_array().into_iter().flatten() {
        let reads: Vec<String> = subscriber["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    "{}: {}",
                    s["module"].as_str().unwrap_or_default(),
                    list(&s["event_types"])
                )
            })
            .collect();
        writeln!(
            md,
            "| `{}` | `{}` | {} | {} |",
            subscriber["name"].as_str().unwrap_or_default(),
            subscriber["crate"].as_str().unwrap_or_default(),
            reads.join("; "),
            subscriber["summary"].as_str().unwrap_or_default()
        )?;
    }
    for message in messages(catalog) {
        let name = message["name"].as_str().unwrap_or_default();
        let sample = &message["examples"][0]["payload"];
        let payload =
            reference(&schemas[format!("{name}.envelope")]["allOf"][1]["properties"]["payload"]);
        writeln!(
            md,
            "\n## {name}\n\n{}\n\nModule `{}`, subject `{}`, `schema_version` {}. Subscribers: {}.\n\n\
             Payload (`{payload}`):\n\n| field | type | required | meaning |\n|---|---|---|---|",
            message["summary"].as_str().unwrap_or_default(),
            message["x-producer"].as_str().unwrap_or_default(),
            subject(name),
            message["x-schema-version"],
            list(&message["x-subscribers"]),
        )?;
        let schema = &schemas[&payload];
        field_rows(&mut md, schema, schemas)?;
        let properties = schema["properties"].as_object();
        if properties.is_none_or(|p| p.is_empty()) {
            md.push_str("| (none) | | | |\n");
        }
        for (name, nested) in nested_objects(schema, schemas) {
            writeln!(
                md,
                "\n`{name}`:\n\n| field | type | required | meaning |\n|---|---|---|---|"
            )?;
            field_rows(&mut md, nested, schemas)?;
        }
        writeln!(
            md,
            "\nA sample envelope:\n\n```json\n{}\n```",
            serde_json::to_string_pretty(sample)?
        )?;
    }
    Ok(md)
}

/// The object schemas `schema`'s fields refer to (directly or as array items), by name.
fn nested_objects<'a>(schema: &Value, schemas: &'a Value) -> Vec<(String, &'a Value)> {
    let mut nested: Vec<(String, &Value)> = Vec::new();
    for property in schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, p)| p)
    {
        for candidate in [property, &property["items"]] {
            let name = reference(candidate);
            let target = &schemas[&name];
            if !name.is_empty()
                && target["type"] == "object"
                && !nested.iter().any(|(n, _)| *n == name)
            {
                nested.push((name, target));
            }
        }
    }
    nested
}

/// One table row per field of an object schema.
fn field_rows(md: &mut String, schema: &Value, schemas: &Value) -> Result<()> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (field, property) in schema["properties"].as_object().into_iter().flatten() {
        let required = if required.contains(&field.as_str()) {
            "yes"
        } else {
            "no"
        };
        writeln!(
            md,
            "| `{field}` | {} | {required} | {} |",
            type_of(property, schemas),
            one_line(property["description"].as_str().unwrap_or_default()),
        )?;
    }
    Ok(())
}

/// `$ref`'s schema name, or "".
fn reference(schema: &Value) -> String {
    schema["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// A property's type for a reader: `Money`, `array of OrderLine`, `string`.
fn type_of(property: &Value, schemas: &Value) -> String {
    let named = reference(property);
    if !named.is_empty() {
        let target = &schemas[&named];
        return match target["type"].as_str() {
            Some("object") | None => format!("`{named}`"),
            Some(kind) => format!("`{named}` ({kind})"),
        };
    }
    match property["type"].as_str() {
        Some("array") => format!("array of {}", type_of(&property["items"], schemas)),
        Some(kind) => format!("`{kind}`"),
        None => "any".to_owned(),
    }
}

fn list(names: &Value) -> String {
    names
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The Mermaid diagram: module crates with their dependencies, and the events between them.
fn diagram(root: &Path, catalog: &Value) -> Result<String> {
    let graph = tidy::Workspace::load(root)?.module_graph();
    let id = |name: &str| name.replace('-', "_");
    let mut out = String::from("```mermaid\nflowchart LR\n");
    for (name, _) in &graph {
        writeln!(out, "    {}[\"{name}\"]", id(name))?;
    }
    out.push_str("    nats[(\"NATS JetStream\")]\n");
    for (name, deps) in &graph {
        for dep in deps {
            writeln!(out, "    {} --> {}", id(name), id(dep))?;
        }
    }
    let crate_of = |subscriber: &str| {
        catalog["x-subscribers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == subscriber)
            .and_then(|s| s["crate"].as_str())
            .map(str::to_owned)
    };
    // One dashed arrow per producer and subscribing crate, labelled with the event types.
    let mut flows: Vec<(String, String, Vec<String>)> = Vec::new();
    for message in messages(catalog) {
        let producer = message["x-producer"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for subscriber in message["x-subscribers"].as_array().into_iter().flatten() {
            let subscriber = subscriber.as_str().unwrap_or_default();
            let target = if subscriber == "nats_publisher" {
                "nats".to_owned()
            } else {
                id(&crate_of(subscriber).with_context(|| format!("no crate for {subscriber}"))?)
            };
            let name = message["name"].as_str().unwrap_or_default().to_owned();
            match flows.iter_mut().find(|f| f.0 == producer && f.1 == target) {
                Some(flow) => flow.2.push(name),
                None => flows.push((producer.clone(), target, vec![name])),
            }
        }
    }
    for (producer, target, names) in flows {
        let label = if target == "nats" {
            "every event".to_owned()
        } else {
            names.join("<br/>")
        };
        writeln!(out, "    {} -. \"{label}\" .-> {target}", id(&producer))?;
    }
    out.push_str("```\n");
    Ok(out)
}

/// `architecture` with the text between the diagram markers replaced by `diagram`.
fn with_diagram(architecture: &str, diagram: &str) -> Result<String> {
    let start = architecture
        .find(DIAGRAM_START)
        .with_context(|| format!("{ARCHITECTURE} has no line {DIAGRAM_START}"))?;
    let end = architecture
        .find(DIAGRAM_END)
        .with_context(|| format!("{ARCHITECTURE} has no line {DIAGRAM_END}"))?;
    ensure!(
        start < end,
        "the diagram markers of {ARCHITECTURE} are out of order"
    );
    Ok(format!(
        "{}{DIAGRAM_START}\n{diagram}{}",
        &architecture[..start],
        &architecture[end..]
    ))
}
