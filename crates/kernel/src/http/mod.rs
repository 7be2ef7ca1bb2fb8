//! actix-web glue shared by every module's routes: the problem+json response, the
//! extractor configuration (64 KiB JSON bodies, `400`/`413`/`415` for bad ones), a
//! middleware that turns actix's own bare error responses (unknown route, a refused CORS
//! preflight) into problem+json, and the [`app`] every server runs, with what it wraps
//! around the routes: [`observe`] (request ids, trace context, deadlines, panics, metrics,
//! logs), [`compress`], [`cors`]. Beside it: `methods.rs` (`HEAD`, `OPTIONS`, `405` with
//! `Allow` on every path), `conditional.rs` (`ETag`, `If-None-Match`, `Cache-Control`),
//! `edge.rs` (CORS, compression), `trace.rs` (`traceparent`).

mod conditional;
mod edge;
pub(crate) mod methods;
mod trace;

pub use conditional::{
    Caching, IF_NONE_MATCH_PATTERN, PublicMaxAge, cached, cached_as, cached_json, cached_json_at,
    etag, not_modified, versioned_etag,
};
pub use edge::{
    CORS_EXPOSED_HEADERS, CORS_MAX_AGE_SECONDS, CORS_REQUEST_HEADERS, HttpSettings,
    MIN_COMPRESSED_BYTES, compress, cors, is_preflight, preferred_encoding,
};
pub use methods::allow;
pub use trace::TraceParent;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::Problem;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub const PROBLEM_JSON: &str = "application/problem+json";

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let Some(challenge) = &self.www_authenticate {
            response.insert_header((header::WWW_AUTHENTICATE, challenge.as_str()));
        }
        response.body(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// The answer to a module's error: the problem its `-api` crate states for it, or, for an
/// unexpected failure, [`unexpected`]'s.
pub fn problem<E: crate::IntoProblem>(error: E) -> Problem {
    error.into_problem().unwrap_or_else(unexpected)
}

/// Logs an unexpected error with its whole cause chain and answers `500` or `503`.
pub fn unexpected(error: anyhow::Error) -> Problem {
    let problem = Problem::from_unexpected(&error);
    if problem.status == 503 {
        tracing::warn!(error = format!("{error:#}"), "database unavailable");
    } else {
        tracing::error!(error = format!("{error:?}"), "unexpected error");
    }
    problem
}

/// Registers the extractor configuration every JSON route relies on.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .app_data(path_config())
        .app_data(query_config());
}

/// Wraps an app so that every 4xx/5xx, including those actix produces by itself, is a
/// problem+json body.
pub fn problem_responses<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_problem = res
            .response()
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
        if is_problem {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let problem = match status {
            StatusCode::BAD_REQUEST if is_preflight(res.request()) => Problem::bad_request(
                "cors_preflight_refused",
                format!(
                    "the CORS preflight of {} from {} is refused: that origin may not call \
                     this API, or the method or headers it asks for are not allowed",
                    res.request().path(),
                    res.request()
                        .headers()
                        .get(header::ORIGIN)
                        .and_then(|o| o.to_str().ok())
                        .unwrap_or("?")
                ),
            ),
            StatusCode::NOT_FOUND => Problem::not_found(
                "route_not_found",
                format!("no route for {}", res.request().path()),
            ),
            StatusCode::METHOD_NOT_ALLOWED => Problem::new(
                405,
                "method_not_allowed",
                format!(
                    "{} is not allowed on {}",
                    res.request().method(),
                    res.request().path()
                ),
            ),
            s if s.is_server_error() => Problem::internal(),
            s => Problem::new(
                s.as_u16(),
                "bad_request",
                s.canonical_reason().unwrap_or("rejected"),
            ),
        };
        let (req, mut response) = res.into_parts();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        let response = response
            .set_body(serde_json::to_string(&problem).unwrap_or_default())
            .map_into_boxed_body();
        Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(req, response).map_into_right_body(),
        ))
    })
}

