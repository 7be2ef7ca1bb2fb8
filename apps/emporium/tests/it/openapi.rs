//! The OpenAPI document against the running app: it is OpenAPI 3.1 and what `/openapi.json`
//! serves; it names exactly the routes the app registers, no more and no fewer; real
//! answers of every route, successes and problems, match the schemas it declares; and
//! `/docs` serves the bundled Swagger UI with no external asset.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use actix_web::dev::Service;
use emporium::{Config, Hooks, Modules};
use kernel::testing::Answer;
use serde_json::{Value, json};

use crate::{TestApp, spawn_app, spawn_with};

/// An id nobody has: a well-formed UUID v7.
const NOBODY: &str = "01900000-0000-7000-8000-000000000000";
/// Methods the route probes try on every path.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const ADMIN_TOKEN: &str = "openapi-test-token";

fn document() -> Value {
    serde_json::to_value(emporium::openapi::document()).expect("the document is JSON")
}

/// Every documented `(METHOD, path template)`.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            found.insert((method.to_uppercase(), path.clone()));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_openapi_3_1_and_the_code_s_own() {
    let app = spawn_app().await;
    let served = app.http.get("/openapi.json").await;
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("application/json"));
    let version = served.body["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi version {version:?}");
    assert_eq!(served.body, document(), "/openapi.json is not document()");

    let doc = document();
    let ids: Vec<&str> = operations(&doc)
        .iter()
        .map(|(m, p)| {
            doc["paths"][p][m.to_lowercase()]["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{m} {p} has no operationId"))
        })
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "operationIds repeat: {ids:?}");
}

/// Money is a two-decimal string and ids are UUIDs wherever an answer carries them, and
/// every path id is a UUID: checked on the schemas themselves, so that the response
/// validation below cannot pass against a lax document.
#[test]
fn money_is_a_decimal_string_and_ids_are_uuids() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["Money"]["type"], "string");
    assert_eq!(schemas["Money"]["pattern"], r"^\d+\.\d{2}$");
    assert_eq!(schemas["Money"]["examples"], json!(["19.99"]));
    let input_types: Vec<&Value> = schemas["MoneyInput"]["oneOf"]
        .as_array()
        .expect("MoneyInput is a oneOf")
        .iter()
        .map(|s| &s["type"])
        .collect();
    assert_eq!(input_types, [&json!("string"), &json!("number")]);
    for id in ["UserId", "ProductId", "OrderId", "PaymentId"] {
        assert_eq!(
            (&schemas[id]["type"], &schemas[id]["format"]),
            (&json!("string"), &json!("uuid")),
            "{id}"
        );
    }
    let money = [
        ("Product", "price"),
        ("OrderItemView", "price"),
        ("OrderItemView", "subtotal"),
        ("OrderView", "total"),
        ("Payment", "amount"),
    ];
    for (schema, field) in money {
        assert_eq!(
            schemas[schema]["properties"][field]["$ref"], "#/components/schemas/Money",
            "{schema}.{field}"
        );
    }
    let ids = [
        ("User", "id", "UserId"),
        ("Product", "id", "ProductId"),
        ("Accepted", "order_id", "OrderId"),
        ("OrderView", "id", "OrderId"),
        ("OrderView", "user_id", "UserId"),
        ("OrderItemView", "product_id", "ProductId"),
        ("Payment", "id", "PaymentId"),
        ("Payment", "order_id", "OrderId"),
    ];
    for (schema, field, id) in ids {
        assert_eq!(
            schemas[schema]["properties"][field]["$ref"],
            format!("#/components/schemas/{id}"),
            "{schema}.{field}"
        );
    }
    for (method, path) in operations(&doc) {
        let parameters = &doc["paths"][&path][method.to_lowercase()]["parameters"];
        for parameter in parameters.as_array().into_iter().flatten() {
            if parameter["in"] == "path" && parameter["name"] == "id" {
                let schema = resolve(&doc, &parameter["schema"]);
                assert_eq!(schema["format"], "uuid", "{method} {path}: {parameter}");
            }
        }
    }
    // The validator itself is live: a product with a float price and a bad id fails.
    let contract = Contract::new(doc.clone());
    let product = json!({"id": "nope", "name": "Mug", "description": "", "price": 19.99,
        "stock": 1, "reserved": 0, "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z"});
    let errors = contract.errors(&json!({"$ref": "#/components/schemas/Product"}), &product);
    assert!(
        errors.iter().any(|e| e.contains("/price")) && errors.iter().any(|e| e.contains("/id")),
        "{errors:?}"
    );
}

