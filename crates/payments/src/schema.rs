diesel::table! {
    payments.payments (id) {
        id -> Uuid,
        order_id -> Uuid,
        amount -> Numeric,
        status -> Text,
        gateway_reference -> Nullable<Text>,
        version -> Int8,
        refund_requested_at -> Nullable<Timestamptz>,
        check_after -> Nullable<Timestamptz>,
        checks -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}
