//! `/commands/orders`: JSON in, [`OrderCommands`] calls, `202` or problem+json out
//! (each error answered as `orders-api` states it); `headers.rs` parses `If-Match` and
//! `Idempotency-Key`.

mod headers;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use kernel::http::{JsonBody, PROBLEM_JSON};
use kernel::openapi::{
    PayloadTooLarge, Routes, ServiceUnavailable, Unauthenticated, UnsupportedMediaType,
};
use kernel::{OrderId, Principal, Problem, ProductId, UserId, Validation};
use orders_api::rules;
use orders_api::{Accepted, NewOrder, NewOrderLine, OrderCommands};
use serde::Deserialize;
use utoipa::ToSchema;

use headers::{IdempotencyKey, IfMatch, expected_version, idempotency_key};

/// The order command routes, each served at the method and path its `#[utoipa::path]` declares (and
/// so documented).
pub fn endpoints() -> Routes {
    Routes::default()
        .add(__path_place, place)
        .add(__path_confirm, confirm)
        .add(__path_ship, ship)
        .add(__path_deliver, deliver)
        .add(__path_cancel, cancel)
}

/// Mounts the order command routes. Expects `web::Data<dyn OrderCommands>` in the app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    endpoints().mount(cfg);
}

fn accepted(answer: Accepted) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((header::ETAG, format!("\"{}\"", answer.version)))
        .insert_header((
            header::LOCATION,
            format!("/queries/orders/{}", answer.order_id),
        ))
        .json(answer)
}

/// A new order. Prices come from the catalog; a client cannot set them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewOrder)]
struct PlaceBody {
    /// Whose order: an existing, active user. A customer omits it (or names themself);
    /// `support` and `admin` may name anyone (themself when omitted).
    #[schema(value_type = Option<UserId>)]
    user_id: Option<UserId>,
    /// 1 to 100 lines, each product at most once.
    #[schema(required = true, value_type = Vec<ItemBody>, min_items = 1, max_items = 100)]
    items: Option<Vec<ItemBody>>,
}

/// One line of a new order.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewOrderLine)]
struct ItemBody {
    /// An existing product.
    #[schema(required = true, value_type = ProductId)]
    product_id: Option<ProductId>,
    /// 1 to 10,000. An integral number (`2.0`) is the integer it is.
    #[schema(required = true, value_type = i64, minimum = 1, maximum = 10_000, examples(2))]
    #[serde(default, deserialize_with = "kernel::input::integer")]
    quantity: Option<i64>,
}

/// Place an order
///
/// Creates a `pending` order at version 1 and reserves the stock of every line, all or
/// nothing: if any line lacks stock the answer is `409 insufficient_stock` naming the
/// product, and nothing stays reserved. `total` is the exact sum of catalog price x
/// quantity at this moment. A pending order that is not confirmed within `ORDER_EXPIRY`
/// (default 30 minutes) is cancelled with reason `expired` and its stock released.
///
/// `Idempotency-Key`: a repeat with the same key and body answers the first answer again and
/// creates nothing; the same key with another body is `409 idempotency_key_reused`. Only
/// successful answers are stored, so after a failure (say `409 insufficient_stock`) the same
/// key may be retried. A repeat while the first request is still running waits up to 5 s,
/// then answers `409 idempotency_key_in_use`.
#[utoipa::path(
    post,
    path = "/commands/orders",
    tag = "orders",
    operation_id = "place_order",
    security(("bearer" = [])),
    params(IdempotencyKey),
    request_body = PlaceBody,
    responses(
        (status = 202, description = "Placed: status `pending`, version 1.", body = Accepted,
            headers(
                ("ETag" = String, description = "The new version, quoted: `\"1\"`."),
                ("Location" = String, description = "`/queries/orders/{id}`"),
            )),
        (status = 400, description = "`malformed_json`, or `invalid_body`: not a JSON object, a \
            wrong JSON type or an unknown field; `invalid_header`: an empty `Idempotency-Key` or \
            one over 255 characters.", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: a customer named another user in \
            `user_id`, or the admin token (not a user).", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 409, description = "`user_inactive`, `too_many_pending_orders` (the \
            customer holds `MAX_PENDING_ORDERS`, default 20, pending orders), \
            `insufficient_stock` (names the product), `total_too_large` (the total at the \
            catalog's prices now is over 9,999,999,999.99, the most one payment charges), \
            `idempotency_key_reused` (the key was used with another body) or \
            `idempotency_key_in_use` (a request with this key is still running).",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: a missing field, no items or more \
            than 100, a quantity outside 1..=10,000, or the same product twice (see `errors`); \
            `unknown_user`; \
            `unknown_product`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn place(
    commands: web::Data<dyn OrderCommands>,
    principal: Principal,
    req: HttpRequest,
    JsonBody(body): JsonBody<PlaceBody>,
) -> Result<HttpResponse, Problem> {
    let user_id = rules::placer(&principal, body.user_id)?;
    let key = idempotency_key(&req)?;
    let mut validation = Validation::default();
    let items = validation.require("items", body.items).unwrap_or_default();
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let product_id = validation.require(&format!("items[{i}].product_id"), item.product_id);
        let quantity = validation.require(&format!("items[{i}].quantity"), item.quantity);
        if let (Some(product_id), Some(quantity)) = (product_id, quantity) {
            lines.push(NewOrderLine {
                product_id,
                quantity,
            });
        }
    }
    validation.finish().map_err(Problem::validation)?;
    let answer = commands
        .place(
            NewOrder {
                user_id,
                items: lines,
            },
            key,
        )
        .await
        .map_err(kernel::http::problem)?;
    Ok(accepted(answer))
}

/// The longest payment token.
const TOKEN_CHARS: usize = 255;

/// How to pay for an order.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConfirmOrder)]
struct ConfirmBody {
    /// A token of the payment gateway: 1 to 255 visible ASCII characters (no space),
    /// else `422 validation_failed`. The built-in simulated gateway knows `tok_visa`
    /// (succeeds), `tok_declined` (`402`), `tok_gateway_error` (`502`), `tok_timeout` and
    /// `tok_timeout_failed` (`504`); any other token is `422 invalid_payment_token`.
    #[schema(required = true, value_type = String, pattern = r"^[!-~]{1,255}$",
        examples("tok_visa"))]
    payment_token: Option<String>,
}

