//! Tables of the write model (schema `orders`).

diesel::table! {
    orders.orders (id) {
        id -> Uuid,
        user_id -> Uuid,
        status -> Text,
        total -> Numeric,
        payment_id -> Nullable<Uuid>,
        cancel_reason -> Nullable<Text>,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        confirm_attempt -> Nullable<Uuid>,
        confirm_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    orders.order_lines (order_id, line) {
        order_id -> Uuid,
        line -> Int4,
        product_id -> Uuid,
        product_name -> Text,
        quantity -> Int8,
        price -> Numeric,
    }
}

diesel::table! {
    orders.idempotency_keys (key) {
        key -> Text,
        request -> Jsonb,
        order_id -> Uuid,
        response -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(orders, order_lines);
