//! `/users` routes: JSON in, [`UserApi`] calls, JSON or problem+json out. The one place
//! that maps [`UserError`] to HTTP.

use actix_web::{HttpResponse, web};
use kernel::http::{JsonBody, PROBLEM_JSON};
use kernel::openapi::{PayloadTooLarge, Routes, ServiceUnavailable, UnsupportedMediaType};
use kernel::{Problem, UserId, Validation};
use serde::Deserialize;
use users_api::{NewUser, User, UserApi, UserChanges};
use utoipa::ToSchema;

/// The `/users` routes, each served at the method and path its `#[utoipa::path]` declares
/// (and so documented).
pub fn endpoints() -> Routes {
    Routes::default()
        .add(__path_register, register)
        .add(__path_get, get)
        .add(__path_update, update)
}

/// Mounts `/users`. Expects `web::Data<dyn UserApi>` in the app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    endpoints().mount(cfg);
}

/// A new user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewUser)]
struct RegisterBody {
    /// A valid address; trimmed and stored lower-case; unique.
    #[schema(required = true, value_type = String, format = Email, examples("ada@example.com"))]
    email: Option<String>,
    /// 1 to 200 characters after trimming; no control characters.
    #[schema(required = true, value_type = String, examples("Ada Lovelace"))]
    name: Option<String>,
}

/// Register a user
///
/// The new user is active. A missing or invalid field is `422` with one entry per field in
/// `errors`.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    operation_id = "register_user",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered.", body = User,
            headers(("Location" = String, description = "`/users/{id}` of the new user"))),
        (status = 400, description = "`malformed_json`, or `invalid_body`: not a JSON object, a \
            wrong JSON type or an unknown field.", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`email_taken`: another user has this email.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: a missing or invalid `email` or \
            `name` (see `errors`).", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn register(
    api: web::Data<dyn UserApi>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<HttpResponse, Problem> {
    let mut v = Validation::default();
    let email = v.require("email", body.email);
    let name = v.require("name", body.name);
    v.finish().map_err(Problem::validation)?;
    let input = NewUser {
        email: email.unwrap_or_default(),
        name: name.unwrap_or_default(),
    };
    let user = api.register(input).await.map_err(kernel::http::problem)?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/users/{}", user.id)))
        .json(user))
}

/// Get a user
#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    operation_id = "get_user",
    params(("id" = UserId, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "The user.", body = User),
        (status = 400, description = "`invalid_path`: the id is not a UUID.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 404, description = "`user_not_found`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn get(api: web::Data<dyn UserApi>, id: web::Path<UserId>) -> Result<HttpResponse, Problem> {
    let user = api
        .get(id.into_inner())
        .await
        .map_err(kernel::http::problem)?;
    Ok(HttpResponse::Ok().json(user))
}

/// Changes to a user: any of the fields; an absent or `null` field stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserChanges)]
struct UpdateBody {
    /// A valid address, unique; stored lower-case.
    #[schema(format = Email)]
    email: Option<String>,
    /// 1 to 200 characters after trimming.
    name: Option<String>,
    /// `false` stops the user from placing orders.
    active: Option<bool>,
}

/// Change a user
///
/// Only the fields sent change; `null` means "leave as is", and an empty object answers
/// `200` and changes nothing (not even `updated_at`). A new name or email reaches the
/// `user_name` and `user_email` of the user's orders in the read model, eventually.
#[utoipa::path(
    patch,
    path = "/users/{id}",
    tag = "users",
    operation_id = "update_user",
    params(("id" = UserId, Path, description = "The user's id.")),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The user after the change.", body = User),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `malformed_json`, or \
            `invalid_body`: not a JSON object, a wrong JSON type or an unknown field.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`user_not_found`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 409, description = "`email_taken`: another user has this email.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: an invalid `email` or `name` (see \
            `errors`).", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn update(
    api: web::Data<dyn UserApi>,
    id: web::Path<UserId>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<HttpResponse, Problem> {
    let UpdateBody {
        email,
        name,
        active,
    } = body;
    let user = api
        .update(
            id.into_inner(),
            UserChanges {
                email,
                name,
                active,
            },
        )
        .await
        .map_err(kernel::http::problem)?;
    Ok(HttpResponse::Ok().json(user))
}
