//! `/users` routes: JSON in, [`UserApi`] calls, JSON or problem+json out. The one place
//! that maps [`UserError`] to HTTP.

use actix_web::{HttpResponse, web};
use kernel::http::JsonBody;
use kernel::{Problem, UserId, Validation};
use serde::Deserialize;
use user_api::{NewUser, UserApi, UserChanges, UserError};

/// Mounts `/users`. Expects `web::Data<dyn UserApi>` in the app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users").route(web::post().to(register)))
        .service(
            web::resource("/users/{id}")
                .route(web::get().to(get))
                .route(web::patch().to(update)),
        );
}

fn problem(error: UserError) -> Problem {
    match error {
        UserError::NotFound(id) => {
            Problem::not_found("user_not_found", format!("user {id} does not exist"))
        }
        UserError::EmailTaken(email) => Problem::conflict(
            "email_taken",
            format!("email {email} is already registered"),
        ),
        UserError::Invalid(errors) => Problem::validation(errors),
        UserError::Unexpected(e) => kernel::http::unexpected(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    email: Option<String>,
    name: Option<String>,
}

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
    let user = api.register(input).await.map_err(problem)?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/users/{}", user.id)))
        .json(user))
}

async fn get(api: web::Data<dyn UserApi>, id: web::Path<UserId>) -> Result<HttpResponse, Problem> {
    let user = api.get(id.into_inner()).await.map_err(problem)?;
    Ok(HttpResponse::Ok().json(user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    email: Option<String>,
    name: Option<String>,
    active: Option<bool>,
}

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
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(user))
}