/// Both directions: every path actix registered (read from its resource map, not from
/// the document) is documented with exactly the methods the app answers (probed), and
/// every documented operation is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_names_exactly_the_registered_routes() {
    let doc = document();
    let documented = operations(&doc);
    let documented_paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();

    let db = crate::database().await;
    let registered_paths = registered_paths(&db.url).await;
    assert!(
        registered_paths.contains("/users/{id}"),
        "could not read the routes from actix's resource map: {registered_paths:?}"
    );
    let undocumented: Vec<&String> = registered_paths.difference(&documented_paths).collect();
    let absent: Vec<&String> = documented_paths.difference(&registered_paths).collect();
    assert!(
        undocumented.is_empty() && absent.is_empty(),
        "registered but not documented: {undocumented:?}; documented but not registered: {absent:?}"
    );

    // Methods: probe every method on every registered path of the real server.
    let app = admin_app(db).await;
    let mut answered = BTreeSet::new();
    for path in &registered_paths {
        for method in METHODS {
            let answer = probe(&app, method, &concrete(path)).await;
            let unrouted = answer.status == 405
                || (answer.status == 404 && answer.body["code"] == "route_not_found");
            if !unrouted {
                answered.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let undocumented: Vec<_> = answered.difference(&documented).collect();
    let absent: Vec<_> = documented.difference(&answered).collect();
    assert!(
        undocumented.is_empty() && absent.is_empty(),
        "answered but not documented: {undocumented:?}; documented but not answered: {absent:?}"
    );

    // And paths nobody registered are unknown, as they should be.
    for path in [
        "/",
        "/users",
        "/orders",
        "/users/{id}/orders",
        "/openapi.yaml",
        "/swagger-ui/",
        "/api-docs/openapi.json",
        "/docs/a/b",
    ] {
        if documented_paths.contains(path) {
            continue;
        }
        let answer = probe(&app, "GET", &concrete(path)).await;
        assert!(
            answer.status == 405 || answer.body["code"] == "route_not_found",
            "GET {path} answers {} {:#}",
            answer.status,
            answer.body
        );
    }
}

/// The path templates of every resource actix registered for the app `Modules::configure`
/// mounts (as `emporium::start` does), read from the app's `ResourceMap`. actix has no API
/// that lists routes; the resource map's `Debug` output is the one place they all appear,
/// so this parses it (and fails loudly if its shape changes).
async fn registered_paths(database_url: &str) -> BTreeSet<String> {
    let config = Config::for_database(database_url);
    let modules = Modules::new(&config, &Hooks::default()).expect("modules");
    let captured = Arc::new(Mutex::new(String::new()));
    let capture = captured.clone();
    let app = actix_web::test::init_service(
        kernel::http::app(move |cfg| modules.configure(cfg)).wrap_fn(move |req, service| {
            *capture.lock().unwrap() = format!("{:#?}", req.request().resource_map());
            service.call(req)
        }),
    )
    .await;
    let request = actix_web::test::TestRequest::get()
        .uri("/health/live")
        .to_request();
    let _ = actix_web::test::call_service(&app, request).await;
    let debug = captured.lock().unwrap().clone();
    paths_in(&debug)
}

/// Parses `{:#?}` of an actix `ResourceMap`: each `ResourceMap {` holds its pattern
/// (`patterns: Single("/users/{id}")`) and, for a scope, nested maps (`nodes: Some([..])`)
/// one indentation level deeper, whose patterns continue the scope's.
fn paths_in(debug: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = debug.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut scopes: Vec<(usize, String)> = Vec::new();
    let mut paths = BTreeSet::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].trim_end().ends_with("ResourceMap {") {
            i += 1;
            continue;
        }
        let depth = indent(lines[i]);
        while scopes.last().is_some_and(|(d, _)| *d >= depth) {
            scopes.pop();
        }
        let at = (i..lines.len())
            .find(|&j| lines[j].trim().starts_with("patterns:"))
            .expect("a ResourceMap has patterns");
        assert_eq!(
            lines[at].trim(),
            "patterns: Single(",
            "only single-pattern resources are understood"
        );
        let pattern: String = serde_json::from_str(lines[at + 1].trim().trim_end_matches(','))
            .unwrap_or_else(|e| panic!("pattern line {:?}: {e}", lines[at + 1]));
        let full = scopes.last().map(|(_, p)| p.clone()).unwrap_or_default() + &pattern;
        let nodes = (at..lines.len())
            .find(|&j| indent(lines[j]) == depth + 4 && lines[j].trim().starts_with("nodes:"))
            .expect("a ResourceMap has nodes");
        if lines[nodes].trim() == "nodes: None," {
            paths.insert(full);
        } else {
            scopes.push((depth, full));
        }
        i = at + 2;
    }
    paths
}

