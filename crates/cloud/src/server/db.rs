//! One connection to the cloud's database: SQLite (the embedded default, a file) or
//! PostgreSQL (`postgres://…`, for several nodes on one database). The store's rules and SQL are
//! written once against this seam; each backend turns them into its own calls.
//!
//! The SQL is the part both engines speak: `?N` parameters (turned into PostgreSQL's `$N`),
//! `INSERT … ON CONFLICT`, `RETURNING`, `COALESCE`, no engine's own functions. Integers are
//! 64-bit on both sides (`BIGINT` on PostgreSQL); booleans are stored as 0 and 1. The schema's
//! text is SQLite's, and PostgreSQL's is derived from it (`postgres_schema`), so there is one
//! list of tables.
//!
//! Transactions: SQLite's `BEGIN IMMEDIATE` makes writers take turns. PostgreSQL's
//! `SERIALIZABLE` lets them run at once and fails the one that would have seen a different
//! world; such a failure is [`Error::is_retryable`] and the store runs the transaction again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use postgres::types::{IsNull, Type, to_sql_checked};

/// A value going into or coming out of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A value read from a row, borrowed where the backend lets it be.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl Value {
    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Int(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

#[derive(Debug)]
pub enum Error {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
    /// A statement that must return a row returned none.
    NoRows,
    /// A value that is not what the code asked for, or could not be made.
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn other(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Other(e.into())
    }

    /// PostgreSQL gave up the transaction because another one ran at the same time (a
    /// serialization failure or a deadlock): running it again is the documented answer.
    pub fn is_retryable(&self) -> bool {
        use postgres::error::SqlState;
        match self {
            Error::Postgres(e) => matches!(
                e.code(),
                Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
            ),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sqlite(e) => write!(f, "{e}"),
            // postgres::Error's Display is only the kind ("db error"); the server's words are
            // in its source.
            Error::Postgres(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.severity(), db.message()),
                None => {
                    // The kind, then its causes (a handshake's: which certificate, and why).
                    write!(f, "{e}")?;
                    let mut cause = std::error::Error::source(e);
                    while let Some(c) = cause {
                        write!(f, ": {c}")?;
                        cause = c.source();
                    }
                    Ok(())
                }
            },
            Error::NoRows => f.write_str("the query returned no rows"),
            Error::Other(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => Error::NoRows,
            e => Error::Sqlite(e),
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Postgres(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `.optional()`: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

// ---- values in ---------------------------------------------------------------------------------

pub trait ToValue {
    fn to_value(&self) -> Value;
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_to_value!(i64, i32, u32, i16, u16, u8);

impl ToValue for u64 {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for usize {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

/// A statement's parameters, `?1`, `?2`… in order.
pub trait Params {
    fn values(self) -> Vec<Value>;
}

impl Params for &[&dyn ToValue] {
    fn values(self) -> Vec<Value> {
        self.iter().map(|v| v.to_value()).collect()
    }
}

impl Params for [&dyn ToValue; 0] {
    fn values(self) -> Vec<Value> {
        Vec::new()
    }
}

macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToValue> Params for [T; $n] {
            fn values(self) -> Vec<Value> {
                self.iter().map(ToValue::to_value).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8);

pub struct ParamsFromIter<I>(I);

impl<I> Params for ParamsFromIter<I>
where
    I: IntoIterator,
    I::Item: ToValue,
{
    fn values(self) -> Vec<Value> {
        self.0.into_iter().map(|v| v.to_value()).collect()
    }
}

pub fn params_from_iter<I>(iter: I) -> ParamsFromIter<I>
where
    I: IntoIterator,
    I::Item: ToValue,
{
    ParamsFromIter(iter)
}

/// `params![a, b, c]`: a statement's parameters of mixed types.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::server::db::ToValue]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::server::db::ToValue),+] as &[&dyn $crate::server::db::ToValue]
    };
}
pub(crate) use params;

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef as L};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => L::Null,
            Value::Int(i) => L::Integer(*i),
            Value::Real(f) => L::Real(*f),
            Value::Text(s) => L::Text(s.as_bytes()),
            Value::Blob(b) => L::Blob(b),
        }))
    }
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // The statement's parameter types come from PostgreSQL; a value goes in as the type
        // the statement wants, as SQLite would have taken it.
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => i.to_string().to_sql(ty, out),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                Type::FLOAT8 => f.to_sql(ty, out),
                _ => f.to_string().to_sql(ty, out),
            },
            Value::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                Type::INT4 => s.parse::<i32>()?.to_sql(ty, out),
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                _ => s.as_str().to_sql(ty, out),
            },
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Any column PostgreSQL sends, as a [`Value`].
struct PgValue(Value);

