//! Conditional reads: a read answers its representation with an `ETag` and a
//! `Cache-Control`, and `304 Not Modified` (no body) when the client's `If-None-Match`
//! already names that `ETag`.
//!
//! The `ETag` is a hash of the body, so it changes whenever the representation does,
//! whatever changed it: a product's `version` does not move when orders reserve its stock,
//! and an order's read model shows its user's latest name without a new order version. An
//! aggregate a client writes with `If-Match: "<version>"` (an order) puts its version in
//! front ([`versioned_etag`]), so the tag of a read can be sent back as `If-Match`. It is
//! weak (`W/"…"`) because responses are compressed on the way out
//! ([`super::compress`]): one validator stands for the identity, gzip and br bytes of the
//! same representation, as a weak one may (RFC 9110 §8.8.1), and `If-None-Match` compares
//! weakly anyway.

use std::time::Duration;

use actix_web::http::header::{self, EntityTag};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use sha2::Digest;

use crate::Problem;

/// How long anyone may reuse a public read (the catalog) before asking again
/// (`CATALOG_MAX_AGE`), as app data; without one, zero: revalidate every time.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublicMaxAge(pub Duration);

/// Who may keep a read, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    /// The same for every caller (the catalog): `public`, fresh for this long; zero is
    /// `no-cache` (kept, but revalidated with `If-None-Match` before each use).
    Public(Duration),
    /// Someone's own (a user, an order, a payment): `private, no-cache`, never kept by a
    /// shared cache, revalidated by the client's own.
    Private,
    /// Never changes at this URL (a versioned asset): a year, `immutable`.
    Immutable,
}

impl Caching {
    /// [`Caching::Public`] for the `max_age` the app was configured with.
    pub fn public(req: &HttpRequest) -> Caching {
        let max_age = req
            .app_data::<actix_web::web::Data<PublicMaxAge>>()
            .map_or(Duration::ZERO, |m| m.0);
        Caching::Public(max_age)
    }

    /// The `Cache-Control` value.
    pub fn header_value(self) -> String {
        match self {
            Caching::Public(Duration::ZERO) => "public, no-cache".to_owned(),
            Caching::Public(max_age) => format!("public, max-age={}", max_age.as_secs().max(1)),
            Caching::Private => "private, no-cache".to_owned(),
            Caching::Immutable => "public, max-age=31536000, immutable".to_owned(),
        }
    }
}

/// The `ETag` of a representation: the first 128 bits of its SHA-256, weak (see the
/// module's header).
pub fn etag(body: &[u8]) -> EntityTag {
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    EntityTag::new_weak(hex)
}

/// The `ETag` of a representation of an aggregate at `version`: `W/"<version>-<hash>"`,
/// the version first so that a command's `If-Match` can take it.
pub fn versioned_etag(version: i64, body: &[u8]) -> EntityTag {
    EntityTag::new_weak(format!("{version}-{}", etag(body).tag()))
}

