//! Operations: `/metrics` (Prometheus text) and `/admin` (projection status and rebuild),
//! the latter for admins only (`authorize`); registered, like every route, from their
//! `#[utoipa::path]`s.

use std::collections::BTreeMap;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};
use chrono::Utc;
use eventlog::SubscriptionStatus;
use kernel::Principal;
use kernel::Problem;
use kernel::http::PROBLEM_JSON;
use kernel::openapi::{Routes, ServiceUnavailable, Unauthenticated};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Modules;

/// `/metrics`.
pub(crate) fn endpoints() -> Routes {
    Routes::default().add(__path_metrics, metrics)
}

/// The `/admin` routes, mounted in `web::scope("/admin")` behind [`authorize`].
pub(crate) fn admin() -> Routes {
    Routes::default()
        .add(__path_projections, projections)
        .add(__path_rebuild, rebuild)
}

/// The rule of every `/admin` route: an `admin` access token or `Bearer <ADMIN_TOKEN>`
/// (`kernel::Principal::require_admin`); no credentials are `401`, any other principal
/// `403`. The admin token is compared in constant time (`kernel::auth`) and never logged.
pub(crate) async fn authorize(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let allowed = match req.extract::<Principal>().await {
        Ok(principal) => principal.require_admin(),
        Err(problem) => Err(problem),
    };
    if let Err(problem) = allowed {
        return Ok(req.into_response(problem.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Every subscriber of the event log.
#[derive(Serialize, ToSchema)]
struct ProjectionList {
    projections: Vec<ProjectionStatus>,
}

/// One projection (or the order saga, or with `NATS_URL` the publisher `nats_publisher`),
/// summed over the event logs it reads.
#[derive(Serialize, ToSchema)]
struct ProjectionStatus {
    #[schema(value_type = String, examples("orders_read"))]
    name: &'static str,
    /// Events applied.
    position: i64,
    /// Events in its sources' logs.
    head: i64,
    /// Events not applied yet.
    lag_events: i64,
    /// Age of the oldest event not applied yet; 0 when caught up.
    lag_seconds: f64,
    status: ProjectionState,
    /// Events parked after failing repeatedly.
    dead_letters: i64,
    sources: Vec<SourceStatus>,
    /// Only while a rebuild runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    rebuild: Option<RebuildProgress>,
}

/// `running`; `retrying` while an event keeps failing; `rebuilding`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(rename_all = "snake_case")]
enum ProjectionState {
    Running,
    Retrying,
    Rebuilding,
}

/// A projection's progress through one module's event log.
#[derive(Serialize, ToSchema)]
struct SourceStatus {
    /// The module whose event log this is.
    #[schema(value_type = String, examples("orders"))]
    source: &'static str,
    position: i64,
    head: i64,
    lag_events: i64,
    /// Failed attempts at the next event.
    attempts: i32,
    /// Why the next event failed, if it did (always sent, `null` when it did not).
    #[schema(required = true)]
    last_error: Option<String>,
}

/// How far a rebuild got.
#[derive(Serialize, ToSchema)]
struct RebuildProgress {
    generation: i32,
    applied: i64,
    head: i64,
}

/// A rebuild that started.
#[derive(Serialize, ToSchema)]
struct RebuildStarted {
    #[schema(value_type = String, examples("orders_read"))]
    projection: &'static str,
    generation: i32,
    #[schema(value_type = String, examples("rebuilding"))]
    status: &'static str,
}

async fn statuses(modules: &Modules) -> Result<Vec<ProjectionStatus>, Problem> {
    let mut by_name: BTreeMap<&'static str, Vec<SubscriptionStatus>> = BTreeMap::new();
    for subscription in modules.subscriptions() {
        let status = subscription
            .status()
            .await
            .map_err(kernel::http::unexpected)?;
        by_name.entry(status.subscriber).or_default().push(status);
    }
    for log in modules.published_logs() {
        let status = log.status().await.map_err(kernel::http::unexpected)?;
        by_name.entry(status.subscriber).or_default().push(status);
    }
    let rebuilding = modules
        .orders_read
        .rebuild_progress()
        .await
        .map_err(kernel::http::unexpected)?;
    let now = Utc::now();
    Ok(by_name
        .into_iter()
        .map(|(name, sources)| {
            let oldest = sources.iter().filter_map(|s| s.backlog.oldest).min();
            let failing = sources.iter().any(|s| s.attempts > 0);
            ProjectionStatus {
                name,
                position: sources.iter().map(|s| s.applied).sum(),
                head: sources.iter().map(|s| s.head()).sum(),
                lag_events: sources.iter().map(|s| s.backlog.events).sum(),
                lag_seconds: oldest.map_or(0.0, |t| (now - t).as_seconds_f64().max(0.0)),
                status: match (
                    name == orders_read::PROJECTION && rebuilding.is_some(),
                    failing,
                ) {
                    (true, _) => ProjectionState::Rebuilding,
                    (false, true) => ProjectionState::Retrying,
                    (false, false) => ProjectionState::Running,
                },
                dead_letters: sources.iter().map(|s| s.dead_letters).sum(),
                sources: sources
                    .into_iter()
                    .map(|s| SourceStatus {
                        source: s.source,
                        position: s.applied,
                        head: s.head(),
                        lag_events: s.backlog.events,
                        attempts: s.attempts,
                        last_error: s.last_error,
                    })
                    .collect(),
                rebuild: rebuilding
                    .filter(|_| name == orders_read::PROJECTION)
                    .map(|p| RebuildProgress {
                        generation: p.generation,
                        applied: p.applied,
                        head: p.head,
                    }),
            }
        })
        .collect())
}

/// Rebuild a projection
///
/// Replays the event log into a fresh copy of the read model while queries keep answering
/// from the old one, then switches atomically. Answers `202` at once; the progress shows in
/// `GET /admin/projections` and in the logs.
#[utoipa::path(
    post,
    path = "/admin/projections/{name}/rebuild",
    tag = "operations",
    operation_id = "rebuild_projection",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "The projection: `orders_read`.")),
    responses(
        (status = 202, description = "The rebuild started.", body = RebuildStarted),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: an access token without the `admin` role.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`projection_not_found`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 409, description = "`not_rebuildable`: the order saga has no read model; \
            `rebuild_in_progress`.", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn rebuild(
    modules: web::Data<Modules>,
    name: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    match name.as_str() {
        orders_read::PROJECTION => {}
        orders::SAGA => {
            return Err(Problem::conflict(
                "not_rebuildable",
                "orders_saga drives payments and stock; it has no read model to rebuild",
            ));
        }
        other => {
            return Err(Problem::not_found(
                "projection_not_found",
                format!("no projection named {other:?}"),
            ));
        }
    }
    let generation = modules.orders_read.rebuild().await.map_err(|e| match e {
        e @ orders_read::RebuildError::InProgress(_) => Problem::conflict("rebuild_in_progress", e),
        orders_read::RebuildError::Unexpected(e) => kernel::http::unexpected(e),
    })?;
    Ok(HttpResponse::Accepted().json(RebuildStarted {
        projection: orders_read::PROJECTION,
        generation,
        status: "rebuilding",
    }))
}

/// Projection status
///
/// Each projection's position and lag behind the event log.
#[utoipa::path(
    get,
    path = "/admin/projections",
    tag = "operations",
    operation_id = "projections",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Every projection.", body = ProjectionList),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: an access token without the `admin` role.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn projections(modules: web::Data<Modules>) -> Result<HttpResponse, Problem> {
    let projections = statuses(&modules).await?;
    Ok(HttpResponse::Ok().json(ProjectionList { projections }))
}

/// Metrics
///
/// Prometheus text format: request counts and latency histograms per route pattern,
/// command and query durations, event-log backlog per module, projection lag in events and
/// seconds, dead-lettered events, pool usage per module, the process's CPU, memory and
/// file descriptors, and the build.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.", body = String,
            content_type = "text/plain"),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn metrics(modules: web::Data<Modules>) -> Result<HttpResponse, Problem> {
    let process = gauges::described();
    let projections = statuses(&modules).await?;
    let mut backlog: BTreeMap<&'static str, i64> = BTreeMap::new();
    for projection in &projections {
        metrics::gauge!(gauges::LAG_EVENTS, "projection" => projection.name)
            .set(projection.lag_events as f64);
        metrics::gauge!(gauges::LAG_SECONDS, "projection" => projection.name)
            .set(projection.lag_seconds);
        metrics::gauge!(gauges::DEAD_LETTERS, "subscriber" => projection.name)
            .set(projection.dead_letters as f64);
        for source in &projection.sources {
            let worst = backlog.entry(source.source).or_default();
            *worst = (*worst).max(source.lag_events);
        }
    }
    for (module, events) in backlog {
        metrics::gauge!(gauges::BACKLOG, "module" => module).set(events as f64);
    }
    for (module, status) in modules.pool_status() {
        let in_use = status.size.saturating_sub(status.available);
        metrics::gauge!(gauges::POOL_CONNECTIONS, "module" => module, "state" => "in_use")
            .set(in_use as f64);
        metrics::gauge!(gauges::POOL_CONNECTIONS, "module" => module, "state" => "idle")
            .set(status.available as f64);
        metrics::gauge!(gauges::POOL_MAX, "module" => module).set(status.max_size as f64);
        metrics::gauge!(gauges::POOL_WAITING, "module" => module).set(status.waiting as f64);
    }
    process.collect();
    let handle = kernel::http::metrics_handle();
    handle.run_upkeep();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render()))
}