impl<'a> postgres::types::FromSql<'a> for PgValue {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgValue(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                Value::Text(String::from_sql(ty, raw)?)
            }
            _ => {
                return Err(format!(
                    "a column of type {ty} (the store's SQL must cast it to BIGINT or TEXT)"
                )
                .into());
            }
        }))
    }

    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgValue(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

// ---- values out --------------------------------------------------------------------------------

pub trait FromValue: Sized {
    fn from_value(v: ValueRef<'_>) -> Result<Self>;
}

fn wrong(v: ValueRef<'_>, wanted: &str) -> Error {
    let got = match v {
        ValueRef::Null => "NULL",
        ValueRef::Int(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    };
    Error::other(format!("a column holds {got} where {wanted} was expected"))
}

impl FromValue for i64 {
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Int(i) => Ok(i),
            v => Err(wrong(v, "an integer")),
        }
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: ValueRef<'_>) -> Result<Self> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| {
                    Error::other(format!("a column holds {i}, out of range for {}", stringify!($t)))
                })
            }
        }
    )*};
}
int_from_value!(i32, u32, u64, usize, i16, u16, u8);

impl FromValue for bool {
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl FromValue for f64 {
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Real(f) => Ok(f),
            ValueRef::Int(i) => Ok(i as f64),
            v => Err(wrong(v, "a number")),
        }
    }
}

impl FromValue for String {
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Text(s) => Ok(s.to_owned()),
            v => Err(wrong(v, "text")),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            ValueRef::Text(s) => Ok(s.as_bytes().to_vec()),
            v => Err(wrong(v, "a blob")),
        }
    }
}

impl FromValue for Value {
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        Ok(match v {
            ValueRef::Null => Value::Null,
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(s) => Value::Text(s.to_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        })
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: ValueRef<'_>) -> Result<Self> {
        match v {
            ValueRef::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row of a result, read by column index.
pub struct Row<'a>(RowInner<'a>);

enum RowInner<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a postgres::Row),
}

/// A column's position (a trait of one type, so that `r.get(0)` needs no annotation).
pub trait RowIndex {
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

impl Row<'_> {
    pub fn get<I: RowIndex, T: FromValue>(&self, idx: I) -> Result<T> {
        let idx = idx.index();
        let v = match &self.0 {
            RowInner::Sqlite(r) => {
                use rusqlite::types::ValueRef as L;
                match r.get_ref(idx)? {
                    L::Null => return T::from_value(ValueRef::Null),
                    L::Integer(i) => return T::from_value(ValueRef::Int(i)),
                    L::Real(f) => return T::from_value(ValueRef::Real(f)),
                    L::Text(t) => {
                        let s = std::str::from_utf8(t).map_err(Error::other)?;
                        return T::from_value(ValueRef::Text(s));
                    }
                    L::Blob(b) => return T::from_value(ValueRef::Blob(b)),
                }
            }
            RowInner::Postgres(r) => r.try_get::<_, PgValue>(idx)?.0,
        };
        T::from_value(v.as_ref()).map_err(|e| Error::other(format!("column {idx}: {e}")))
    }
}

// ---- connections -------------------------------------------------------------------------------

pub struct Connection {
    inner: Inner,
    /// PostgreSQL failed a statement of the open transaction because another ran at the same
    /// time ([`Error::is_retryable`]); read and cleared by [`Connection::take_conflict`].
    conflict: std::cell::Cell<bool>,
}

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Pg>),
}

struct Pg {
    /// `None` only while being dropped.
    client: RefCell<Option<postgres::Client>>,
    /// Statements prepared on this connection, by the store's SQL text.
    prepared: RefCell<HashMap<String, postgres::Statement>>,
}

impl Pg {
    fn client(&self) -> std::cell::RefMut<'_, postgres::Client> {
        std::cell::RefMut::map(self.client.borrow_mut(), |c| {
            c.as_mut()
                .unwrap_or_else(|| unreachable!("the client is taken only on drop"))
        })
    }
}

impl Drop for Pg {
    /// The client owns a runtime, which must not be dropped inside another (the server's):
    /// it is dropped on a thread of its own.
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take() {
            let _ = std::thread::spawn(move || drop(client)).join();
        }
    }
}

/// `?N` and `?` become `$N`, outside quoted text.
pub fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 0u32;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let n = if digits.is_empty() {
                    next += 1;
                    next
                } else {
                    let n: u32 = digits.parse().unwrap_or(0);
                    next = next.max(n);
                    n
                };
                out.push('$');
                out.push_str(&n.to_string());
            }
            None => out.push(c),
        }
    }
    out
}

/// PostgreSQL's schema from SQLite's text: 64-bit integers, `bytea`, the domain and key ids
/// given by an identity column, and `COLLATE NOCASE` kept (the store creates a case-insensitive
/// collation of that name).
pub fn postgres_schema(sqlite: &str) -> String {
    sqlite
        .replace(
            "id INTEGER PRIMARY KEY,",
            "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,",
        )
        .replace("INTEGER", "BIGINT")
        .replace("BLOB", "BYTEA")
}

