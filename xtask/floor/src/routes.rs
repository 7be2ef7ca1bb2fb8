//! The floor's routes: each a handful of lines around its statements (`db.rs`), answering
//! as emporium does: the same paths, status codes and JSON shapes, errors as problem JSON
//! with emporium's `code`s.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError, web};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use crate::db::{Conn, Id, Pool, Statements};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/ready", web::get().to(ready))
        .route("/queries/orders/{id}", web::get().to(order))
        .route("/queries/orders", web::get().to(user_orders))
        .route("/products/{id}", web::get().to(product))
        .route("/commands/orders", web::post().to(place));
}

/// A failure of the database or the pool: `500`, the cause on stderr.
#[derive(Debug)]
struct Failure(anyhow::Error);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure(error.into())
    }
}

impl ResponseError for Failure {
    fn error_response(&self) -> HttpResponse {
        eprintln!("bench-floor: {self}");
        problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "see the log")
    }
}

type Answer = Result<HttpResponse, Failure>;

/// A problem JSON as emporium's (its titles are RFC 9110's names).
fn problem(status: StatusCode, code: &str, detail: impl Into<String>) -> HttpResponse {
    let title = match status {
        StatusCode::UNPROCESSABLE_ENTITY => Some("Unprocessable Content"),
        status => status.canonical_reason(),
    };
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(json!({
            "type": format!("urn:emporium:problem:{code}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail.into(),
            "code": code,
        }))
}

fn json_text(mut response: actix_web::HttpResponseBuilder, body: String) -> HttpResponse {
    response.content_type("application/json").body(body)
}

/// The row `statement` finds by the path's `id`, or the answer emporium gives when there
/// is none: `400` for an id that is not a UUID, `404 <what>_not_found`.
async fn by_id(
    pool: &Pool,
    id: &str,
    statement: fn(&Statements) -> &Statement,
    what: &str,
) -> Result<Result<Row, HttpResponse>, Failure> {
    let Ok(id) = Uuid::parse_str(id) else {
        let detail = format!("{id:?} is not a UUID");
        return Ok(Err(problem(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            detail,
        )));
    };
    let conn = pool.get().await?;
    let Conn { client, statements } = &*conn;
    Ok(
        match client.query_opt(statement(statements), &[&Id(id)]).await? {
            Some(row) => Ok(row),
            None => Err(problem(
                StatusCode::NOT_FOUND,
                &format!("{what}_not_found"),
                format!("no {what} {id}"),
            )),
        },
    )
}

async fn ready() -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn order(pool: web::Data<Pool>, id: web::Path<String>) -> Answer {
    Ok(match by_id(&pool, &id, |s| &s.order, "order").await? {
        Ok(row) => {
            let mut response = HttpResponse::Ok();
            response.insert_header((header::ETAG, format!("\"{}\"", row.get::<_, i64>(0))));
            json_text(response, row.get(1))
        }
        Err(response) => response,
    })
}

/// The queries the bench sends: a user's orders, optionally a page.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    user_id: Uuid,
    page: Option<u32>,
    page_size: Option<u32>,
}

async fn user_orders(pool: web::Data<Pool>, query: web::Query<ListQuery>) -> Answer {
    // emporium's bounds: page from 1, page_size 1..=100, page x page_size at most 10,000.
    let (page, size) = (query.page.unwrap_or(1), query.page_size.unwrap_or(20));
    if page == 0 || !(1..=100).contains(&size) || u64::from(page) * u64::from(size) > 10_000 {
        let detail = format!("page {page} of size {size} is out of bounds");
        return Ok(problem(StatusCode::BAD_REQUEST, "invalid_query", detail));
    }
    let (offset, limit) = ((i64::from(page) - 1) * i64::from(size), i64::from(size));
    let conn = pool.get().await?;
    let Conn { client, statements } = &*conn;
    let row = client
        .query_one(
            &statements.user_orders,
            &[&Id(query.user_id), &offset, &limit],
        )
        .await?;
    let (total, orders): (i64, String) = (row.get(0), row.get(1));
    let pages = total.unsigned_abs().div_ceil(u64::from(size));
    let body = format!(
        r#"{{"orders":{orders},"total":{total},"page":{page},"page_size":{size},"total_pages":{pages}}}"#
    );
    Ok(json_text(HttpResponse::Ok(), body))
}

async fn product(pool: web::Data<Pool>, id: web::Path<String>) -> Answer {
    Ok(match by_id(&pool, &id, |s| &s.product, "product").await? {
        Ok(row) => json_text(HttpResponse::Ok(), row.get(0)),
        Err(response) => response,
    })
}