/// An app whose admin routes are enabled, so probes reach their routing.
async fn admin_app(db: kernel::testing::TestDatabase) -> TestApp {
    let config = |url: &str| Config {
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        ..Config::for_database(url)
    };
    spawn_with(db, config, Hooks::default()).await
}

/// A request to `path`, with the admin token and, for methods that take one, an empty JSON
/// object as body.
async fn probe(app: &TestApp, method: &str, path: &str) -> Answer {
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
fn concrete(template: &str) -> String {
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

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let bytes = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
    send_raw(app, method, path, bytes, headers).await
}

async fn send_raw(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
    headers: &[(&str, &str)],
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app
        .http
        .client
        .request(method, format!("{}{path}", app.http.base));
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

fn resolve<'d>(doc: &'d Value, value: &'d Value) -> &'d Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            resolve(doc, doc.pointer(pointer).expect("the $ref resolves"))
        }
        None => value,
    }
}

/// The document, and which documented answers a test has seen.
struct Contract {
    doc: Value,
    templates: Vec<(String, String)>,
    seen: BTreeSet<(String, String, u16)>,
}

impl Contract {
    fn new(doc: Value) -> Contract {
        let templates = operations(&doc).into_iter().collect();
        Contract {
            doc,
            templates,
            seen: BTreeSet::new(),
        }
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
    fn check(&mut self, method: &str, path: &str, answer: &Answer) {
        let template = self.template(method, path);
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
    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
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
    fn unseen(&self) -> Vec<(String, String, u16)> {
        let mut all = Vec::new();
        for (method, template) in &self.templates {
            let responses = &self.doc["paths"][template][method.to_lowercase()]["responses"];
            for status in responses.as_object().expect("responses").keys() {
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
struct Client<'a> {
    app: &'a TestApp,
    contract: Contract,
}

impl Client<'_> {
    async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call_with(method, path, body, &[]).await
    }

    async fn call_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let answer = send(self.app, method, path, body, headers).await;
        self.contract.check(method, path, &answer);
        answer
    }

    async fn raw(&mut self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let answer = send_raw(self.app, method, path, Some((content_type, body)), &[]).await;
        self.contract.check(method, path, &answer);
        answer
    }

    /// `413`, `415` and a malformed body (`400`) on a route that takes JSON.
    async fn bad_bodies(&mut self, method: &str, path: &str) {
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

fn id(answer: &Answer, field: &str) -> String {
    answer.body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {:#}", answer.body))
        .to_owned()
}

/// Drives every route to each answer it documents, and validates every answer against the
/// document: status, content type, headers and body schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_every_route_matches_the_document() {
    let app = admin_app(crate::database().await).await;
    let mut c = Client {
        app: &app,
        contract: Contract::new(document()),
    };

    // Operations.
    c.call("GET", "/health/live", None).await;
    c.call("GET", "/health/ready", None).await;
    c.call("GET", "/openapi.json", None).await;
    c.call("GET", "/docs", None).await;
    c.call("GET", "/docs/", None).await;
    c.call("GET", "/docs/swagger-ui.css", None).await;
    c.call("GET", "/docs/nope.js", None)
        .await
        .assert_problem(404, "docs_file_not_found");

    // Users.
    let ada = c
        .call(
            "POST",
            "/users",
            Some(json!({"email": "Ada@Example.com", "name": "Ada"})),
        )
        .await;
    assert_eq!(ada.status, 201, "{:#}", ada.body);
    let user = id(&ada, "id");
    let bob = c
        .call(
            "POST",
            "/users",
            Some(json!({"email": "bob@example.com", "name": "Bob"})),
        )
        .await;
    assert_eq!(bob.status, 201);
    c.call(
        "POST",
        "/users",
        Some(json!({"email": "ada@example.com", "name": "Ada"})),
    )
    .await
    .assert_problem(409, "email_taken");
    c.call("POST", "/users", Some(json!({"email": "nope", "name": ""})))
        .await
        .assert_problem(422, "validation_failed");
    c.bad_bodies("POST", "/users").await;
    assert_eq!(
        c.call("GET", &format!("/users/{user}"), None).await.status,
        200
    );
    c.call("GET", "/users/not-a-uuid", None)
        .await
        .assert_problem(400, "invalid_path");
    c.call("GET", &format!("/users/{NOBODY}"), None)
        .await
        .assert_problem(404, "user_not_found");
    let user_path = format!("/users/{user}");
    let renamed = c
        .call("PATCH", &user_path, Some(json!({"name": "Ada King"})))
        .await;
    assert_eq!(renamed.status, 200);
    c.call(
        "PATCH",
        &user_path,
        Some(json!({"email": "bob@example.com"})),
    )
    .await
    .assert_problem(409, "email_taken");
    c.call("PATCH", &user_path, Some(json!({"name": " "})))
        .await
        .assert_problem(422, "validation_failed");
    c.call("PATCH", &format!("/users/{NOBODY}"), Some(json!({})))
        .await
        .assert_problem(404, "user_not_found");
    c.bad_bodies("PATCH", &user_path).await;

    // Products.
    let mug = c
        .call(
            "POST",
            "/products",
            Some(json!({"name": "Mug", "description": "Stoneware", "price": "9.90", "stock": 5})),
        )
        .await;
    assert_eq!(mug.status, 201, "{:#}", mug.body);
    let mug_id = id(&mug, "id");
    let kettle = c
        .call(
            "POST",
            "/products",
            Some(json!({"name": "Kettle", "price": 24.5, "stock": 1})),
        )
        .await;
    assert_eq!(kettle.body["price"], "24.50", "a number in, a string out");
    let kettle_id = id(&kettle, "id");
    c.call(
        "POST",
        "/products",
        Some(json!({"name": "Dust", "price": "0.001"})),
    )
    .await
    .assert_problem(422, "validation_failed");
    c.bad_bodies("POST", "/products").await;
    let mug_path = format!("/products/{mug_id}");
    assert_eq!(c.call("GET", &mug_path, None).await.status, 200);
    c.call("GET", "/products/12", None)
        .await
        .assert_problem(400, "invalid_path");
    c.call("GET", &format!("/products/{NOBODY}"), None)
        .await
        .assert_problem(404, "product_not_found");
    let page = c.call("GET", "/products?page=1&page_size=10", None).await;
    assert_eq!(page.body["total"], 2);
    c.call("GET", "/products?page=0", None)
        .await
        .assert_problem(400, "invalid_query");
    let repriced = c
        .call("PATCH", &mug_path, Some(json!({"price": 8.5})))
        .await;
    assert_eq!(repriced.body["price"], "8.50");
    c.call("PATCH", &mug_path, Some(json!({"price": "-1"})))
        .await
        .assert_problem(422, "validation_failed");
    c.call("PATCH", &format!("/products/{NOBODY}"), Some(json!({})))
        .await
        .assert_problem(404, "product_not_found");
    c.bad_bodies("PATCH", &mug_path).await;
    let restock = format!("{mug_path}/restock");
    let restocked = c.call("POST", &restock, Some(json!({"quantity": 5}))).await;
    assert_eq!(restocked.body["stock"], 10);
    c.call("POST", &restock, Some(json!({"quantity": 1_000_000_000})))
        .await
        .assert_problem(409, "stock_limit");
    c.call("POST", &restock, Some(json!({"quantity": 0})))
        .await
        .assert_problem(422, "validation_failed");
    c.call(
        "POST",
        &format!("/products/{NOBODY}/restock"),
        Some(json!({"quantity": 1})),
    )
    .await
    .assert_problem(404, "product_not_found");
    c.bad_bodies("POST", &restock).await;

    // Order commands.
    let lines = |product: &str, quantity: i64| json!({"user_id": user, "items": [{"product_id": product, "quantity": quantity}]});
    let key = [("idempotency-key", "openapi-1")];
    let placed = c
        .call_with("POST", "/commands/orders", Some(lines(&mug_id, 2)), &key)
        .await;
    assert_eq!(placed.status, 202, "{:#}", placed.body);
    let order = id(&placed, "order_id");
    c.call_with("POST", "/commands/orders", Some(lines(&mug_id, 3)), &key)
        .await
        .assert_problem(409, "idempotency_key_reused");
    let long_key = "k".repeat(256);
    c.call_with(
        "POST",
        "/commands/orders",
        Some(lines(&mug_id, 1)),
        &[("idempotency-key", &long_key)],
    )
    .await
    .assert_problem(400, "invalid_header");
    c.call("POST", "/commands/orders", Some(lines(&kettle_id, 5)))
        .await
        .assert_problem(409, "insufficient_stock");
    c.call("POST", "/commands/orders", Some(lines(NOBODY, 1)))
        .await
        .assert_problem(422, "unknown_product");
    c.bad_bodies("POST", "/commands/orders").await;
    let second = c
        .call("POST", "/commands/orders", Some(lines(&kettle_id, 1)))
        .await;
    let pending = id(&second, "order_id");

    let confirm = format!("/commands/orders/{order}/confirm");
    let token = |t: &str| Some(json!({"payment_token": t}));
    c.call_with(
        "POST",
        &confirm,
        token("tok_visa"),
        &[("if-match", "\"7\"")],
    )
    .await
    .assert_problem(412, "version_mismatch");
    c.call_with(
        "POST",
        &confirm,
        token("tok_visa"),
        &[("if-match", "seven")],
    )
    .await
    .assert_problem(400, "invalid_header");
    c.call("POST", &confirm, token("tok_declined"))
        .await
        .assert_problem(402, "payment_declined");
    c.call("POST", &confirm, token("tok_gateway_error"))
        .await
        .assert_problem(502, "payment_gateway_error");
    c.call("POST", &confirm, token("tok_bogus"))
        .await
        .assert_problem(422, "invalid_payment_token");
    c.call(
        "POST",
        &format!("/commands/orders/{NOBODY}/confirm"),
        token("tok_visa"),
    )
    .await
    .assert_problem(404, "order_not_found");
    c.bad_bodies("POST", &confirm).await;
    let confirmed = c
        .call_with(
            "POST",
            &confirm,
            token("tok_visa"),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(
        (confirmed.status, confirmed.header("etag")),
        (202, Some("\"2\""))
    );
    c.call("POST", &confirm, token("tok_visa"))
        .await
        .assert_problem(409, "invalid_transition");

    for (command, from) in [("ship", "\"2\""), ("deliver", "\"3\"")] {
        let path = format!("/commands/orders/{order}/{command}");
        c.call_with("POST", &path, None, &[("if-match", "\"1\"")])
            .await
            .assert_problem(412, "version_mismatch");
        c.call_with("POST", &path, None, &[("if-match", "one")])
            .await
            .assert_problem(400, "invalid_header");
        c.call(
            "POST",
            &format!("/commands/orders/{NOBODY}/{command}"),
            None,
        )
        .await
        .assert_problem(404, "order_not_found");
        c.call(
            "POST",
            &format!("/commands/orders/{pending}/{command}"),
            None,
        )
        .await
        .assert_problem(409, "invalid_transition");
        let done = c
            .call_with("POST", &path, None, &[("if-match", from)])
            .await;
        assert_eq!(done.status, 202, "{command}: {:#}", done.body);
    }

    let reason = Some(json!({"reason": "changed my mind"}));
    let cancel_pending = format!("/commands/orders/{pending}/cancel");
    c.call_with(
        "POST",
        &cancel_pending,
        reason.clone(),
        &[("if-match", "\"5\"")],
    )
    .await
    .assert_problem(412, "version_mismatch");
    c.call("POST", &cancel_pending, Some(json!({"reason": ""})))
        .await
        .assert_problem(422, "validation_failed");
    c.call(
        "POST",
        &format!("/commands/orders/{NOBODY}/cancel"),
        reason.clone(),
    )
    .await
    .assert_problem(404, "order_not_found");
    c.bad_bodies("POST", &cancel_pending).await;
    assert_eq!(
        c.call("POST", &cancel_pending, reason.clone()).await.status,
        202
    );
    c.call(
        "POST",
        &format!("/commands/orders/{order}/cancel"),
        reason.clone(),
    )
    .await
    .assert_problem(409, "invalid_transition");

    // Order queries: wait for the read model, then read.
    // (`min_version` waits up to 2 s, then answers 404 or a stale view; a loaded machine
    // may need longer, so ask again until a deadline.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let view = loop {
        let view = c
            .call(
                "GET",
                &format!("/queries/orders/{order}?min_version=4"),
                None,
            )
            .await;
        if view.status == 200 && view.header("x-read-model-stale").is_none() {
            break view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the read model never reached version 4"
        );
    };
    assert_eq!(
        (view.status, view.body["status"].as_str()),
        (200, Some("delivered")),
        "{:#}",
        view.body
    );
    assert_eq!(view.body["total"], "17.00");
    assert_eq!(view.body["items"][0]["price"], "8.50");
    let stale = c
        .call(
            "GET",
            &format!("/queries/orders/{order}?min_version=99"),
            None,
        )
        .await;
    assert_eq!(stale.header("x-read-model-stale"), Some("true"));
    c.call("GET", &format!("/queries/orders/{NOBODY}"), None)
        .await
        .assert_problem(404, "order_not_found");
    c.call(
        "GET",
        &format!("/queries/orders/{order}?min_version=-1"),
        None,
    )
    .await
    .assert_problem(400, "invalid_query");
    let list = c
        .call(
            "GET",
            &format!("/queries/orders?user_id={user}&status=delivered&page=1&page_size=5"),
            None,
        )
        .await;
    assert_eq!(list.body["total"], 1, "{:#}", list.body);
    c.call("GET", "/queries/orders?status=lost", None)
        .await
        .assert_problem(400, "invalid_query");

    // Payments.
    let payments = c
        .call("GET", &format!("/payments?order_id={order}"), None)
        .await;
    let statuses: Vec<&str> = payments.body["payments"]
        .as_array()
        .expect("payments")
        .iter()
        .filter_map(|p| p["status"].as_str())
        .collect();
    assert_eq!(statuses, ["declined", "captured"], "{:#}", payments.body);
    let payment = payments.body["payments"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(payments.body["payments"][1]["amount"], "17.00");
    assert_eq!(
        c.call("GET", &format!("/payments/{payment}"), None)
            .await
            .status,
        200
    );
    c.call("GET", &format!("/payments/{NOBODY}"), None)
        .await
        .assert_problem(404, "payment_not_found");
    c.call("GET", "/payments/nope", None)
        .await
        .assert_problem(400, "invalid_path");
    c.call("GET", "/payments", None)
        .await
        .assert_problem(400, "invalid_query");

    // Operations.
    let metrics = c.call("GET", "/metrics", None).await;
    assert_eq!(metrics.status, 200);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let admin = [("authorization", bearer.as_str())];
    let status = c.call_with("GET", "/admin/projections", None, &admin).await;
    assert_eq!(status.status, 200, "{:#}", status.body);
    c.call("GET", "/admin/projections", None)
        .await
        .assert_problem(401, "unauthorized");
    let rebuild = format!("/admin/projections/{}/rebuild", ::orders_read::PROJECTION);
    c.call("POST", &rebuild, None)
        .await
        .assert_problem(401, "unauthorized");
    c.call_with(
        "POST",
        &format!("/admin/projections/{}/rebuild", ::orders::SAGA),
        None,
        &admin,
    )
    .await
    .assert_problem(409, "not_rebuildable");
    c.call_with("POST", "/admin/projections/nope/rebuild", None, &admin)
        .await
        .assert_problem(404, "projection_not_found");
    let started = c.call_with("POST", &rebuild, None, &admin).await;
    assert_eq!(started.status, 202, "{:#}", started.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = c.call_with("GET", "/admin/projections", None, &admin).await;
        let rebuilding = status.body["projections"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["status"] == "rebuilding");
        if !rebuilding {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rebuild never ends"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let closed = spawn_app().await;
    for (method, path) in [("GET", "/admin/projections"), ("POST", rebuild.as_str())] {
        let answer = send(&closed, method, path, None, &admin).await;
        c.contract.check(method, path, &answer);
        answer.assert_problem(403, "admin_disabled");
    }

    // Without its database every route that needs it answers 503 with Retry-After.
    drop_database(&app).await;
    let unavailable: [(&str, String, Option<Value>); 21] = [
        ("GET", "/health/ready".to_owned(), None),
        (
            "POST",
            "/users".to_owned(),
            Some(json!({"email": "cy@example.com", "name": "Cy"})),
        ),
        ("GET", user_path.clone(), None),
        ("PATCH", user_path.clone(), Some(json!({"name": "Ada"}))),
        (
            "POST",
            "/products".to_owned(),
            Some(json!({"name": "Cup", "price": "1.00"})),
        ),
        ("GET", mug_path.clone(), None),
        ("GET", "/products".to_owned(), None),
        ("PATCH", mug_path.clone(), Some(json!({"name": "Cup"}))),
        ("POST", restock.clone(), Some(json!({"quantity": 1}))),
        (
            "POST",
            "/commands/orders".to_owned(),
            Some(lines(&mug_id, 1)),
        ),
        ("POST", confirm.clone(), token("tok_visa")),
        ("POST", format!("/commands/orders/{order}/ship"), None),
        ("POST", format!("/commands/orders/{order}/deliver"), None),
        ("POST", cancel_pending.clone(), reason.clone()),
        ("GET", format!("/queries/orders/{order}"), None),
        ("GET", "/queries/orders".to_owned(), None),
        ("GET", format!("/payments?order_id={order}"), None),
        ("GET", format!("/payments/{payment}"), None),
        ("GET", "/metrics".to_owned(), None),
        ("GET", "/admin/projections".to_owned(), None),
        ("POST", rebuild.clone(), None),
    ];
    for (method, path, body) in unavailable {
        let answer = c.call_with(method, &path, body, &admin).await;
        answer.assert_problem(503, "service_unavailable");
    }

    let unseen = c.contract.unseen();
    assert!(
        unseen.is_empty(),
        "documented answers no test produced: {unseen:#?}"
    );
}

/// Drops the app's database from under it (its connections are closed).
async fn drop_database(app: &TestApp) {
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

/// `/docs` is an HTML page whose every asset is local, under `/docs/`, and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_serves_the_bundled_swagger_ui() {
    let app = spawn_app().await;
    for page in ["/docs", "/docs/"] {
        let answer = app.http.get(page).await;
        assert_eq!(answer.status, 200, "{page}");
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{page}: {:?}",
            answer.header("content-type")
        );
        let html = answer.body.as_str().expect("HTML text");
        assert!(html.contains("<base href=\"/docs/\">"), "{html}");
        let assets = attributes(html, &["href", "src"]);
        assert!(
            assets.iter().any(|a| a.contains("swagger-ui-bundle.js")),
            "{assets:?}"
        );
        let mut sizes = BTreeMap::new();
        for asset in assets.iter().filter(|a| a.as_str() != "/docs/") {
            assert!(
                !asset.contains("//") && !asset.contains(':'),
                "{page} loads an external asset: {asset}"
            );
            let url = format!("/docs/{}", asset.trim_start_matches("./"));
            let file = send_raw(&app, "GET", &url, None, &[]).await;
            assert_eq!(file.status, 200, "{url}");
            sizes.insert(url, file.body.as_str().map_or(0, str::len));
        }
        assert!(
            sizes["/docs/swagger-ui-bundle.js"] > 100_000,
            "the bundle is the real Swagger UI: {sizes:?}"
        );
    }
    let initializer = app.http.get("/docs/swagger-initializer.js").await;
    let script = initializer.body.as_str().expect("a script");
    assert!(
        script.contains("\"url\": \"/openapi.json\""),
        "Swagger UI reads /openapi.json: {script}"
    );
    assert!(
        script.contains("\"validatorUrl\": \"none\""),
        "no call to an online validator: {script}"
    );
}

/// The values of the given attributes in `html`, in order (`href="..."`).
fn attributes(html: &str, names: &[&str]) -> Vec<String> {
    let mut values = Vec::new();
    for name in names {
        let marker = format!("{name}=\"");
        let mut rest = html;
        while let Some(start) = rest.find(&marker) {
            rest = &rest[start + marker.len()..];
            let end = rest.find('"').expect("a closing quote");
            values.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    values
}
