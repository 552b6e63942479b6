//! The idempotent write statement in each database's dialect. Names come
//! from a checked [`SinkConfig`](crate::config::SinkConfig) (plain
//! identifiers only); values are always bound.

use crate::config::{OnConflict, SinkConfig};

/// A database dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `$n` placeholders, `INSERT ... ON CONFLICT`.
    Postgres,
    /// MySQL and MariaDB: `?` placeholders, `INSERT ... ON DUPLICATE KEY UPDATE`.
    Mysql,
    /// Oracle: `:n` placeholders, `MERGE ... USING (SELECT ... FROM dual)`.
    Oracle,
}

impl Dialect {
    /// The placeholder for parameter `n` (1-based).
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Mysql => String::from("?"),
            Dialect::Oracle => format!(":{n}"),
        }
    }

    /// The statement that stores one row without ever making a second row
    /// for the same key.
    pub fn upsert(self, config: &SinkConfig) -> String {
        self.upsert_rows(config, 1)
    }

    /// Whether one statement can store several rows (a multi-row `VALUES`
    /// list). Oracle's `MERGE` takes one row per execution; the host binds
    /// a whole batch as an array instead.
    pub fn has_multi_row_upsert(self) -> bool {
        self != Dialect::Oracle
    }

    /// Like [`Dialect::upsert`], for `rows` rows at once (PostgreSQL and
    /// MySQL: one `VALUES` group per row, placeholders numbered across the
    /// groups). Oracle always gets the one-row `MERGE`.
    pub fn upsert_rows(self, config: &SinkConfig, rows: usize) -> String {
        let columns: Vec<String> = config
            .columns_in_order()
            .into_iter()
            .map(|column| column.name)
            .collect();
        let keys = config.key_columns();
        let others: Vec<&String> = columns
            .iter()
            .filter(|column| !keys.contains(column))
            .collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(|n| self.placeholder(n)).collect();
        let width = columns.len();
        let values_groups = (0..rows.max(1))
            .map(|row| {
                let group: Vec<String> = (1..=width)
                    .map(|n| self.placeholder(row * width + n))
                    .collect();
                format!("({})", group.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let table = &config.table;
        let column_list = columns.join(", ");
        match self {
            Dialect::Postgres => {
                let action = match config.on_conflict {
                    OnConflict::Skip => String::from("DO NOTHING"),
                    OnConflict::Update => format!(
                        "DO UPDATE SET {}",
                        others
                            .iter()
                            .map(|c| format!("{c} = EXCLUDED.{c}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                format!(
                    "INSERT INTO {table} ({column_list}) VALUES {values_groups} ON CONFLICT ({}) {action}",
                    keys.join(", ")
                )
            }
            Dialect::Mysql => {
                // Not INSERT IGNORE: it would also turn NOT NULL, CHECK and
                // foreign-key violations into warnings and lose the message.
                let updates = match config.on_conflict {
                    OnConflict::Skip => format!("{0} = {0}", keys[0]),
                    OnConflict::Update => others
                        .iter()
                        .map(|c| format!("{c} = VALUES({c})"))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                format!("INSERT INTO {table} ({column_list}) VALUES {values_groups} ON DUPLICATE KEY UPDATE {updates}")
            }
            Dialect::Oracle => {
                let selected: Vec<String> = columns
                    .iter()
                    .zip(&placeholders)
                    .map(|(column, placeholder)| format!("{placeholder} AS {column}"))
                    .collect();
                let on: Vec<String> = keys
                    .iter()
                    .map(|key| format!("t.{key} = s.{key}"))
                    .collect();
                let values: Vec<String> =
                    columns.iter().map(|column| format!("s.{column}")).collect();
                let mut statement = format!(
                    "MERGE INTO {table} t USING (SELECT {} FROM dual) s ON ({}) \
                     WHEN NOT MATCHED THEN INSERT ({column_list}) VALUES ({})",
                    selected.join(", "),
                    on.join(" AND "),
                    values.join(", ")
                );
                if config.on_conflict == OnConflict::Update && !others.is_empty() {
                    let sets: Vec<String> =
                        others.iter().map(|c| format!("t.{c} = s.{c}")).collect();
                    statement.push_str(&format!(
                        " WHEN MATCHED THEN UPDATE SET {}",
                        sets.join(", ")
                    ));
                }
                statement
            }
        }
    }

    /// The `CREATE TABLE` for the default columns (shipped as
    /// `sql/<dialect>.sql` too).
    pub fn create_table(self, table: &str) -> String {
        match self {
            Dialect::Postgres => format!(include_str!("../sql/postgres.sql.in"), table = table),
            Dialect::Mysql => format!(include_str!("../sql/mysql.sql.in"), table = table),
            Dialect::Oracle => format!(include_str!("../sql/oracle.sql.in"), table = table),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> SinkConfig {
        SinkConfig::parse(json).expect("config")
    }

    #[test]
    fn postgres_skips_or_updates_on_the_key() {
        let skip = Dialect::Postgres.upsert(&config(r#"{"connection": "e"}"#));
        assert!(
            skip.starts_with("INSERT INTO nats_events (stream_name, stream_sequence, subject,"),
            "{skip}"
        );
        assert!(
            skip.contains("$14)")
                && skip.ends_with("ON CONFLICT (stream_name, stream_sequence) DO NOTHING"),
            "{skip}"
        );
        let update =
            Dialect::Postgres.upsert(&config(r#"{"connection": "e", "on_conflict": "update"}"#));
        assert!(
            update.contains("DO UPDATE SET subject = EXCLUDED.subject"),
            "{update}"
        );
        assert!(!update.contains("stream_sequence = EXCLUDED"), "{update}");
    }

    #[test]
    fn mysql_never_uses_insert_ignore() {
        let skip = Dialect::Mysql.upsert(&config(r#"{"connection": "e"}"#));
        assert!(
            skip.ends_with("ON DUPLICATE KEY UPDATE stream_name = stream_name"),
            "{skip}"
        );
        assert_eq!(skip.matches('?').count(), 14);
        let update = Dialect::Mysql.upsert(&config(
            r#"{"connection": "e", "on_conflict": "update", "key": "message_id"}"#,
        ));
        assert!(
            update.contains("stream_sequence = VALUES(stream_sequence)")
                && !update.contains("message_id = VALUES"),
            "{update}"
        );
    }

    #[test]
    fn oracle_merges_from_dual() {
        let merge = Dialect::Oracle.upsert(&config(
            r#"{"connection": "e", "table": "app.NATS_EVENTS"}"#,
        ));
        assert!(merge.starts_with("MERGE INTO app.NATS_EVENTS t USING (SELECT :1 AS stream_name, :2 AS stream_sequence"), "{merge}");
        assert!(
            merge.contains(
                "ON (t.stream_name = s.stream_name AND t.stream_sequence = s.stream_sequence)"
            ),
            "{merge}"
        );
        assert!(!merge.contains("WHEN MATCHED"), "{merge}");
        let update =
            Dialect::Oracle.upsert(&config(r#"{"connection": "e", "on_conflict": "update"}"#));
        assert!(
            update.contains("WHEN MATCHED THEN UPDATE SET t.subject = s.subject"),
            "{update}"
        );
    }

    #[test]
    fn several_rows_number_their_placeholders_across_groups() {
        let config =
            config(r#"{"connection": "e", "columns": {"payload": null, "headers_json": null}}"#);
        let pg = Dialect::Postgres.upsert_rows(&config, 3);
        assert!(
            pg.contains("$12), ($13,") && pg.contains("$36) ON CONFLICT"),
            "{pg}"
        );
        assert_eq!(
            Dialect::Mysql.upsert_rows(&config, 3).matches('?').count(),
            36
        );
        assert_eq!(
            Dialect::Oracle.upsert_rows(&config, 3),
            Dialect::Oracle.upsert(&config)
        );
        assert!(!Dialect::Oracle.has_multi_row_upsert());
    }

    #[test]
    fn the_table_scripts_name_the_table() {
        for dialect in [Dialect::Postgres, Dialect::Mysql, Dialect::Oracle] {
            let ddl = dialect.create_table("my_events");
            assert!(
                ddl.contains("my_events") && ddl.contains("stream_sequence"),
                "{ddl}"
            );
        }
    }
}