/// Whether the request's `If-None-Match` names `tag` (or is `*`: the resource exists, as
/// it is being answered); `400 invalid_header` when the header is not `*` or a list of
/// entity tags exactly as [`IF_NONE_MATCH_PATTERN`] says.
pub fn not_modified(req: &HttpRequest, tag: &EntityTag) -> Result<bool, Problem> {
    let Some(value) = req.headers().get(header::IF_NONE_MATCH) else {
        return Ok(false);
    };
    let invalid = || {
        Problem::bad_request(
            "invalid_header",
            "If-None-Match must be * or a comma-separated list of entity tags such as \
             W/\"1f2e…\" or \"3\" (visible ASCII but '\"' inside the quotes)",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?;
    if text == "*" {
        return Ok(true);
    }
    let tags = entity_tags(text).ok_or_else(invalid)?;
    Ok(tags.iter().any(|t| t.weak_eq(tag)))
}

/// What [`not_modified`] takes, as the OpenAPI document's `pattern`: `*`, or entity tags
/// (`"…"` or `W/"…"` around `!` and `#` to `~`) separated by a comma with optional spaces
/// or tabs around it.
pub const IF_NONE_MATCH_PATTERN: &str = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#;

/// The entity tags of a list as [`IF_NONE_MATCH_PATTERN`] has them, or `None`.
fn entity_tags(text: &str) -> Option<Vec<EntityTag>> {
    let ows = |s: &str| s.trim_start_matches([' ', '\t']).len();
    let mut tags = Vec::new();
    let mut rest = text;
    loop {
        let (weak, quoted) = match rest.strip_prefix("W/") {
            Some(quoted) => (true, quoted),
            None => (false, rest),
        };
        let inner = quoted.strip_prefix('"')?;
        let end = inner.find('"')?;
        let opaque = &inner[..end];
        if !opaque
            .bytes()
            .all(|b| b == b'!' || (b'#'..=b'~').contains(&b))
        {
            return None;
        }
        tags.push(EntityTag::new(weak, opaque.to_owned()));
        rest = &inner[end + 1..];
        if rest.is_empty() {
            return Some(tags);
        }
        let after = &rest[rest.len() - ows(rest)..];
        rest = after.strip_prefix(',')?;
        rest = &rest[rest.len() - ows(rest)..];
    }
}

/// `200` with `body` (of `content_type`), its `ETag` and `Cache-Control`, or `304` with
/// the same headers and no body when `If-None-Match` names the `ETag`.
pub fn cached(
    req: &HttpRequest,
    caching: Caching,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Result<HttpResponse, Problem> {
    let body = body.into();
    let tag = etag(&body);
    cached_as(req, caching, content_type, body, tag)
}

/// [`cached`] with the `ETag` given (one computed once, for a large body that never
/// changes).
pub fn cached_as(
    req: &HttpRequest,
    caching: Caching,
    content_type: &str,
    body: Bytes,
    tag: EntityTag,
) -> Result<HttpResponse, Problem> {
    let unchanged = not_modified(req, &tag)?;
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, tag.to_string()))
        .insert_header((header::CACHE_CONTROL, caching.header_value()));
    if unchanged {
        return Ok(response.finish());
    }
    Ok(response.content_type(content_type).body(body))
}

/// [`cached`] for a JSON answer.
pub fn cached_json<T: serde::Serialize>(
    req: &HttpRequest,
    caching: Caching,
    value: &T,
) -> Result<HttpResponse, Problem> {
    cached(req, caching, "application/json", json(value)?)
}

/// [`cached_json`] of an aggregate at `version`, tagged by [`versioned_etag`].
pub fn cached_json_at<T: serde::Serialize>(
    req: &HttpRequest,
    caching: Caching,
    version: i64,
    value: &T,
) -> Result<HttpResponse, Problem> {
    let body = json(value)?;
    let tag = versioned_etag(version, &body);
    cached_as(req, caching, "application/json", body.into(), tag)
}

fn json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Problem> {
    serde_json::to_vec(value)
        .map_err(|e| super::unexpected(anyhow::Error::new(e).context("serializing an answer")))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn an_etag_follows_the_bytes() {
        let a = etag(br#"{"stock":1}"#);
        assert_eq!(a, etag(br#"{"stock":1}"#));
        assert_ne!(a, etag(br#"{"stock":2}"#));
        assert!(a.weak && a.tag().len() == 32, "{a}");
        let v = versioned_etag(3, br#"{"stock":1}"#);
        assert_eq!(v.to_string(), format!("W/\"3-{}\"", a.tag()));
    }

    #[test]
    fn if_none_match_compares_weakly_and_rejects_garbage() {
        let tag = etag(b"body");
        let strong = format!("\"{}\"", tag.tag());
        let cases = [
            (tag.to_string(), Ok(true)),
            (strong, Ok(true)),
            (format!("\"other\", {tag}"), Ok(true)),
            ("*".to_owned(), Ok(true)),
            ("\"other\"".to_owned(), Ok(false)),
            ("\"a,b\" ,\tW/\"\"".to_owned(), Ok(false)),
            ("not-quoted".to_owned(), Err(400)),
            ("0".to_owned(), Err(400)),
            ("\"a\",".to_owned(), Err(400)),
            ("\"a\" \"b\"".to_owned(), Err(400)),
            ("\"a b\"".to_owned(), Err(400)),
            ("w/\"a\"".to_owned(), Err(400)),
            ("*, \"a\"".to_owned(), Err(400)),
            ("".to_owned(), Err(400)),
        ];
        for (header, expected) in cases {
            let req = TestRequest::default()
                .insert_header((header::IF_NONE_MATCH, header.as_str()))
                .to_http_request();
            let got = not_modified(&req, &tag).map_err(|p| p.status);
            assert_eq!(got, expected, "If-None-Match: {header}");
        }
        let none = TestRequest::default().to_http_request();
        assert_eq!(not_modified(&none, &tag).map_err(|p| p.status), Ok(false));
    }

    #[test]
    fn cache_control_says_who_may_keep_it() {
        let cases = [
            (Caching::Public(Duration::ZERO), "public, no-cache"),
            (
                Caching::Public(Duration::from_secs(30)),
                "public, max-age=30",
            ),
            (Caching::Private, "private, no-cache"),
            (Caching::Immutable, "public, max-age=31536000, immutable"),
        ];
        for (caching, expected) in cases {
            assert_eq!(caching.header_value(), expected);
        }
    }
}
