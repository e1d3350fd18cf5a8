//! The database: sea-orm entities and the small set of statements the service needs, each
//! one counted (`sessiongate_db_queries_total`) so tests can prove a warm request sends none.
//!
//! Works on Postgres and SQLite alike: portable `LOWER(..) LIKE` search, no `ILIKE`, string
//! ids, timestamps written by sea-orm in UTC. Writes that must not interleave run in one
//! transaction that locks what it depends on: on Postgres with row locks (`FOR SHARE` /
//! `FOR UPDATE`), on SQLite by taking the database's write lock at `BEGIN`.

pub mod entities;

use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::Counter;
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, IntoActiveModel, Order, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, SqlErr, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
};

pub use entities::{audit, session, user};

use migrations::{Migrator, MigratorTrait};

/// A write refused by the database's constraints, or a database error.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("unique constraint violated")]
    Duplicate,
    #[error(transparent)]
    Db(#[from] DbErr),
}

fn classify(e: DbErr) -> WriteError {
    if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        WriteError::Duplicate
    } else {
        WriteError::Db(e)
    }
}

/// Outcome of a role change.
pub enum RoleChange {
    NotFound,
    /// The actor is no longer an ADMIN (demoted or deleted meanwhile).
    ActorNotAdmin,
    /// The change would leave no ADMIN.
    LastAdmin,
    Changed {
        old_role: String,
        user: user::Model,
    },
}

/// Outcome of a user deletion.
pub enum UserDeletion {
    NotFound,
    /// The actor is no longer an ADMIN (demoted or deleted meanwhile).
    ActorNotAdmin,
    /// Deleted, with these sessions.
    Deleted(Vec<String>),
}

/// The database handle with the service's statements.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    queries: Counter,
}

impl Store {
    /// Connects (pool with short acquire timeout so an unreachable database answers 503
    /// quickly instead of hanging requests).
    pub async fn connect(url: &str, queries: Counter) -> Result<Store, DbErr> {
        if let Some(path) = sqlite_path(url)
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbErr::Custom(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(if url.starts_with("sqlite:") { 4 } else { 16 })
            .min_connections(1)
            .connect_timeout(Duration::from_secs(3))
            .acquire_timeout(Duration::from_secs(3))
            .sqlx_logging(false);
        if sqlite_path(url).is_some() {
            // WAL: readers never wait for the writer and a commit is one append and one
            // fsync (FULL keeps every acknowledged commit across power loss), so verifies
            // and logins do not queue behind a role change or an audit insert.
            options.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
            });
        }
        let db = Database::connect(options).await?;
        Ok(Store { db, queries })
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    fn count(&self) {
        self.queries.increment(1);
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at `BEGIN`
    /// (`IMMEDIATE`, waiting out the busy timeout): a deferred transaction that reads and
    /// then writes fails at once with `SQLITE_BUSY` when another connection writes
    /// meanwhile (the busy timeout does not cover a lock upgrade), which answered a role
    /// change 500 while an audit row was being written. Postgres ignores the mode.
    async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        Migrator::up(&self.db, None).await
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.count();
        self.db.ping().await
    }

    pub async fn close(self) {
        let _ = self.db.close().await;
    }

    // ---- users ----

