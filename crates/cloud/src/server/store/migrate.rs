//! Moving a cloud from its SQLite file to PostgreSQL (`ad-sync-cloud migrate`): every table,
//! row for row, in one transaction on each side; into an empty database only; the counts
//! compared after.
//!
//! The tables and their order come from the file itself (its tables, and the foreign keys
//! between them: a table is copied after those it refers to), so a table added to the schema
//! is moved without a list here to keep in step.

use super::*;
use crate::server::db::Value;
use std::collections::BTreeMap;

/// One table moved: its name and its rows on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub table: String,
    pub from: i64,
    pub to: i64,
}

/// The source's tables, each after the tables its foreign keys name.
fn tables_in_order(src: &rusqlite::Connection) -> rusqlite::Result<Vec<String>> {
    let names: Vec<String> = src
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut refers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &names {
        let parents: Vec<String> = src
            .prepare(&format!("PRAGMA foreign_key_list(\"{t}\")"))?
            .query_map([], |r| r.get(2))?
            .collect::<rusqlite::Result<_>>()?;
        refers.insert(t.clone(), parents);
    }
    let mut ordered: Vec<String> = Vec::new();
    while ordered.len() < names.len() {
        let before = ordered.len();
        for t in &names {
            if !ordered.contains(t)
                && refers[t]
                    .iter()
                    .all(|p| p == t || ordered.contains(p) || !names.contains(p))
            {
                ordered.push(t.clone());
            }
        }
        if ordered.len() == before {
            // A cycle of foreign keys: the schema has none; copy the rest as they come.
            let rest: Vec<String> = names
                .iter()
                .filter(|t| !ordered.contains(t))
                .cloned()
                .collect();
            ordered.extend(rest);
        }
    }
    Ok(ordered)
}

fn count(conn: &Connection, table: &str) -> db::Result<i64> {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
}

impl Store {
    /// Copies everything this store (an SQLite file) holds into `to` (a PostgreSQL store of
    /// the same schema), which must hold nothing yet. Returns each table's rows on both sides;
    /// a difference is an error, and nothing is kept of a failed copy.
    pub fn migrate_into(&self, to: &Store) -> Result<Vec<Moved>, AdminError> {
        let from_conn = self.lock();
        let Some(src) = from_conn.as_sqlite() else {
            return Err(AdminError::Invalid(format!(
                "--from {}: name the SQLite file the cloud runs on now",
                self.path.display()
            )));
        };
        let to_conn = to.lock();
        if !to_conn.is_postgres() {
            return Err(AdminError::Invalid(format!(
                "--to {}: name a PostgreSQL database (postgres://USER@HOST:PORT/DATABASE)",
                to.path.display()
            )));
        }
        let src_err = self.admin_db();
        let dst_err = to.admin_db();
        // One read transaction: the copy is of one moment, even if a server still writes.
        let read = from_conn.unchecked_transaction().map_err(&src_err)?;
        let tables = tables_in_order(src).map_err(|e| src_err(e.into()))?;
        for t in &tables {
            let n = count(&to_conn, t).map_err(|e| {
                AdminError::Invalid(format!(
                    "--to {}: it has no table {t} that {} has ({e}); migrate into a database this version of ad-sync-cloud made",
                    to.path.display(),
                    self.path.display()
                ))
            })?;
            if n > 0 {
                return Err(AdminError::Invalid(format!(
                    "--to {}: it already holds {n} rows in {t}; migrate writes only into an empty database (create a new one)",
                    to.path.display()
                )));
            }
        }
        let write = to_conn.unchecked_transaction().map_err(&dst_err)?;
        for t in &tables {
            let columns: Vec<String> = src
                .prepare(&format!("SELECT * FROM {t} LIMIT 0"))
                .map(|st| st.column_names().map(str::to_string).collect())
                .map_err(|e| src_err(e.into()))?;
            let insert = format!(
                "INSERT INTO {t} ({}) VALUES ({})",
                columns.join(", "),
                (1..=columns.len())
                    .map(|i| format!("?{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            // Row by row, so that memory does not grow with the table.
            let mut st = src
                .prepare(&format!("SELECT {} FROM {t}", columns.join(", ")))
                .map_err(|e| src_err(e.into()))?;
            let mut rows = st.query([]).map_err(|e| src_err(e.into()))?;
            while let Some(r) = rows.next().map_err(|e| src_err(e.into()))? {
                let mut row = Vec::with_capacity(columns.len());
                for i in 0..columns.len() {
                    use rusqlite::types::Value as L;
                    row.push(match r.get::<_, L>(i).map_err(|e| src_err(e.into()))? {
                        L::Null => Value::Null,
                        L::Integer(n) => Value::Int(n),
                        L::Real(f) => Value::Real(f),
                        L::Text(s) => Value::Text(s),
                        L::Blob(b) => Value::Blob(b),
                    });
                }
                write
                    .prepare_cached(&insert)
                    .and_then(|mut ins| ins.execute(db::params_from_iter(row)))
                    .map_err(&dst_err)?;
            }
        }
        // The ids PostgreSQL gives next come after those copied.
        for t in ["domains", "keys"] {
            write
                .execute_batch(&format!(
                    "SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE((SELECT MAX(id) FROM {t}), 0) + 1, false)"
                ))
                .map_err(&dst_err)?;
        }
        write.commit().map_err(&dst_err)?;
        let mut moved = Vec::with_capacity(tables.len());
        for t in &tables {
            moved.push(Moved {
                table: t.clone(),
                from: count(&read, t).map_err(&src_err)?,
                to: count(&to_conn, t).map_err(&dst_err)?,
            });
        }
        drop(read);
        if let Some(m) = moved.iter().find(|m| m.from != m.to) {
            return Err(AdminError::Invalid(format!(
                "--to {}: {} holds {} rows of {} after the copy, {} held {}; the copy is incomplete: drop that database and run migrate again",
                to.path.display(),
                m.table,
                m.to,
                m.table,
                self.path.display(),
                m.from
            )));
        }
        Ok(moved)
    }
}