/// The app's default service: any unknown path is a `404` problem.
pub async fn route_not_found(req: HttpRequest) -> HttpResponse {
    Problem::not_found("route_not_found", format!("no route for {}", req.path())).error_response()
}

fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .content_type_required(true)
        .content_type(|mime| mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
        .error_handler(|error, _req| json_problem(&error).into())
}

fn json_problem(error: &JsonPayloadError) -> Problem {
    match error {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            Problem::new(
                413,
                "payload_too_large",
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        }
        JsonPayloadError::ContentType => Problem::new(
            415,
            "unsupported_media_type",
            "request body must be JSON with Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => Problem::bad_request(
            "invalid_body",
            format!("request body does not match the expected shape: {e}"),
        ),
        JsonPayloadError::Deserialize(e) => Problem::bad_request(
            "malformed_json",
            format!("request body is not valid JSON: {e}"),
        ),
        other => Problem::bad_request(
            "malformed_body",
            format!("request body could not be read: {other}"),
        ),
    }
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error, req| {
        let detail = match &error {
            PathError::Deserialize(e) => format!("malformed path parameter in {}: {e}", req.path()),
            other => format!("malformed path {}: {other}", req.path()),
        };
        Problem::bad_request("invalid_path", detail).into()
    })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _req| {
        let detail = match &error {
            QueryPayloadError::Deserialize(e) => format!("malformed query string: {e}"),
            other => format!("malformed query string: {other}"),
        };
        Problem::bad_request("invalid_query", detail).into()
    })
}

/// The app every server runs (the binary and the tests alike), from the outside in:
/// [`observe`] (request ids, trace context, deadlines, panics, metrics, logs), [`compress`],
/// problem+json for every error, [`cors`] when `settings` names origins, the extractor
/// configuration, `configure`'s routes, and `404` problems for unknown paths.
pub fn app<F>(
    settings: HttpSettings,
    configure: F,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
>
where
    F: FnOnce(&mut web::ServiceConfig),
{
    metrics_handle();
    let origins = settings.cors_allowed_origins;
    actix_web::App::new()
        .wrap(actix_web::middleware::Condition::new(
            !origins.is_empty(),
            cors(&origins),
        ))
        .wrap(problem_responses())
        .wrap(actix_web::middleware::from_fn(compress))
        .wrap(actix_web::middleware::from_fn(observe))
        .configure(configure)
        .configure(self::configure)
        .default_service(web::to(route_not_found))
}

/// A JSON request body that must be a JSON object.
///
/// `web::Json<T>` alone would accept `["a@example.com", "Ada"]` for a struct (serde reads
/// structs from arrays too); a body is an object with named fields or a `400`.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let object =
            web::Json::<serde_json::Map<String, serde_json::Value>>::from_request(req, payload);
        Box::pin(async move {
            let object = object.await?.into_inner();
            T::deserialize(serde_json::Value::Object(object))
                .map(JsonBody)
                .map_err(|e| {
                    Problem::bad_request(
                        "invalid_body",
                        format!("request body does not match the expected shape: {e}"),
                    )
                    .into()
                })
        })
    }
}

/// The request id header: honoured when a client sends a sane one, else generated.
pub const REQUEST_ID: &str = "x-request-id";

/// The deadline of every request (`REQUEST_TIMEOUT`), as app data; without one,
/// [`RequestTimeout::DEFAULT`].
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeout(pub std::time::Duration);

impl RequestTimeout {
    pub const DEFAULT: std::time::Duration = std::time::Duration::from_secs(30);
}

