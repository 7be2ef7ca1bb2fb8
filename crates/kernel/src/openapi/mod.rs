//! OpenAPI glue shared by every module's routes: [`Routes`], which serves each handler at
//! the method and path its `#[utoipa::path]` annotation declares, so what a module serves
//! and what it documents come from one place; the problem responses every route shares
//! ([`PayloadTooLarge`], [`UnsupportedMediaType`], [`ServiceUnavailable`],
//! [`MethodNotAllowed`]); and what a conditional read declares ([`Revalidate`],
//! [`NotModified`]).
//!
//! Why not `utoipa-actix-web`'s `App` wrapper: it collects only handlers written with
//! actix's route macros (`#[get("/users/{id}")]`), and each of those registers a resource
//! of its own, guarded by its method, so a wrong method on a known path would answer `404`
//! instead of `405`. Here all methods of a path share one `web::resource`. Its
//! `OpenApiFactory` trait is still what reads a `#[utoipa::path]`'s operation and the
//! schemas it references.

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, Responder, web};
use utoipa::openapi::path::{HttpMethod, Paths};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HeaderBuilder, OpenApi, OpenApiBuilder, Ref, RefOr,
    Response, ResponseBuilder,
};
use utoipa::{IntoParams, PartialSchema, ToResponse, ToSchema};
use utoipa_actix_web::OpenApiFactory;

use crate::http::PROBLEM_JSON;
use crate::{FieldError, Problem};

mod answers;

/// A module's routes, each registered from its `#[utoipa::path]` annotation.
///
/// ```text
/// pub fn endpoints() -> Routes {
///     Routes::default()
///         .add(__path_register, register)
///         .add(__path_get, get)
/// }
/// pub fn routes(cfg: &mut web::ServiceConfig) {
///     endpoints().mount(cfg)
/// }
/// ```
/// `__path_<handler>` is the type `#[utoipa::path]` generates beside the handler.
#[derive(Default)]
pub struct Routes {
    /// One entry per path, in the order first added, with a route per method (`HEAD`
    /// beside each `GET`); each becomes one `web::resource` ([`crate::http::methods`]).
    resources: Vec<(String, Vec<(Method, actix_web::Route)>)>,
    operations: Vec<(Method, String)>,
    /// Served but not operations of the API, so not in the document: the document itself
    /// and its reference page.
    unlisted: Vec<(Method, String)>,
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Routes {
    /// Serves `handler` at every method and the path that `doc` (the handler's
    /// `#[utoipa::path]`) declares, and documents it so; a `GET` is served at `HEAD` too
    /// (undocumented: every `GET` has it). Panics when a method and path are declared
    /// twice.
    pub fn add<D, F, Args>(mut self, doc: D, handler: F) -> Self
    where
        D: utoipa::Path + OpenApiFactory,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.serve_declared::<D, _, _>(true, handler);
        self.paths.merge(doc.paths());
        doc.schemas(&mut self.schemas);
        self
    }

