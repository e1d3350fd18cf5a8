//! The sessiongate schema, as sea-orm migrations that mean the same on Postgres and SQLite.
//!
//! Portable choices: string ids, `timestamp with time zone` columns written by sea-orm in
//! UTC, the role as text with a CHECK constraint, and foreign keys declared inside
//! `CREATE TABLE` (SQLite cannot add them afterwards).

pub use sea_orm_migration::prelude::*;

mod m20260101_000001_initial;

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20260101_000001_initial::Migration)]
    }
}
