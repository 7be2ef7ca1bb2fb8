//! The OpenAPI 3.1 document (`GET /openapi.json`) and the interactive reference (`GET
//! /docs`, Swagger UI bundled into the binary: no CDN, nothing fetched at build or run time).
//! Both are conditional reads (`ETag`, `304`); the page links its files with `?v=` and the
//! bundle's hash, so those are cached for a year and a new build is fetched anew.
//!
//! The document is assembled from [`crate::endpoints`], the [`kernel::openapi::Routes`]
//! the app mounts: every route (the modules', health, metrics, admin, and this document's
//! own) is registered from its handler's `#[utoipa::path]`, so a route cannot be served
//! without being documented, nor at another path or method than documented.
//! `apps/emporium/tests/it/openapi/` proves that the document and the routes the app
//! registers are the same set, and validates real answers against the document.

use std::sync::{Arc, LazyLock};

use actix_web::http::header::EntityTag;
use actix_web::{HttpRequest, HttpResponse, web};
use kernel::Problem;
use kernel::http::{Caching, PROBLEM_JSON};
use kernel::openapi::{NotModified, Revalidate, Routes};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::ServerBuilder;
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_swagger_ui::Config;

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// The document as the reference page fetches it: relative to the page's base
/// (`<prefix>/docs/`), so that a path prefix in front of the server is kept.
const DOCUMENT_FROM_DOCS: &str = "../openapi.json";

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
        .servers(Some([ServerBuilder::new()
            .url(".")
            .description(Some(
                "Where this document is served from: the API's paths are relative to the \
                 document's own location, so a path prefix in front of the server is kept.",
            ))
            .build()]))
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
/// `/docs`. They are served, not listed in the document: they are not operations of the
/// API, and a client generated from it has no use for them. Every link between them is
/// relative, so they work behind a path prefix too.
pub(crate) fn endpoints() -> Routes {
    Routes::default()
        .unlisted(__path_openapi_json, openapi_json)
        .unlisted(__path_docs, docs)
        .unlisted(__path_docs_index, docs_index)
        .unlisted(__path_docs_file, docs_file)
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
(`\"19.99\"`); requests accept a string of digits with at most two decimal places (no sign, \
exponent, spaces or leading zero) or a JSON number that is a multiple of 0.01.
- Every constraint the server enforces is in the schemas (lengths, ranges, `pattern`s of \
fields and headers); an integer may be written as an integral number (`5.0`), as JSON \
Schema's `integer` allows.
- Timestamps are RFC 3339 in UTC.
- Every error is `application/problem+json` (RFC 9457) with a stable machine-readable `code`; \
`errors` lists the invalid fields of a `422 validation_failed`. No error body carries a stack \
trace, SQL or a connection string. An unknown path is `404 route_not_found`; a known path \
asked with another method is `405 method_not_allowed`. A `500` is a bug.
- A request body over 64 KiB is `413`, one that is not JSON `415`; when the database cannot \
be reached the answer is `503` with `Retry-After`.

HTTP:
- Every `GET` also answers `HEAD` (the same head, no body), and every path answers `OPTIONS` \
with `204` and `Allow`. Any other method on a known path (`TRACE`, `CONNECT`, made-up ones) is \
`405 method_not_allowed` with `Allow`, declared on every operation.
- Answers of 1 KiB or more are compressed by `Accept-Encoding`: `br` or `gzip`, whichever the \
client prefers (`br` on a tie), with `Vary: Accept-Encoding`.
- Reads of one resource (products, users, orders, payments) and of the catalog are conditional: \
they carry a weak `ETag` and a `Cache-Control`, and an `If-None-Match` that names the current \
`ETag` is answered `304` without a body. The catalog is `public`; everything else `private`.
- CORS is off unless the server is run with `CORS_ALLOWED_ORIGINS`; then pages of those origins \
may call the API from a browser (preflights are answered, `ETag`, `Location`, `Retry-After`, \
`X-Request-Id` and the like are readable; no cookies: send the bearer token).
- A W3C `traceparent` header is logged with the request (`trace_id`, `parent_id`); a malformed \
one is ignored. `X-Request-Id` (yours if sane, else a new one) comes back on every answer.";

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
            "Health, metrics and projection administration (this document, \
             `/openapi.json`, and its reference page, `/docs`, are served beside them). \
             Everything under `/admin` needs `Authorization: Bearer \
             <ADMIN_TOKEN>`: a missing or wrong token is `401`; without `ADMIN_TOKEN` \
             configured the admin routes answer `403`.",
        ),
    ]
}

