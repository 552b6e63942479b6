//! A small JSON value type with the exact parsing and output rules the file
//! records need.
//!
//! Why not `serde_json::Value`:
//! - duplicate object keys must be *detected* (the reference treats such a
//!   payload as "not JSON"); `serde_json` silently keeps the last one;
//! - numbers are kept as their original text, so a payload integer larger
//!   than 64 bits or a decimal like `1.10` is stored exactly as the producer
//!   wrote it (the reference re-serialises through Python floats);
//! - output is compact or 2-space indented with keys sorted by code point,
//!   non-ASCII written as UTF-8 and control characters escaped the way
//!   Python's `json.dumps(..., sort_keys=True, ensure_ascii=False)` does.
//!
//! Invariant: the entries of [`Json::Object`] are sorted by key and unique.
//! [`Json::object`] and the parser establish it; the writers rely on it.

use std::fmt::Write as _;

/// Maximum nesting of arrays and objects accepted by [`parse`]. Deeper input
/// is reported as [`ParseError::TooDeep`] (the sink then treats the payload as
/// "not JSON") instead of risking the guest's stack.
pub const MAX_DEPTH: usize = 256;

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// A number, as valid JSON number text.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Entries sorted by key, keys unique.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Builds an object from entries in any order. A repeated key keeps the
    /// last value (callers building records never repeat keys).
    pub fn object<K: Into<String>>(entries: Vec<(K, Json)>) -> Json {
        let mut entries: Vec<(String, Json)> =
            entries.into_iter().map(|(k, v)| (k.into(), v)).collect();
        // Stable sort keeps insertion order among equal keys, so the last
        // one of a run is the last inserted.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, Json)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match out.last_mut() {
                Some(last) if last.0 == key => last.1 = value,
                _ => out.push((key, value)),
            }
        }
        Json::Object(out)
    }

    pub fn str(value: impl Into<String>) -> Json {
        Json::String(value.into())
    }

    pub fn opt_str(value: Option<&str>) -> Json {
        value.map_or(Json::Null, Json::str)
    }

    pub fn u64(value: u64) -> Json {
        Json::Number(value.to_string())
    }

    pub fn i64(value: i64) -> Json {
        Json::Number(value.to_string())
    }

    /// A float, written like Python's `repr(float)`. Non-finite values (never
    /// produced by the sink) become `null`, as JSON has no NaN.
    pub fn f64(value: f64) -> Json {
        if value.is_finite() {
            Json::Number(python_float_repr(value))
        } else {
            Json::Null
        }
    }

    pub fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> Json {
        Json::Array(values.into_iter().map(Json::str).collect())
    }

    /// Looks up a key of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => entries
                .binary_search_by(|(k, _)| k.as_str().cmp(key))
                .ok()
                .and_then(|i| entries.get(i))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a `u64` when it is a plain non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// Compact text: no whitespace, sorted keys.
    pub fn to_compact(&self) -> String {
        // A record is a few KB: start big enough to avoid most regrowth.
        let mut out = String::with_capacity(4096);
        write_compact(self, &mut out);
        out
    }

    /// Indented text (2 spaces), like `json.dumps(indent=2, sort_keys=True)`.
    pub fn to_pretty(&self) -> String {
        let mut out = String::new();
        write_pretty(self, 0, &mut out);
        out
    }
}

/// Why a text is not accepted as JSON. Deliberately carries no content of the
/// input: payloads must never reach logs or error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Invalid syntax at this byte offset.
    Syntax(usize),
    /// An object repeats a key.
    DuplicateKey,
    /// `NaN`, `Infinity` or `-Infinity`.
    NonStandardConstant,
    /// A `\u` escape names an unpaired UTF-16 surrogate.
    LoneSurrogate,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Syntax(at) => write!(f, "invalid JSON syntax at byte {at}"),
            ParseError::DuplicateKey => f.write_str("duplicate JSON object key"),
            ParseError::NonStandardConstant => {
                f.write_str("non-standard JSON constant (NaN or Infinity)")
            }
            ParseError::LoneSurrogate => f.write_str("unpaired UTF-16 surrogate escape"),
            ParseError::TooDeep => f.write_str("JSON nested too deeply"),
        }
    }
}

/// Parses standard JSON (RFC 8259): one value, optional surrounding
/// whitespace, no duplicate keys, no NaN/Infinity, no raw control characters
/// in strings.
pub fn parse(text: &str) -> Result<Json, ParseError> {
    parse_with_depth(text, MAX_DEPTH)
}

