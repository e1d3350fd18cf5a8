//! Creates `users`, `sessions` and `audit_log` with their indexes.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20260101_000001_initial"
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Name,
    PasswordHash,
    Role,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    IpAddress,
    UserAgent,
    Browser,
    Os,
    DeviceType,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    UserId,
    Action,
    IpAddress,
    UserAgent,
    Metadata,
    CreatedAt,
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().to_owned()
}

fn text_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().null().to_owned()
}

fn time(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(text(Users::Id).primary_key())
                    .col(text(Users::Email).unique_key())
                    .col(text_null(Users::Name))
                    .col(text(Users::PasswordHash))
                    .col(
                        text(Users::Role)
                            .check(Expr::col(Users::Role).is_in(["USER", "ADMIN"]))
                            .to_owned(),
                    )
                    .col(time(Users::CreatedAt))
                    .col(time(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_created_at")
                    .table(Users::Table)
                    .col(Users::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(text(Sessions::Id).primary_key())
                    .col(text(Sessions::UserId))
                    .col(time(Sessions::CreatedAt))
                    .col(time(Sessions::LastUsedAt))
                    .col(time(Sessions::ExpiresAt))
                    .col(text_null(Sessions::IpAddress))
                    .col(text_null(Sessions::UserAgent))
                    .col(text_null(Sessions::Browser))
                    .col(text_null(Sessions::Os))
                    .col(text_null(Sessions::DeviceType))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_user_id")
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_sessions_user_id", Sessions::UserId),
            ("idx_sessions_expires_at", Sessions::ExpiresAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Sessions::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(text(AuditLog::Id).primary_key())
                    .col(text_null(AuditLog::UserId))
                    .col(text(AuditLog::Action))
                    .col(text_null(AuditLog::IpAddress))
                    .col(text_null(AuditLog::UserAgent))
                    .col(ColumnDef::new(AuditLog::Metadata).json().not_null())
                    .col(time(AuditLog::CreatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_audit_log_user_id", AuditLog::UserId),
            ("idx_audit_log_action", AuditLog::Action),
            ("idx_audit_log_created_at", AuditLog::CreatedAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditLog::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
