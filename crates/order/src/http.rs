//! `/commands/orders` and `/queries/orders`: JSON in, [`OrderCommands`] /
//! [`OrderQueries`] calls, JSON or problem+json out. The one place that maps
//! [`OrderError`] to HTTP.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use kernel::http::JsonBody;
use kernel::{FieldError, OrderId, PageRequest, Problem, ProductId, UserId, Validation};
use order_api::{
    Accepted, ExpectedVersion, NewOrder, NewOrderLine, OrderCommands, OrderError, OrderFilter,
    OrderQueries, OrderStatus, Read,
};
use serde::Deserialize;

/// Mounts the order routes. Expects `web::Data<dyn OrderCommands>` and
/// `web::Data<dyn OrderQueries>` in the app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/commands/orders", web::post().to(place))
        .route("/commands/orders/{id}/confirm", web::post().to(confirm))
        .route("/commands/orders/{id}/ship", web::post().to(ship))
        .route("/commands/orders/{id}/deliver", web::post().to(deliver))
        .route("/commands/orders/{id}/cancel", web::post().to(cancel))
        .route("/queries/orders", web::get().to(list))
        .route("/queries/orders/{id}", web::get().to(get));
}

fn problem(error: OrderError) -> Problem {
    match error {
        e @ OrderError::NotFound(_) => Problem::not_found("order_not_found", e),
        OrderError::Invalid(errors) => Problem::validation(errors),
        e @ OrderError::UnknownUser(_) => Problem::new(422, "unknown_user", e),
        e @ OrderError::UserInactive(_) => Problem::conflict("user_inactive", e),
        OrderError::UnknownProducts(ids) => {
            let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
            Problem::new(
                422,
                "unknown_product",
                format!("unknown products: {}", ids.join(", ")),
            )
        }
        e @ OrderError::InsufficientStock { .. } => Problem::conflict("insufficient_stock", e),
        e @ OrderError::InvalidTransition { .. } => Problem::conflict("invalid_transition", e),
        e @ OrderError::VersionMismatch { .. } => Problem::new(412, "version_mismatch", e),
        e @ OrderError::Conflict(_) => Problem::conflict("concurrent_modification", e),
        e @ OrderError::IdempotencyKeyReused(_) => Problem::conflict("idempotency_key_reused", e),
        e @ OrderError::IdempotencyKeyInUse(_) => Problem::conflict("idempotency_key_in_use", e),
        e @ OrderError::PaymentDeclined(_) => Problem::new(402, "payment_declined", e),
        OrderError::PaymentGateway(why) => Problem::new(
            502,
            "payment_gateway_error",
            format!("the payment gateway failed ({why}); nothing was charged, retrying is safe"),
        ),
        OrderError::InvalidPaymentToken(token) => Problem {
            errors: vec![FieldError::new(
                "payment_token",
                format!("{token:?} is not a known payment token"),
            )],
            ..Problem::new(
                422,
                "invalid_payment_token",
                format!("payment token {token:?} is not accepted"),
            )
        },
        OrderError::Unexpected(e) => kernel::http::unexpected(e),
    }
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

/// `If-Match: "3"` (or `W/"3"`, or `*` for any version).
fn expected_version(req: &HttpRequest) -> Result<ExpectedVersion, Problem> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let invalid = || {
        Problem::bad_request(
            "invalid_header",
            "If-Match must be an order version such as \"3\"",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    if text == "*" {
        return Ok(None);
    }
    let quoted = text.strip_prefix("W/").unwrap_or(text);
    let bare = quoted
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(quoted);
    bare.parse::<i64>().map(Some).map_err(|_| invalid())
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, Problem> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255);
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        Problem::bad_request(
            "invalid_header",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceBody {
    user_id: Option<UserId>,
    items: Option<Vec<ItemBody>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemBody {
    product_id: Option<ProductId>,
    quantity: Option<i64>,
}

async fn place(
    commands: web::Data<dyn OrderCommands>,
    req: HttpRequest,
    JsonBody(body): JsonBody<PlaceBody>,
) -> Result<HttpResponse, Problem> {
    let key = idempotency_key(&req)?;
    let mut v = Validation::default();
    let user_id = v.require("user_id", body.user_id);
    let items = v.require("items", body.items).unwrap_or_default();
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let product_id = v.require(&format!("items[{i}].product_id"), item.product_id);
        let quantity = v.require(&format!("items[{i}].quantity"), item.quantity);
        if let (Some(product_id), Some(quantity)) = (product_id, quantity) {
            lines.push(NewOrderLine {
                product_id,
                quantity,
            });
        }
    }
    v.finish().map_err(Problem::validation)?;
    let Some(user_id) = user_id else {
        return Err(Problem::validation(vec![]));
    };
    let answer = commands
        .place(
            NewOrder {
                user_id,
                items: lines,
            },
            key,
        )
        .await
        .map_err(problem)?;
    Ok(accepted(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    payment_token: Option<String>,
}

async fn confirm(
    commands: web::Data<dyn OrderCommands>,
    req: HttpRequest,
    id: web::Path<OrderId>,
    JsonBody(body): JsonBody<ConfirmBody>,
) -> Result<HttpResponse, Problem> {
    let expected = expected_version(&req)?;
    let mut v = Validation::default();
    let token = v.require("payment_token", body.payment_token);
    v.finish().map_err(Problem::validation)?;
    let answer = commands
        .confirm(*id, token.unwrap_or_default(), expected)
        .await
        .map_err(problem)?;
    Ok(accepted(answer))
}

async fn ship(
    commands: web::Data<dyn OrderCommands>,
    req: HttpRequest,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, Problem> {
    let answer = commands
        .ship(*id, expected_version(&req)?)
        .await
        .map_err(problem)?;
    Ok(accepted(answer))
}

async fn deliver(
    commands: web::Data<dyn OrderCommands>,
    req: HttpRequest,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, Problem> {
    let answer = commands
        .deliver(*id, expected_version(&req)?)
        .await
        .map_err(problem)?;
    Ok(accepted(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

async fn cancel(
    commands: web::Data<dyn OrderCommands>,
    req: HttpRequest,
    id: web::Path<OrderId>,
    JsonBody(body): JsonBody<CancelBody>,
) -> Result<HttpResponse, Problem> {
    let expected = expected_version(&req)?;
    let mut v = Validation::default();
    let reason = v.require("reason", body.reason);
    v.finish().map_err(Problem::validation)?;
    let answer = commands
        .cancel(*id, reason.unwrap_or_default(), expected)
        .await
        .map_err(problem)?;
    Ok(accepted(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetQuery {
    min_version: Option<u32>,
}

async fn get(
    queries: web::Data<dyn OrderQueries>,
    id: web::Path<OrderId>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, Problem> {
    let read = queries
        .get(*id, query.min_version.map(i64::from))
        .await
        .map_err(problem)?;
    let (view, stale) = match read {
        Read::Fresh(view) => (view, false),
        Read::Stale(view) => (view, true),
    };
    let mut response = HttpResponse::Ok();
    response.insert_header((header::ETAG, format!("\"{}\"", view.version)));
    if stale {
        response.insert_header(("X-Read-Model-Stale", "true"));
    }
    Ok(response.json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    user_id: Option<UserId>,
    status: Option<String>,
    page: Option<u32>,
    page_size: Option<u32>,
}

async fn list(
    queries: web::Data<dyn OrderQueries>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let query = query.into_inner();
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(OrderStatus::parse(text).ok_or_else(|| {
            Problem::bad_request(
                "invalid_query",
                format!("status must be one of pending, confirmed, shipped, delivered, cancelled; got {text:?}"),
            )
        })?),
    };
    let page = PageRequest::new(query.page, query.page_size)
        .map_err(|e| Problem::bad_request("invalid_query", e))?;
    let filter = OrderFilter {
        user_id: query.user_id,
        status,
    };
    let page = queries.list(filter, page).await.map_err(problem)?;
    Ok(HttpResponse::Ok().json(page))
}
