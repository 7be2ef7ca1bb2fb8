//! `/products` routes: JSON in, [`ProductApi`] calls, JSON or problem+json out. The one
//! place that maps [`ProductError`] to HTTP.

use actix_web::{HttpResponse, web};
use kernel::http::JsonBody;
use kernel::{MoneyInput, PageRequest, Problem, ProductId, Validation};
use product_api::{NewProduct, ProductApi, ProductChanges, ProductError};
use serde::Deserialize;

/// Mounts `/products`. Expects `web::Data<dyn ProductApi>` in the app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/products")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/products/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update)),
    )
    .service(web::resource("/products/{id}/restock").route(web::post().to(restock)));
}

fn problem(error: ProductError) -> Problem {
    match error {
        ProductError::NotFound(id) => {
            Problem::not_found("product_not_found", format!("product {id} does not exist"))
        }
        ProductError::UnknownProducts(ids) => {
            let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
            Problem::new(
                422,
                "unknown_product",
                format!("unknown products: {}", ids.join(", ")),
            )
        }
        e @ ProductError::InsufficientStock { .. } => Problem::conflict("insufficient_stock", e),
        e @ ProductError::StockLimit { .. } => Problem::conflict("stock_limit", e),
        e @ ProductError::ReservationNotFound(_) => Problem::not_found("reservation_not_found", e),
        e @ ProductError::ReservationClosed { .. } => Problem::conflict("reservation_closed", e),
        ProductError::Invalid(errors) => Problem::validation(errors),
        ProductError::Unexpected(e) => kernel::http::unexpected(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: Option<String>,
    description: Option<String>,
    price: Option<MoneyInput>,
    stock: Option<i64>,
}

async fn create(
    api: web::Data<dyn ProductApi>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<HttpResponse, Problem> {
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
    let product = api.create(input).await.map_err(problem)?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/products/{}", product.id)))
        .json(product))
}

async fn get(
    api: web::Data<dyn ProductApi>,
    id: web::Path<ProductId>,
) -> Result<HttpResponse, Problem> {
    let product = api.get(id.into_inner()).await.map_err(problem)?;
    Ok(HttpResponse::Ok().json(product))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    page: Option<u32>,
    page_size: Option<u32>,
}

async fn list(
    api: web::Data<dyn ProductApi>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let page = PageRequest::new(query.page, query.page_size)
        .map_err(|e| Problem::bad_request("invalid_query", e))?;
    let page = api.list(page).await.map_err(problem)?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    description: Option<String>,
    price: Option<MoneyInput>,
}

async fn update(
    api: web::Data<dyn ProductApi>,
    id: web::Path<ProductId>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<HttpResponse, Problem> {
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
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(product))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestockBody {
    quantity: Option<i64>,
}

async fn restock(
    api: web::Data<dyn ProductApi>,
    id: web::Path<ProductId>,
    JsonBody(body): JsonBody<RestockBody>,
) -> Result<HttpResponse, Problem> {
    let mut v = Validation::default();
    let quantity = v.require("quantity", body.quantity);
    v.finish().map_err(Problem::validation)?;
    let product = api
        .restock(id.into_inner(), quantity.unwrap_or_default())
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(product))
}
