diesel::table! {
    products.products (id) {
        id -> Uuid,
        name -> Text,
        description -> Text,
        price -> Numeric,
        stock -> Int8,
        reserved -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> Int8,
    }
}

diesel::table! {
    products.reservations (order_id) {
        order_id -> Uuid,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    products.reservation_lines (order_id, product_id) {
        order_id -> Uuid,
        product_id -> Uuid,
        quantity -> Int8,
    }
}

diesel::joinable!(reservation_lines -> products (product_id));
diesel::allow_tables_to_appear_in_same_query!(products, reservations, reservation_lines);

diesel::table! {
    /// The catalog's size, one row kept by triggers (see its migration).
    products.product_count (single) {
        single -> Bool,
        n -> Int8,
    }
}
