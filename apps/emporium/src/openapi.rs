//! The OpenAPI 3.1 document (`GET /openapi.json`) and the interactive reference (`GET
//! /docs`, Swagger UI bundled into the binary: no CDN, nothing fetched at build or run time).
//!
//! The document is assembled from the modules' [`kernel::openapi::Routes`]: every module
//! route is registered from its handler's `#[utoipa::path]`, so a route cannot be served
//! without being documented, nor at another path or method than documented. The routes
//! `lib.rs` (health) and `ops.rs` (metrics, admin) serve are described here by doc-only
//! stubs. `apps/emporium/tests/it/openapi.rs` proves that the document and the routes the
//! app registers are the same set, and validates real answers against the document.

use std::sync::{Arc, LazyLock};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use kernel::Problem;
use kernel::http::PROBLEM_JSON;
use kernel::openapi::{Routes, ServiceUnavailable};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa::{OpenApi as _, ToSchema};
use utoipa_swagger_ui::Config;

/// Where the document is served; the reference page reads it from here.
pub const DOCUMENT_PATH: &str = "/openapi.json";

/// The whole API: every module's routes, health, and the document and its reference page.
pub fn document() -> OpenApi {
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("emporium")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .build(),
        )
        .tags(Some(tags()))
        .build();
    let parts = [
        users::endpoints().openapi(),
        products::endpoints().openapi(),
        orders::endpoints().openapi(),
        orders_read::endpoints().openapi(),
        payments::endpoints().openapi(),
        HealthDoc::openapi(),
        OperationsDoc::openapi(),
        endpoints().openapi(),
    ];
    for part in parts {
        document.merge(part);
    }
    if let Some(components) = document.components.as_mut() {
        components.add_security_scheme(
            ADMIN_AUTH,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
    document
}

/// Serves [`document`] at `/openapi.json` and the reference page at `/docs`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    endpoints().mount(cfg);
}

/// The document's own routes.
fn endpoints() -> Routes {
    Routes::default()
        .add(__path_openapi_json, openapi_json)
        .add(__path_docs, docs)
        .add(__path_docs_index, docs_index)
        .add(__path_docs_file, docs_file)
}

const DESCRIPTION: &str = "\
The public HTTP API of emporium: users, a product catalog, orders (CQRS: commands change the \
write model, queries read an eventually consistent read model) and their payments.

Conventions:
- JSON in and out, `snake_case` field names. A body must be a JSON object (an array is `400`); \
unknown JSON fields and unknown query parameters are `400`, so typos are not silently ignored; \
a wrong JSON type is `400`, while a missing required field is `422` with a field error.
- Ids are UUIDs (v7, time-ordered) rendered as strings; a malformed id in a path is \
`400 invalid_path`.
- Money is an exact decimal, never a float: answers render it as a string with two decimals \
(`\"19.99\"`); requests accept a string or a JSON number with at most two decimal places.
- Timestamps are RFC 3339 in UTC.
- Every error is `application/problem+json` (RFC 9457) with a stable machine-readable `code`; \
`errors` lists the invalid fields of a `422 validation_failed`. No error body carries a stack \
trace, SQL or a connection string. An unknown path is `404 route_not_found`; a known path \
asked with another method is `405 method_not_allowed`. A `500` is a bug.
- A request body over 64 KiB is `413`, one that is not JSON `415`; when the database cannot \
be reached the answer is `503` with `Retry-After`.";

fn tags() -> Vec<utoipa::openapi::tag::Tag> {
    let tag = |name: &str, description: &str| {
        TagBuilder::new()
            .name(name)
            .description(Some(description))
            .build()
    };
    vec![
        tag("users", "Registering and changing users."),
        tag(
            "products",
            "The catalog: products, prices and stock (`stock` can still be ordered, \
             `reserved` is held by pending orders).",
        ),
        tag(
            "orders",
            "Commands (`/commands/orders`) change the write model and answer `202` with the \
             order's new version (`ETag`, `If-Match`). Queries (`/queries/orders`) read the \
             denormalized read model, which follows the commands eventually; \
             `min_version` waits for your own write.",
        ),
        tag(
            "payments",
            "Read-only: payments are made and refunded by confirming and cancelling orders.",
        ),
        tag(
            "operations",
            "Health, metrics, projection administration, and this document with its \
             reference page. Everything under `/admin` needs `Authorization: Bearer \
             <ADMIN_TOKEN>`: a missing or wrong token is `401`; without `ADMIN_TOKEN` \
             configured the admin routes answer `403`.",
        ),
    ]
}

