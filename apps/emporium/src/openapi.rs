//! The OpenAPI 3.1 document (`GET /openapi.json`) and the interactive reference (`GET
//! /docs`, Swagger UI bundled into the binary: no CDN, nothing fetched at build or run time).
//!
//! The document is assembled from [`crate::endpoints`], the [`kernel::openapi::Routes`]
//! the app mounts: every route (the modules', health, metrics, admin, and this document's
//! own) is registered from its handler's `#[utoipa::path]`, so a route cannot be served
//! without being documented, nor at another path or method than documented.
//! `apps/emporium/tests/it/openapi/` proves that the document and the routes the app
//! registers are the same set, and validates real answers against the document.

use std::sync::{Arc, LazyLock};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use kernel::Problem;
use kernel::http::PROBLEM_JSON;
use kernel::openapi::Routes;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_swagger_ui::Config;

/// Where the document is served; the reference page reads it from here.
pub const DOCUMENT_PATH: &str = "/openapi.json";

/// The whole API: every route of [`crate::endpoints`] (the modules', health, metrics, admin, and
/// the document with its reference page).
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
    for (_, routes) in crate::endpoints() {
        document.merge(routes.openapi());
    }
    if let Some(components) = document.components.as_mut() {
        components.add_security_scheme(
            kernel::openapi::BEARER_AUTH,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `POST /auth/token` (EdDSA JWT), or the \
                         `ADMIN_TOKEN` where a route accepts it (`/admin` and \
                         `PUT /users/{id}/roles`). An operation's list of roles names the \
                         roles of which the caller needs one; an empty list needs only a \
                         token, and the operation says whose things it reaches.",
                    ))
                    .build(),
            ),
        );
    }
    document
}

/// The document's own routes: [`document`] at `/openapi.json` and the reference page at
/// `/docs`.
pub(crate) fn endpoints() -> Routes {
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
        tag(
            "users",
            "Registering and changing users, and their staff roles. A customer sees and \
             changes only their own account; `support` and `admin` see everyone's.",
        ),
        tag(
            "auth",
            "Logging in (`POST /auth/token`: an EdDSA access token and a single-use refresh \
             token), logging out, and the public keys that verify access tokens. Send the \
             access token as `Authorization: Bearer <token>`.",
        ),
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
