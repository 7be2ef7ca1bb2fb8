//! Who may change the catalog, over HTTP (the contract's table, the products rows):
//! anyone reads it; only `catalog` and `admin` create, change and restock, and every
//! refusal changes nothing.

use kernel::Role;
use serde_json::json;

use crate::spawn_app;

#[tokio::test]
async fn only_catalog_staff_change_the_catalog() {
    let app = spawn_app().await;
    let created = app
        .http
        .post(
            "/products",
            json!({"name": "Mug", "price": "9.50", "stock": 3}),
        )
        .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let before = app.api.get(id.parse().unwrap()).await.unwrap();

    let writes = [
        (
            "POST",
            "/products".to_owned(),
            json!({"name": "Fake", "price": "0.01"}),
        ),
        ("PATCH", format!("/products/{id}"), json!({"price": "0.01"})),
        (
            "POST",
            format!("/products/{id}/restock"),
            json!({"quantity": 5}),
        ),
    ];
    let refused = [
        (app.http.anonymous(), 401, "unauthenticated"),
        (
            app.http.as_customer(kernel::UserId::generate()),
            403,
            "forbidden",
        ),
        (
            app.http.as_staff(&[Role::Fulfilment, Role::Support]),
            403,
            "forbidden",
        ),
        (app.http.as_admin_token(), 403, "forbidden"),
        (app.http.with_bearer("not-a-token"), 401, "unauthenticated"),
        (
            app.http.with_authorization("Basic dXNlcjpwYXNz"),
            401,
            "unauthenticated",
        ),
    ];
    for (client, status, code) in &refused {
        for (method, path, body) in &writes {
            let answer = match *method {
                "PATCH" => client.patch(path, body.clone()).await,
                _ => client.post(path, body.clone()).await,
            };
            answer.assert_problem(*status, code);
            if *status == 401 {
                assert!(
                    answer.header("www-authenticate").is_some(),
                    "{method} {path}"
                );
            }
        }
    }
    let after = app.api.get(id.parse().unwrap()).await.unwrap();
    assert_eq!(after, before, "no refused request changed the product");
    let listed = app.http.anonymous().get("/products").await;
    assert_eq!(
        listed.body["total"], 1,
        "and none created one: {:#}",
        listed.body
    );

    // Reading is open to anyone; changing to `catalog` and `admin`.
    let read = app.http.anonymous().get(&format!("/products/{id}")).await;
    assert_eq!(read.status, 200, "{:#}", read.body);
    for role in [Role::Catalog, Role::Admin] {
        let staff = app.http.as_staff(&[role]);
        let changed = staff
            .patch(
                &format!("/products/{id}"),
                json!({"name": format!("Mug by {role}")}),
            )
            .await;
        assert_eq!(changed.status, 200, "{role}: {:#}", changed.body);
        let restocked = staff
            .post(&format!("/products/{id}/restock"), json!({"quantity": 1}))
            .await;
        assert_eq!(restocked.status, 200, "{role}: {:#}", restocked.body);
    }
}
