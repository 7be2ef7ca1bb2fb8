//! Health: `/health/live` (the process runs) and `/health/ready` (the databases answer,
//! on connections of their own), registered like every other route from their
//! `#[utoipa::path]`s.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use kernel::Problem;
use kernel::db;
use kernel::openapi::{Routes, ServiceUnavailable};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Modules;

/// The health routes.
pub(crate) fn endpoints() -> Routes {
    Routes::default()
        .add(__path_live, live)
        .add(__path_ready, ready)
}

/// What `/health/live` and `/health/ready` answer.
#[derive(Serialize, ToSchema)]
#[schema(as = HealthStatus)]
struct Health {
    /// `live` or `ready`.
    #[schema(value_type = String, examples("ready"))]
    status: &'static str,
}

/// Liveness
///
/// `200` while the process runs.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "operations",
    operation_id = "live",
    responses((status = 200, description = "`{\"status\": \"live\"}`.", body = Health))
)]
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "live" })
}

/// Readiness
///
/// `200` when the database (and the read model's, when it is another) answers, and so its
/// migrations, applied before the server started serving; `503` (checked with a 2 s limit)
/// while it is away, and `200` again when it is back, without a restart. Checked on a
/// connection kept for it, so requests that keep every pool busy do not make the process
/// look unready.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "operations",
    operation_id = "ready",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`.", body = Health),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn ready(modules: web::Data<Modules>) -> Result<HttpResponse, Problem> {
    for (name, pool) in &modules.health {
        if let Err(error) = db::ping(pool, Duration::from_secs(2)).await {
            tracing::warn!(database = name, error = format!("{error:#}"), "not ready");
            return Err(Problem::unavailable());
        }
    }
    Ok(HttpResponse::Ok().json(Health { status: "ready" }))
}