    /// Serves `handler` as [`Routes::add`] does, but documents nothing: for what is not an
    /// operation of the API (the document itself, its reference page). `doc` still says
    /// the path and methods.
    pub fn unlisted<D, F, Args>(mut self, _doc: D, handler: F) -> Self
    where
        D: utoipa::Path + OpenApiFactory,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.serve_declared::<D, _, _>(false, handler);
        self
    }

    /// Serves `handler` at every method of `D`'s path, recorded as an operation when
    /// `listed`, else as unlisted.
    fn serve_declared<D, F, Args>(&mut self, listed: bool, handler: F)
    where
        D: utoipa::Path,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        for method in D::methods() {
            let method = actix_method(&method);
            let record = if listed {
                &mut self.operations
            } else {
                &mut self.unlisted
            };
            record.push((method.clone(), D::path()));
            self.serve(method, D::path(), handler.clone());
        }
    }

    fn serve<F, Args>(&mut self, method: Method, path: String, handler: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let declared = (self.operations.iter().chain(&self.unlisted))
            .filter(|(m, p)| *m == method && *p == path)
            .count();
        assert!(declared == 1, "{method} {path} is declared twice");
        let mut routes = vec![(
            method.clone(),
            web::method(method.clone()).to(handler.clone()),
        )];
        if method == Method::GET {
            routes.push((Method::HEAD, web::method(Method::HEAD).to(handler)));
        }
        match self.resources.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => existing.extend(routes),
            None => self.resources.push((path, routes)),
        }
    }

    /// What [`Routes::unlisted`] serves, `(method, path)`, in the order added.
    pub fn unlisted_operations(&self) -> impl Iterator<Item = (&Method, &str)> {
        self.unlisted.iter().map(|(m, p)| (m, p.as_str()))
    }

    /// Every `(method, path)` these routes serve, in the order added: what [`Routes::mount`]
    /// registers and [`Routes::openapi`] documents.
    pub fn operations(&self) -> impl Iterator<Item = (&Method, &str)> {
        self.operations.iter().map(|(m, p)| (m, p.as_str()))
    }

    /// These routes' part of the OpenAPI document: their paths, the schemas they use and
    /// the shared problem responses.
    pub fn openapi(&self) -> OpenApi {
        let mut paths = self.paths.clone();
        answers::complete(&mut paths);
        OpenApiBuilder::new()
            .paths(paths)
            .components(Some(components(self.schemas.clone())))
            .build()
    }

    /// Registers one `web::resource` per path, holding a route per method, `OPTIONS`, and
    /// `405` with `Allow` for any other method ([`crate::http::methods`]).
    pub fn mount(self, cfg: &mut web::ServiceConfig) {
        for (path, routes) in self.resources {
            cfg.service(resource(&path, routes));
        }
    }

    /// [`Routes::mount`] inside `web::scope(prefix)`, for routes that share middleware
    /// (`.wrap(...)` the scope). Every documented path must start with `prefix`; the scope
    /// serves it at the same full path.
    pub fn scope(self, prefix: &str) -> actix_web::Scope {
        self.resources
            .into_iter()
            .fold(web::scope(prefix), |scope, (path, routes)| {
                let rest = path
                    .strip_prefix(prefix)
                    .unwrap_or_else(|| panic!("{path} is documented outside the scope {prefix}"));
                scope.service(resource(rest, routes))
            })
    }
}

fn resource(path: &str, routes: Vec<(Method, actix_web::Route)>) -> actix_web::Resource {
    crate::http::methods::resource(path, routes)
}

fn actix_method(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// `schemas` plus what every route shares: [`Problem`] and the shared responses.
fn components(schemas: Vec<(String, RefOr<Schema>)>) -> utoipa::openapi::Components {
    let shared = [
        (304, NotModified::response()),
        (405, MethodNotAllowed::response()),
        (404, RouteNotFound::response()),
        (401, Unauthenticated::response()),
        (413, PayloadTooLarge::response()),
        (415, UnsupportedMediaType::response()),
        (503, ServiceUnavailable::response()),
    ];
    let mut builder = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .schema(Problem::name(), Problem::schema())
        .schema(FieldError::name(), FieldError::schema());
    for (status, (name, mut response)) in shared {
        if let RefOr::T(response) = &mut response {
            answers::add_example(status, response);
        }
        builder = builder.response(name, response);
    }
    builder.build()
}

/// A problem+json response: `description`, body [`Problem`].
pub fn problem_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(Problem::name())))
            .build(),
    )
}

/// `413 payload_too_large`: a request body over 64 KiB.
pub struct PayloadTooLarge;

impl<'s> ToResponse<'s> for PayloadTooLarge {
    fn response() -> (&'s str, RefOr<Response>) {
        let description = format!(
            "`payload_too_large`: the request body is larger than {} KiB.",
            crate::http::MAX_BODY_BYTES / 1024
        );
        (
            "PayloadTooLarge",
            problem_response(&description).build().into(),
        )
    }
}

/// `415 unsupported_media_type`: a request body that is not JSON.
pub struct UnsupportedMediaType;

