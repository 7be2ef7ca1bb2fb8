//! `/users` routes: JSON in, the rules of [`crate::rules`], [`UserApi`] calls, JSON or
//! problem+json out.

use actix_web::{HttpRequest, HttpResponse, web};
use kernel::http::{Caching, JsonBody, PROBLEM_JSON};
use kernel::openapi::{
    NotModified, PayloadTooLarge, Revalidate, Routes, ServiceUnavailable, Unauthenticated,
    UnsupportedMediaType,
};
use kernel::{Principal, Problem, Role, UserId, Validation};
use serde::Deserialize;
use users_api::{NewUser, User, UserApi, UserChanges};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::rules::{self, Wants};

pub(super) fn endpoints(routes: Routes) -> Routes {
    routes
        .add(__path_register, register)
        .add(__path_me, me)
        .add(__path_get, get)
        .add(__path_update, update)
        .add(__path_set_roles, set_roles)
}

fn email(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(crate::domain::email_pattern()))
        .description(Some(format!(
            "{description} At most 254 characters besides whitespace at either end (trimmed): \
             a local part of 1 to 64 ASCII letters, digits and `!#$%&'*+/=?^_{{|}}~.-` (and \
             the backtick), without a dot at either end or two in a row; `@`; a domain of two \
             or more labels of letters, digits and `-` (1 to 63, no `-` at either end), the \
             last with a letter. Stored lower-case; unique."
        )))
        .examples(["ada@example.com"])
}

fn email_schema() -> Object {
    email("A valid address.").build()
}

fn new_email_schema() -> Object {
    kernel::input::or_null(email(
        "A new address (with `current_password`, for oneself).",
    ))
}

fn name_schema() -> Object {
    kernel::input::line_schema(crate::domain::UserName::MAX_CHARS, "A display name.")
        .examples(["Ada Lovelace"])
        .build()
}

fn new_name_schema() -> Object {
    kernel::input::or_null(kernel::input::line_schema(
        crate::domain::UserName::MAX_CHARS,
        "A new display name.",
    ))
}

/// A new user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewUser)]
struct RegisterBody {
    #[schema(required = true, schema_with = email_schema)]
    email: Option<String>,
    #[schema(required = true, schema_with = name_schema)]
    name: Option<String>,
    /// 10 to 256 characters; never stored (argon2id), logged or echoed.
    #[schema(required = true, value_type = String, format = Password, min_length = 10, max_length = 256)]
    password: Option<String>,
}

/// Register a user
///
/// Anyone may register, anonymous callers included. The new user is an active customer
/// (`"roles": []`). A missing or invalid field is `422` with one entry per field in
/// `errors`; the password is never echoed, not even in an error.
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
        (status = 422, description = "`validation_failed`: a missing or invalid `email`, \
            `name` or `password` (see `errors`).", body = Problem, content_type = PROBLEM_JSON),
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
    let password = v.require("password", body.password);
    v.finish().map_err(Problem::validation)?;
    let input = NewUser {
        email: email.unwrap_or_default(),
        name: name.unwrap_or_default(),
        password: password.unwrap_or_default(),
    };
    let user = api.register(input).await.map_err(kernel::http::problem)?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/users/{}", user.id)))
        .json(user))
}

