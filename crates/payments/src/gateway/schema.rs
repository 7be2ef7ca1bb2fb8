diesel::table! {
    gateway.ledger (key) {
        key -> Uuid,
        amount -> Nullable<Numeric>,
        outcome -> Text,
        reference -> Text,
        reason -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}
