//! Support for the OpenAPI tests: the document and the app's route registry, requests
//! with any method and body, and [`Contract`], which checks every answer against the
//! document and remembers which documented answers were seen.

use std::collections::BTreeSet;

use emporium::{Config, Hooks};
use kernel::testing::Answer;
use serde_json::{Value, json};

use crate::{TestApp, spawn_with};

/// An id nobody has: a well-formed UUID v7.
pub(crate) const NOBODY: &str = "01900000-0000-7000-8000-000000000000";
/// Methods the route probes try on every path.
pub(crate) const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
pub(crate) const ADMIN_TOKEN: &str = "openapi-test-token";

pub(crate) fn document() -> Value {
    serde_json::to_value(emporium::openapi::document()).expect("the document is JSON")
}

/// Every documented `(METHOD, path template)`.
pub(crate) fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            found.insert((method.to_uppercase(), path.clone()));
        }
    }
    found
}

/// Every `(METHOD, path template)` the app registers: the registry
/// `Modules::configure` mounts (`emporium::endpoints()`), read without the document.
pub(crate) fn registered() -> BTreeSet<(String, String)> {
    emporium::endpoints()
        .iter()
        .flat_map(|(_, routes)| {
            routes
                .operations()
                .map(|(method, path)| (method.to_string(), path.to_owned()))
        })
        .collect()
}

/// The part of the API a test covers, by path: each part's test drives its routes to
/// every answer they document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Users,
    /// `/auth` and `/.well-known`.
    Auth,
    Products,
    OrderCommands,
    OrderQueries,
    Payments,
    /// Everything else: health, metrics, admin, the document and its reference page.
    Operations,
}

impl Part {
    pub(crate) fn of(path: &str) -> Part {
        let under = |prefix: &str| {
            path == prefix
                || path.starts_with(&format!("{prefix}/"))
                || path.starts_with(&format!("{prefix}?"))
        };
        if under("/users") {
            Part::Users
        } else if under("/auth") || under("/.well-known") {
            Part::Auth
        } else if under("/products") {
            Part::Products
        } else if under("/commands/orders") {
            Part::OrderCommands
        } else if under("/queries/orders") {
            Part::OrderQueries
        } else if under("/payments") {
            Part::Payments
        } else {
            Part::Operations
        }
    }
}

/// An app whose admin routes are enabled, so probes reach their routing, and whose gateway
/// deadline is short, so a `504 payment_pending` comes in a moment.
pub(crate) async fn admin_app(db: kernel::testing::TestDatabase) -> TestApp {
    let config = |url: &str| Config {
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        payment_gateway_timeout: std::time::Duration::from_millis(500),
        ..Config::for_database(url)
    };
    spawn_with(db, config, Hooks::default()).await
}

/// A request to `path`, with the admin token and, for methods that take one, an empty JSON
/// object as body.
pub(crate) async fn probe(app: &TestApp, method: &str, path: &str) -> Answer {
    let body = matches!(method, "POST" | "PUT" | "PATCH").then(|| json!({}));
    send(
        app,
        method,
        path,
        body,
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
    )
    .await
}

/// A concrete path for a template: `{id}` becomes an id nobody has, any other parameter a
/// plain word.
pub(crate) fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{id}" => NOBODY,
            s if s.starts_with('{') => "placeholder",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let bytes = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
    send_raw(app, method, path, bytes, headers).await
}

/// [`send_as`] the app's staff member.
pub(crate) async fn send_raw(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
    headers: &[(&str, &str)],
) -> Answer {
    send_as(&app.http, method, path, body, headers).await
}

/// A request as `caller`, unless `headers` say who is calling.
pub(crate) async fn send_as(
    caller: &kernel::testing::Http,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
    headers: &[(&str, &str)],
) -> Answer {
    let names_itself = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
    let caller = if names_itself {
        caller.anonymous()
    } else {
        caller.clone()
    };
    let mut request = caller.request(method, path);
    if let Some((content_type, bytes)) = body {
        request = request.header("content-type", content_type).body(bytes);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) fn resolve<'d>(doc: &'d Value, value: &'d Value) -> &'d Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            resolve(doc, doc.pointer(pointer).expect("the $ref resolves"))
        }
        None => value,
    }
}

/// The document, and which documented answers a test has seen.
pub(crate) struct Contract {
    doc: Value,
    templates: Vec<(String, String)>,
    /// The part whose answers are checked and must all be seen; `None`: the whole API.
    part: Option<Part>,
    seen: BTreeSet<(String, String, u16)>,
}

