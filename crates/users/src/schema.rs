diesel::table! {
    users.users (id) {
        id -> Uuid,
        email -> Text,
        name -> Text,
        active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> Int8,
        password_hash -> Nullable<Text>,
        roles -> Array<Text>,
    }
}

diesel::table! {
    users.refresh_tokens (id) {
        id -> Uuid,
        family_id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    users.signing_keys (kid) {
        kid -> Text,
        private_key -> Bytea,
        public_key -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users.login_failures (id) {
        id -> Int8,
        email -> Text,
        failed_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(users, refresh_tokens);
