//! The users module's routes: `/users` ([`users`]), and `/auth` with the JWKS ([`auth`]).
//! The one place that maps [`users_api::UserError`] to HTTP.

mod auth;
mod users;

use actix_web::web;
use kernel::openapi::Routes;

/// Every route of the module, each served at the method and path its `#[utoipa::path]`
/// declares (and so documented).
pub fn endpoints() -> Routes {
    auth::endpoints(users::endpoints(Routes::default()))
}

/// Mounts the module's routes. Expects `web::Data<dyn UserApi>` and `web::Data<Auth>` in
/// the app data (and a `kernel::auth::Authenticator` for the bearer tokens).
pub fn routes(cfg: &mut web::ServiceConfig) {
    endpoints().mount(cfg);
}
