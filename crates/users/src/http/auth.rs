//! `/auth/token`, `/auth/revoke` and `/.well-known/jwks.json`.

use actix_web::{HttpResponse, web};
use kernel::http::{JsonBody, PROBLEM_JSON};
use kernel::openapi::{PayloadTooLarge, Routes, ServiceUnavailable, UnsupportedMediaType};
use kernel::{Problem, Validation};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};

use crate::auth::{Auth, Jwks, TokenPair};

pub(super) fn endpoints(routes: Routes) -> Routes {
    routes
        .add(__path_token, token)
        .add(__path_revoke, revoke)
        .add(__path_jwks, jwks)
}

/// A token request: `password` (with `email` and `password`) or `refresh_token` (with
/// `refresh_token`); the other grant's fields may be absent or `null`, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    grant_type: Option<String>,
    email: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
}

impl utoipa::ToSchema for TokenBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "TokenRequest".into()
    }
}

/// The two grants, each a closed object (see [`TokenBody`]).
impl utoipa::PartialSchema for TokenBody {
    fn schema() -> RefOr<Schema> {
        let string = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        let null = || ObjectBuilder::new().schema_type(Type::Null);
        let grant = |name: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([name]))
        };
        let password = ObjectBuilder::new()
            .title(Some("PasswordGrant"))
            .property("grant_type", grant("password"))
            .property(
                "email",
                string("The user's email (any text: a wrong one is `401`).")
                    .examples(["ada@example.com"]),
            )
            .property(
                "password",
                string("The user's password.")
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password))),
            )
            .property("refresh_token", null())
            .required("grant_type")
            .required("email")
            .required("password")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let refresh = ObjectBuilder::new()
            .title(Some("RefreshGrant"))
            .property("grant_type", grant("refresh_token"))
            .property(
                "refresh_token",
                string("The refresh token of the last pair (any text: a wrong one is `401`)."),
            )
            .property("email", null())
            .property("password", null())
            .required("grant_type")
            .required("refresh_token")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        OneOfBuilder::new()
            .item(password)
            .item(refresh)
            .description(Some(
                "A password login, or a refresh. A field of the other grant may be absent or \
                 `null`, not set.",
            ))
            .into()
    }
}

/// Log in, or refresh
///
/// `grant_type` `password` checks the email and password: a wrong email, a wrong password
/// and an inactive user all answer the same `401 invalid_credentials`, and after 5
/// failures for one email within the lock window (15 minutes) every attempt for it is
/// `429` with `Retry-After`, right password or not. `refresh_token` exchanges the refresh
/// token for a new pair; each refresh token works once, and presenting a spent one again
/// revokes every token of its login.
#[utoipa::path(
    post,
    path = "/auth/token",
    tag = "auth",
    operation_id = "token",
    request_body = TokenBody,
    responses(
        (status = 200, description = "A new access token and refresh token.", body = TokenPair),
        (status = 400, description = "`malformed_json`, or `invalid_body`: not a JSON object, a \
            wrong JSON type or an unknown field.", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "`invalid_credentials`: wrong email or password, or an \
            inactive user; `invalid_grant`: an unknown, expired, revoked or spent refresh \
            token.", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: a missing or unknown `grant_type`, \
            a field its grant needs, or one of the other grant's (see `errors`).", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 429, description = "`too_many_attempts`: 5 failed logins for this email \
            within the window.", body = Problem, content_type = PROBLEM_JSON,
            headers(("Retry-After" = u32, description = "Seconds until the email is unlocked."))),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn token(
    auth: web::Data<Auth>,
    JsonBody(body): JsonBody<TokenBody>,
) -> Result<HttpResponse, Problem> {
    let mut v = Validation::default();
    let grant = v.require("grant_type", body.grant_type);
    let pair = match grant.as_deref() {
        Some("password") => {
            if body.refresh_token.is_some() {
                v.push("refresh_token", "is not allowed with grant_type password");
            }
            let email = v.require("email", body.email);
            let password = v.require("password", body.password);
            v.finish().map_err(Problem::validation)?;
            auth.login(&email.unwrap_or_default(), password.unwrap_or_default())
                .await
        }
        Some("refresh_token") => {
            for (field, value) in [("email", &body.email), ("password", &body.password)] {
                if value.is_some() {
                    v.push(field, "is not allowed with grant_type refresh_token");
                }
            }
            let token = v.require("refresh_token", body.refresh_token);
            v.finish().map_err(Problem::validation)?;
            auth.refresh(&token.unwrap_or_default()).await
        }
        Some(_) => {
            v.push("grant_type", "must be password or refresh_token");
            return Err(Problem::validation(v.finish().unwrap_err()));
        }
        None => return Err(Problem::validation(v.finish().unwrap_err())),
    };
    let pair = pair.map_err(kernel::http::problem)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(pair))
}

/// A logout.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RevokeRequest)]
struct RevokeBody {
    /// The refresh token to revoke, with every token of its login.
    #[schema(required = true, value_type = String)]
    refresh_token: Option<String>,
}

/// Log out
///
/// Revokes the refresh token and every token descended from the same login. An unknown
/// token is also `204`. Access tokens already issued run out at their `exp`.
#[utoipa::path(
    post,
    path = "/auth/revoke",
    tag = "auth",
    operation_id = "revoke",
    request_body = RevokeBody,
    responses(
        (status = 204, description = "Revoked (or unknown)."),
        (status = 400, description = "`malformed_json`, or `invalid_body`: not a JSON object, a \
            wrong JSON type or an unknown field.", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: no `refresh_token`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn revoke(
    auth: web::Data<Auth>,
    JsonBody(body): JsonBody<RevokeBody>,
) -> Result<HttpResponse, Problem> {
    let mut v = Validation::default();
    let token = v.require("refresh_token", body.refresh_token);
    v.finish().map_err(Problem::validation)?;
    auth.revoke(&token.unwrap_or_default())
        .await
        .map_err(kernel::http::problem)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Signing keys
///
/// The public keys that verify access tokens (RFC 7517, `OKP`/`Ed25519`): the one that
/// signs now and any older one whose tokens may not have expired yet.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    operation_id = "jwks",
    responses(
        (status = 200, description = "The key set.", body = Jwks),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn jwks(auth: web::Data<Auth>) -> Result<HttpResponse, Problem> {
    let keys = auth
        .tokens()
        .jwks()
        .await
        .map_err(kernel::http::unexpected)?;
    Ok(HttpResponse::Ok().json(keys))
}