/// The caller
///
/// The user the access token stands for (a customer or staff alike). A conditional read:
/// `ETag`, and `304` for an `If-None-Match` that names it.
#[utoipa::path(
    get,
    path = "/users/me",
    tag = "users",
    operation_id = "get_me",
    security(("bearer" = [])),
    params(Revalidate),
    responses(
        (status = 200, description = "The caller.", body = User,
            headers(("ETag" = String, description = "A weak validator (a hash of the answer): \
                    send it in `If-None-Match`."),
                ("Cache-Control" = String, description = "`private, no-cache`: the caller's \
                    browser may keep it and revalidate it; a shared cache does not keep it."))),
        (status = 304, response = NotModified),
        (status = 400, description = "`invalid_header`: an `If-None-Match` that is not a list \
            of entity tags.", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the admin token is not a user.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn me(
    api: web::Data<dyn UserApi>,
    req: HttpRequest,
    principal: Principal,
) -> Result<HttpResponse, Problem> {
    let id = principal.require_user()?;
    let user = api.get(id).await.map_err(kernel::http::problem)?;
    kernel::http::cached_json(&req, Caching::Private, &user)
}

/// Get a user
///
/// The user themself, `support` or `admin`. Anyone else gets the same `404` as for an
/// unknown id. A conditional read: `ETag`, and `304` for an `If-None-Match` that names it.
#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    operation_id = "get_user",
    security(("bearer" = [])),
    params(("id" = UserId, Path, description = "The user's id."), Revalidate),
    responses(
        (status = 200, description = "The user.", body = User,
            headers(("ETag" = String, description = "A weak validator (a hash of the answer): \
                    send it in `If-None-Match`."),
                ("Cache-Control" = String, description = "`private, no-cache`: the caller's \
                    browser may keep it and revalidate it; a shared cache does not keep it."))),
        (status = 304, response = NotModified),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `invalid_header`: an \
            `If-None-Match` that is not a list of entity tags.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the admin token is not a user.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`user_not_found`: unknown, or not the caller's to see.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn get(
    api: web::Data<dyn UserApi>,
    req: HttpRequest,
    principal: Principal,
    id: web::Path<UserId>,
) -> Result<HttpResponse, Problem> {
    let id = id.into_inner();
    rules::may_read(&principal, id)?;
    let user = api.get(id).await.map_err(kernel::http::problem)?;
    kernel::http::cached_json(&req, Caching::Private, &user)
}

/// Changes to a user: any of the fields; an absent or `null` field stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserChanges)]
struct UpdateBody {
    #[schema(schema_with = new_email_schema)]
    email: Option<String>,
    #[schema(schema_with = new_name_schema)]
    name: Option<String>,
    /// `false` stops the user from placing orders and revokes their refresh tokens;
    /// `support` and `admin` only.
    active: Option<bool>,
    /// A new password, 10 to 256 characters; the user themself only, with
    /// `current_password`. Revokes their refresh tokens.
    #[schema(format = Password, min_length = 10, max_length = 256)]
    password: Option<String>,
    /// The present password: needed when a user changes their own email or password.
    #[schema(format = Password)]
    current_password: Option<String>,
}

/// Change a user
///
/// Only the fields sent change; `null` means "leave as is", and an empty object answers
/// `200` and changes nothing (not even `updated_at`). A new name or email reaches the
/// `user_name` and `user_email` of the user's orders in the read model, eventually.
///
/// The user themself changes `name`, `email` and `password` (`email` and `password` with
/// `current_password`); `support` and `admin` change anyone's `name`, `email` and
/// `active`. Another customer gets the same `404` as for an unknown id.
#[utoipa::path(
    patch,
    path = "/users/{id}",
    tag = "users",
    operation_id = "update_user",
    security(("bearer" = [])),
    params(("id" = UserId, Path, description = "The user's id.")),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The user after the change.", body = User),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `malformed_json`, or \
            `invalid_body`: not a JSON object, a wrong JSON type or an unknown field.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: a field the caller may not change, the \
            admin token, or a `current_password` that does not match.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 404, description = "`user_not_found`: unknown, or not the caller's to change.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`email_taken`: another user has this email.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: an invalid `email`, `name` or \
            `password`, or a missing `current_password` (see `errors`).", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn update(
    api: web::Data<dyn UserApi>,
    principal: Principal,
    id: web::Path<UserId>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<HttpResponse, Problem> {
    let id = id.into_inner();
    let UpdateBody {
        email,
        name,
        active,
        password,
        current_password,
    } = body;
    let wants = Wants {
        email: email.is_some(),
        password: password.is_some(),
        active: active.is_some(),
    };
    let needs_current = rules::may_change(&principal, id, wants)?;
    if needs_current && current_password.is_none() {
        let mut v = Validation::default();
        v.push(
            "current_password",
            "is required to change your email or password",
        );
        return Err(Problem::validation(v.finish().unwrap_err()));
    }
    let changes = UserChanges {
        email,
        name,
        active,
        password,
        current_password: current_password.filter(|_| needs_current),
    };
    let user = api
        .update(id, changes)
        .await
        .map_err(kernel::http::problem)?;
    Ok(HttpResponse::Ok().json(user))
}

/// The staff roles of a user: the whole new set.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserRoles)]
struct RolesBody {
    /// Each one of `catalog`, `fulfilment`, `support`, `admin`; `[]` makes the user a
    /// customer again.
    #[schema(required = true, value_type = Vec<Role>)]
    roles: Option<Vec<String>>,
}

/// Set a user's roles
///
/// `admin` only (or `ADMIN_TOKEN`). Replaces the user's roles and revokes their refresh
/// tokens; access tokens already issued keep their roles until `exp`.
#[utoipa::path(
    put,
    path = "/users/{id}/roles",
    tag = "users",
    operation_id = "set_user_roles",
    security(("bearer" = [])),
    params(("id" = UserId, Path, description = "The user's id.")),
    request_body = RolesBody,
    responses(
        (status = 200, description = "The user with the new roles.", body = User),
        (status = 400, description = "`invalid_path`: the id is not a UUID; `malformed_json`, or \
            `invalid_body`: not a JSON object, a wrong JSON type or an unknown field.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "`forbidden`: the caller is not an admin.",
            body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`user_not_found`.", body = Problem,
            content_type = PROBLEM_JSON),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`validation_failed`: `roles` missing or naming an \
            unknown role (see `errors`).", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, response = ServiceUnavailable),
    )
)]
async fn set_roles(
    api: web::Data<dyn UserApi>,
    principal: Principal,
    id: web::Path<UserId>,
    JsonBody(body): JsonBody<RolesBody>,
) -> Result<HttpResponse, Problem> {
    rules::may_set_roles(&principal)?;
    let mut v = Validation::default();
    let texts = v.require("roles", body.roles).unwrap_or_default();
    let roles: Vec<Role> = texts
        .iter()
        .enumerate()
        .filter_map(|(i, t)| v.check(&format!("roles[{i}]"), t.parse::<Role>()))
        .collect();
    v.finish().map_err(Problem::validation)?;
    let user = api
        .set_roles(id.into_inner(), roles)
        .await
        .map_err(kernel::http::problem)?;
    Ok(HttpResponse::Ok().json(user))
}