    pub async fn user_by_email(&self, email: &str) -> Result<Option<user::Model>, DbErr> {
        if email.contains('\0') {
            // Postgres text cannot hold NUL (the query would fail); no stored email has one.
            return Ok(None);
        }
        self.count();
        user::Entity::find()
            .filter(user::Column::Email.eq(email))
            .one(&self.db)
            .await
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<user::Model>, DbErr> {
        self.count();
        user::Entity::find_by_id(id.to_owned()).one(&self.db).await
    }

    pub async fn insert_user(&self, model: user::Model) -> Result<user::Model, WriteError> {
        self.count();
        user::Entity::insert(model.clone().into_active_model())
            .exec_without_returning(&self.db)
            .await
            .map_err(classify)?;
        Ok(model)
    }

    /// Updates name and/or email; `None` when the user no longer exists.
    pub async fn update_profile(
        &self,
        id: &str,
        name: Option<Option<String>>,
        email: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Option<user::Model>, WriteError> {
        let Some(current) = self.user_by_id(id).await? else {
            return Ok(None);
        };
        let mut active = current.into_active_model();
        if let Some(name) = name {
            active.name = Set(name);
        }
        if let Some(email) = email {
            active.email = Set(email);
        }
        active.updated_at = Set(now);
        self.count();
        active.update(&self.db).await.map(Some).map_err(classify)
    }

    /// Replaces the password hash with a stronger one of the same password (a rehash after
    /// a login), only while it is still `old`: a password change meanwhile wins.
    pub async fn rehash_password(&self, id: &str, old: &str, hash: String) -> Result<(), DbErr> {
        self.count();
        user::Entity::update_many()
            .col_expr(user::Column::PasswordHash, Expr::value(hash))
            .filter(user::Column::Id.eq(id))
            .filter(user::Column::PasswordHash.eq(old))
            .exec(&self.db)
            .await
            .map(drop)
    }

    /// Sets a new password hash and deletes every other session of the user, in one
    /// transaction: a failure half-way (a lost connection) leaves neither the new password
    /// nor the surviving sessions behind. Returns the deleted session ids.
    pub async fn change_password(
        &self,
        id: &str,
        hash: String,
        now: DateTime<Utc>,
        keep: &str,
    ) -> Result<Vec<String>, DbErr> {
        let txn = self.begin_write().await?;
        self.count();
        user::Entity::update_many()
            .col_expr(user::Column::PasswordHash, Expr::value(hash))
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        self.count();
        let ids: Vec<String> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::UserId.eq(id))
            .filter(session::Column::Id.ne(keep))
            .into_tuple::<String>()
            .all(&txn)
            .await?;
        if !ids.is_empty() {
            self.count();
            session::Entity::delete_many()
                .filter(session::Column::Id.is_in(ids.iter().cloned()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(ids)
    }

    /// The ADMIN rows, locked on Postgres until the transaction ends, so that concurrent
    /// demotions and deletions see each other (two ADMINs demoting or deleting each other
    /// at once cannot both succeed). SQLite's write transaction already excludes them.
    async fn admins_locked(&self, txn: &DatabaseTransaction) -> Result<Vec<user::Model>, DbErr> {
        self.count();
        let mut admins = user::Entity::find()
            .filter(user::Column::Role.eq("ADMIN"))
            .order_by(user::Column::Id, Order::Asc);
        if self.backend() == DbBackend::Postgres {
            admins = admins.lock_exclusive();
        }
        admins.all(txn).await
    }

    /// Sets the role as `actor`, refusing (in one transaction) when the actor is no longer
    /// an ADMIN or the change would leave the system without one.
    pub async fn change_role(
        &self,
        actor: &str,
        id: &str,
        role: &str,
        now: DateTime<Utc>,
    ) -> Result<RoleChange, DbErr> {
        let txn = self.begin_write().await?;
        let admins = self.admins_locked(&txn).await?;
        if !admins.iter().any(|a| a.id == actor) {
            return Ok(RoleChange::ActorNotAdmin);
        }
        self.count();
        let Some(target) = user::Entity::find_by_id(id.to_owned()).one(&txn).await? else {
            return Ok(RoleChange::NotFound);
        };
        let old_role = target.role.clone();
        if old_role == "ADMIN" && role != "ADMIN" && admins.iter().all(|a| a.id == id) {
            return Ok(RoleChange::LastAdmin);
        }
        let mut active = target.into_active_model();
        active.role = Set(role.to_owned());
        active.updated_at = Set(now);
        self.count();
        let user = active.update(&txn).await?;
        txn.commit().await?;
        Ok(RoleChange::Changed { old_role, user })
    }

    /// Creates the user as ADMIN or promotes the existing one; true when created.
    pub async fn upsert_admin(&self, model: user::Model) -> Result<bool, WriteError> {
        if let Some(existing) = self.user_by_email(&model.email).await? {
            let mut active = existing.into_active_model();
            active.role = Set("ADMIN".into());
            active.password_hash = Set(model.password_hash);
            active.updated_at = Set(model.updated_at);
            self.count();
            active.update(&self.db).await.map_err(classify)?;
            return Ok(false);
        }
        self.insert_user(model).await.map(|_| true)
    }

    /// Deletes the user as `actor` (sessions cascade), in one transaction that locks the
    /// ADMIN rows and the target: refused when the actor is no longer an ADMIN, so two
    /// ADMINs deleting each other at once cannot both succeed and leave none. The session
    /// ids are read under the target's lock, so a login racing the deletion (which holds
    /// the user row shared while it inserts) is either listed or refused.
    pub async fn delete_user(&self, actor: &str, id: &str) -> Result<UserDeletion, DbErr> {
        let txn = self.begin_write().await?;
        let admins = self.admins_locked(&txn).await?;
        if !admins.iter().any(|a| a.id == actor) {
            return Ok(UserDeletion::ActorNotAdmin);
        }
        self.count();
        let mut target = user::Entity::find_by_id(id.to_owned());
        if self.backend() == DbBackend::Postgres {
            target = target.lock_exclusive();
        }
        if target.one(&txn).await?.is_none() {
            return Ok(UserDeletion::NotFound);
        }
        let sessions = session_ids_of(&txn, id).await?;
        self.count();
        self.count();
        user::Entity::delete_by_id(id.to_owned()).exec(&txn).await?;
        txn.commit().await?;
        Ok(UserDeletion::Deleted(sessions))
    }

    /// One page of users, newest first, optionally filtered by a case-insensitive substring
    /// of email or name; the count and the page are queried concurrently.
    pub async fn list_users(
        &self,
        page: u64,
        page_size: u64,
        search: &str,
    ) -> Result<(Vec<user::Model>, u64), DbErr> {
        if search.contains('\0') {
            // Postgres text cannot hold NUL (the query would fail); no stored value has one.
            return Ok((Vec::new(), 0));
        }
        let mut query = user::Entity::find();
        if !search.is_empty() {
            let escaped = search
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let pattern = || LikeExpr::new(format!("%{escaped}%")).escape('\\');
            query = query.filter(
                sea_orm::Condition::any()
                    .add(Expr::expr(Func::lower(Expr::col(user::Column::Email))).like(pattern()))
                    .add(Expr::expr(Func::lower(Expr::col(user::Column::Name))).like(pattern())),
            );
        }
        self.count();
        self.count();
        let count = query.clone().count(&self.db);
        let items = query
            .order_by(user::Column::CreatedAt, Order::Desc)
            .order_by(user::Column::Id, Order::Desc)
            .offset(offset(page, page_size))
            .limit(page_size)
            .all(&self.db);
        let (count, items) = tokio::join!(count, items);
        Ok((items?, count?))
    }

    // ---- sessions ----

    /// Inserts a new session only while its user still has the password hash the login
    /// checked (`checked_hash`): the user row is held shared (Postgres) or the write lock
    /// taken (SQLite) from the check to the commit, so a password change or a deletion
    /// either commits first (and the login is refused: false) or waits for the insert and
    /// then sees the session (and revokes or cascades it). A login that verified the old
    /// password while the password changed cannot leave a session behind.
    pub async fn insert_session_checked(
        &self,
        model: session::Model,
        checked_hash: &str,
    ) -> Result<bool, DbErr> {
        let txn = self.begin_write().await?;
        self.count();
        let mut user = user::Entity::find()
            .select_only()
            .column(user::Column::Id)
            .filter(user::Column::Id.eq(model.user_id.as_str()))
            .filter(user::Column::PasswordHash.eq(checked_hash));
        if self.backend() == DbBackend::Postgres {
            user = user.lock_shared();
        }
        if user.into_tuple::<String>().one(&txn).await?.is_none() {
            return Ok(false);
        }
        self.count();
        session::Entity::insert(model.into_active_model())
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Sets `last_used_at = now` on the given sessions whose last use is older than
    /// `since`, in one query; returns the rows written.
    pub async fn touch_sessions(
        &self,
        ids: &[String],
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<u64, DbErr> {
        self.count();
        let r = session::Entity::update_many()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .filter(session::Column::Id.is_in(ids.iter().cloned()))
            .filter(session::Column::LastUsedAt.lt(since))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }

    /// The live session and its user in one query (the cache-miss path of verify).
    pub async fn session_with_user(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(session::Model, user::Model)>, DbErr> {
        self.count();
        let found = session::Entity::find_by_id(id.to_owned())
            .filter(session::Column::ExpiresAt.gt(now))
            .find_also_related(user::Entity)
            .one(&self.db)
            .await?;
        Ok(found.and_then(|(s, u)| u.map(|u| (s, u))))
    }

    /// The user's live sessions, most recently used first.
    pub async fn live_sessions(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<session::Model>, DbErr> {
        self.count();
        session::Entity::find()
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::ExpiresAt.gt(now))
            .order_by(session::Column::LastUsedAt, Order::Desc)
            .order_by(session::Column::CreatedAt, Order::Desc)
            .all(&self.db)
            .await
    }

    pub async fn delete_session(&self, id: &str) -> Result<bool, DbErr> {
        self.count();
        let r = session::Entity::delete_by_id(id.to_owned())
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// Deletes the session only if it belongs to `user_id`.
    pub async fn delete_session_of(&self, id: &str, user_id: &str) -> Result<bool, DbErr> {
        self.count();
        let r = session::Entity::delete_many()
            .filter(session::Column::Id.eq(id))
            .filter(session::Column::UserId.eq(user_id))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// Every session id of the user.
    pub async fn session_ids_of(&self, user_id: &str) -> Result<Vec<String>, DbErr> {
        self.count();
        session_ids_of(&self.db, user_id).await
    }

    async fn delete_ids(&self, ids: &[String]) -> Result<u64, DbErr> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.count();
        let r = session::Entity::delete_many()
            .filter(session::Column::Id.is_in(ids.iter().cloned()))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }

    /// Deletes every session of the user except `keep`; returns the deleted ids.
    pub async fn delete_sessions_of(
        &self,
        user_id: &str,
        keep: Option<&str>,
    ) -> Result<Vec<String>, DbErr> {
        let mut ids = self.session_ids_of(user_id).await?;
        ids.retain(|id| Some(id.as_str()) != keep);
        self.delete_ids(&ids).await?;
        Ok(ids)
    }

    /// Keeps the user's `keep` most recently used sessions and deletes the rest; returns
    /// the deleted ids.
    pub async fn evict_beyond(&self, user_id: &str, keep: u32) -> Result<Vec<String>, DbErr> {
        self.count();
        let ids: Vec<String> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::UserId.eq(user_id))
            .order_by(session::Column::LastUsedAt, Order::Desc)
            .order_by(session::Column::CreatedAt, Order::Desc)
            .offset(u64::from(keep))
            .limit(1000)
            .into_tuple::<String>()
            .all(&self.db)
            .await?;
        self.delete_ids(&ids).await?;
        Ok(ids)
    }

    /// The sliding refresh: extends the session only while it is still past its half-life
    /// (`expires_at < mark`), so concurrent requests produce one write. True when written.
    pub async fn extend_session(
        &self,
        id: &str,
        new_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        mark: DateTime<Utc>,
    ) -> Result<bool, DbErr> {
        self.count();
        let r = session::Entity::update_many()
            .col_expr(session::Column::ExpiresAt, Expr::value(new_expires_at))
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .filter(session::Column::Id.eq(id))
            .filter(session::Column::ExpiresAt.lt(mark))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Deletes every expired session in one indexed statement.
    pub async fn delete_expired(&self, now: DateTime<Utc>) -> Result<u64, DbErr> {
        self.count();
        let r = session::Entity::delete_many()
            .filter(session::Column::ExpiresAt.lte(now))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }

    /// Like [`Store::delete_expired`], but on Postgres only while holding a transaction-level
    /// advisory lock, so two instances never run it at once; `None` when another holds it.
    pub async fn delete_expired_exclusive(&self, now: DateTime<Utc>) -> Result<Option<u64>, DbErr> {
        if self.backend() != DbBackend::Postgres {
            return self.delete_expired(now).await.map(Some);
        }
        let txn = self.db.begin().await?;
        self.count();
        let row = txn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock(727274637) AS locked",
            ))
            .await?;
        let locked = match row {
            Some(row) => row.try_get::<bool>("", "locked")?,
            None => false,
        };
        if !locked {
            return Ok(None);
        }
        self.count();
        let r = session::Entity::delete_many()
            .filter(session::Column::ExpiresAt.lte(now))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some(r.rows_affected))
    }

    // ---- audit ----

    pub async fn insert_audit(&self, model: audit::Model) -> Result<(), DbErr> {
        self.count();
        audit::Entity::insert(model.into_active_model())
            .exec_without_returning(&self.db)
            .await
            .map(drop)
    }

    /// One page of the user's audit events, newest first.
    pub async fn audit_of(
        &self,
        user_id: &str,
        page: u64,
        page_size: u64,
    ) -> Result<(Vec<audit::Model>, u64), DbErr> {
        let query = audit::Entity::find().filter(audit::Column::UserId.eq(user_id));
        self.count();
        self.count();
        let count = query.clone().count(&self.db);
        let items = query
            .order_by(audit::Column::CreatedAt, Order::Desc)
            .order_by(audit::Column::Id, Order::Desc)
            .offset(offset(page, page_size))
            .limit(page_size)
            .all(&self.db);
        let (count, items) = tokio::join!(count, items);
        Ok((items?, count?))
    }
}

async fn session_ids_of(db: &impl ConnectionTrait, user_id: &str) -> Result<Vec<String>, DbErr> {
    session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::UserId.eq(user_id))
        .into_tuple::<String>()
        .all(db)
        .await
}

/// The row offset of a page (`page` ≥ 1). A page far past the end saturates instead of
/// overflowing, and stays within the databases' signed 64-bit `OFFSET`: it finds no rows.
fn offset(page: u64, page_size: u64) -> u64 {
    let offset = page.saturating_sub(1).saturating_mul(page_size);
    Ord::min(offset, i64::MAX as u64)
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}