/// What `/health/live` and `/health/ready` answer.
#[derive(ToSchema)]
#[schema(as = HealthStatus)]
#[allow(dead_code)] // documents the body `lib.rs` writes with `json!`
struct Health {
    /// `live` or `ready`.
    #[schema(examples("ready"))]
    status: String,
}

/// Health routes, served by `lib.rs`; the stubs below only document them.
#[derive(utoipa::OpenApi)]
#[openapi(paths(live, ready))]
struct HealthDoc;

/// Liveness
///
/// `200` while the process runs.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "operations",
    operation_id = "live",
    responses((status = 200, description = "`{\"status\": \"live\"}`.", body = Health))
)]
#[allow(dead_code)] // documentation only: `lib.rs` serves the route
fn live() {}

/// Readiness
///
/// `200` when every module's database pool answers; `503` (checked with a 2 s limit per
/// pool) while the database is away, and `200` again when it is back, without a restart.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "operations",
    operation_id = "ready",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`.", body = Health),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[allow(dead_code)] // documentation only: `lib.rs` serves the route
fn ready() {}

// OPERATIONS: `/metrics` and `/admin/...`, served by `ops.rs`, documented here by doc-only
// stubs like the health routes. To document them from their registration instead (the way
// the modules are), annotate the handlers in `ops.rs` with these `#[utoipa::path]`s (and
// the bodies they write with `ToSchema`), register them with `kernel::openapi::Routes`
// (`Routes::scope("/admin")` returns the `web::scope` to `.wrap(from_fn(authorize))`), and
// replace `OperationsDoc::openapi()` in [`document`] by `ops::endpoints().openapi()`.
// Either way, `tests/it/openapi.rs` fails while a registered route is undocumented, and
// validates these routes' real answers against the schemas below.

/// The security scheme of the `/admin` routes (the `security` of their `#[utoipa::path]`s).
const ADMIN_AUTH: &str = "admin_token";

#[derive(utoipa::OpenApi)]
#[openapi(paths(metrics, projections, rebuild))]
struct OperationsDoc;

/// Metrics
///
/// Prometheus text format: request counts and latency histograms per route pattern,
/// command and query durations, event-log backlog per module, projection lag in events and
/// seconds, dead-lettered events, and pool usage per module.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.", body = String,
            content_type = "text/plain"),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[allow(dead_code)] // documentation only: `ops.rs` serves the route
fn metrics() {}

/// Every subscriber of the event log.
#[derive(ToSchema)]
#[allow(dead_code)] // documents what `ops.rs` answers
struct ProjectionList {
    projections: Vec<ProjectionStatus>,
}

/// One projection (or the order saga), summed over the event logs it reads.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ProjectionStatus {
    #[schema(examples("orders_read"))]
    name: String,
    /// Events applied.
    position: i64,
    /// Events in its sources' logs.
    head: i64,
    /// Events not applied yet.
    lag_events: i64,
    /// Age of the oldest event not applied yet; 0 when caught up.
    lag_seconds: f64,
    status: ProjectionState,
    /// Events parked after failing repeatedly.
    dead_letters: i64,
    sources: Vec<SourceStatus>,
    /// Only while a rebuild runs.
    #[schema(nullable = false)]
    rebuild: Option<RebuildProgress>,
}

/// `running`; `retrying` while an event keeps failing; `rebuilding`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum ProjectionState {
    Running,
    Retrying,
    Rebuilding,
}

/// A projection's progress through one module's event log.
#[derive(ToSchema)]
#[allow(dead_code)]
struct SourceStatus {
    /// The module whose event log this is.
    #[schema(examples("orders"))]
    source: String,
    position: i64,
    head: i64,
    lag_events: i64,
    /// Failed attempts at the next event.
    attempts: i32,
    /// Why the next event failed, if it did.
    last_error: Option<String>,
}

/// How far a rebuild got.
#[derive(ToSchema)]
#[allow(dead_code)]
struct RebuildProgress {
    generation: i32,
    applied: i64,
    head: i64,
}

