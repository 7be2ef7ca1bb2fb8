diesel::table! {
    users.users (id) {
        id -> Uuid,
        email -> Text,
        name -> Text,
        active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> Int8,
    }
}
