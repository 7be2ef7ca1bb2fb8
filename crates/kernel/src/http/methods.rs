//! The methods of a path: `HEAD` wherever there is `GET` (the same handler; actix sends
//! the head without the body), `OPTIONS` answering `204` with `Allow`, and any other method
//! (`TRACE`, `CONNECT`, made-up ones) `405 method_not_allowed` problem+json with `Allow`.
//! A CORS preflight is an `OPTIONS` too, answered before routing by [`super::cors`] when
//! CORS is on.

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::Problem;

/// The order `Allow` lists methods in.
const ORDER: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// `Allow` for a path serving `methods` (and `OPTIONS`, which every path answers).
pub fn allow<'a>(methods: impl IntoIterator<Item = &'a Method>) -> String {
    let mut methods: Vec<&Method> = methods.into_iter().collect();
    methods.push(&Method::OPTIONS);
    methods.sort_by_key(|m| ORDER.iter().position(|o| o == *m).unwrap_or(ORDER.len()));
    methods.dedup();
    let names: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
    names.join(", ")
}

/// One `web::resource` at `path` holding `routes` (one per method), an `OPTIONS` route
/// unless one is given, and the `405` for every other method.
pub(crate) fn resource(path: &str, routes: Vec<(Method, actix_web::Route)>) -> actix_web::Resource {
    let allow = allow(routes.iter().map(|(m, _)| m));
    let has_options = routes.iter().any(|(m, _)| *m == Method::OPTIONS);
    let mut resource = routes
        .into_iter()
        .fold(web::resource(path), |resource, (_, route)| {
            resource.route(route)
        });
    if !has_options {
        let allow = allow.clone();
        resource = resource.route(web::method(Method::OPTIONS).to(move || {
            let allow = allow.clone();
            async move {
                HttpResponse::NoContent()
                    .insert_header((header::ALLOW, allow))
                    .finish()
            }
        }));
    }
    resource.default_service(web::to(move |req: HttpRequest| {
        let allow = allow.clone();
        async move { method_not_allowed(&req, &allow) }
    }))
}

fn method_not_allowed(req: &HttpRequest, allow: &str) -> HttpResponse {
    let problem = Problem::new(
        405,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; it allows {allow}",
            req.method(),
            req.path()
        ),
    );
    let mut response = problem.error_response();
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_methods_in_order_with_options() {
        assert_eq!(
            allow(&[Method::PATCH, Method::GET, Method::HEAD]),
            "GET, HEAD, PATCH, OPTIONS"
        );
        assert_eq!(allow(&[Method::POST]), "POST, OPTIONS");
        assert_eq!(allow(&[Method::OPTIONS, Method::GET]), "GET, OPTIONS");
    }
}
