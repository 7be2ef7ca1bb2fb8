//! One transaction that several modules write in, each under its own role.
//!
//! A module's statements normally run on its own pool, whose connections act as its role
//! for their whole life. Some steps must commit or roll back as one with another module's:
//! a placement records the order (orders) and holds its stock (products) in one
//! transaction, so that no crash can leave one without the other and one commit suffices.
//! The module that owns the step opens the transaction on its own connection, wraps it in
//! a [`Unit`] and hands the unit to the other module's `-api` method, which asks for the
//! connection with [`Unit::acting_as`] its own schema. That switches the transaction to
//! the other role with `SET LOCAL ROLE` (and its `search_path`), so Postgres still refuses
//! it any table of the first module; the switch ends with the transaction, and the pooled
//! connection acts as its own role again.
//!
//! The callee runs only statements: the rule that no transaction waits on anything outside
//! the database (ARCHITECTURE.md) holds for a unit as for any transaction.
//!
//! The type is always there, so that an `-api` trait can name it in a signature and stay
//! free of the database: without the `db` feature it is an opaque handle nobody can make
//! or open; its connection and methods exist with `db`, which only the implementations
//! (and the app) enable.

#[cfg(feature = "db")]
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

#[cfg(feature = "db")]
use crate::db::{DbContext, Schema};

/// An open transaction on one connection, acting as one module's role at a time.
pub struct Unit<'c> {
    #[cfg(feature = "db")]
    conn: &'c mut AsyncPgConnection,
    #[cfg(feature = "db")]
    acting: &'static str,
    #[cfg(not(feature = "db"))]
    _opaque: std::marker::PhantomData<&'c mut ()>,
}

#[cfg(feature = "db")]
impl<'c> Unit<'c> {
    /// `conn` holds an open transaction and acts as `schema`'s role (it is a connection of
    /// that schema's pool).
    pub fn new(conn: &'c mut AsyncPgConnection, schema: &Schema) -> Self {
        Unit {
            conn,
            acting: schema.name,
        }
    }

    /// The transaction's connection, acting as `schema`'s role and seeing its schema first
    /// from here on (one round trip when that is a change; none otherwise).
    pub async fn acting_as(&mut self, schema: &Schema) -> anyhow::Result<&mut AsyncPgConnection> {
        if self.acting != schema.name {
            let switch = format!(
                "SET LOCAL ROLE {}; SET LOCAL search_path TO {}",
                schema.role(),
                schema.name
            );
            self.conn
                .batch_execute(&switch)
                .await
                .db_context("switching the transaction's role")?;
            self.acting = schema.name;
        }
        Ok(self.conn)
    }

    /// The schema whose role the transaction acts as now.
    pub fn acting(&self) -> &'static str {
        self.acting
    }
}