static DOCUMENT: LazyLock<(web::Bytes, EntityTag)> = LazyLock::new(|| {
    let text = serde_json::to_vec(&document()).expect("an OpenAPI document serializes to JSON");
    let tag = kernel::http::etag(&text);
    (text.into(), tag)
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
    params(Revalidate),
    responses(
        (status = 200, description = "This document.", body = Object,
            headers(("ETag" = String, description = "Changes with the document."),
                ("Cache-Control" = String, description = "`public, no-cache`."))),
        (status = 304, response = NotModified),
        (status = 400, description = "`invalid_header`: an `If-None-Match` that is not a list \
            of entity tags.", body = Problem, content_type = PROBLEM_JSON),
    )
)]
async fn openapi_json(req: HttpRequest) -> Result<HttpResponse, Problem> {
    let (text, tag) = &*DOCUMENT;
    kernel::http::cached_as(
        &req,
        Caching::Public(std::time::Duration::ZERO),
        "application/json",
        text.clone(),
        tag.clone(),
    )
}

/// The API reference
///
/// Swagger UI, served from the binary (no CDN), reading `/openapi.json`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    operation_id = "docs",
    params(Revalidate),
    responses(
        (status = 200, description = "The reference page.", body = String,
            content_type = "text/html",
            headers(("ETag" = String, description = "Changes with the page."),
                ("Cache-Control" = String, description = "`public, no-cache`."))),
        (status = 304, response = NotModified),
        (status = 400, description = "`invalid_header`: an `If-None-Match` that is not a list \
            of entity tags.", body = Problem, content_type = PROBLEM_JSON),
    )
)]
async fn docs(req: HttpRequest) -> Result<HttpResponse, Problem> {
    swagger_page(&req, "docs/")
}

/// The API reference (trailing slash)
///
/// The same page as `/docs`.
#[utoipa::path(
    get,
    path = "/docs/",
    tag = "operations",
    operation_id = "docs_index",
    params(Revalidate),
    responses(
        (status = 200, description = "The reference page.", body = String,
            content_type = "text/html",
            headers(("ETag" = String, description = "Changes with the page."),
                ("Cache-Control" = String, description = "`public, no-cache`."))),
        (status = 304, response = NotModified),
        (status = 400, description = "`invalid_header`: an `If-None-Match` that is not a list \
            of entity tags.", body = Problem, content_type = PROBLEM_JSON),
    )
)]
async fn docs_index(req: HttpRequest) -> Result<HttpResponse, Problem> {
    swagger_page(&req, "./")
}