/// [`parse`] with another nesting limit (reading back records, which nest a
/// payload one level down).
pub fn parse_with_depth(text: &str, max_depth: usize) -> Result<Json, ParseError> {
    let mut parser = Parser {
        src: text.as_bytes(),
        pos: 0,
        max_depth,
    };
    parser.skip_ws();
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != parser.src.len() {
        return Err(ParseError::Syntax(parser.pos));
    }
    Ok(value)
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    max_depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn err(&self) -> ParseError {
        ParseError::Syntax(self.pos)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, literal: &[u8]) -> bool {
        if self.src.get(self.pos..self.pos + literal.len()) == Some(literal) {
            self.pos += literal.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') if self.eat(b"true") => Ok(Json::Bool(true)),
            Some(b'f') if self.eat(b"false") => Ok(Json::Bool(false)),
            Some(b'n') if self.eat(b"null") => Ok(Json::Null),
            Some(b'N') if self.eat(b"NaN") => Err(ParseError::NonStandardConstant),
            Some(b'I') if self.eat(b"Infinity") => Err(ParseError::NonStandardConstant),
            Some(b'-') if self.src.get(self.pos + 1) == Some(&b'I') => {
                self.pos += 1;
                if self.eat(b"Infinity") {
                    Err(ParseError::NonStandardConstant)
                } else {
                    Err(self.err())
                }
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err()),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > self.max_depth {
            return Err(ParseError::TooDeep);
        }
        self.pos += 1; // '{'
        let mut entries: Vec<(String, Json)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(entries));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err());
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err());
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value(depth)?;
            entries.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.err()),
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(ParseError::DuplicateKey);
        }
        Ok(Json::Object(entries))
    }

    fn array(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > self.max_depth {
            return Err(ParseError::TooDeep);
        }
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.err()),
            }
        }
        Ok(Json::Array(items))
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err());
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err());
            }
        }
        // The slice is ASCII by construction.
        let text = std::str::from_utf8(&self.src[start..self.pos]).map_err(|_| self.err())?;
        Ok(Json::Number(text.to_owned()))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.err()),
            };
            value = value * 16 + u32::from(digit);
            self.pos += 1;
        }
        Ok(value)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            // Copy the run of plain characters in one go.
            let run_start = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            if self.pos > run_start {
                // Input is a &str and the run stops only at ASCII bytes, so
                // it is whole UTF-8 characters.
                let run =
                    std::str::from_utf8(&self.src[run_start..self.pos]).map_err(|_| self.err())?;
                out.push_str(run);
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escape = self.peek().ok_or_else(|| self.err())?;
                    self.pos += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let first = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&first) {
                                if !self.eat(b"\\u") {
                                    return Err(ParseError::LoneSurrogate);
                                }
                                let second = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&second) {
                                    return Err(ParseError::LoneSurrogate);
                                }
                                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&first) {
                                return Err(ParseError::LoneSurrogate);
                            } else {
                                first
                            };
                            out.push(char::from_u32(code).ok_or(ParseError::LoneSurrogate)?);
                        }
                        _ => return Err(ParseError::Syntax(self.pos - 1)),
                    }
                }
                // End of input or a raw control character.
                _ => return Err(self.err()),
            }
        }
    }
}

/// Writes a JSON string literal the way Python's `json.dumps(...,
/// ensure_ascii=False)` does: `"` and `\` escaped, `\b \f \n \r \t` short
/// forms, other characters below U+0020 as `\u00XX`, everything else as is.
pub fn write_string(value: &str, out: &mut String) {
    out.push('"');
    let bytes = value.as_bytes();
    let mut run_start = 0;
    // Every character that needs escaping is ASCII, and no byte of a
    // multi-byte UTF-8 sequence is below 0x80: scanning bytes is exact, and
    // every index where an escape starts is a character boundary.
    while let Some(offset) = bytes[run_start..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
    {
        let i = run_start + offset;
        out.push_str(&value[run_start..i]);
        match bytes[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        run_start = i + 1;
    }
    out.push_str(&value[run_start..]);
    out.push('"');
}

/// Compact form: `,` and `:` separators, no spaces.
pub fn write_compact(value: &Json, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Number(n) => out.push_str(n),
        Json::String(s) => write_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_compact(item, out);
            }
            out.push(']');
        }
        Json::Object(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_compact(item, out);
            }
            out.push('}');
        }
    }
}

