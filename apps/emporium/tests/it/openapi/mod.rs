//! The OpenAPI document against the running app: it is OpenAPI 3.1 and what `/openapi.json`
//! serves; it names exactly the routes the app registers, no more and no fewer; real
//! answers of every route, successes and problems, match the schemas it declares (one test
//! per part of the API, in `answers.rs`); and `/docs` serves the bundled Swagger UI with no
//! external asset. `contract.rs` is the support: the registry, requests, and [`Contract`].

mod answers;
pub(crate) mod contract;
mod identity;
mod shapes;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::spawn_app;
use contract::{
    Contract, METHODS, admin_app, concrete, document, operations, probe, registered, resolve,
    send_raw,
};

/// `/asyncapi.json` is the catalog the code makes, and the one committed in
/// `docs/asyncapi.json` (which `cargo xtask docs --check` keeps current, and
/// `cargo xtask asyncapi` validates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_event_catalog_is_the_code_s_own_and_the_committed_one() {
    let app = spawn_app().await;
    let served = app.http.get("/asyncapi.json").await;
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("application/json"));
    assert_eq!(served.body["asyncapi"], "3.0.0");
    assert_eq!(served.body, emporium::asyncapi::document());
    let committed = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/asyncapi.json");
    let committed = std::fs::read_to_string(committed).expect("docs/asyncapi.json");
    assert!(
        committed == emporium::asyncapi::text(),
        "docs/asyncapi.json is stale: run `cargo xtask docs`"
    );
}

/// The catalog's subscribers are the ones the process runs: each with the logs it reads,
/// as `/admin/projections` lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_names_every_subscriber_the_process_runs() {
    let app = spawn_app().await;
    let answer = app.http.get("/admin/projections").await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let running: BTreeSet<(String, String)> = answer.body["projections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let name = p["name"].as_str().unwrap().to_owned();
            p["sources"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |s| (name.clone(), s["source"].as_str().unwrap().to_owned()))
        })
        .collect();
    let catalog: BTreeSet<(String, String)> = emporium::asyncapi::SUBSCRIBERS
        .iter()
        .flat_map(|(_, s)| {
            s.sources
                .iter()
                .map(|(module, _)| (s.subscriber.to_owned(), (*module).to_owned()))
        })
        .collect();
    assert_eq!(running, catalog);
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

/// Every operation says who may call it: one that takes a token declares the bearer scheme
/// (with the roles of which the caller needs one, when only staff may) and the shared
/// `401`, and one open to anyone declares neither; a route with roles documents its `403`.
#[test]
fn every_operation_states_who_may_call_it() {
    let doc = document();
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (scheme["type"].as_str(), scheme["scheme"].as_str()),
        (Some("http"), Some("bearer"))
    );
    let mut roles = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let operation = &doc["paths"][&path][method.to_lowercase()];
        ids.insert(operation["operationId"].as_str().unwrap().to_owned());
        let unauthenticated =
            operation["responses"]["401"]["$ref"] == "#/components/responses/Unauthenticated";
        let security = operation["security"].as_array();
        assert_eq!(
            security.is_some(),
            unauthenticated,
            "{method} {path}: a bearer requirement if and only if the shared 401"
        );
        let Some(security) = security else { continue };
        assert_eq!(security.len(), 1, "{method} {path}: {security:?}");
        let needed: Vec<&str> = security[0]["bearer"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path}: not the bearer scheme: {security:?}"))
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        if !needed.is_empty() {
            assert!(
                operation["responses"]["403"].is_object(),
                "{method} {path}: no 403"
            );
        }
        roles.insert(
            operation["operationId"].as_str().unwrap().to_owned(),
            needed,
        );
    }
    let of = |id: &str| {
        roles
            .get(id)
            .unwrap_or_else(|| panic!("{id} is public"))
            .clone()
    };
    for id in ["create_product", "update_product", "restock_product"] {
        assert_eq!(of(id), ["catalog", "admin"], "{id}");
    }
    for id in ["ship_order", "deliver_order"] {
        assert_eq!(of(id), ["fulfilment", "admin"], "{id}");
    }
    for id in ["projections", "rebuild_projection"] {
        assert_eq!(of(id), ["admin"], "{id}");
    }
    for id in [
        "place_order",
        "confirm_order",
        "cancel_order",
        "get_order",
        "list_orders",
        "get_payment",
        "list_payments",
        "get_me",
    ] {
        assert_eq!(
            of(id),
            Vec::<&str>::new(),
            "{id}: any user, with rules of whose"
        );
    }
    for id in [
        "list_products",
        "get_product",
        "register_user",
        "token",
        "jwks",
        "metrics",
        "live",
    ] {
        assert!(
            ids.contains(id) && !roles.contains_key(id),
            "{id} needs no token"
        );
    }
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
    let price = &schemas["NewProduct"]["properties"]["price"]["oneOf"];
    let input_types: Vec<&Value> = price
        .as_array()
        .expect("a price is a oneOf")
        .iter()
        .map(|s| &s["type"])
        .collect();
    assert_eq!(input_types, [&json!("string"), &json!("number")]);
    assert!(price[0]["pattern"].is_string(), "{price}");
    assert_eq!(price[1]["multipleOf"], 0.01, "{price}");
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

