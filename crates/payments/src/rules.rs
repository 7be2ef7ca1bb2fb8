//! Who may see which payments: the contract's table "Who may do what", for this module,
//! written once. `support` and `admin` see every payment; a customer the payments of
//! their own orders (whose an order is, the orders module answers: `OrderOwners`);
//! anyone else's is answered as if it did not exist.

use kernel::{Principal, Problem, Role, UserId};

/// Who may see every payment.
pub(crate) const PAYMENT_STAFF: [Role; 2] = [Role::Support, Role::Admin];

/// Whose payments the caller may see: `None` for everyone's, `Some(user)` for the orders
/// `user` placed. `401` for anonymous callers, `403` for the admin token.
pub(crate) fn viewer(principal: &Principal) -> Result<Option<UserId>, Problem> {
    let me = principal.require_user()?;
    Ok((!principal.is_any(&PAYMENT_STAFF)).then_some(me))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let me = UserId::generate();
        let user = |roles: &[Role]| Principal::User {
            id: me,
            roles: roles.to_vec(),
        };
        let status = |p: &Principal| viewer(p).map_or_else(|p| p.status, |_| 200);
        assert_eq!(status(&Principal::Anonymous), 401);
        assert_eq!(status(&Principal::AdminToken), 403);
        for roles in [&[][..], &[Role::Catalog], &[Role::Fulfilment]] {
            assert_eq!(viewer(&user(roles)).unwrap(), Some(me), "{roles:?}");
        }
        for roles in [[Role::Support], [Role::Admin]] {
            assert_eq!(viewer(&user(&roles)).unwrap(), None, "{roles:?}");
        }
    }
}
