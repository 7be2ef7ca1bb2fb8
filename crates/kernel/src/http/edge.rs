//! What every answer passes through on its way out, besides [`super::observe`]: CORS for
//! browsers on other origins ([`cors`], `actix-cors`), and compression by
//! `Accept-Encoding` ([`compress`], actix-http's own gzip and br encoders).

use actix_cors::Cors;
use actix_http::encoding::Encoder;
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentEncoding, HeaderMap, HeaderValue};
use actix_web::middleware::Next;

/// How the HTTP edge of a server is set up (the app's flags).
#[derive(Clone, Debug, Default)]
pub struct HttpSettings {
    /// Origins whose pages may call the API from a browser (`CORS_ALLOWED_ORIGINS`), each
    /// `scheme://host[:port]`, or `*` for any; empty: CORS is off, and browsers keep
    /// other origins' pages from reading any answer.
    pub cors_allowed_origins: Vec<String>,
}

/// How long a browser may reuse a preflight's answer (Chromium caps it at two hours).
pub const CORS_MAX_AGE_SECONDS: usize = 7200;

/// Request headers a cross-origin page may send, beyond the ones every browser allows.
pub const CORS_REQUEST_HEADERS: [&str; 8] = [
    "authorization",
    "content-type",
    "if-match",
    "if-none-match",
    "idempotency-key",
    "x-request-id",
    "traceparent",
    "tracestate",
];

/// Response headers a cross-origin page may read, beyond the ones every browser exposes.
pub const CORS_EXPOSED_HEADERS: [&str; 7] = [
    "etag",
    "location",
    "retry-after",
    "www-authenticate",
    "allow",
    "x-request-id",
    "x-read-model-stale",
];

/// The CORS middleware for `origins` (see [`HttpSettings::cors_allowed_origins`]): it
/// answers preflights itself (`200`, the methods and headers above, cached for
/// [`CORS_MAX_AGE_SECONDS`]; a refused one is `400`) and marks answers to allowed origins
/// readable. Credentials are not allowed: the API takes bearer tokens, not cookies. A
/// request from another origin is still answered, without CORS headers, so that non-browser
/// clients that send `Origin` work; the browser is what keeps that page from reading it.
pub fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "HEAD", "POST", "PUT", "PATCH"])
        .allowed_headers(CORS_REQUEST_HEADERS)
        .expose_headers(CORS_EXPOSED_HEADERS)
        .max_age(CORS_MAX_AGE_SECONDS);
    for origin in origins {
        cors = if origin == "*" {
            cors.allow_any_origin().send_wildcard()
        } else {
            cors.allowed_origin(origin)
        };
    }
    cors
}

/// Whether a request is a CORS preflight (which [`cors`] answers, or refuses with `400`).
pub fn is_preflight(req: &actix_web::HttpRequest) -> bool {
    req.method() == actix_web::http::Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Bodies smaller than this go out as they are: compressed, they would hardly shrink, and
/// each compression costs an encoder's allocation.
pub const MIN_COMPRESSED_BYTES: usize = 1024;

/// Middleware compressing an answer with br or gzip, whichever the client prefers (br
/// when they tie), when its body is text of at least [`MIN_COMPRESSED_BYTES`]. Such an
/// answer carries `Vary: Accept-Encoding` however it is sent. The encoders are
/// actix-http's (gzip at flate2's fast level, br at quality 3: cheap enough per request);
/// a large body is compressed on a blocking thread, not the worker.
pub async fn compress(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let encoding = preferred_encoding(req.headers());
    let mut response = next.call(req).await?;
    if !worth_compressing(&response) {
        return Ok(response.map_into_left_body());
    }
    if encoding == ContentEncoding::Identity {
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("accept-encoding"));
        return Ok(response.map_into_left_body());
    }
    // The encoder sets `Content-Encoding` and `Vary` itself.
    Ok(response
        .map_body(move |head, body| Encoder::response(encoding, head, body))
        .map_into_right_body())
}

fn worth_compressing<B: MessageBody>(response: &ServiceResponse<B>) -> bool {
    let status = response.status();
    if matches!(
        status,
        StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
    ) || status.is_informational()
    {
        return false;
    }
    let headers = response.headers();
    if headers.contains_key(header::CONTENT_ENCODING) {
        return false;
    }
    let textual = headers
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(is_textual);
    let large = match response.response().body().size() {
        BodySize::None => false,
        BodySize::Sized(n) => n >= MIN_COMPRESSED_BYTES as u64,
        BodySize::Stream => true,
    };
    textual && large
}

/// Text, JSON, JavaScript, XML and SVG compress well; images and the like do not.
fn is_textual(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media.starts_with("text/")
        || media.ends_with("json")
        || media.ends_with("javascript")
        || media.ends_with("xml")
}

/// br or gzip, by the quality the client gives each in `Accept-Encoding` (an entry for
/// `*` stands for both); br wins a tie. No header, or neither acceptable: identity.
pub fn preferred_encoding(headers: &HeaderMap) -> ContentEncoding {
    let quality = |name: &str| -> Option<f32> {
        let mut any = None;
        let mut specific = None;
        for value in headers.get_all(header::ACCEPT_ENCODING) {
            let value = value.to_str().unwrap_or_default().to_ascii_lowercase();
            for item in value.split(',') {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or_default().trim();
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                if coding == name {
                    specific = Some(q);
                } else if coding == "*" {
                    any = Some(q);
                }
            }
        }
        specific.or(any)
    };
    let br = quality("br").unwrap_or(0.0);
    let gzip = quality("gzip").unwrap_or(0.0);
    if br > 0.0 && br >= gzip {
        ContentEncoding::Brotli
    } else if gzip > 0.0 {
        ContentEncoding::Gzip
    } else {
        ContentEncoding::Identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn br_or_gzip_by_the_client_s_qualities() {
        let cases = [
            (None, ContentEncoding::Identity),
            (Some("gzip, deflate, br, zstd"), ContentEncoding::Brotli),
            (Some("gzip"), ContentEncoding::Gzip),
            (Some("br;q=0.5, gzip;q=0.8"), ContentEncoding::Gzip),
            (Some("gzip;q=0.5, br"), ContentEncoding::Brotli),
            (Some("GZIP, BR;Q=0.4"), ContentEncoding::Gzip),
            (Some("*"), ContentEncoding::Brotli),
            (Some("*;q=0.2, gzip;q=0.9"), ContentEncoding::Gzip),
            (Some("br;q=0, gzip;q=0"), ContentEncoding::Identity),
            (Some("identity"), ContentEncoding::Identity),
            (Some("deflate"), ContentEncoding::Identity),
        ];
        for (header, expected) in cases {
            let mut headers = HeaderMap::new();
            if let Some(value) = header {
                headers.insert(
                    header::ACCEPT_ENCODING,
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            assert_eq!(preferred_encoding(&headers), expected, "{header:?}");
        }
    }

    #[test]
    fn text_is_compressed_images_are_not() {
        for (content_type, expected) in [
            ("application/json", true),
            ("application/problem+json", true),
            ("text/html; charset=utf-8", true),
            ("application/javascript", true),
            ("image/svg+xml", true),
            ("image/png", false),
            ("application/octet-stream", false),
        ] {
            assert_eq!(is_textual(content_type), expected, "{content_type}");
        }
    }
}
