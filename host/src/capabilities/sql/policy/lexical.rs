//! Checks on the statement's text before it is parsed: the characters and
//! character sequences where a database's lexer and `sqlparser`'s could
//! disagree (comments, executable comments and hints, escapes, exotic
//! quoting). Refusing them outright, on the raw text *and* on the tokens,
//! means no difference between the two lexers can change what runs.

use sqlparser::dialect::Dialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use super::Refusal;
use crate::config::SqlDriver;

/// Longest statement text accepted. A first-party sink's 500-row `INSERT`
/// is about 60 KB; a megabyte is far beyond any sink and bounds the parse.
pub const MAX_STATEMENT_BYTES: usize = 1024 * 1024;

/// Refuses what the raw text must never contain. Conservative on purpose:
/// the sequences are refused even inside string literals (values are
/// bound, never written into the text).
pub fn check_text(driver: SqlDriver, sql: &str) -> Result<(), Refusal> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(Refusal(format!(
            "the statement is {} bytes; at most {MAX_STATEMENT_BYTES} are accepted",
            sql.len()
        )));
    }
    let bytes = sql.as_bytes();
    for (at, &byte) in bytes.iter().enumerate() {
        if !(byte == b'\t' || byte == b'\n' || byte == b'\r' || (0x20..0x7f).contains(&byte)) {
            return Err(Refusal(format!(
                "the statement contains a control or non-ASCII character at byte {at}; \
                 write names in ASCII and bind text values as parameters"
            )));
        }
        let next = bytes.get(at + 1).copied();
        let pair = (byte, next);
        let comment = match pair {
            (b'-', Some(b'-')) => Some("`--`"),
            (b'/', Some(b'*')) => Some("`/*`"),
            (b'*', Some(b'/')) => Some("`*/`"),
            (b'#', _) if driver == SqlDriver::Mysql => Some("`#`"),
            _ => None,
        };
        if let Some(what) = comment {
            return Err(Refusal(format!(
                "comments and optimizer hints are refused in statements ({what} at byte {at}; \
                 this includes MySQL `/*!...*/` and MariaDB `/*M!...*/`); send the statement without them"
            )));
        }
        let refused = match byte {
            b'\\' => Some("a backslash (escapes read differently by different servers)"),
            b'@' if driver == SqlDriver::Mysql => Some("`@` (MySQL user and system variables)"),
            b'"' if driver == SqlDriver::Mysql => {
                Some("a double quote (a string or a name depending on the server's sql_mode)")
            }
            b'$' if driver == SqlDriver::Postgres && !next.is_some_and(|b| b.is_ascii_digit()) => {
                Some("`$` other than a `$n` placeholder (dollar-quoted strings)")
            }
            b'&' if driver == SqlDriver::Postgres
                && at > 0
                && bytes[at - 1].eq_ignore_ascii_case(&b'u')
                && matches!(next, Some(b'\'') | Some(b'"')) =>
            {
                Some("a `U&` Unicode-escaped string or name")
            }
            b'\''
                if driver == SqlDriver::Oracle
                    && at > 0
                    && bytes[at - 1].eq_ignore_ascii_case(&b'q')
                    && (at == 1
                        || !is_word_byte(bytes[at - 2])
                        || bytes[at - 2].eq_ignore_ascii_case(&b'n')) =>
            {
                Some("Oracle's q'...' quoting")
            }
            _ => None,
        };
        if let Some(what) = refused {
            return Err(Refusal(format!(
                "the statement contains {what} at byte {at}; bind values as parameters instead"
            )));
        }
    }
    Ok(())
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte == b'#'
}

/// Refuses comments and every string form but the plain `'...'` in the
/// tokenizer's own reading of the statement (the second, independent look).
pub fn check_tokens(dialect: &dyn Dialect, driver: SqlDriver, sql: &str) -> Result<(), Refusal> {
    let tokens = Tokenizer::new(dialect, sql).tokenize().map_err(|err| {
        Refusal(format!(
            "the statement does not parse as {} SQL: {err}",
            driver.name()
        ))
    })?;
    for token in &tokens {
        let what = match token {
            Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_)) => "a comment",
            Token::Whitespace(_) => continue,
            Token::SingleQuotedString(_)
            | Token::Word(_)
            | Token::Number(..)
            | Token::Placeholder(_) => continue,
            Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_) => "a string literal other than '...'",
            // Punctuation and operators: what they may do is decided on
            // the parsed tree.
            _ => continue,
        };
        return Err(Refusal(format!(
            "the statement contains {what} ({token}); comments are refused and values are bound as parameters"
        )));
    }
    Ok(())
}
