//! Canonical JSON: the exact bytes the reference `nats-sinks` signs and
//! hashes.
//!
//! The reference renders documents with Python's
//! `json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
//! allow_nan=False)` and encodes the result as UTF-8. This module produces the
//! same bytes from a [`serde_json::Value`]:
//!
//! - no whitespace between tokens;
//! - object keys sorted by Unicode code point, at every depth (sorted here
//!   explicitly, whatever map type `serde_json` was built with);
//! - strings: `"` → `\"`, `\` → `\\`, the control characters U+0008, U+0009,
//!   U+000A, U+000C, U+000D → `\b`, `\t`, `\n`, `\f`, `\r`, every other
//!   character below U+0020 → `\u00XX` with lowercase hex; everything else,
//!   including U+007F and all non-ASCII text, is written as raw UTF-8;
//! - integers in decimal; floats as Python's `repr` writes them (`1.0`,
//!   `0.0001`, `1e-05`, `1e+16`, `-0.0`): the shortest digits that round-trip,
//!   in positional notation when the decimal exponent is in `-4..16`, else in
//!   scientific notation with a signed, at least two-digit exponent;
//! - NaN and infinities cannot occur: a `serde_json::Value` cannot hold them.

use std::fmt::Write as _;

use serde_json::Value;

/// Renders `value` as canonical JSON bytes (see the module documentation).
pub fn to_canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

/// Renders `value` as a canonical JSON string (the UTF-8 text of
/// [`to_canonical_bytes`]).
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out);
    out
}

/// Appends the canonical JSON rendering of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    let mut text = String::with_capacity(256);
    write_value(value, &mut text);
    out.extend_from_slice(text.as_bytes());
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(number, out),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Byte order of UTF-8 equals code point order, which is how
            // Python sorts `str` keys.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

fn write_number(number: &serde_json::Number, out: &mut String) {
    if let Some(unsigned) = number.as_u64() {
        let _ = write!(out, "{unsigned}");
    } else if let Some(signed) = number.as_i64() {
        let _ = write!(out, "{signed}");
    } else if let Some(float) = number.as_f64() {
        write_python_float(float, out);
    } else {
        // Unreachable without serde_json's `arbitrary_precision`; render the
        // number as serde_json does rather than lose it.
        let _ = write!(out, "{number}");
    }
}

/// Writes a finite `f64` exactly as Python's `repr(float)` does.
///
/// Non-finite values (impossible in a `serde_json::Value`) are written as
/// `null` rather than producing invalid JSON.
pub fn write_python_float(value: f64, out: &mut String) {
    if !value.is_finite() {
        out.push_str("null");
        return;
    }
    if value == 0.0 {
        out.push_str(if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        });
        return;
    }
    if value.is_sign_negative() {
        out.push('-');
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, e.g.
    // "1.2345e17" or "5e-324": the same digits as Python's repr.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digit_count = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    // Position of the decimal point relative to the digit string.
    let point = exponent + 1;
    if point <= -4 || point > 16 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    } else if point <= 0 {
        out.push_str("0.");
        for _ in 0..(-point) {
            out.push('0');
        }
        out.push_str(&digits);
    } else if point < digit_count {
        let split = usize::try_from(point).unwrap_or(0);
        out.push_str(&digits[..split]);
        out.push('.');
        out.push_str(&digits[split..]);
    } else {
        out.push_str(&digits);
        for _ in 0..(point - digit_count) {
            out.push('0');
        }
        out.push_str(".0");
    }
}

fn write_string(text: &str, out: &mut String) {
    out.push('"');
    // Every character that needs escaping is ASCII, and no byte of a
    // multi-byte UTF-8 sequence is ASCII: scanning bytes finds them all, and
    // the runs in between are copied whole.
    let bytes = text.as_bytes();
    let mut plain_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            byte if byte < 0x20 => "",
            _ => continue,
        };
        out.push_str(&text[plain_start..index]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", byte);
        } else {
            out.push_str(escape);
        }
        plain_start = index + 1;
    }
    out.push_str(&text[plain_start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(value: &Value) -> String {
        String::from_utf8(to_canonical_bytes(value)).expect("canonical JSON is UTF-8")
    }

    /// Expected outputs below were produced by Python 3 `json.dumps(v,
    /// ensure_ascii=False, sort_keys=True, separators=(",", ":"),
    /// allow_nan=False)`.
    #[test]
    fn matches_python_for_mixed_document() {
        let value = json!({
            "s": "a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1}\u{1f}\u{7f} é € 😀 \u{2028}",
            "k": {"b": 1, "a": 2, "B": 3, "é": 4, "z": 5, "aa": 6},
            "i": [0, -1, 18446744073709551615u64, -9223372036854775808i64],
            "b": [true, false, null],
            "e": {},
            "a": [],
        });
        assert_eq!(
            canon(&value),
            "{\"a\":[],\"b\":[true,false,null],\"e\":{},\
             \"i\":[0,-1,18446744073709551615,-9223372036854775808],\
             \"k\":{\"B\":3,\"a\":2,\"aa\":6,\"b\":1,\"z\":5,\"é\":4},\
             \"s\":\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0000\\u0001\\u001f\u{7f} é € 😀 \u{2028}\"}"
        );
    }

    #[test]
    fn string_escapes_agree_with_serde_json() {
        // serde_json's own escaping is the same as Python's for every
        // character below U+0080 (lowercase \u00XX, short forms for
        // \b \f \n \r \t, DEL unescaped).
        for code in 0u32..0x80 {
            let c = char::from_u32(code).expect("ASCII");
            let text = format!("x{c}y");
            let value = Value::String(text);
            assert_eq!(
                canon(&value),
                serde_json::to_string(&value).expect("serialises"),
                "U+{code:04X}"
            );
        }
    }

    #[test]
    fn floats_like_python_repr() {
        let cases: [(f64, &str); 17] = [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (0.5, "0.5"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (2.5e300, "2.5e+300"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (1e22, "1e+22"),
            (-1e-05, "-1e-05"),
        ];
        for (value, expected) in cases {
            assert_eq!(canon(&json!(value)), expected, "{value:e}");
        }
        assert_eq!(canon(&json!(12345.678)), "12345.678");
        assert_eq!(canon(&json!({"x": 1.0})), "{\"x\":1.0}");
        // serde_json agrees with Python where custody hashes floats.
        assert_eq!(serde_json::to_string(&json!(1.0)).expect("ok"), "1.0");
    }

    /// Parsed floats must be the nearest `f64`, as Python parses them, or a
    /// producer's mission metadata would re-render differently. Needs
    /// serde_json's `float_roundtrip` feature (enabled in host/Cargo.toml);
    /// without it these parse one ULP off.
    #[test]
    fn parsed_floats_round_trip_exactly() {
        for text in [
            "9.969231245747309e-80",
            "-376582.69397257315",
            "961748.8525313751",
            "-1.573374213134624e-239",
        ] {
            let value: Value = serde_json::from_str(text).expect("parses");
            assert_eq!(canon(&value), text);
        }
    }

    #[test]
    fn nested_keys_are_sorted_and_output_is_compact() {
        let value = json!({"z": {"y": [1, {"b": null, "a": "x"}], "a": true}, "m": "v"});
        assert_eq!(
            canon(&value),
            "{\"m\":\"v\",\"z\":{\"a\":true,\"y\":[1,{\"a\":\"x\",\"b\":null}]}}"
        );
        assert_eq!(
            to_canonical_string(&value).as_bytes(),
            to_canonical_bytes(&value)
        );
    }
}
