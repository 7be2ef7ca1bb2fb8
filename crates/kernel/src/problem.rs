//! The one error shape every rejected request answers: RFC 9457 problem details.
//!
//! This file is plain data (usable from `-api` crates); `http.rs` turns it into an actix
//! response. No body ever carries a cause chain, SQL or a connection string: the causes of a
//! `500`/`503` go to the log only.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One invalid field of a request: `{"field": "items[0].quantity", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's path in the request, e.g. `email` or `items[0].quantity`.
    #[schema(examples("items[0].quantity"))]
    pub field: String,
    /// What is wrong with it, and with which value.
    #[schema(examples("must be between 1 and 10000, got 0"))]
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl fmt::Display) -> Self {
        FieldError {
            field: field.into(),
            message: message.to_string(),
        }
    }
}

/// Collects every invalid field of an input, so that one answer names all of them.
#[derive(Debug, Default)]
pub struct Validation {
    errors: Vec<FieldError>,
}

impl Validation {
    /// Keeps the value, or records the error under `field`.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.push(field, e)).ok()
    }

    /// A field that must be present.
    pub fn require<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.push(field, "is required");
        }
        value
    }

    pub fn push(&mut self, field: &str, message: impl fmt::Display) {
        self.errors.push(FieldError::new(field, message));
    }

    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// Marks an error chain as "the database cannot be reached right now" (answered `503`).
#[derive(Debug, thiserror::Error)]
#[error("database unavailable: {0}")]
pub struct Unavailable(pub String);

/// A problem+json body. Build one with the constructors; `status` picks the title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(
    description = "Every error answer: `application/problem+json` (RFC 9457), with a \
    stable machine-readable `code`."
)]
pub struct Problem {
    /// `urn:emporium:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(examples("urn:emporium:problem:insufficient_stock"))]
    pub kind: String,
    /// The status code's reason phrase.
    #[schema(examples("Conflict"))]
    pub title: String,
    /// The HTTP status code, repeated.
    #[schema(examples(409))]
    pub status: u16,
    /// What went wrong, for humans. Never a stack trace, SQL or a connection string.
    #[schema(examples(
        "insufficient stock for product 01900000-0000-7000-8000-000000000000: requested 3, available 1"
    ))]
    pub detail: String,
    /// A stable, machine-readable error code (e.g. `email_taken`, `insufficient_stock`).
    #[schema(examples("insufficient_stock"))]
    pub code: String,
    /// Only on validation failures (`422 validation_failed`): one entry per invalid field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds for a `Retry-After` header; not part of the body.
    #[serde(skip)]
    pub retry_after: Option<u32>,
    /// A `WWW-Authenticate` header (on `401`); not part of the body.
    #[serde(skip)]
    pub www_authenticate: Option<String>,
}

impl Problem {
    pub fn new(status: u16, code: &str, detail: impl fmt::Display) -> Self {
        Problem {
            kind: format!("urn:emporium:problem:{code}"),
            title: title(status).to_owned(),
            status,
            detail: detail.to_string(),
            code: code.to_owned(),
            errors: Vec::new(),
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// `400`: the request is malformed (JSON syntax, JSON types, path id, query parameter).
    pub fn bad_request(code: &str, detail: impl fmt::Display) -> Self {
        Problem::new(400, code, detail)
    }

    pub fn not_found(code: &str, detail: impl fmt::Display) -> Self {
        Problem::new(404, code, detail)
    }

    /// `409`: a business rule forbids it.
    pub fn conflict(code: &str, detail: impl fmt::Display) -> Self {
        Problem::new(409, code, detail)
    }

    /// `422`: well-formed input that fails validation, with one entry per invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        let detail = format!("invalid fields: {}", fields.join(", "));
        Problem {
            errors,
            ..Problem::new(422, "validation_failed", detail)
        }
    }

    /// `503` with `Retry-After`: the database cannot be reached; safe to retry.
    pub fn unavailable() -> Self {
        Problem {
            retry_after: Some(1),
            ..Problem::new(
                503,
                "service_unavailable",
                "the database is unavailable, retry shortly",
            )
        }
    }

    /// `500`: a bug. The detail never says more than this.
    pub fn internal() -> Self {
        Problem::new(
            500,
            "internal_error",
            "an unexpected error occurred; it has been logged",
        )
    }

    /// Maps an unexpected error to `503` (database unreachable) or `500` (anything else).
    /// Unreachable is any cause in the chain that is [`Unavailable`] or, with the `db`
    /// feature, a lost connection however it was wrapped (`kernel::db::is_unavailable`).
    /// The caller logs it; the body never contains the cause.
    pub fn from_unexpected(error: &anyhow::Error) -> Self {
        if error.chain().any(unavailable_cause) {
            Problem::unavailable()
        } else {
            Problem::internal()
        }
    }
}

/// The plain kernel knows only its marker; with `db`, the database plumbing also recognises
/// diesel's and the pool's own errors (no crate can hold a diesel error without `db`: every
/// crate that uses diesel enables it).
#[cfg(feature = "db")]
fn unavailable_cause(cause: &(dyn std::error::Error + 'static)) -> bool {
    crate::db::is_unavailable_cause(cause)
}

#[cfg(not(feature = "db"))]
fn unavailable_cause(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause.is::<Unavailable>()
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

/// The reason phrase of `status`: RFC 9110's names (`http`'s table, which still says
/// "Payload Too Large" and "Unprocessable Entity" where RFC 9110 renamed them).
fn title(status: u16) -> &'static str {
    match status {
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        _ => http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown Status"),
    }
}

/// An error that states its own answer. Every `-api` error enum implements it once, in its
/// `-api` crate, so each status, `code` and detail is written in one place; a module that
/// passes another module's error on wraps it and delegates.
pub trait IntoProblem {
    /// The problem a client gets; `Err` with the cause for an unexpected failure, which
    /// the HTTP layer logs with its chain and answers `500` (or `503` when the chain holds
    /// [`Unavailable`] or a lost database connection).
    fn into_problem(self) -> Result<Problem, anyhow::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc9457_fields() {
        let p = Problem::validation(vec![FieldError::new("email", "is required")]);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["status"], 422);
        assert_eq!(json["type"], "urn:emporium:problem:validation_failed");
        assert_eq!(json["title"], "Unprocessable Content");
        assert_eq!(json["errors"][0]["field"], "email");
        let conflict = serde_json::to_value(Problem::conflict("email_taken", "x")).unwrap();
        assert!(
            conflict.get("errors").is_none(),
            "errors only on validation failures"
        );
    }

    #[test]
    fn every_status_has_its_reason_phrase() {
        let cases = [
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (402, "Payment Required"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (409, "Conflict"),
            (412, "Precondition Failed"),
            (413, "Content Too Large"),
            (415, "Unsupported Media Type"),
            (422, "Unprocessable Content"),
            (429, "Too Many Requests"),
            (500, "Internal Server Error"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
        ];
        for (status, reason) in cases {
            assert_eq!(Problem::new(status, "x", "y").title, reason, "{status}");
        }
    }

    #[test]
    fn unexpected_errors_hide_their_cause() {
        let db_down =
            anyhow::Error::new(Unavailable("connection refused".into())).context("loading user");
        assert_eq!(Problem::from_unexpected(&db_down).status, 503);
        let bug = anyhow::anyhow!("syntax error at or near SELECT");
        let p = Problem::from_unexpected(&bug);
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("SELECT"));
    }
}