/// A new order, as the bench sends it (the floor has no caller to default `user_id` to).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    user_id: Uuid,
    items: Vec<NewLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLine {
    product_id: Uuid,
    quantity: i64,
}

/// emporium's rules for a new order's lines: 1 to 100, each quantity 1 to 10,000, each
/// product once.
fn invalid(order: &NewOrder) -> Option<String> {
    let lines = &order.items;
    if lines.is_empty() || lines.len() > 100 {
        return Some(format!(
            "items must hold 1 to 100 lines, got {}",
            lines.len()
        ));
    }
    lines.iter().enumerate().find_map(|(i, line)| {
        if !(1..=10_000).contains(&line.quantity) {
            Some(format!("items[{i}].quantity must be 1 to 10000"))
        } else if lines[..i].iter().any(|l| l.product_id == line.product_id) {
            Some(format!("items[{i}].product_id is already in the order"))
        } else {
            None
        }
    })
}

/// One transaction: the user, each line's stock (in product order, so that concurrent
/// placements lock rows in one order), the order with its total, its lines, the outbox
/// event, the notification; then `202` as emporium answers a placement.
async fn place(pool: web::Data<Pool>, body: web::Bytes) -> Answer {
    let order: NewOrder = match serde_json::from_slice(&body) {
        Ok(order) => order,
        Err(e) => {
            return Ok(problem(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                e.to_string(),
            ));
        }
    };
    if let Some(detail) = invalid(&order) {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            detail,
        ));
    }
    let mut conn = pool.get().await?;
    let Conn { client, statements } = &mut *conn;
    let tx = client.transaction().await?;
    let user = Id(order.user_id);
    let Some(row) = tx.query_opt(&statements.user, &[&user]).await? else {
        let detail = format!("no user {}", user.0);
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_user",
            detail,
        ));
    };
    let (user_name, user_email, active): (String, String, bool) =
        (row.get(0), row.get(1), row.get(2));
    if !active {
        let detail = format!("user {} is inactive", user.0);
        return Ok(problem(StatusCode::CONFLICT, "user_inactive", detail));
    }
    let lines = &order.items;
    let mut taken: Vec<Option<(String, String)>> = vec![None; lines.len()];
    let mut by_product: Vec<usize> = (0..lines.len()).collect();
    by_product.sort_by_key(|&i| lines[i].product_id);
    for i in by_product {
        let (product, quantity) = (Id(lines[i].product_id), lines[i].quantity);
        let row = tx
            .query_opt(&statements.take_stock, &[&product, &quantity])
            .await?;
        let Some(row) = row else {
            return Ok(match tx.query_opt(&statements.stock, &[&product]).await? {
                None => problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_product",
                    format!("no product {}", product.0),
                ),
                Some(row) => problem(
                    StatusCode::CONFLICT,
                    "insufficient_stock",
                    format!(
                        "product {} has {} in stock, {quantity} asked",
                        product.0,
                        row.get::<_, i64>(0)
                    ),
                ),
            });
        };
        taken[i] = Some((row.get(0), row.get(1)));
    }
    let (names, prices): (Vec<String>, Vec<String>) = taken.into_iter().flatten().unzip();
    let products: Vec<Id> = lines.iter().map(|l| Id(l.product_id)).collect();
    let quantities: Vec<i64> = lines.iter().map(|l| l.quantity).collect();
    let id = Id(Uuid::now_v7());
    let total: String = tx
        .query_one(
            &statements.insert_order,
            &[&id, &user, &prices, &quantities],
        )
        .await?
        .get(0);
    tx.execute(
        &statements.insert_lines,
        &[&id, &products, &names, &quantities, &prices],
    )
    .await?;
    let items: Vec<_> = (0..lines.len())
        .map(|i| {
            let price: Decimal = prices[i].parse().expect("a numeric from Postgres");
            let subtotal = price * Decimal::from(quantities[i]);
            json!({"product_id": lines[i].product_id, "product_name": names[i],
                   "quantity": quantities[i], "price": prices[i],
                   "subtotal": format!("{subtotal:.2}")})
        })
        .collect();
    let payload = json!({"user_id": user.0, "user_name": user_name, "user_email": user_email,
                         "items": items, "total": total});
    let event = Id(Uuid::now_v7());
    tx.execute(
        &statements.insert_event,
        &[&event, &id, &payload.to_string()],
    )
    .await?;
    tx.execute(&statements.notify, &[]).await?;
    tx.commit().await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::ETAG, "\"1\""))
        .insert_header((header::LOCATION, format!("/queries/orders/{}", id.0)))
        .json(json!({"order_id": id.0, "status": "pending", "version": 1})))
}
