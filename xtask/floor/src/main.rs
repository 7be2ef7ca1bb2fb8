//! `bench-floor serve`: the floor of `cargo xtask bench`, the routes it measures written the
//! shortest way, so that the report can say what emporium's architecture costs on each.
//!
//! It answers the paths, query strings and bodies the wrk scripts send
//! (`xtask/src/bench/wrk/*.lua`) with the status codes and JSON shapes emporium answers,
//! against the same database and data, with the same HTTP worker count and pool size
//! (`HTTP_WORKERS`, `DB_POOL_SIZE`):
//! - `GET /queries/orders/{id}`: one prepared statement over the read model
//!   (`orders_read.*`, live generation) that builds the order's JSON in Postgres;
//! - `GET /queries/orders?user_id=&page=&page_size=`: the page, its items and its total in
//!   one statement;
//! - `GET /products/{id}`: one statement over `products.products`;
//! - `POST /commands/orders`: one transaction of prepared statements (the user, a
//!   conditional stock update per line, the order, its lines, an outbox event, `pg_notify`).
//!
//! What it skips, on purpose, is what the report's ratios put a price on: authentication
//! (it reads no token), request logging and metrics, idempotency keys, the pending-orders
//! limit, the user and prices read before the transaction (through the users and
//! products modules' own pools), and the modules' boundaries (one pool and one role, where
//! emporium switches the placement's transaction to the products module's role for the
//! reservation).
//!
//! It must not disturb emporium, which runs beside it on the same database: it writes only
//! to its own schema `floor` (`db.rs`: copies of the seeded users, products, orders and
//! events, made when it starts), reads the read model and the catalog without writing
//! them, and notifies a channel no emporium process listens to.
//!
//! It knows no emporium code: only the schemas (`migrations/`) and the HTTP contract. So it
//! repeats the stored spellings it needs (`live`, `pending`, `order.created`); the bench's
//! agreement check (`xtask/src/bench/floor.rs`) fails the run when an answer of the floor
//! differs from emporium's.

mod db;
mod routes;

use std::env;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::{Context, Result, bail};

/// As emporium's `main`: a multi-threaded tokio runtime the HTTP server runs in.
#[tokio::main]
async fn main() -> Result<()> {
    match env::args().nth(1).as_deref() {
        Some("serve") => {}
        other => bail!("usage: bench-floor serve (got {other:?})"),
    }
    let setting = |name: &str| env::var(name).with_context(|| format!("{name} is not set"));
    let address = setting("HTTP_ADDR")?;
    let count = |name: &str| -> Result<usize> {
        setting(name)?
            .parse()
            .with_context(|| format!("{name} is not a number"))
    };
    let (workers, pool_size) = (count("HTTP_WORKERS")?, count("DB_POOL_SIZE")?);
    let config: tokio_postgres::Config = setting("DATABASE_URL")?
        .parse()
        .context("parsing DATABASE_URL")?;
    db::copy_tables(&config).await?;
    let pool = db::pool(config, pool_size)?;
    // As emporium's server: `workers` threads, keep-alive 5 s.
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(pool.clone()))
            .configure(routes::configure)
    })
    .workers(workers)
    .keep_alive(Duration::from_secs(5))
    .bind(&address)
    .with_context(|| format!("binding {address}"))?;
    eprintln!("bench-floor: serving on http://{address}");
    server.run().await.context("serving")
}