/// A rebuild that started.
#[derive(ToSchema)]
#[allow(dead_code)]
struct RebuildStarted {
    #[schema(examples("orders_read"))]
    projection: String,
    generation: i32,
    #[schema(examples("rebuilding"))]
    status: String,
}

/// Projection status
///
/// Each projection's position and lag behind the event log.
#[utoipa::path(
    get,
    path = "/admin/projections",
    tag = "operations",
    operation_id = "projections",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every projection.", body = ProjectionList),
        (status = 401, description = "`unauthorized`: no or a wrong bearer token.",
            body = Problem, content_type = PROBLEM_JSON,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "`admin_disabled`: `ADMIN_TOKEN` is not configured.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[allow(dead_code)] // documentation only: `ops.rs` serves the route
fn projections() {}

/// Rebuild a projection
///
/// Replays the event log into a fresh copy of the read model while queries keep answering
/// from the old one, then switches atomically. Answers `202` at once; the progress shows in
/// `GET /admin/projections` and in the logs.
#[utoipa::path(
    post,
    path = "/admin/projections/{name}/rebuild",
    tag = "operations",
    operation_id = "rebuild_projection",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "The projection: `orders_read`.")),
    responses(
        (status = 202, description = "The rebuild started.", body = RebuildStarted),
        (status = 401, description = "`unauthorized`: no or a wrong bearer token.",
            body = Problem, content_type = PROBLEM_JSON,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "`admin_disabled`: `ADMIN_TOKEN` is not configured.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`projection_not_found`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 409, description = "`not_rebuildable`: the order saga has no read model; \
            `rebuild_in_progress`.", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[allow(dead_code)] // documentation only: `ops.rs` serves the route
fn rebuild() {}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string(&document()).expect("an OpenAPI document serializes to JSON")
});

/// The OpenAPI document
///
/// OpenAPI 3.1, generated from the code: every route with its parameters, request body,
/// responses and problem responses.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "This document.", body = Object))
)]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

/// The API reference
///
/// Swagger UI, served from the binary (no CDN), reading `/openapi.json`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    operation_id = "docs",
    responses((status = 200, description = "The reference page.", body = String,
        content_type = "text/html"))
)]
async fn docs() -> Result<HttpResponse, Problem> {
    swagger_file("index.html")
}

/// The API reference (trailing slash)
///
/// The same page as `/docs`.
#[utoipa::path(
    get,
    path = "/docs/",
    tag = "operations",
    operation_id = "docs_index",
    responses((status = 200, description = "The reference page.", body = String,
        content_type = "text/html"))
)]
async fn docs_index() -> Result<HttpResponse, Problem> {
    swagger_file("index.html")
}

/// A file of the API reference
///
/// The scripts, styles and icons of the bundled Swagger UI.
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "operations",
    operation_id = "docs_file",
    params(("file" = String, Path, description = "e.g. `swagger-ui-bundle.js`")),
    responses(
        (status = 200, description = "The file, with its content type."),
        (status = 404, description = "`docs_file_not_found`: Swagger UI has no such file.",
            body = Problem, content_type = PROBLEM_JSON),
    )
)]
async fn docs_file(file: web::Path<String>) -> Result<HttpResponse, Problem> {
    swagger_file(&file)
}

/// A file of the bundled Swagger UI. The page gets `<base href="/docs/">`, so its relative
/// links work from `/docs` as well as `/docs/`.
fn swagger_file(name: &str) -> Result<HttpResponse, Problem> {
    let config = Arc::new(
        Config::new([DOCUMENT_PATH])
            .validator_url("none")
            .deep_linking(true)
            .display_request_duration(true),
    );
    let file = utoipa_swagger_ui::serve(name, config)
        .map_err(|e| kernel::http::unexpected(anyhow::anyhow!("serving Swagger UI {name}: {e}")))?
        .ok_or_else(|| {
            Problem::not_found(
                "docs_file_not_found",
                format!("the API reference has no file {name:?}"),
            )
        })?;
    let mut response = HttpResponse::Ok();
    response
        .content_type(file.content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if name == "index.html" {
        let page = String::from_utf8_lossy(&file.bytes)
            .replacen("<head>", "<head>\n    <base href=\"/docs/\">", 1)
            .replacen(
                "<title>Swagger UI</title>",
                "<title>emporium API</title>",
                1,
            );
        return Ok(response.body(page));
    }
    Ok(response.body(file.bytes.into_owned()))
}
