//! The allow-lists of what an expression may contain: functions, operators,
//! data types and placeholders. Everything not listed is refused.

use sqlparser::ast::{BinaryOperator, DataType, UnaryOperator};

use crate::config::SqlDriver;

/// Functions a statement may call. Everything else is refused, because
/// databases ship functions that read server files (`pg_read_file`,
/// `LOAD_FILE`), open connections (`dblink`), sleep, take locks, change
/// settings (`set_config`) or run SQL of their own (`query_to_xml`). Names
/// compare case-insensitively and must be written unquoted; a qualified
/// name (`pg_catalog.lower`) is refused unless listed as such. Functions
/// that build large values from small inputs (`lpad`, `rpad`, `repeat`)
/// are not listed.
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    // conditionals and comparisons
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "nvl",
    "ifnull",
    "if",
    // text
    "lower",
    "upper",
    "length",
    "char_length",
    "substr",
    "substring",
    "trim",
    "ltrim",
    "rtrim",
    "concat",
    "replace",
    "left",
    "right",
    // numbers
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "mod",
    // time
    "now",
    "current_timestamp",
    "localtimestamp",
    "systimestamp",
    "sys_extract_utc",
    "utc_timestamp",
    "to_timestamp",
    "to_timestamp_tz",
    "from_unixtime",
    "to_char",
    "to_date",
    "date_trunc",
    "numtodsinterval",
    "from_tz",
    // JSON
    "json_value",
    "json_query",
    "json_extract",
    "json_object",
    "json_array",
    "json_build_object",
    "to_json",
    "to_jsonb",
    "jsonb_build_object",
    "json_serialize",
    "json_unquote",
    // aggregates
    "count",
    "sum",
    "min",
    "max",
    "avg",
    // MySQL `ON DUPLICATE KEY UPDATE c = VALUES(c)`
    "values",
    // conversions
    "to_number",
    "hextoraw",
    "rawtohex",
    "utl_raw.cast_to_raw",
];

/// Whether `name` (unquoted parts joined by `.`, any case) is allowed.
pub fn is_allowed_function(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ALLOWED_FUNCTIONS.contains(&lower.as_str())
}

/// Binary operators: arithmetic, comparison, logic, concatenation and, for
/// PostgreSQL, the JSON accessors. Custom operators (`OPERATOR(...)`),
/// regular-expression matches (a slow pattern is a denial of service) and
/// bit operators are refused.
pub fn is_allowed_binary_operator(driver: SqlDriver, op: &BinaryOperator) -> bool {
    use BinaryOperator as B;
    match op {
        B::Plus
        | B::Minus
        | B::Multiply
        | B::Divide
        | B::Modulo
        | B::StringConcat
        | B::Gt
        | B::Lt
        | B::GtEq
        | B::LtEq
        | B::Eq
        | B::NotEq
        | B::And
        | B::Or => true,
        B::Arrow | B::LongArrow | B::HashArrow | B::HashLongArrow | B::AtArrow | B::ArrowAt => {
            driver == SqlDriver::Postgres
        }
        _ => false,
    }
}

/// Unary operators: sign and `NOT`.
pub fn is_allowed_unary_operator(op: &UnaryOperator) -> bool {
    matches!(
        op,
        UnaryOperator::Plus | UnaryOperator::Minus | UnaryOperator::Not
    )
}

/// Types an expression may be cast to (`CAST(x AS t)`, `x::t`, `t 'text'`):
/// text, numbers, booleans, time, JSON, bytes. PostgreSQL's object
/// identifier types (`'secrets'::regclass`, `::regproc`) look objects up
/// and are refused with every other type not listed.
pub fn is_allowed_cast_type(data_type: &DataType) -> bool {
    use DataType as D;
    matches!(
        data_type,
        D::Character(_)
            | D::Char(_)
            | D::CharacterVarying(_)
            | D::CharVarying(_)
            | D::Varchar(_)
            | D::Text
            | D::Uuid
            | D::Numeric(_)
            | D::Decimal(_)
            | D::Dec(_)
            | D::Float(_)
            | D::SmallInt(_)
            | D::Int(_)
            | D::Integer(_)
            | D::BigInt(_)
            | D::Int2(_)
            | D::Int4(_)
            | D::Int8(_)
            | D::Float4
            | D::Float8
            | D::Real
            | D::Double(_)
            | D::DoublePrecision
            | D::Signed
            | D::SignedInteger
            | D::Unsigned
            | D::UnsignedInteger
            | D::Bool
            | D::Boolean
            | D::Date
            | D::Time(..)
            | D::Datetime(_)
            | D::Timestamp(..)
            | D::JSON
            | D::JSONB
            | D::Bytea
    )
}

/// A bind placeholder as its driver writes it: `$n` (PostgreSQL), `?`
/// (MySQL), `:n` or `:name` (Oracle).
pub fn is_placeholder(driver: SqlDriver, text: &str) -> bool {
    let digits = |rest: &str| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    match driver {
        SqlDriver::Postgres => text.strip_prefix('$').is_some_and(digits),
        SqlDriver::Mysql => text == "?",
        SqlDriver::Oracle => text.strip_prefix(':').is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }),
    }
}

/// Bare names a database reads as something other than a column: system
/// columns (`ctid`, `xmin`: row versions and physical addresses) and
/// Oracle's pseudo-columns and parameterless functions (`ROWID`, `USER`,
/// `SYSDATE` ...). Compared after folding, in the driver's case.
pub fn is_reserved_column(driver: SqlDriver, name: &str) -> bool {
    const POSTGRES: &[&str] = &[
        "ctid",
        "xmin",
        "xmax",
        "cmin",
        "cmax",
        "tableoid",
        "oid",
        // SQL's parameterless functions, in case they parse as names.
        "current_user",
        "session_user",
        "current_role",
        "current_schema",
        "current_catalog",
        "system_user",
        "user",
    ];
    const MYSQL: &[&str] = &["current_user", "current_role"];
    const ORACLE: &[&str] = &[
        "ROWID",
        "ROWNUM",
        "ORA_ROWSCN",
        "LEVEL",
        "USER",
        "UID",
        "SYSDATE",
        "CURRVAL",
        "NEXTVAL",
        "SESSIONTIMEZONE",
        "DBTIMEZONE",
        "CONNECT_BY_ISLEAF",
        "CONNECT_BY_ISCYCLE",
        "COLUMN_VALUE",
        "OBJECT_ID",
        "OBJECT_VALUE",
        "ORA_ROWVERSION",
    ];
    let list = match driver {
        SqlDriver::Postgres => POSTGRES,
        SqlDriver::Oracle => ORACLE,
        SqlDriver::Mysql => MYSQL,
    };
    list.iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
}
