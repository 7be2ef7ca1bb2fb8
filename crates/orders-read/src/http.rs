//! `/queries/orders`: [`OrderQueries`] calls, JSON or problem+json out
//! ([`orders_api::OrderError`] answered as `orders-api` states it).

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use kernel::http::{Caching, PROBLEM_JSON};
use kernel::openapi::{NotModified, Revalidate, Routes, ServiceUnavailable, Unauthenticated};
use kernel::{OrderId, PageRequest, Principal, Problem, UserId};
use orders_api::{
    OrderError, OrderFilter, OrderPage, OrderQueries, OrderStatus, OrderView, Read, rules,
};
use serde::Deserialize;
use utoipa::IntoParams;

/// The order query routes, each served at the method and path its `#[utoipa::path]`
/// declares (and so documented).
pub fn endpoints() -> Routes {
    Routes::default()
        .add(__path_list, list)
        .add(__path_get, get)
}

/// Mounts the order query routes. Expects `web::Data<dyn OrderQueries>` in the app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    endpoints().mount(cfg);
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct GetQuery {
    /// Read-your-writes: wait (up to 2 s) until the read model holds this version or later.
    /// A version as commands answer it (int64, 0 or more); anything else is `400`.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    min_version: Option<i64>,
}

/// Get an order
///
/// From the read model, which is eventually consistent with the commands. With
/// `min_version=N` the query waits up to 2 s for the read model to reach version N; if it
/// does not, an order not yet projected is `404`, and an older version of the order answers
/// `200` with `X-Read-Model-Stale: true`.
///
/// A conditional read: `ETag` is `W/"<version>-<hash>"`, which changes with the version and
/// with anything else in the answer (a renamed user or product), and `304` answers an
/// `If-None-Match` that names it. The commands take it as `If-Match` (only its version
/// counts there).
#[utoipa::path(
    get,
    path = "/queries/orders/{id}",
    tag = "orders",
    operation_id = "get_order",
    security(("bearer" = [])),
    params(("id" = OrderId, Path, description = "The order's id."), GetQuery, Revalidate),
    responses(
        (status = 200, description = "The order.", body = OrderView,
            headers(
                ("ETag" = String, description = "`W/\"<version>-<hash>\"`: the version this \
                    view reflects, then a hash of the answer. Send it in `If-None-Match`, or \
                    as `If-Match` of a command."),
                ("Cache-Control" = String, description = "`private, no-cache`: the caller's \
                    browser may keep it and revalidate it; a shared cache does not keep it."),
                ("X-Read-Model-Stale" = String, description = "`true` when `min_version` was \
                    asked and the read model did not reach it within 2 s; absent otherwise."),
            )),
        (status = 304, response = NotModified),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `invalid_query`: \
            `min_version` is not a non-negative integer, or an unknown parameter; \
            `invalid_header`: an `If-None-Match` that is not a list of entity tags.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the admin token is not a user.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`order_not_found`: no such order in the read model \
            (yet), or another customer's.", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn get(
    queries: web::Data<dyn OrderQueries>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<OrderId>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, Problem> {
    let scope = rules::read_scope(&principal)?;
    if let Some(version) = query.min_version.filter(|v| *v < 0) {
        return Err(Problem::bad_request(
            "invalid_query",
            format!("min_version must be 0 or more, got {version}"),
        ));
    }
    let read = queries
        .get(*id, query.min_version)
        .await
        .map_err(kernel::http::problem)?;
    let (view, stale) = match read {
        Read::Fresh(view) => (view, false),
        Read::Stale(view) => (view, true),
    };
    if !scope.reaches(view.user_id) {
        // Exactly the answer for an unknown order.
        return Err(kernel::http::problem(OrderError::NotFound(*id)));
    }
    let mut response = kernel::http::cached_json_at(&req, Caching::Private, view.version, &view)?;
    if stale {
        response.headers_mut().insert(
            HeaderName::from_static("x-read-model-stale"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this user's orders. A customer's list is always their own: they omit it or
    /// name themself.
    #[param(value_type = Option<UserId>)]
    user_id: Option<UserId>,
    /// Only orders in this status.
    #[param(value_type = Option<OrderStatus>)]
    status: Option<String>,
    /// From 1; default 1; `page x page_size` at most 10,000.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10_000)]
    page: Option<u32>,
    /// 1 to 100; default 20.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    page_size: Option<u32>,
}

/// List orders
///
/// From the read model, newest first. Any other query parameter is `400`.
#[utoipa::path(
    get,
    path = "/queries/orders",
    tag = "orders",
    operation_id = "list_orders",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "One page of orders.", body = OrderPage),
        (status = 400, description = "`invalid_query`: a `user_id` that is not a UUID, a \
            `status` that is not one of the five, `page` below 1, `page_size` outside 1..=100, \
            `page x page_size` over 10,000, or an unknown parameter.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: a customer's `user_id` names someone \
            else; the admin token is not a user.", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn list(
    queries: web::Data<dyn OrderQueries>,
    principal: Principal,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let query = query.into_inner();
    let user_id = rules::list_filter(&principal, query.user_id)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<OrderStatus>().map_err(|_| {
            Problem::bad_request(
                "invalid_query",
                format!(
                    "status must be one of {}; got {text:?}",
                    OrderStatus::ALL.map(|s| s.as_str()).join(", ")
                ),
            )
        })?),
    };
    let page = PageRequest::new(query.page, query.page_size)
        .map_err(|e| Problem::bad_request("invalid_query", e))?;
    let filter = OrderFilter { user_id, status };
    let page = queries
        .list(filter, page)
        .await
        .map_err(kernel::http::problem)?;
    Ok(HttpResponse::Ok().json(page))
}