/// A file of the API reference
///
/// The scripts, styles and icons of the bundled Swagger UI. The page asks for them with
/// `?v=<the bundle's hash>`: so asked, a file is cached for a year (`immutable`), since
/// another build links another `v`; asked otherwise, it is revalidated each time.
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "operations",
    operation_id = "docs_file",
    params(("file" = String, Path, description = "e.g. `swagger-ui-bundle.js`"),
        ("v" = Option<String>, Query, description = "The version the page links (any other \
            query is ignored)."),
        Revalidate),
    responses(
        (status = 200, description = "The file, with its content type.",
            headers(("ETag" = String, description = "Changes with the file."),
                ("Cache-Control" = String, description = "`public, max-age=31536000, \
                    immutable` when asked with the page's `v`, else `public, no-cache`."))),
        (status = 304, response = NotModified),
        (status = 400, description = "`invalid_header`: an `If-None-Match` that is not a list \
            of entity tags.", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`docs_file_not_found`: Swagger UI has no such file.",
            body = Problem, content_type = PROBLEM_JSON),
    )
)]
async fn docs_file(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, Problem> {
    swagger_file(&req, &file)
}

/// The files whose content is the generated configuration, not the bundle's: never
/// versioned.
const GENERATED: [&str; 2] = ["index.html", "swagger-initializer.js"];

/// The `v` the page links its files with: a hash of the bundle, so a build with another
/// Swagger UI links (and browsers fetch) new files.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let bundle = utoipa_swagger_ui::serve("swagger-ui-bundle.js", swagger_config())
        .ok()
        .flatten()
        .map(|f| f.bytes.into_owned())
        .unwrap_or_default();
    kernel::http::etag(&bundle).tag()[..12].to_owned()
});

fn swagger_config() -> Arc<Config<'static>> {
    Arc::new(
        Config::new([DOCUMENT_FROM_DOCS])
            .validator_url("none")
            .deep_linking(true)
            .display_request_duration(true),
    )
}

/// The reference page with `<base href="{base}">`: `docs/` at `/docs`, `./` at `/docs/`,
/// so that its relative links (the files, the document) resolve under `<prefix>/docs/`
/// either way, and `?v=` on the links to bundled files.
fn swagger_page(req: &HttpRequest, base: &str) -> Result<HttpResponse, Problem> {
    let file = bundled("index.html")?;
    let page = String::from_utf8_lossy(&file.bytes)
        .replacen("<head>", &format!("<head>\n    <base href=\"{base}\">"), 1)
        .replacen(
            "<title>Swagger UI</title>",
            "<title>emporium API</title>",
            1,
        );
    let revalidate = Caching::Public(std::time::Duration::ZERO);
    kernel::http::cached(req, revalidate, &file.content_type, versioned(&page))
}

fn bundled(name: &str) -> Result<utoipa_swagger_ui::SwaggerFile<'static>, Problem> {
    utoipa_swagger_ui::serve(name, swagger_config())
        .map_err(|e| kernel::http::unexpected(anyhow::anyhow!("serving Swagger UI {name}: {e}")))?
        .ok_or_else(|| {
            Problem::not_found(
                "docs_file_not_found",
                format!("the API reference has no file {name:?}"),
            )
        })
}

/// A file of the bundled Swagger UI (`index.html` is [`swagger_page`]).
fn swagger_file(req: &HttpRequest, name: &str) -> Result<HttpResponse, Problem> {
    if name == "index.html" {
        return swagger_page(req, "./");
    }
    let file = bundled(name)?;
    let revalidate = Caching::Public(std::time::Duration::ZERO);
    let immutable = !GENERATED.contains(&name) && req.query_string() == format!("v={}", *VERSION);
    let caching = if immutable {
        Caching::Immutable
    } else {
        revalidate
    };
    kernel::http::cached(req, caching, &file.content_type, file.bytes.into_owned())
}

/// `page` with `?v=` on each local `href` and `src` but the generated files'.
fn versioned(page: &str) -> String {
    let mut out = String::with_capacity(page.len() + 200);
    let mut rest = page;
    while let Some(start) = ["href=\"", "src=\""]
        .iter()
        .filter_map(|m| rest.find(m).map(|i| i + m.len()))
        .min()
    {
        let Some(end) = rest[start..].find('"').map(|e| start + e) else {
            break;
        };
        let link = &rest[start..end];
        out.push_str(&rest[..end]);
        let local = !link.contains(':') && !link.contains('?') && !link.ends_with('/');
        if local && !GENERATED.iter().any(|g| link.ends_with(g)) {
            out.push_str("?v=");
            out.push_str(&VERSION);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