impl Connection {
    pub fn sqlite(conn: rusqlite::Connection) -> Connection {
        conn.set_prepared_statement_cache_capacity(256);
        Connection {
            inner: Inner::Sqlite(conn),
            conflict: Default::default(),
        }
    }

    pub fn postgres(client: postgres::Client) -> Connection {
        Connection {
            inner: Inner::Postgres(Box::new(Pg {
                client: RefCell::new(Some(client)),
                prepared: RefCell::new(HashMap::new()),
            })),
            conflict: Default::default(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.inner, Inner::Postgres(_))
    }

    /// SQLite's own connection, for what only it has (pragmas, its migrations).
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    /// Whether a statement since the last call failed because of a concurrent transaction.
    pub fn take_conflict(&self) -> bool {
        self.conflict.replace(false)
    }

    fn pg(&self, e: postgres::Error) -> Error {
        let e = Error::Postgres(e);
        if e.is_retryable() {
            self.conflict.set(true);
        }
        e
    }

    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(pg) => pg.client().batch_execute(sql).map_err(|e| self.pg(e)),
        }
    }

    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.run_execute(sql, params.values(), true)
    }

    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            conn: self,
            sql: sql.to_owned(),
            cached: false,
        })
    }

    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            conn: self,
            sql: sql.to_owned(),
            cached: true,
        })
    }

    fn pg_statement(&self, pg: &Pg, sql: &str, cached: bool) -> Result<postgres::Statement> {
        if let Some(st) = pg.prepared.borrow().get(sql) {
            return Ok(st.clone());
        }
        let st = pg
            .client()
            .prepare(&postgres_sql(sql))
            .map_err(|e| self.pg(e))?;
        if cached {
            pg.prepared.borrow_mut().insert(sql.to_owned(), st.clone());
        }
        Ok(st)
    }

    fn run_execute(&self, sql: &str, values: Vec<Value>, cached: bool) -> Result<usize> {
        match &self.inner {
            Inner::Sqlite(c) => {
                let params = rusqlite::params_from_iter(values.iter());
                Ok(if cached {
                    c.prepare_cached(sql)?.execute(params)?
                } else {
                    c.execute(sql, params)?
                })
            }
            Inner::Postgres(pg) => {
                let st = self.pg_statement(pg, sql, cached)?;
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    values.iter().map(|v| v as _).collect();
                let n = pg.client().execute(&st, &refs).map_err(|e| self.pg(e))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// Calls `each` on every row until it returns `false`.
    fn run_query(
        &self,
        sql: &str,
        values: Vec<Value>,
        cached: bool,
        each: &mut dyn FnMut(&Row<'_>) -> Result<bool>,
    ) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => {
                // A statement made for one call (its text is built at run time) stays out of
                // the cache, which holds the store's fixed ones.
                let mut kept;
                let mut once;
                let st: &mut rusqlite::Statement<'_> = if cached {
                    kept = c.prepare_cached(sql)?;
                    &mut kept
                } else {
                    once = c.prepare(sql)?;
                    &mut once
                };
                let mut rows = st.query(rusqlite::params_from_iter(values.iter()))?;
                while let Some(r) = rows.next()? {
                    if !each(&Row(RowInner::Sqlite(r)))? {
                        break;
                    }
                }
                Ok(())
            }
            Inner::Postgres(pg) => {
                let st = self.pg_statement(pg, sql, cached)?;
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    values.iter().map(|v| v as _).collect();
                let rows = pg.client().query(&st, &refs).map_err(|e| self.pg(e))?;
                for r in &rows {
                    if !each(&Row(RowInner::Postgres(r)))? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Waits for the cloud's writer lock alone, before a transaction begins (PostgreSQL: a
    /// session advisory lock, so that the transaction's snapshot comes after the last writer's
    /// commit; the server frees it if this connection is lost). Every writing transaction
    /// holds the lock shared from its first statement, so while one holds it alone no other
    /// writes. Given back when the turn is dropped, however the transaction ended (a panic
    /// too). SQLite's writers take turns already.
    pub fn writer_turn(&self, alone: bool) -> Result<WriterTurn<'_>> {
        let alone = alone && self.is_postgres();
        if alone {
            self.execute_batch(&format!("SELECT pg_advisory_lock({WRITER_LOCK})"))?;
        }
        Ok(WriterTurn {
            conn: alone.then_some(self),
        })
    }

    /// A writing transaction on a shared borrow (the caller holds the connection alone).
    pub fn write_transaction(&self) -> Result<Transaction<'_>> {
        self.begin(TransactionBehavior::Immediate)
    }

    fn begin(&self, behavior: TransactionBehavior) -> Result<Transaction<'_>> {
        let sql = match (&self.inner, behavior) {
            (Inner::Sqlite(_), TransactionBehavior::Immediate) => "BEGIN IMMEDIATE",
            (Inner::Sqlite(_), TransactionBehavior::Deferred) => "BEGIN DEFERRED",
            // With the writer lock shared, in the same round trip.
            (Inner::Postgres(_), TransactionBehavior::Immediate) => WRITER_BEGIN,
            (Inner::Postgres(_), TransactionBehavior::Deferred) => "BEGIN",
        };
        self.execute_batch(sql)?;
        Ok(Transaction {
            conn: self,
            done: false,
        })
    }

    /// A deferred transaction on a shared borrow (the caller makes sure no other is open).
    pub fn unchecked_transaction(&self) -> Result<Transaction<'_>> {
        self.begin(TransactionBehavior::Deferred)
    }
}