fn newline_indent(level: usize, out: &mut String) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("  ");
    }
}

/// Indented form, as Python's `json.dumps(indent=2)`: `", "`-free item
/// separators at line ends, `": "` between key and value, empty containers
/// as `[]` / `{}`.
pub fn write_pretty(value: &Json, level: usize, out: &mut String) {
    match value {
        Json::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(level + 1, out);
                write_pretty(item, level + 1, out);
            }
            newline_indent(level, out);
            out.push(']');
        }
        Json::Object(entries) if !entries.is_empty() => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(level + 1, out);
                write_string(key, out);
                out.push_str(": ");
                write_pretty(item, level + 1, out);
            }
            newline_indent(level, out);
            out.push('}');
        }
        other => write_compact(other, out),
    }
}

/// Formats a finite float like Python's `repr(float)`: the shortest text that
/// round-trips, positional for decimal exponents -4..=15 (always with a
/// fractional part, `1.0`), scientific otherwise (`1e-05`, `1.5e+16`).
pub fn python_float_repr(value: f64) -> String {
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e3".
    let sci = format!("{value:e}");
    let (mantissa, exponent) = match sci.split_once('e') {
        Some(parts) => parts,
        None => return sci,
    };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exponent) {
        if exponent >= 0 {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            for _ in 0..(-exponent - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sorts() {
        let v = parse(r#" {"b": [1, 2.50, -0, 1E400, 123456789012345678901234567890], "a": "x\u00e9\ud83d\ude00"} "#)
            .unwrap();
        assert_eq!(
            v.to_compact(),
            "{\"a\":\"x\u{e9}\u{1F600}\",\"b\":[1,2.50,-0,1E400,123456789012345678901234567890]}"
        );
    }

    #[test]
    fn rejects_non_standard() {
        assert_eq!(parse(r#"{"a":1,"a":2}"#), Err(ParseError::DuplicateKey));
        assert_eq!(parse("NaN"), Err(ParseError::NonStandardConstant));
        assert_eq!(parse("[-Infinity]"), Err(ParseError::NonStandardConstant));
        assert_eq!(parse("Infinity"), Err(ParseError::NonStandardConstant));
        assert_eq!(parse(r#""\ud800""#), Err(ParseError::LoneSurrogate));
        assert_eq!(parse(r#""\udc00x""#), Err(ParseError::LoneSurrogate));
        for bad in [
            "",
            " ",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "[1,]",
            "{\"a\":1,}",
            "{a:1}",
            "'a'",
            "\"a\tb\"",
            "\u{feff}{}",
            "{} {}",
            "tru",
            "\"\\x\"",
            "[",
            "\"abc",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::Syntax(_))),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn depth_limit() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep), Err(ParseError::TooDeep));
        let very_deep = "{\"a\":".repeat(100_000);
        assert_eq!(parse(&very_deep), Err(ParseError::TooDeep));
    }

    #[test]
    fn string_escapes_like_python() {
        let mut out = String::new();
        write_string(
            "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}/é\u{2028}",
            &mut out,
        );
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\u{7f}/é\u{2028}\""
        );
    }

    #[test]
    fn float_repr_like_python() {
        let cases = [
            (1.0, "1.0"),
            (2.5, "2.5"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1384.813248, "1384.813248"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"),
            (123456.0, "123456.0"),
            (-22.44594, "-22.44594"),
            (0.1, "0.1"),
        ];
        for (value, text) in cases {
            assert_eq!(python_float_repr(value), text, "{value}");
        }
    }

    #[test]
    fn pretty_like_python() {
        let v = Json::object(vec![
            ("b", Json::Array(vec![Json::u64(1), Json::Object(vec![])])),
            ("a", Json::Array(vec![])),
        ]);
        assert_eq!(
            v.to_pretty(),
            "{\n  \"a\": [],\n  \"b\": [\n    1,\n    {}\n  ]\n}"
        );
    }

    #[test]
    fn object_builder_sorts_by_code_point() {
        let v = Json::object(vec![
            ("b", Json::Null),
            ("B", Json::Null),
            ("é", Json::Null),
            ("a", Json::Null),
        ]);
        assert_eq!(
            v.to_compact(),
            "{\"B\":null,\"a\":null,\"b\":null,\"é\":null}"
        );
        assert_eq!(v.get("a"), Some(&Json::Null));
        assert_eq!(v.get("z"), None);
    }
}
