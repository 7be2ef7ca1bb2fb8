//! Who may do what on `/users`: the contract's table "Who may do what", for this module,
//! written once. Handlers ask these before they call the service.

use kernel::{Principal, Problem, Role, UserId};
use users_api::UserError;

/// Who may see any user's account.
pub(crate) const ACCOUNT_STAFF: [Role; 2] = [Role::Support, Role::Admin];

/// The `404` a caller gets for a user they may not see: the same as for an unknown id.
fn hidden(target: UserId) -> Problem {
    kernel::http::problem(UserError::NotFound(target))
}

fn not_for_admin_token(principal: &Principal) -> Result<(), Problem> {
    principal.require_authenticated()?;
    if matches!(principal, Principal::AdminToken) {
        return Err(Problem::forbidden(
            "the admin token only grants roles here; use an access token",
        ));
    }
    Ok(())
}

/// `GET /users/{id}`: the user themself, `support`, `admin`.
pub(crate) fn may_read(principal: &Principal, target: UserId) -> Result<(), Problem> {
    not_for_admin_token(principal)?;
    if principal.is_user(target) || principal.is_any(&ACCOUNT_STAFF) {
        Ok(())
    } else {
        Err(hidden(target))
    }
}

/// Which fields a `PATCH /users/{id}` sets, besides `name` (which whoever may change the
/// user at all may change).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wants {
    pub(crate) email: bool,
    pub(crate) password: bool,
    pub(crate) active: bool,
}

/// `PATCH /users/{id}`: the user changes their name, email and password (email and
/// password with `current_password`); `support` and `admin` change anyone's name, email
/// and `active`, and only their own password. Answers whether `current_password` is
/// needed.
pub(crate) fn may_change(
    principal: &Principal,
    target: UserId,
    wants: Wants,
) -> Result<bool, Problem> {
    not_for_admin_token(principal)?;
    let me = principal.is_user(target);
    let staff = principal.is_any(&ACCOUNT_STAFF);
    if !me && !staff {
        return Err(hidden(target));
    }
    if wants.active && !staff {
        return Err(Problem::forbidden(
            "only support or admin may activate or deactivate a user",
        ));
    }
    if wants.password && !me {
        return Err(Problem::forbidden(
            "only the user may change their password",
        ));
    }
    Ok(me && (wants.password || (wants.email && !staff)))
}

/// `PUT /users/{id}/roles`: `admin`, or the admin token.
pub(crate) fn may_set_roles(principal: &Principal) -> Result<(), Problem> {
    principal.require_admin()
}

/// The `401`/`403` answer of a rule, for tests.
#[cfg(test)]
fn status(result: Result<impl Sized, Problem>) -> u16 {
    result.map(|_| 200).unwrap_or_else(|p| p.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let me = UserId::generate();
        let other = UserId::generate();
        let user = |id, roles: &[Role]| Principal::User {
            id,
            roles: roles.to_vec(),
        };
        let principals = [
            ("anonymous", Principal::Anonymous),
            ("self", user(me, &[])),
            ("another customer", user(other, &[])),
            ("catalog", user(other, &[Role::Catalog])),
            ("fulfilment", user(other, &[Role::Fulfilment])),
            ("support", user(other, &[Role::Support])),
            ("admin", user(other, &[Role::Admin])),
            ("admin token", Principal::AdminToken),
        ];
        let name = Wants::default();
        let email = Wants {
            email: true,
            ..Wants::default()
        };
        let password = Wants {
            password: true,
            ..Wants::default()
        };
        let active = Wants {
            active: true,
            ..Wants::default()
        };
        // (read, name, email, password, active, set roles); 201 = allowed with
        // current_password
        let expected = [
            [401, 401, 401, 401, 401, 401],
            [200, 200, 201, 201, 403, 403],
            [404, 404, 404, 404, 404, 403],
            [404, 404, 404, 404, 404, 403],
            [404, 404, 404, 404, 404, 403],
            [200, 200, 200, 403, 200, 403],
            [200, 200, 200, 403, 200, 200],
            [403, 403, 403, 403, 403, 200],
        ];
        let change = |p: &Principal, w| match may_change(p, me, w) {
            Ok(true) => 201,
            other => status(other),
        };
        for ((label, p), row) in principals.iter().zip(expected) {
            let got = [
                status(may_read(p, me)),
                change(p, name),
                change(p, email),
                change(p, password),
                change(p, active),
                status(may_set_roles(p)),
            ];
            assert_eq!(got, row, "{label}");
        }
    }
}