/// The advisory lock's key: "ad-sync" in a number.
const WRITER_LOCK: i64 = 7_316_002;
const WRITER_BEGIN: &str =
    "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT pg_advisory_xact_lock_shared(7316002)";

/// Holding the writer lock alone (on PostgreSQL); given back when dropped.
#[must_use]
pub struct WriterTurn<'c> {
    conn: Option<&'c Connection>,
}

impl Drop for WriterTurn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn
            && let Err(e) = conn.execute_batch(&format!("SELECT pg_advisory_unlock({WRITER_LOCK})"))
        {
            // The connection is likely gone, and the server frees a lost session's locks.
            tracing::warn!(error = %e, "the writer lock could not be given back");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionBehavior {
    /// A writer: SQLite takes the write lock at once; PostgreSQL runs it SERIALIZABLE.
    Immediate,
    Deferred,
}

/// An open transaction; dropped without `commit`, it rolls back.
pub struct Transaction<'c> {
    conn: &'c Connection,
    done: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.execute_batch("COMMIT")
    }

    pub fn rollback(mut self) -> Result<()> {
        self.done = true;
        self.conn.execute_batch("ROLLBACK")
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// A statement to run, once or several times.
pub struct Statement<'c> {
    conn: &'c Connection,
    sql: String,
    cached: bool,
}

impl Statement<'_> {
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        self.conn
            .run_execute(&self.sql, params.values(), self.cached)
    }

    pub fn query_map<T, P, F>(
        &mut self,
        params: P,
        mut f: F,
    ) -> Result<std::vec::IntoIter<Result<T>>>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        let mut out = Vec::new();
        self.conn
            .run_query(&self.sql, params.values(), self.cached, &mut |row| {
                out.push(f(row));
                Ok(true)
            })?;
        Ok(out.into_iter())
    }

    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        let mut f = Some(f);
        let mut out = None;
        self.conn
            .run_query(&self.sql, params.values(), self.cached, &mut |row| {
                if let Some(f) = f.take() {
                    out = Some(f(row));
                }
                Ok(false)
            })?;
        out.unwrap_or(Err(Error::NoRows))
    }

    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        let mut any = false;
        self.conn
            .run_query(&self.sql, params.values(), self.cached, &mut |_| {
                any = true;
                Ok(false)
            })?;
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_for_postgres_outside_quoted_text() {
        for (sqlite, postgres) in [
            (
                "SELECT a FROM t WHERE b = ?1 AND c = ?2",
                "SELECT a FROM t WHERE b = $1 AND c = $2",
            ),
            ("VALUES (?, ?, ?)", "VALUES ($1, $2, $3)"),
            (
                "WHERE x = ?2 OR y = ?1 OR z = ?12",
                "WHERE x = $2 OR y = $1 OR z = $12",
            ),
            (
                "WHERE note = 'why?' AND id = ?1",
                "WHERE note = 'why?' AND id = $1",
            ),
            ("WHERE \"odd?col\" = ?", "WHERE \"odd?col\" = $1"),
        ] {
            assert_eq!(postgres_sql(sqlite), postgres, "{sqlite}");
        }
    }

    #[test]
    fn a_writer_takes_the_same_lock_it_may_wait_for_alone() {
        assert!(WRITER_BEGIN.ends_with(&format!("({WRITER_LOCK})")));
    }

    #[test]
    fn the_postgres_schema_is_derived_from_sqlites() {
        let pg = postgres_schema(
            "CREATE TABLE d (\n    id INTEGER PRIMARY KEY,\n    n INTEGER NOT NULL,\n    k BLOB,\n    name TEXT COLLATE NOCASE\n);",
        );
        assert!(
            pg.contains("id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"),
            "{pg}"
        );
        assert!(pg.contains("n BIGINT NOT NULL"), "{pg}");
        assert!(pg.contains("k BYTEA"), "{pg}");
        assert!(pg.contains("COLLATE NOCASE"), "{pg}");
        assert!(!pg.contains("INTEGER"), "{pg}");
    }
}