impl<'s> ToResponse<'s> for UnsupportedMediaType {
    fn response() -> (&'s str, RefOr<Response>) {
        let description = "`unsupported_media_type`: the request body must be JSON, sent with \
                           `Content-Type: application/json` (or another `+json` type).";
        (
            "UnsupportedMediaType",
            problem_response(description).build().into(),
        )
    }
}

/// The security scheme of routes that take an access token (`security(("bearer" = []))`).
pub const BEARER_AUTH: &str = "bearer";

/// `401 unauthenticated` with `WWW-Authenticate`: no token, or an invalid one.
pub struct Unauthenticated;

impl<'s> ToResponse<'s> for Unauthenticated {
    fn response() -> (&'s str, RefOr<Response>) {
        let challenge = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "`Bearer`, or `Bearer error=\"invalid_token\"` when a token was sent.",
            ))
            .build();
        let response = problem_response(
            "`unauthenticated`: no `Authorization: Bearer` token, or one that is malformed, \
             expired, wrongly signed or for another audience.",
        )
        .header("WWW-Authenticate", challenge)
        .build();
        ("Unauthenticated", response.into())
    }
}

/// `503 service_unavailable` with `Retry-After`: the database cannot be reached (or a
/// statement timed out); `503 request_timeout`: the request ran past its deadline.
pub struct ServiceUnavailable;

impl<'s> ToResponse<'s> for ServiceUnavailable {
    fn response() -> (&'s str, RefOr<Response>) {
        let retry_after = HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .description(Some("Seconds to wait before retrying."))
            .build();
        let response = problem_response(
            "`service_unavailable`: the database cannot be reached right now, or a statement \
             ran past its `statement_timeout`; nothing was changed, retrying after \
             `Retry-After` seconds is safe. `request_timeout`: the request ran past \
             `REQUEST_TIMEOUT` (default 30 s) and was abandoned; what it had committed \
             stays, so retry a command with the same `Idempotency-Key` or `If-Match`.",
        )
        .header("Retry-After", retry_after)
        .build();
        ("ServiceUnavailable", response.into())
    }
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

/// The `If-None-Match` request header of a conditional read
/// (`params(..., kernel::openapi::Revalidate)`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct Revalidate {
    /// `*` or a comma-separated list of entity tags (`W/"…"` or `"…"` around visible ASCII
    /// but `"`, compared weakly): when one is the answer's `ETag`, the answer is `304`
    /// without a body. Anything else is `400 invalid_header`.
    #[param(
        rename = "If-None-Match",
        nullable = false,
        pattern = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#
    )]
    pub if_none_match: Option<String>,
}

/// `304 Not Modified`: the `If-None-Match` named the current `ETag`; no body.
pub struct NotModified;

impl<'s> ToResponse<'s> for NotModified {
    fn response() -> (&'s str, RefOr<Response>) {
        let response = ResponseBuilder::new()
            .description(
                "Not modified: `If-None-Match` names the current `ETag`, so the copy the \
                 client holds is current. No body.",
            )
            .header(
                "ETag",
                string_header("The current `ETag`, as a `200` would send it."),
            )
            .header("Cache-Control", string_header("As a `200` would send it."))
            .build();
        ("NotModified", response.into())
    }
}

/// `404 route_not_found`: a path that names no route. Every operation declares it (a
/// path parameter holding a `/` makes another path).
pub struct RouteNotFound;

impl<'s> ToResponse<'s> for RouteNotFound {
    fn response() -> (&'s str, RefOr<Response>) {
        let response = problem_response(answers::ROUTE_NOT_FOUND_TEXT).build();
        (answers::ROUTE_NOT_FOUND, response.into())
    }
}

/// `405 method_not_allowed` with `Allow`: a method the path does not have. Every operation
/// declares it by reference (it is what the operation's path answers to the other
/// methods).
pub struct MethodNotAllowed;