/// Middleware every app runs outermost: gives each request an id (echoed in
/// `X-Request-Id`) and a span carrying it, and the caller's W3C trace (`trace_id`,
/// `parent_id`) when it sent a valid `traceparent` (an invalid one is ignored), so every
/// log line of the request, in every module, can be found by either; turns a panic into a logged `500` problem without losing
/// the worker; abandons it at its deadline ([`RequestTimeout`]: `503
/// request_timeout`); counts requests and their latency per route pattern; logs one line per
/// request.
pub async fn observe(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use tracing::Instrument;

    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        parent_id = tracing::field::Empty,
        method = %req.method(),
        path = %req.path()
    );
    let trace = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    if let Some(trace) = trace {
        span.record("trace_id", trace.trace_id.as_str());
        span.record("parent_id", trace.parent_id.as_str());
    }
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    // (The request cannot be cloned before routing, which needs it uniquely: a panic and
    // an error are answered as `Err`, which actix renders from the problem.)
    // Every event the request causes carries its id (and, once authenticated, its caller).
    let context = crate::context::Context::new(crate::Actor::ANONYMOUS, Some(request_id.clone()));
    let deadline = req
        .app_data::<web::Data<RequestTimeout>>()
        .map_or(RequestTimeout::DEFAULT, |t| t.0);
    let work = crate::context::scope(context, next.call(req).instrument(span.clone()));
    let Ok(outcome) = tokio::time::timeout(deadline, crate::catch_panic(work)).await else {
        // Dropped like a crashed request: what it committed stays, and the rest is
        // finished or undone by whoever finishes a crashed one (sweeper, saga, fences).
        span.in_scope(|| {
            tracing::warn!(?deadline, "request abandoned at its deadline; answered 503")
        });
        record(&method, "unmatched", 503, started.elapsed());
        let problem = Problem {
            retry_after: Some(1),
            ..Problem::new(
                503,
                "request_timeout",
                format!(
                    "the request did not finish within {} s and was abandoned; \
                     retry it (with the same Idempotency-Key, for a placement)",
                    deadline.as_secs_f64()
                ),
            )
        };
        return Err(problem.into());
    };
    let mut response = match outcome {
        Ok(Ok(response)) => response.map_into_boxed_body(),
        Ok(Err(error)) => {
            let status = error.as_response_error().status_code().as_u16();
            record(&method, "unmatched", status, started.elapsed());
            return Err(error);
        }
        Err(message) => {
            span.in_scope(|| tracing::error!(panic = message, "handler panicked; answered 500"));
            record(&method, "unmatched", 500, started.elapsed());
            let problem = Problem {
                detail: format!(
                    "an unexpected error occurred; it has been logged with request id {request_id}"
                ),
                ..Problem::internal()
            };
            return Err(problem.into());
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static(REQUEST_ID), value);
    }
    let elapsed = started.elapsed();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16();
    record(&method, &route, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        )
    });
    Ok(response)
}

/// Counts a request and its latency by method, route pattern and status.
fn record(method: &str, route: &str, status: u16, elapsed: std::time::Duration) {
    // A client cannot make series: other methods fold into one label, as unmatched paths
    // do into `unmatched`.
    let method: &'static str = match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "other",
    };
    let route = route.to_owned();
    metrics::counter!(REQUESTS, "method" => method, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route).record(elapsed);
}

/// Every request answered, by method, route pattern and status.
const REQUESTS: &str = "emporium_http_requests_total";
/// Every request's time from arrival to its answer, by method and route pattern.
const REQUEST_DURATION: &str = "emporium_http_request_duration_seconds";

/// The process-wide Prometheus registry (the `metrics` facade's recorder), installed on
/// first use, with the HELP text of the request metrics. Whoever describes a metric of
/// their own calls this first: a description given before a recorder is installed is
/// lost.
pub fn metrics_handle() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&buckets)
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed by an embedding program; then ours renders
        // nothing but the app still works.
        let _ = metrics::set_global_recorder(recorder);
        metrics::describe_counter!(
            REQUESTS,
            "HTTP requests answered, by method, route pattern (`unmatched` for no route) and status."
        );
        metrics::describe_histogram!(
            REQUEST_DURATION,
            metrics::Unit::Seconds,
            "Time from a request's arrival to its answer, by method and route pattern."
        );
        handle
    })
}
