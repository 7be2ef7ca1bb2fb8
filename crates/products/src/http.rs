//! `/products` routes: JSON in, [`ProductApi`] calls, JSON or problem+json out. The one
//! place that maps [`ProductError`] to HTTP.

use actix_web::{HttpRequest, HttpResponse, web};
use kernel::http::{Caching, JsonBody, PROBLEM_JSON};
use kernel::openapi::{
    NotModified, PayloadTooLarge, Revalidate, Routes, ServiceUnavailable, Unauthenticated,
    UnsupportedMediaType,
};
use kernel::{MoneyInput, PageRequest, Principal, Problem, ProductId, Validation};
use products_api::{NewProduct, Product, ProductApi, ProductChanges, ProductPage};
use serde::Deserialize;
use utoipa::openapi::schema::{Object, ObjectBuilder, OneOf, OneOfBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};

use crate::{domain, rules};

/// The `/products` routes, each served at the method and path its `#[utoipa::path]`
/// declares (and so documented).
pub fn endpoints() -> Routes {
    Routes::default()
        .add(__path_create, create)
        .add(__path_list, list)
        .add(__path_get, get)
        .add(__path_update, update)
        .add(__path_restock, restock)
}

/// Mounts `/products`. Expects `web::Data<dyn ProductApi>` in the app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    endpoints().mount(cfg);
}

/// A new product.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewProduct)]
struct CreateBody {
    #[schema(required = true, schema_with = name_schema)]
    name: Option<String>,
    #[schema(schema_with = description_schema)]
    description: Option<String>,
    #[schema(required = true, schema_with = price_schema)]
    price: Option<MoneyInput>,
    /// 0 to 1,000,000,000; defaults to 0. An integral number (`20.0`) is the integer it is.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000, examples(20))]
    #[serde(default, deserialize_with = "kernel::input::integer")]
    stock: Option<i64>,
}

fn name_schema() -> Object {
    kernel::input::line_schema(domain::NAME_CHARS, "The product's name.")
        .examples(["Mug"])
        .build()
}

fn new_name_schema() -> Object {
    kernel::input::or_null(kernel::input::line_schema(
        domain::NAME_CHARS,
        "A new name.",
    ))
}

fn description_schema() -> Object {
    kernel::input::or_null(
        kernel::input::text_schema(
            domain::DESCRIPTION_CHARS,
            "What the product is; absent or `null` is `\"\"` at creation and leaves it as it \
             is in a change.",
        )
        .examples(["Stoneware, 350 ml"]),
    )
}

fn price() -> OneOf {
    MoneyInput::schema_within(
        Some(domain::MAX_PRICE),
        "The price: more than 0 and at most 1,000,000,000.00",
    )
}

fn price_schema() -> Schema {
    Schema::OneOf(price())
}

fn new_price_schema() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(Schema::OneOf(price()))
            .description(Some(
                "A new price (for new orders); `null` leaves it as it is.",
            ))
            .build(),
    )
}

/// Create a product
///
/// `description` defaults to `""` and `stock` to `0`. A missing or invalid field is `422`
/// with one entry per field in `errors`.
#[utoipa::path(
    post,
    path = "/products",
    tag = "products",
    operation_id = "create_product",
    security(("bearer" = ["catalog", "admin"])),
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created.", body = Product,
            headers(("Location" = String, description = "`/products/{id}` of the new product"))),
        (status = 400, description = "`malformed_json`, or `invalid_body`: not a JSON object, a \
            wrong JSON type (a `price` that is neither string nor number) or an unknown field.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the caller holds neither `catalog` nor \
            `admin`.", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: a missing or invalid `name`, `price` \
            (not more than 0, over 1,000,000,000.00, more than two decimals, not a number) or \
            `stock` (see `errors`).", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn create(
    api: web::Data<dyn ProductApi>,
    principal: Principal,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<HttpResponse, Problem> {
    rules::may_change_catalog(&principal)?;
    let mut v = Validation::default();
    let name = v.require("name", body.name);
    let price = v
        .require("price", body.price)
        .and_then(|p| v.check("price", p.parse()));
    v.finish().map_err(Problem::validation)?;
    let (Some(name), Some(price)) = (name, price) else {
        unreachable!("validation passed")
    };
    let input = NewProduct {
        name,
        description: body.description.unwrap_or_default(),
        price,
        stock: body.stock.unwrap_or(0),
    };
    let product = api.create(input).await.map_err(kernel::http::problem)?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/products/{}", product.id)))
        .json(product))
}

/// Get a product
///
/// A conditional read: `ETag` and `Cache-Control` (see `CATALOG_MAX_AGE`), `304` for an
/// `If-None-Match` that names the current `ETag`. The `ETag` changes with anything in the
/// answer, stock and reservations included.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    operation_id = "get_product",
    params(("id" = ProductId, Path, description = "The product's id."), Revalidate),
    responses(
        (status = 200, description = "The product.", body = Product,
            headers(("ETag" = String, description = "A weak validator (a hash of the answer): \
                    send it in `If-None-Match`."),
                ("Cache-Control" = String, description = "`public, no-cache` (revalidate \
                    before each use), or `public, max-age=N` when the server runs with \
                    `CATALOG_MAX_AGE`; the same for every caller."))),
        (status = 304, response = NotModified),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `invalid_header`: \
            an `If-None-Match` that is not a list of entity tags.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 404, description = "`product_not_found`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn get(
    api: web::Data<dyn ProductApi>,
    req: HttpRequest,
    id: web::Path<ProductId>,
) -> Result<HttpResponse, Problem> {
    let product = api
        .get(id.into_inner())
        .await
        .map_err(kernel::http::problem)?;
    kernel::http::cached_json(&req, Caching::public(&req), &product)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// From 1; default 1; `page x page_size` at most 10,000.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10_000)]
    page: Option<u32>,
    /// 1 to 100; default 20.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    page_size: Option<u32>,
}