/// Confirm an order
///
/// Charges the order's `total` through the payments module, then commits its stock
/// reservation: `pending -> confirmed`. A declined card is `402` (the order stays `pending`,
/// its stock stays reserved); a gateway failure is `502` (nothing was charged; retrying is
/// safe). Once an order has a captured payment, confirming charges nothing more.
///
/// `If-Match: "<version>"` (or `W/"<version>"`, or `*`): a stale version is `412` and
/// changes nothing. Without it the command still runs under the order's row lock, so a
/// concurrent change makes it fail (`409`), never overwrite.
#[utoipa::path(
    post,
    path = "/commands/orders/{id}/confirm",
    tag = "orders",
    operation_id = "confirm_order",
    security(("bearer" = [])),
    params(
        ("id" = OrderId, Path, description = "The order's id."),
        IfMatch,
    ),
    request_body = ConfirmBody,
    responses(
        (status = 202, description = "Confirmed: status `confirmed`.", body = Accepted,
            headers(
                ("ETag" = String, description = "The new version, quoted: `\"2\"`."),
                ("Location" = String, description = "`/queries/orders/{id}`"),
            )),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `malformed_json`, or \
            `invalid_body`: not a JSON object, a wrong JSON type or an unknown field; \
            `invalid_header`: an `If-Match` that is not a version.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the admin token is not a user.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 402, description = "`payment_declined`: the order stays `pending` and its \
            stock reserved; confirm again with another token.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 404, description = "`order_not_found`: unknown, or another customer's.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 409, description = "`user_inactive`: the calling customer is inactive; \
            `invalid_transition`: the order is not `pending`; \
            `concurrent_modification`: another command changed it meanwhile; \
            `payment_pending`: another confirm of the order is charging it right now, or \
            another payment of the order is still `pending` (nothing was charged; retry once \
            it has settled). Of concurrent confirms exactly one succeeds.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 412, description = "`version_mismatch`: `If-Match` is not the current \
            version; nothing changed.", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: no `payment_token`, or one \
            that is not 1 to 255 visible ASCII characters; \
            `invalid_payment_token`: the gateway does not know the token.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 502, description = "`payment_gateway_error`: the gateway failed; nothing was \
            charged (the payment is `failed`), the order stays `pending`, and retrying is safe.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
        (status = 504, description = "`payment_pending`: the gateway did not answer within \
            `PAYMENT_GATEWAY_TIMEOUT`; the payment stays `pending` until its outcome is \
            settled, and the order is confirmed then if it was charged. Do not pay again.",
            body = Problem, content_type = PROBLEM_JSON),
    )
)]
async fn confirm(
    commands: web::Data<dyn OrderCommands>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<OrderId>,
    JsonBody(body): JsonBody<ConfirmBody>,
) -> Result<HttpResponse, Problem> {
    let scope = rules::command_scope(&principal)?;
    let expected = expected_version(&req)?;
    let mut validation = Validation::default();
    let token = validation
        .require("payment_token", body.payment_token)
        .and_then(|t| {
            let shaped = kernel::input::visible_ascii(&t, TOKEN_CHARS).map(|_| ());
            validation.check("payment_token", shaped).map(|()| t)
        });
    validation.finish().map_err(Problem::validation)?;
    let answer = commands
        .confirm(*id, token.unwrap_or_default(), expected, scope)
        .await
        .map_err(kernel::http::problem)?;
    Ok(accepted(answer))
}

