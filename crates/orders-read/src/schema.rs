//! Tables of the read model (schema `orders_read`).

diesel::table! {
    orders_read.generations (id) {
        id -> Int4,
        state -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    orders_read.orders (generation, id) {
        generation -> Int4,
        id -> Uuid,
        user_id -> Uuid,
        user_name -> Nullable<Text>,
        user_email -> Nullable<Text>,
        item_count -> Int4,
        total -> Numeric,
        status -> Text,
        cancel_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> Int8,
    }
}

diesel::table! {
    orders_read.order_items (generation, order_id, line) {
        generation -> Int4,
        order_id -> Uuid,
        line -> Int4,
        product_id -> Uuid,
        product_name -> Text,
        quantity -> Int8,
        price -> Numeric,
    }
}

diesel::table! {
    orders_read.users (generation, id) {
        generation -> Int4,
        id -> Uuid,
        name -> Text,
        email -> Text,
        version -> Int8,
    }
}

diesel::table! {
    orders_read.products (generation, id) {
        generation -> Int4,
        id -> Uuid,
        name -> Text,
        version -> Int8,
    }
}

diesel::allow_tables_to_appear_in_same_query!(orders, order_items, generations, users, products);