impl Contract {
    pub(crate) fn new(doc: Value) -> Contract {
        let templates = operations(&doc).into_iter().collect();
        Contract {
            doc,
            templates,
            part: None,
            seen: BTreeSet::new(),
        }
    }

    /// A contract for the routes of `part` only: checking another part's answer fails.
    pub(crate) fn of(doc: Value, part: Part) -> Contract {
        Contract {
            part: Some(part),
            ..Contract::new(doc)
        }
    }

    fn covers(&self, template: &str) -> bool {
        self.part.is_none_or(|part| Part::of(template) == part)
    }

    /// The documented template `path` (without its query) is an instance of; literal
    /// segments win over parameters.
    fn template(&self, method: &str, path: &str) -> String {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        let score = |template: &str| -> Option<usize> {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            for (part, segment) in parts.iter().zip(&segments) {
                if part.starts_with('{') && !segment.is_empty() {
                    continue;
                }
                if part != segment {
                    return None;
                }
                literal += 1;
            }
            Some(literal)
        };
        self.templates
            .iter()
            .filter(|(m, _)| m == method)
            .filter_map(|(_, t)| score(t).map(|s| (s, t)))
            .max()
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{method} {path} matches no documented operation"))
    }

    /// Asserts that `answer` to `method path` is documented for that operation and status,
    /// with its content type, its headers and a body that matches the declared schema.
    pub(crate) fn check(&mut self, method: &str, path: &str, answer: &Answer) {
        let template = self.template(method, path);
        assert!(
            self.covers(&template),
            "{method} {path} ({template}) is not a route of {:?}",
            self.part
        );
        let operation = &self.doc["paths"][&template][method.to_lowercase()];
        let documented = &operation["responses"][answer.status.to_string()];
        assert!(
            !documented.is_null(),
            "{method} {path} answered {}, which {template} does not document: {:#}",
            answer.status,
            answer.body
        );
        let response = resolve(&self.doc, documented);
        for header in response["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|h| h.0)
        {
            if header != "X-Read-Model-Stale" {
                assert!(
                    answer.header(header).is_some(),
                    "{method} {path} {}: no {header} header",
                    answer.status
                );
            }
        }
        if let Some(content) = response["content"].as_object() {
            let content_type = answer.header("content-type").unwrap_or_default();
            let media_type = content_type.split(';').next().unwrap_or_default().trim();
            let media = content.get(media_type).unwrap_or_else(|| {
                panic!(
                    "{method} {path} {}: content type {content_type:?} is not documented",
                    answer.status
                )
            });
            if media_type.ends_with("json") {
                let errors = self.errors(&media["schema"], &answer.body);
                assert!(
                    errors.is_empty(),
                    "{method} {path} {} does not match its schema:\n{}\nbody: {:#}",
                    answer.status,
                    errors.join("\n"),
                    answer.body
                );
            }
        }
        self.seen
            .insert((method.to_owned(), template, answer.status));
    }

    /// Validation errors of `instance` against `schema`, whose `$ref`s point into the
    /// document's components (JSON Schema 2020-12, the dialect of OpenAPI 3.1, formats
    /// checked).
    pub(crate) fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "components": self.doc["components"],
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("at {}: {e}", e.instance_path()))
            .collect()
    }

    /// Documented `(method, template, status)`s no check has seen.
    pub(crate) fn unseen(&self) -> Vec<(String, String, u16)> {
        let mut all = Vec::new();
        for (method, template) in self.templates.iter().filter(|(_, t)| self.covers(t)) {
            let responses = &self.doc["paths"][template][method.to_lowercase()]["responses"];
            for (status, response) in responses.as_object().expect("responses") {
                // The answers of routing itself, declared on every operation, are the
                // routing tests' (`http/mod.rs`): another method, a path of no route.
                let shared = ["RouteNotFound", "MethodNotAllowed"]
                    .map(|name| format!("#/components/responses/{name}"));
                if shared.iter().any(|r| response["$ref"] == *r) {
                    continue;
                }
                let status: u16 = status.parse().expect("a numeric status");
                let key = (method.clone(), template.clone(), status);
                if !self.seen.contains(&key) {
                    all.push(key);
                }
            }
        }
        all
    }
}

