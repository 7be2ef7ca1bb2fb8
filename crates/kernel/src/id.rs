//! Typed ids: one UUID v7 newtype per entity, so a `UserId` is never passed where a
//! `ProductId` is meant.

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A new, time-ordered (v7) id.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(value: uuid::Uuid) -> Self {
                Self(value)
            }
        }

        impl From<$name> for uuid::Uuid {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }

        /// OpenAPI: a UUID string.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::Custom("uuid".to_owned())))
                    .description(Some(concat!("Identifies ", $what, ": a UUID (v7, time-ordered).")))
                    .examples(["01900000-0000-7000-8000-000000000000"])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
        }
    };
}

typed_id!(
    /// Identifies a user (users module).
    UserId,
    "a user"
);
typed_id!(
    /// Identifies a product (products module).
    ProductId,
    "a product"
);
typed_id!(
    /// Identifies an order (orders module).
    OrderId,
    "an order"
);
typed_id!(
    /// Identifies a payment (payments module).
    PaymentId,
    "a payment"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_round_trip() {
        let a = UserId::generate();
        let b = UserId::generate();
        assert!(a < b, "v7 ids sort by creation time");
        assert_eq!(a.to_string().parse::<UserId>().unwrap(), a);
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!("not-a-uuid".parse::<UserId>().is_err());
    }
}
