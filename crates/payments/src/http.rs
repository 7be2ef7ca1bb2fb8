//! `/payments` routes: read-only views of payments over [`PaymentApi`]. Charges and refunds
//! happen through the orders module, never over HTTP here. The one place that maps
//! [`PaymentError`] to HTTP.

use actix_web::{HttpResponse, web};
use kernel::http::PROBLEM_JSON;
use kernel::openapi::{Routes, ServiceUnavailable};
use kernel::{OrderId, PaymentId, Problem};
use payments_api::{Payment, PaymentApi};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The `/payments` routes, each served at the method and path its `#[utoipa::path]`
/// declares (and so documented).
pub fn endpoints() -> Routes {
    Routes::default()
        .add(__path_list, list)
        .add(__path_get, get)
}

/// Mounts `/payments`. Expects `web::Data<dyn PaymentApi>` in the app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    endpoints().mount(cfg);
}

/// Get a payment
#[utoipa::path(
    get,
    path = "/payments/{id}",
    tag = "payments",
    operation_id = "get_payment",
    params(("id" = PaymentId, Path, description = "The payment's id.")),
    responses(
        (status = 200, description = "The payment.", body = Payment),
        (status = 400, description = "`invalid_path`: the id is not a UUID.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 404, description = "`payment_not_found`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn get(
    api: web::Data<dyn PaymentApi>,
    id: web::Path<PaymentId>,
) -> Result<HttpResponse, Problem> {
    let payment = api
        .get(id.into_inner())
        .await
        .map_err(kernel::http::problem)?;
    Ok(HttpResponse::Ok().json(payment))
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
/// `refunded`) payment. An order that was never charged, or that does not exist, has none.
#[utoipa::path(
    get,
    path = "/payments",
    tag = "payments",
    operation_id = "list_payments",
    params(ListQuery),
    responses(
        (status = 200, description = "The order's payments (possibly none).",
            body = PaymentList),
        (status = 400, description = "`invalid_query`: `order_id` missing or not a UUID, or an \
            unknown parameter.", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn list(
    api: web::Data<dyn PaymentApi>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let payments = api
        .for_order(query.order_id)
        .await
        .map_err(kernel::http::problem)?;
    Ok(HttpResponse::Ok().json(PaymentList { payments }))
}