/// The gauges `/metrics` reads at scrape time, each named and described once here.
mod gauges {
    use std::sync::OnceLock;

    pub(super) const LAG_EVENTS: &str = "emporium_projection_lag_events";
    pub(super) const LAG_SECONDS: &str = "emporium_projection_lag_seconds";
    pub(super) const DEAD_LETTERS: &str = "emporium_dead_letters";
    pub(super) const BACKLOG: &str = "emporium_event_log_backlog";
    pub(super) const POOL_CONNECTIONS: &str = "emporium_db_pool_connections";
    pub(super) const POOL_MAX: &str = "emporium_db_pool_max_connections";
    pub(super) const POOL_WAITING: &str = "emporium_db_pool_waiting";
    const BUILD_INFO: &str = "emporium_build_info";

    /// The commit the binary was built from (`build.rs`), else `unknown`.
    const COMMIT: &str = match option_env!("EMPORIUM_COMMIT") {
        Some(commit) => commit,
        None => "unknown",
    };

    /// The process collector, after every gauge here (and the process's) is described
    /// and the build info set, once per process.
    pub(super) fn described() -> &'static metrics_process::Collector {
        static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
        COLLECTOR.get_or_init(|| {
            // Descriptions reach only an installed recorder.
            kernel::http::metrics_handle();
            let described = [
                (LAG_EVENTS, "Events of a projection's sources not applied by it yet."),
                (LAG_SECONDS, "Age of the oldest event a projection has not applied yet; 0 when caught up."),
                (DEAD_LETTERS, "Events parked for a subscriber after failing repeatedly."),
                (BACKLOG, "Events of a module's log not applied yet by its slowest subscriber."),
                (POOL_CONNECTIONS, "Open connections of a pool, by state (in_use, idle); module is a schema, or <schema>.events for a log's delivery pool."),
                (POOL_MAX, "The most connections a pool may open."),
                (POOL_WAITING, "Requests waiting for a connection of a pool."),
                (BUILD_INFO, "Always 1; the labels say which version and commit is running."),
            ];
            for (name, help) in described {
                metrics::describe_gauge!(name, help);
            }
            metrics::describe_counter!(
                eventlog::PUBLISHED,
                "Events this process published to NATS JetStream and saw acknowledged, by module log."
            );
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "commit" => COMMIT)
                .set(1.0);
            let collector = metrics_process::Collector::default();
            collector.describe();
            collector
        })
    }
}