/// A client that checks every answer against the document.
pub(crate) struct Client<'a> {
    pub(crate) app: &'a TestApp,
    pub(crate) contract: Contract,
    /// Who calls when a request names nobody (`authorization` in its headers).
    pub(crate) caller: kernel::testing::Http,
}

impl<'a> Client<'a> {
    /// A client of `app` whose answers are checked against the routes of `part`, calling
    /// as the app's staff member (an `admin`).
    pub(crate) fn new(app: &'a TestApp, part: Part) -> Client<'a> {
        Client {
            app,
            contract: Contract::of(document(), part),
            caller: app.http.clone(),
        }
    }

    /// The same client, calling anonymously unless a request says otherwise.
    pub(crate) fn anonymous(self) -> Client<'a> {
        Client {
            caller: self.app.http.anonymous(),
            ..self
        }
    }

    /// Asserts that every answer the document declares for this part was seen.
    pub(crate) fn assert_all_seen(&self) {
        let unseen = self.contract.unseen();
        assert!(
            unseen.is_empty(),
            "documented answers no test produced: {unseen:#?}"
        );
    }

    /// A request as `caller` (anonymous, a customer, some staff member).
    pub(crate) async fn call_as(
        &mut self,
        caller: &kernel::testing::Http,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let bytes = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
        let answer = send_as(caller, method, path, bytes, &[]).await;
        self.contract.check(method, path, &answer);
        answer
    }

    pub(crate) async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call_with(method, path, body, &[]).await
    }

    pub(crate) async fn call_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let bytes = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
        let answer = send_as(&self.caller, method, path, bytes, headers).await;
        self.contract.check(method, path, &answer);
        answer
    }

    pub(crate) async fn raw(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let answer = send_as(&self.caller, method, path, Some((content_type, body)), &[]).await;
        self.contract.check(method, path, &answer);
        answer
    }

    /// A conditional read of `path` (by this client's caller, unless `headers` name
    /// another), checked: `200` with an
    /// `ETag`, `304` without a body for an `If-None-Match` naming it, `400 invalid_header`
    /// for one that is not a list of entity tags. Answers the `200`.
    pub(crate) async fn revalidate(&mut self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let fresh = self.call_with("GET", path, None, headers).await;
        assert_eq!(fresh.status, 200, "GET {path}: {:#}", fresh.body);
        let tag = fresh.header("etag").expect("an ETag").to_owned();
        let conditional = [headers, &[("if-none-match", tag.as_str())]].concat();
        let again = self.call_with("GET", path, None, &conditional).await;
        assert_eq!(again.status, 304, "GET {path} with If-None-Match: {tag}");
        assert_eq!(
            again.body,
            Value::String(String::new()),
            "a 304 has no body"
        );
        assert_eq!(again.header("etag"), Some(tag.as_str()));
        let garbage = [headers, &[("if-none-match", "no-quotes")]].concat();
        self.call_with("GET", path, None, &garbage)
            .await
            .assert_problem(400, "invalid_header");
        fresh
    }

    /// `413`, `415` and a malformed body (`400`) on a route that takes JSON.
    pub(crate) async fn bad_bodies(&mut self, method: &str, path: &str) {
        let big = format!("{{\"name\": \"{}\"}}", "x".repeat(70 * 1024)).into_bytes();
        let answer = self.raw(method, path, "application/json", big).await;
        answer.assert_problem(413, "payload_too_large");
        let answer = self
            .raw(method, path, "text/plain", b"hello".to_vec())
            .await;
        answer.assert_problem(415, "unsupported_media_type");
        let answer = self
            .raw(method, path, "application/json", b"{".to_vec())
            .await;
        answer.assert_problem(400, "malformed_json");
    }
}

pub(crate) fn id(answer: &Answer, field: &str) -> String {
    answer.body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {:#}", answer.body))
        .to_owned()
}

/// Drops the app's database from under it (its connections are closed).
pub(crate) async fn drop_database(app: &TestApp) {
    use diesel_async::RunQueryDsl;
    let admin_url =
        kernel::db::with_database(&kernel::testing::server_url(), "postgres").expect("url");
    let mut admin = kernel::db::connect_admin(&admin_url)
        .await
        .expect("connect to Postgres");
    diesel::sql_query(format!(
        "DROP DATABASE {} WITH (FORCE)",
        kernel::db::quote_ident(&app.db.name)
    ))
    .execute(&mut admin)
    .await
    .expect("drop the test database");
}
