//! `/payments` routes: read-only views of payments over [`PaymentApi`]. Charges and refunds
//! happen through the orders module, never over HTTP here. The one place that maps
//! [`PaymentError`] to HTTP.

use actix_web::{HttpRequest, HttpResponse, web};
use kernel::http::{Caching, PROBLEM_JSON};
use kernel::openapi::{NotModified, Revalidate, Routes, ServiceUnavailable, Unauthenticated};
use kernel::{OrderId, PaymentId, Principal, Problem, UserId};
use payments_api::{OrderOwners, Payment, PaymentApi, PaymentError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::rules;

/// The `/payments` routes, each served at the method and path its `#[utoipa::path]`
/// declares (and so documented).
pub fn endpoints() -> Routes {
    Routes::default()
        .add(__path_list, list)
        .add(__path_get, get)
}

/// Mounts `/payments`. Expects `web::Data<dyn PaymentApi>` and `web::Data<dyn OrderOwners>`
/// in the app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    endpoints().mount(cfg);
}

/// Whether the orders of `viewer` (`None`: everyone) include `order_id`.
async fn sees(
    owners: &dyn OrderOwners,
    viewer: Option<UserId>,
    order_id: OrderId,
) -> Result<bool, Problem> {
    let Some(me) = viewer else {
        return Ok(true);
    };
    let owner = owners
        .owner(order_id)
        .await
        .map_err(kernel::http::unexpected)?;
    Ok(owner == Some(me))
}

/// Get a payment
///
/// `support` and `admin` see any payment; a customer the payments of their own orders,
/// and gets the same `404` for anyone else's as for an unknown id. A conditional read:
/// `ETag`, and `304` for an `If-None-Match` that names it.
#[utoipa::path(
    get,
    path = "/payments/{id}",
    tag = "payments",
    operation_id = "get_payment",
    security(("bearer" = [])),
    params(("id" = PaymentId, Path, description = "The payment's id."), Revalidate),
    responses(
        (status = 200, description = "The payment.", body = Payment,
            headers(("ETag" = String, description = "A weak validator (a hash of the answer): \
                    send it in `If-None-Match`."),
                ("Cache-Control" = String, description = "`private, no-cache`: the caller's \
                    browser may keep it and revalidate it; a shared cache does not keep it."))),
        (status = 304, response = NotModified),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `invalid_header`: an \
            `If-None-Match` that is not a list of entity tags.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the admin token is not a user.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`payment_not_found`: unknown, or of another customer's \
            order.", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn get(
    api: web::Data<dyn PaymentApi>,
    owners: web::Data<dyn OrderOwners>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<PaymentId>,
) -> Result<HttpResponse, Problem> {
    let viewer = rules::viewer(&principal)?;
    let id = id.into_inner();
    let payment = api.get(id).await.map_err(kernel::http::problem)?;
    if !sees(owners.get_ref(), viewer, payment.order_id).await? {
        // Exactly the answer for an unknown payment.
        return Err(kernel::http::problem(PaymentError::NotFound(id)));
    }
    kernel::http::cached_json(&req, Caching::Private, &payment)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The order whose payments to list.
    order_id: OrderId,
}

/// Every payment of one order, oldest first.
#[derive(Serialize, ToSchema)]
struct PaymentList {
    payments: Vec<Payment>,
}

/// List an order's payments
///
/// Oldest first: any declined attempts, then at most one captured (or, once refunded,
/// `refunded`) payment; at most the newest 100 (older declined attempts are left out).
/// An order that was never charged, or that does not exist, has none; so, for a
/// customer, has another customer's order (`support` and `admin` see every order's
/// payments).
#[utoipa::path(
    get,
    path = "/payments",
    tag = "payments",
    operation_id = "list_payments",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The order's payments (possibly none).",
            body = PaymentList),
        (status = 400, description = "`invalid_query`: `order_id` missing or not a UUID, or an \
            unknown parameter.", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the admin token is not a user.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn list(
    api: web::Data<dyn PaymentApi>,
    owners: web::Data<dyn OrderOwners>,
    principal: Principal,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let viewer = rules::viewer(&principal)?;
    if !sees(owners.get_ref(), viewer, query.order_id).await? {
        // Exactly the answer for an order that does not exist.
        return Ok(HttpResponse::Ok().json(PaymentList { payments: vec![] }));
    }
    let payments = api
        .for_order(query.order_id)
        .await
        .map_err(kernel::http::problem)?;
    Ok(HttpResponse::Ok().json(PaymentList { payments }))
}
