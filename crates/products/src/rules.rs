//! Who may do what on `/products`: the contract's table "Who may do what", for this
//! module, written once. Reading the catalog is open to anyone, anonymous included;
//! changing it (create, change, restock) needs `catalog` or `admin`.

use kernel::{Principal, Problem, Role};

/// Who may change the catalog.
pub(crate) const CATALOG_STAFF: [Role; 2] = [Role::Catalog, Role::Admin];

/// `POST /products`, `PATCH /products/{id}`, `POST /products/{id}/restock`: `401` for
/// anonymous callers, `403` for anyone holding neither role (the admin token included).
pub(crate) fn may_change_catalog(principal: &Principal) -> Result<(), Problem> {
    principal.require_any(&CATALOG_STAFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::UserId;

    #[test]
    fn the_table() {
        let user = |roles: &[Role]| Principal::User {
            id: UserId::generate(),
            roles: roles.to_vec(),
        };
        let cases = [
            (Principal::Anonymous, 401),
            (user(&[]), 403),
            (user(&[Role::Fulfilment, Role::Support]), 403),
            (Principal::AdminToken, 403),
            (user(&[Role::Catalog]), 200),
            (user(&[Role::Admin]), 200),
        ];
        for (principal, expected) in cases {
            let status = may_change_catalog(&principal).map_or_else(|p| p.status, |()| 200);
            assert_eq!(status, expected, "{principal:?}");
        }
    }
}
