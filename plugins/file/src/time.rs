//! Timestamps: Unix nanoseconds to the reference's ISO text, RFC 3339 text to
//! nanoseconds, and the wall clock.

use std::fmt::Write as _;

const NS_PER_SEC: i64 = 1_000_000_000;

/// Current wall-clock time in nanoseconds since the Unix epoch (WASI
/// `wall-clock` inside the component).
pub fn now_ns() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Formats like Python's `datetime.isoformat()` for an aware UTC datetime:
/// `2026-11-22T10:56:07.389552+00:00`, the fraction in microseconds
/// (truncated toward the past) and omitted when zero:
/// `2026-05-22T12:00:00+00:00`.
pub fn iso_utc_micros(ns: i64) -> String {
    let micros = ns.div_euclid(1_000);
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(32);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        let _ = write!(out, ".{frac:06}");
    }
    out.push_str("+00:00");
    out
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let c = self.peek()?;
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
            self.pos += 1;
        }
        Some(v)
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
}

/// Parses an RFC 3339 / ISO 8601 extended timestamp (as NATS writes
/// `Nats-Time-Stamp`, e.g. `2024-01-02T03:04:05.123456789Z`) into Unix
/// nanoseconds. Accepted: `YYYY-MM-DD`, optionally followed by `T`, `t` or a
/// space and `HH`, `HH:MM` or `HH:MM:SS`, an optional fraction (`.` or `,`,
/// any number of digits, kept to the nanosecond) and an optional offset `Z`,
/// `z`, `±HH`, `±HHMM` or `±HH:MM`. Without an offset the time is UTC (as the
/// reference does). Returns `None` for anything else.
pub fn parse_rfc3339_ns(text: &str) -> Option<i64> {
    let mut c = Cursor {
        s: text.as_bytes(),
        pos: 0,
    };
    let year = c.digits(4)?;
    if !c.eat(b'-') {
        return None;
    }
    let month = c.digits(2)?;
    if !c.eat(b'-') {
        return None;
    }
    let day = c.digits(2)?;
    let year = i64::from(year);
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut nanos) = (0u32, 0u32, 0u32, 0u32);
    let mut offset_secs: i64 = 0;
    if c.peek().is_some() {
        if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
            return None;
        }
        hour = c.digits(2)?;
        if c.eat(b':') {
            minute = c.digits(2)?;
            if c.eat(b':') {
                second = c.digits(2)?;
                if c.eat(b'.') || c.eat(b',') {
                    let mut n = 0usize;
                    while let Some(d) = c.peek().filter(u8::is_ascii_digit) {
                        if n < 9 {
                            nanos = nanos * 10 + u32::from(d - b'0');
                        }
                        n += 1;
                        c.pos += 1;
                    }
                    if n == 0 {
                        return None;
                    }
                    for _ in n..9 {
                        nanos *= 10;
                    }
                }
            }
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        match c.peek() {
            None => {}
            Some(b'Z' | b'z') => c.pos += 1,
            Some(sign @ (b'+' | b'-')) => {
                c.pos += 1;
                let oh = c.digits(2)?;
                // `±HH`, `±HHMM` or `±HH:MM`.
                let om = if c.eat(b':') || c.peek().is_some() {
                    c.digits(2)?
                } else {
                    0
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                let magnitude = i64::from(oh) * 3600 + i64::from(om) * 60;
                offset_secs = if sign == b'-' { -magnitude } else { magnitude };
            }
            Some(_) => return None,
        }
        if c.peek().is_some() {
            return None;
        }
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - offset_secs;
    secs.checked_mul(NS_PER_SEC)?.checked_add(i64::from(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_formatting() {
        assert_eq!(
            iso_utc_micros(1_779_451_200_000_000_000),
            "2026-05-22T12:00:00+00:00"
        );
        assert_eq!(
            iso_utc_micros(1_795_344_967_389_552_266),
            "2026-11-22T10:56:07.389552+00:00"
        );
        assert_eq!(iso_utc_micros(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso_utc_micros(-1), "1969-12-31T23:59:59.999999+00:00");
        assert_eq!(
            iso_utc_micros(951_782_400_000_000_000),
            "2000-02-29T00:00:00+00:00"
        );
    }

    #[test]
    fn rfc3339_parsing() {
        assert_eq!(
            parse_rfc3339_ns("2026-05-22T12:00:00Z"),
            Some(1_779_451_200_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-05-22T12:00:00+00:00"),
            Some(1_779_451_200_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-05-22T14:00:00+02:00"),
            Some(1_779_451_200_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-05-22T11:30:00-0030"),
            Some(1_779_451_200_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-05-22 12:00"),
            Some(1_779_451_200_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-05-22"),
            Some(1_779_408_000_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-11-22T10:56:07.389552266Z"),
            Some(1_795_344_967_389_552_266)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-11-22T10:56:07.3895522669999Z"),
            Some(1_795_344_967_389_552_266)
        );
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-02-29",
            "2026-05-22T24:00:00Z",
            "2026-05-22T12:00:60Z",
            "2026-05-22T12:00:00.Z",
            "2026-05-22T12:00:00Q",
            "2026-05-22T12:00:00+0",
            "2026-05-22T12:00:00+02:",
            "yesterday",
            "2026-05-22T12:00:00Z ",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