/// Both directions: every route the app registers (read from the registry it mounts,
/// `emporium::endpoints()`, not from the document) is documented, at its method and path;
/// every documented operation is registered; and the real server answers exactly the
/// documented methods on every registered path (probed), nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_names_exactly_the_registered_routes() {
    let doc = document();
    let documented = operations(&doc);
    let documented_paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();

    let registered = registered();
    let registered_paths: BTreeSet<String> = registered.iter().map(|(_, p)| p.clone()).collect();
    assert!(
        registered.contains(&("GET".to_owned(), "/users/{id}".to_owned()))
            && registered.contains(&(
                "POST".to_owned(),
                "/admin/projections/{name}/rebuild".to_owned()
            )),
        "could not read the routes from the registry: {registered:?}"
    );
    let undocumented: Vec<&String> = registered_paths.difference(&documented_paths).collect();
    let absent: Vec<&String> = documented_paths.difference(&registered_paths).collect();
    assert!(
        undocumented.is_empty() && absent.is_empty(),
        "registered but not documented: {undocumented:?}; documented but not registered: {absent:?}"
    );
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let absent: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && absent.is_empty(),
        "registered but not documented: {undocumented:?}; documented but not registered: {absent:?}"
    );

    // Methods: probe every method on every registered path of the real server.
    let app = admin_app(crate::database().await).await;
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

    // The document and its page are served, and not listed as operations of the API.
    let unlisted: BTreeSet<(String, String)> = emporium::endpoints()
        .iter()
        .flat_map(|(_, routes)| {
            routes
                .unlisted_operations()
                .map(|(m, p)| (m.to_string(), p.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    for path in [
        "/openapi.json",
        "/asyncapi.json",
        "/docs",
        "/docs/",
        "/docs/{file}",
    ] {
        assert!(
            unlisted.contains(&("GET".to_owned(), path.to_owned())),
            "{path}: {unlisted:?}"
        );
        assert!(!documented_paths.contains(path), "{path} is listed");
        let answer = probe(
            &app,
            "GET",
            &concrete(path).replace("placeholder", "index.css"),
        )
        .await;
        assert_eq!(answer.status, 200, "GET {path}");
        let trace = probe(&app, "TRACE", &concrete(path)).await;
        assert_eq!(trace.status, 405, "TRACE {path}");
    }

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
        // The base is relative: behind a path prefix the page's links stay under it.
        let base = if page == "/docs" { "docs/" } else { "./" };
        assert!(html.contains(&format!("<base href=\"{base}\">")), "{html}");
        let behind = reqwest::Url::parse(&format!("https://shop.example/prefix{page}")).unwrap();
        let resolved = behind.join(base).unwrap();
        assert_eq!(resolved.path(), "/prefix/docs/", "{page}");
        assert_eq!(
            resolved.join("../openapi.json").unwrap().path(),
            "/prefix/openapi.json"
        );
        let assets = attributes(html, &["href", "src"]);
        assert!(
            assets.iter().any(|a| a.contains("swagger-ui-bundle.js")),
            "{assets:?}"
        );
        let mut sizes = BTreeMap::new();
        for asset in assets.iter().filter(|a| a.as_str() != base) {
            assert!(
                !asset.contains("//") && !asset.contains(':'),
                "{page} loads an external asset: {asset}"
            );
            let at = reqwest::Url::parse(&format!("http://emporium{page}"))
                .and_then(|u| u.join(base))
                .and_then(|u| u.join(asset))
                .unwrap();
            let url = match at.query() {
                Some(query) => format!("{}?{query}", at.path()),
                None => at.path().to_owned(),
            };
            let file = send_raw(&app, "GET", &url, None, &[]).await;
            assert_eq!(file.status, 200, "{url}");
            let plain = url.split('?').next().unwrap_or_default().to_owned();
            sizes.insert(plain, file.body.as_str().map_or(0, str::len));
        }
        assert!(
            sizes["/docs/swagger-ui-bundle.js"] > 100_000,
            "the bundle is the real Swagger UI: {sizes:?}"
        );
    }
    let initializer = app.http.get("/docs/swagger-initializer.js").await;
    let script = initializer.body.as_str().expect("a script");
    assert!(
        script.contains("\"url\": \"../openapi.json\""),
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
