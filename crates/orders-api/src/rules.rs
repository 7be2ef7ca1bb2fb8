//! Who may do what with orders: the contract's table "Who may do what", for this module,
//! written once for both its sides (commands in `crates/orders`, queries in
//! `crates/orders-read`). Plain functions of the [`Principal`]; the handlers ask them
//! before they call the module, and a [`Scope`] carries the answer into a command, which
//! checks it under the order's row lock.

use kernel::{Principal, Problem, Role, UserId};

use crate::Scope;

/// Who may act on any customer's orders (place, confirm, cancel).
pub const ORDER_STAFF: [Role; 2] = [Role::Support, Role::Admin];
/// Who may ship and deliver.
pub const FULFILMENT_STAFF: [Role; 2] = [Role::Fulfilment, Role::Admin];
/// Who may read every order.
pub const READERS: [Role; 3] = [Role::Fulfilment, Role::Support, Role::Admin];

/// `POST /commands/orders`: whose order it is. A customer places for themself (`user_id`
/// omitted or their own; another's is `403`); `support` and `admin` for anyone (themself
/// when omitted). `401` for anonymous callers, `403` for the admin token.
pub fn placer(principal: &Principal, user_id: Option<UserId>) -> Result<UserId, Problem> {
    let me = principal.require_user()?;
    match user_id {
        None => Ok(me),
        Some(user) if user == me || principal.is_any(&ORDER_STAFF) => Ok(user),
        Some(_) => Err(Problem::forbidden(
            "a customer places orders for themself only; omit user_id",
        )),
    }
}

/// Confirm and cancel: `support` and `admin` reach any order, a customer their own.
pub fn command_scope(principal: &Principal) -> Result<Scope, Problem> {
    let me = principal.require_user()?;
    Ok(if principal.is_any(&ORDER_STAFF) {
        Scope::Any
    } else {
        Scope::Own(me)
    })
}

/// Ship and deliver: `fulfilment` and `admin`.
pub fn may_fulfil(principal: &Principal) -> Result<(), Problem> {
    principal.require_any(&FULFILMENT_STAFF)
}

/// `GET /queries/orders/{id}`: `fulfilment`, `support` and `admin` read every order, a
/// customer their own (anyone else's is `404`, as an unknown one).
pub fn read_scope(principal: &Principal) -> Result<Scope, Problem> {
    let me = principal.require_user()?;
    Ok(if principal.is_any(&READERS) {
        Scope::Any
    } else {
        Scope::Own(me)
    })
}

/// `GET /queries/orders?user_id=`: the user filter a list runs with. A customer's list is
/// always their own (`user_id` omitted or theirs; another's is `403`); staff list anyone's,
/// or everyone's.
pub fn list_filter(
    principal: &Principal,
    user_id: Option<UserId>,
) -> Result<Option<UserId>, Problem> {
    match read_scope(principal)? {
        Scope::Any => Ok(user_id),
        Scope::Own(me) if user_id.is_none_or(|u| u == me) => Ok(Some(me)),
        Scope::Own(_) => Err(Problem::forbidden(
            "a customer lists their own orders only; omit user_id",
        )),
    }
}

impl Scope {
    /// Whether a thing of `owner`'s is within reach.
    pub fn reaches(&self, owner: UserId) -> bool {
        match self {
            Scope::Any => true,
            Scope::Own(me) => *me == owner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status<T>(result: Result<T, Problem>) -> u16 {
        result.map_or_else(|p| p.status, |_| 200)
    }

    #[test]
    fn the_table() {
        let me = UserId::generate();
        let other = UserId::generate();
        let user = |roles: &[Role]| Principal::User {
            id: me,
            roles: roles.to_vec(),
        };
        // (principal, place for self, place for other, confirm/cancel, ship/deliver,
        //  read, list other's)
        let cases = [
            (
                "anonymous",
                Principal::Anonymous,
                [401, 401, 401, 401, 401, 401],
            ),
            (
                "admin token",
                Principal::AdminToken,
                [403, 403, 403, 403, 403, 403],
            ),
            ("customer", user(&[]), [200, 403, 200, 403, 200, 403]),
            (
                "catalog",
                user(&[Role::Catalog]),
                [200, 403, 200, 403, 200, 403],
            ),
            (
                "fulfilment",
                user(&[Role::Fulfilment]),
                [200, 403, 200, 200, 200, 200],
            ),
            (
                "support",
                user(&[Role::Support]),
                [200, 200, 200, 403, 200, 200],
            ),
            (
                "admin",
                user(&[Role::Admin]),
                [200, 200, 200, 200, 200, 200],
            ),
        ];
        for (name, principal, expected) in cases {
            let got = [
                status(placer(&principal, Some(me))),
                status(placer(&principal, Some(other))),
                status(command_scope(&principal)),
                status(may_fulfil(&principal)),
                status(read_scope(&principal)),
                status(list_filter(&principal, Some(other))),
            ];
            assert_eq!(got, expected, "{name}");
        }
        let customer = user(&[]);
        assert_eq!(placer(&customer, None).unwrap(), me);
        assert_eq!(command_scope(&customer).unwrap(), Scope::Own(me));
        assert_eq!(list_filter(&customer, None).unwrap(), Some(me));
        assert_eq!(list_filter(&user(&[Role::Support]), None).unwrap(), None);
        assert_eq!(command_scope(&user(&[Role::Support])).unwrap(), Scope::Any);
        assert_eq!(read_scope(&user(&[Role::Fulfilment])).unwrap(), Scope::Any);
        assert_eq!(
            command_scope(&user(&[Role::Fulfilment])).unwrap(),
            Scope::Own(me)
        );
        assert!(Scope::Own(me).reaches(me) && !Scope::Own(me).reaches(other));
        assert!(Scope::Any.reaches(other));
    }
}