impl<'s> ToResponse<'s> for MethodNotAllowed {
    fn response() -> (&'s str, RefOr<Response>) {
        let response = problem_response(
            "`method_not_allowed`: the path exists but does not have this method (`TRACE`, \
             `CONNECT` and unknown methods included). Every path answers `OPTIONS` (`204`) and \
             every `GET` answers `HEAD` too.",
        )
        .header(
            "Allow",
            string_header("The path's methods, e.g. `GET, HEAD, PATCH, OPTIONS`."),
        )
        .build();
        (answers::METHOD_NOT_ALLOWED, response.into())
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::{Method, StatusCode};
    use actix_web::test::{TestRequest, call_service, init_service};
    use actix_web::{App, HttpResponse};

    use super::*;

    #[utoipa::path(get, path = "/things/{id}", responses((status = 200, description = "one")))]
    async fn thing() -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    #[utoipa::path(delete, path = "/things/{id}", responses((status = 204, description = "gone")))]
    async fn remove() -> HttpResponse {
        HttpResponse::NoContent().finish()
    }

    #[utoipa::path(get, path = "/admin/things", responses((status = 200, description = "all")))]
    async fn all() -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    fn things() -> Routes {
        Routes::default()
            .add(__path_thing, thing)
            .add(__path_remove, remove)
    }

    #[actix_web::test]
    async fn serves_what_it_documents_one_resource_per_path() {
        let app = init_service(
            App::new()
                .configure(|cfg| things().mount(cfg))
                .service(Routes::default().add(__path_all, all).scope("/admin")),
        )
        .await;
        let cases = [
            (Method::GET, "/things/1", StatusCode::OK),
            (Method::DELETE, "/things/1", StatusCode::NO_CONTENT),
            (Method::POST, "/things/1", StatusCode::METHOD_NOT_ALLOWED),
            (Method::TRACE, "/things/1", StatusCode::METHOD_NOT_ALLOWED),
            (Method::HEAD, "/things/1", StatusCode::OK),
            (Method::OPTIONS, "/things/1", StatusCode::NO_CONTENT),
            (Method::HEAD, "/admin/things", StatusCode::OK),
            (Method::GET, "/admin/things", StatusCode::OK),
            (Method::GET, "/things", StatusCode::NOT_FOUND),
        ];
        for (method, path, status) in cases {
            let request = TestRequest::default()
                .method(method.clone())
                .uri(path)
                .to_request();
            let response = call_service(&app, request).await;
            assert_eq!(response.status(), status, "{method} {path}");
            if path == "/things/1" && !status.is_success() {
                assert_eq!(
                    response.headers().get("allow").map(|v| v.to_str().unwrap()),
                    Some("GET, HEAD, DELETE, OPTIONS"),
                    "{method} {path}"
                );
            }
        }

        let routes = things();
        let listed: Vec<(String, &str)> = routes
            .operations()
            .map(|(m, p)| (m.to_string(), p))
            .collect();
        assert_eq!(
            listed,
            [
                ("GET".to_owned(), "/things/{id}"),
                ("DELETE".to_owned(), "/things/{id}")
            ]
        );

        let document = things().openapi();
        let item = &document.paths.paths["/things/{id}"];
        assert!(item.get.is_some() && item.delete.is_some() && item.post.is_none());
        let components = document.components.expect("components");
        assert!(components.schemas.contains_key("Problem"));
        for response in [
            "Unauthenticated",
            "PayloadTooLarge",
            "UnsupportedMediaType",
            "ServiceUnavailable",
        ] {
            assert!(components.responses.contains_key(response), "{response}");
        }
    }

    #[test]
    fn if_none_match_is_documented_as_parsed() {
        use utoipa::IntoParams;
        let params = serde_json::to_value(Revalidate::into_params(|| None)).unwrap();
        assert_eq!(
            params[0]["schema"]["pattern"],
            crate::http::IF_NONE_MATCH_PATTERN
        );
    }

    #[test]
    fn a_method_and_path_declared_twice_is_refused() {
        let twice = std::panic::catch_unwind(|| things().add(__path_thing, thing));
        assert!(twice.is_err());
    }
}
