//! The request headers of the order commands, each parsed exactly as its OpenAPI `pattern`
//! says (the document's and the parser's rule are the same one, stated here).

use actix_web::HttpRequest;
use actix_web::http::header;
use kernel::Problem;
use orders_api::ExpectedVersion;
use utoipa::IntoParams;

/// `If-Match` of a command, as documented ([`expected_version`] reads it).
#[derive(IntoParams)]
#[allow(dead_code)]
#[into_params(parameter_in = Header)]
pub(super) struct IfMatch {
    /// The version the order must be at: `"3"`, `W/"3"`, the `ETag` of `GET
    /// /queries/orders/{id}` (`W/"3-<32 lowercase hex digits>"`, of which the version
    /// counts), or `*` (any version). One tag, no list; a version is 1 to 18 digits without
    /// a leading zero. Anything else is `400 invalid_header`; a version that is not the
    /// order's is `412`.
    #[param(
        rename = "If-Match",
        nullable = false,
        pattern = r#"^(\*|(W/)?"[1-9][0-9]{0,17}(-[0-9a-f]{32})?")$"#
    )]
    pub(super) if_match: Option<String>,
}

/// `If-Match: "3"` (or `W/"3"`, or `*` for any version), or the `ETag` of `GET
/// /queries/orders/{id}` (`W/"3-<hash>"`), of which only the version counts: [`IfMatch`]'s
/// pattern exactly.
pub(super) fn expected_version(req: &HttpRequest) -> Result<ExpectedVersion, Problem> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let invalid = || {
        Problem::bad_request(
            "invalid_header",
            "If-Match must be *, or one order version as an entity tag: \"3\", W/\"3\", or \
             the ETag of GET /queries/orders/{id}",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?;
    if text == "*" {
        return Ok(None);
    }
    let tag = text.strip_prefix("W/").unwrap_or(text);
    let inner = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(invalid)?;
    let (version, hash) = match inner.split_once('-') {
        Some((version, hash)) => (version, Some(hash)),
        None => (inner, None),
    };
    let hash_ok = hash
        .is_none_or(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    let version_ok = (1..=18).contains(&version.len())
        && !version.starts_with('0')
        && version.bytes().all(|b| b.is_ascii_digit());
    if !(hash_ok && version_ok) {
        return Err(invalid());
    }
    version.parse::<i64>().map(Some).map_err(|_| invalid())
}

/// The longest `Idempotency-Key`.
const KEY_CHARS: usize = 255;

/// `Idempotency-Key` of a placement, as documented ([`idempotency_key`] reads it).
#[derive(IntoParams)]
#[allow(dead_code)]
#[into_params(parameter_in = Header)]
pub(super) struct IdempotencyKey {
    /// 1 to 255 visible ASCII characters (`!` to `~`: no space), taken as they are; makes a
    /// retry safe. Anything else is `400 invalid_header`.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        pattern = r"^[!-~]{1,255}$"
    )]
    pub(super) idempotency_key: Option<String>,
}

/// The `Idempotency-Key`: [`IdempotencyKey`]'s pattern exactly.
pub(super) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, Problem> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|k| kernel::input::visible_ascii(k, KEY_CHARS).ok());
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        Problem::bad_request(
            "invalid_header",
            "Idempotency-Key must be 1 to 255 visible ASCII characters (no spaces)",
        )
    })
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn if_match_takes_one_version_tag_exactly() {
        let hash = "0123456789abcdef0123456789abcdef";
        let cases = [
            ("\"3\"".to_owned(), Ok(Some(3))),
            ("W/\"3\"".to_owned(), Ok(Some(3))),
            (format!("W/\"12-{hash}\""), Ok(Some(12))),
            (format!("\"12-{hash}\""), Ok(Some(12))),
            ("*".to_owned(), Ok(None)),
            (
                "\"999999999999999999\"".to_owned(),
                Ok(Some(999_999_999_999_999_999)),
            ),
            ("1".to_owned(), Err(400)),
            ("01".to_owned(), Err(400)),
            ("+1".to_owned(), Err(400)),
            ("\"01\"".to_owned(), Err(400)),
            ("\"+1\"".to_owned(), Err(400)),
            ("\"0\"".to_owned(), Err(400)),
            ("\"\"".to_owned(), Err(400)),
            ("\"1\", \"2\"".to_owned(), Err(400)),
            ("\"1000000000000000000\"".to_owned(), Err(400)),
            (format!("W/\"3-{}\"", hash.to_uppercase()), Err(400)),
            ("W/\"3-abc\"".to_owned(), Err(400)),
            ("w/\"3\"".to_owned(), Err(400)),
            ("".to_owned(), Err(400)),
        ];
        for (header, expected) in cases {
            let req = TestRequest::default()
                .insert_header((header::IF_MATCH, header.as_str()))
                .to_http_request();
            let got = expected_version(&req).map_err(|p| p.status);
            assert_eq!(got, expected, "If-Match: {header}");
        }
    }

    #[test]
    fn an_idempotency_key_is_visible_ascii_exactly() {
        let long = "k".repeat(255);
        let too_long = "k".repeat(256);
        let cases = [
            ("7f0c-1", true),
            (long.as_str(), true),
            ("a b", false),
            ("", false),
            (too_long.as_str(), false),
        ];
        for (key, ok) in cases {
            let req = TestRequest::default()
                .insert_header(("Idempotency-Key", key))
                .to_http_request();
            assert_eq!(idempotency_key(&req).is_ok(), ok, "{key:?}");
        }
    }
}