/// List the catalog
///
/// Newest first. Any other query parameter is `400`. A conditional read, as `GET
/// /products/{id}` is.
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    operation_id = "list_products",
    params(ListQuery, Revalidate),
    responses(
        (status = 200, description = "One page of products.", body = ProductPage,
            headers(("ETag" = String, description = "A weak validator (a hash of the answer): \
                    send it in `If-None-Match`."),
                ("Cache-Control" = String, description = "`public, no-cache` (revalidate \
                    before each use), or `public, max-age=N` when the server runs with \
                    `CATALOG_MAX_AGE`; the same for every caller."))),
        (status = 304, response = NotModified),
        (status = 400, description = "`invalid_query`: `page` below 1, `page_size` outside \
            1..=100, `page x page_size` over 10,000, a non-integer value or an unknown \
            parameter; `invalid_header`: an `If-None-Match` that is not a list of entity \
            tags.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn list(
    api: web::Data<dyn ProductApi>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let page = PageRequest::new(query.page, query.page_size)
        .map_err(|e| Problem::bad_request("invalid_query", e))?;
    let page = api.list(page).await.map_err(kernel::http::problem)?;
    kernel::http::cached_json(&req, Caching::public(&req), &page)
}

/// Changes to a product: any of the fields; an absent or `null` field stays as it is. Stock
/// changes only through restock and orders.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProductChanges)]
struct UpdateBody {
    #[schema(schema_with = new_name_schema)]
    name: Option<String>,
    #[schema(schema_with = description_schema)]
    description: Option<String>,
    #[schema(schema_with = new_price_schema)]
    price: Option<MoneyInput>,
}

/// Change a product
///
/// Only the fields sent change; an empty object answers `200` and changes nothing. A new
/// price applies to new orders only; a new name reaches the read model of existing orders,
/// eventually.
#[utoipa::path(
    patch,
    path = "/products/{id}",
    tag = "products",
    operation_id = "update_product",
    security(("bearer" = ["catalog", "admin"])),
    params(("id" = ProductId, Path, description = "The product's id.")),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The product after the change.", body = Product),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `malformed_json`, or \
            `invalid_body`: not a JSON object, a wrong JSON type or an unknown field.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the caller holds neither `catalog` nor \
            `admin`.", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`product_not_found`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: an invalid `name` or `price` (see \
            `errors`).", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn update(
    api: web::Data<dyn ProductApi>,
    principal: Principal,
    id: web::Path<ProductId>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<HttpResponse, Problem> {
    rules::may_change_catalog(&principal)?;
    let UpdateBody {
        name,
        description,
        price,
    } = body;
    let mut v = Validation::default();
    let price = price.and_then(|p| v.check("price", p.parse()));
    v.finish().map_err(Problem::validation)?;
    let changes = ProductChanges {
        name,
        description,
        price,
    };
    let product = api
        .update(id.into_inner(), changes)
        .await
        .map_err(kernel::http::problem)?;
    Ok(HttpResponse::Ok().json(product))
}

/// Units to add to a product's stock.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Restock)]
struct RestockBody {
    /// 1 to 1,000,000,000. An integral number (`5.0`) is the integer it is.
    #[schema(required = true, value_type = i64, minimum = 1, maximum = 1_000_000_000, examples(5))]
    #[serde(default, deserialize_with = "kernel::input::integer")]
    quantity: Option<i64>,
}

/// Restock a product
///
/// Adds `quantity` to `stock`. A restock that would lift `stock` above 1,000,000,000 is
/// `409 stock_limit` and changes nothing.
#[utoipa::path(
    post,
    path = "/products/{id}/restock",
    tag = "products",
    operation_id = "restock_product",
    security(("bearer" = ["catalog", "admin"])),
    params(("id" = ProductId, Path, description = "The product's id.")),
    request_body = RestockBody,
    responses(
        (status = 200, description = "The product after the restock.", body = Product),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `malformed_json`, or \
            `invalid_body`: not a JSON object, a wrong JSON type or an unknown field.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the caller holds neither `catalog` nor \
            `admin`.", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`product_not_found`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 409, description = "`stock_limit`: the stock would exceed 1,000,000,000.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: a missing `quantity`, or one outside \
            1..=1,000,000,000 (see `errors`).", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn restock(
    api: web::Data<dyn ProductApi>,
    principal: Principal,
    id: web::Path<ProductId>,
    JsonBody(body): JsonBody<RestockBody>,
) -> Result<HttpResponse, Problem> {
    rules::may_change_catalog(&principal)?;
    let mut v = Validation::default();
    let quantity = v.require("quantity", body.quantity);
    v.finish().map_err(Problem::validation)?;
    let product = api
        .restock(id.into_inner(), quantity.unwrap_or_default())
        .await
        .map_err(kernel::http::problem)?;
    Ok(HttpResponse::Ok().json(product))
}