/// Ship an order
///
/// `confirmed -> shipped`. Takes no body. `If-Match` as for confirm.
#[utoipa::path(
    post,
    path = "/commands/orders/{id}/ship",
    tag = "orders",
    operation_id = "ship_order",
    security(("bearer" = ["fulfilment", "admin"])),
    params(
        ("id" = OrderId, Path, description = "The order's id."),
        IfMatch,
    ),
    responses(
        (status = 202, description = "Shipped: status `shipped`.", body = Accepted,
            headers(
                ("ETag" = String, description = "The new version, quoted."),
                ("Location" = String, description = "`/queries/orders/{id}`"),
            )),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `invalid_header`: \
            an `If-Match` that is not a version.", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the caller holds neither `fulfilment` \
            nor `admin`.", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`order_not_found`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 409, description = "`invalid_transition`: the order is not `confirmed`; \
            `concurrent_modification`.", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "`version_mismatch`: nothing changed.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn ship(
    commands: web::Data<dyn OrderCommands>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, Problem> {
    rules::may_fulfil(&principal)?;
    let answer = commands
        .ship(*id, expected_version(&req)?)
        .await
        .map_err(kernel::http::problem)?;
    Ok(accepted(answer))
}

/// Deliver an order
///
/// `shipped -> delivered`. Takes no body. `If-Match` as for confirm.
#[utoipa::path(
    post,
    path = "/commands/orders/{id}/deliver",
    tag = "orders",
    operation_id = "deliver_order",
    security(("bearer" = ["fulfilment", "admin"])),
    params(
        ("id" = OrderId, Path, description = "The order's id."),
        IfMatch,
    ),
    responses(
        (status = 202, description = "Delivered: status `delivered`.", body = Accepted,
            headers(
                ("ETag" = String, description = "The new version, quoted."),
                ("Location" = String, description = "`/queries/orders/{id}`"),
            )),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `invalid_header`: \
            an `If-Match` that is not a version.", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the caller holds neither `fulfilment` \
            nor `admin`.", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`order_not_found`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 409, description = "`invalid_transition`: the order is not `shipped`; \
            `concurrent_modification`.", body = Problem, content_type = PROBLEM_JSON),
        (status = 412, description = "`version_mismatch`: nothing changed.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn deliver(
    commands: web::Data<dyn OrderCommands>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, Problem> {
    rules::may_fulfil(&principal)?;
    let answer = commands
        .deliver(*id, expected_version(&req)?)
        .await
        .map_err(kernel::http::problem)?;
    Ok(accepted(answer))
}

fn reason_schema() -> utoipa::openapi::schema::Object {
    kernel::input::line_schema(
        crate::domain::Reason::MAX_CHARS,
        "Why the order is cancelled.",
    )
    .examples(["changed my mind"])
    .build()
}

/// Why an order is cancelled.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CancelOrder)]
struct CancelBody {
    #[schema(required = true, schema_with = reason_schema)]
    reason: Option<String>,
}

/// Cancel an order
///
/// From `pending`, `confirmed` or `shipped`. A pending order's reservation is released; a
/// confirmed or shipped order's payment is refunded and its stock returned (if the refund
/// cannot happen at once, the order saga finishes it). `If-Match` as for confirm.
#[utoipa::path(
    post,
    path = "/commands/orders/{id}/cancel",
    tag = "orders",
    operation_id = "cancel_order",
    security(("bearer" = [])),
    params(
        ("id" = OrderId, Path, description = "The order's id."),
        IfMatch,
    ),
    request_body = CancelBody,
    responses(
        (status = 202, description = "Cancelled: status `cancelled`.", body = Accepted,
            headers(
                ("ETag" = String, description = "The new version, quoted."),
                ("Location" = String, description = "`/queries/orders/{id}`"),
            )),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `malformed_json`, or \
            `invalid_body`: not a JSON object, a wrong JSON type or an unknown field; \
            `invalid_header`: an `If-Match` that is not a version.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: a customer cancelling their shipped \
            order (only `support` and `admin` may), or the admin token (not a user).",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`order_not_found`: unknown, or another customer's.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 409, description = "`invalid_transition`: the order is `delivered` or already \
            `cancelled`; `concurrent_modification`; `payment_pending`: a confirm is charging \
            the order right now (nothing changed; try again once it has answered).",
            body = Problem,
            content_type = PROBLEM_JSON),
        (status = 412, description = "`version_mismatch`: nothing changed.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: a missing `reason`, or one outside \
            1..=500 characters (see `errors`).", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn cancel(
    commands: web::Data<dyn OrderCommands>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<OrderId>,
    JsonBody(body): JsonBody<CancelBody>,
) -> Result<HttpResponse, Problem> {
    let scope = rules::command_scope(&principal)?;
    let expected = expected_version(&req)?;
    let mut validation = Validation::default();
    let reason = validation.require("reason", body.reason);
    validation.finish().map_err(Problem::validation)?;
    let answer = commands
        .cancel(*id, reason.unwrap_or_default(), expected, scope)
        .await
        .map_err(kernel::http::problem)?;
    Ok(accepted(answer))
}
