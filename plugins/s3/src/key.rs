//! Object key templates: `{stream}/{yyyy}/{mm}/{dd}/{stream}-{sequence:020}.json`.
//!
//! Placeholders: `{stream}`, `{subject}` (characters other than letters,
//! digits, `.`, `_` and `-` become `_`), `{yyyy}`, `{mm}`, `{dd}`, `{hh}`
//! (the JetStream timestamp in UTC, the first message's for a batch), and
//! `{sequence}` per message or `{first_sequence}` / `{last_sequence}` per
//! batch; a sequence may be zero-padded as `{sequence:020}`. Every input is
//! stable across redeliveries, so the same message always gets the same key.

use crate::config::Mode;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Stream,
    Subject,
    Year,
    Month,
    Day,
    Hour,
    Sequence(usize),
    FirstSequence(usize),
    LastSequence(usize),
}

/// A checked key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    parts: Vec<Part>,
}

/// What a key is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct KeyInput<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// Subject (of the first message, per batch).
    pub subject: &'a str,
    /// JetStream timestamp, ns since the epoch.
    pub timestamp_ns: i64,
    /// First (or only) stream sequence.
    pub first_sequence: u64,
    /// Last stream sequence (the same as the first, per message).
    pub last_sequence: u64,
}

impl KeyTemplate {
    /// Parses `source` for `mode`: a per-message template must hold
    /// `{sequence}`, a per-batch one `{first_sequence}`, so keys are unique
    /// and deterministic.
    pub fn parse(source: &str, mode: Mode) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or("an unclosed `{`")? + open;
            parts.push(placeholder(&rest[open + 1..close])?);
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if parts
            .iter()
            .any(|p| matches!(p, Part::Text(t) if t.contains('}')))
        {
            return Err("a `}` without `{`".into());
        }
        let has = |wanted: fn(&Part) -> bool| parts.iter().any(wanted);
        match mode {
            Mode::PerMessage if !has(|p| matches!(p, Part::Sequence(_))) => {
                return Err(
                    "a per-message key needs `{sequence}` (or two messages would share a key)"
                        .into(),
                )
            }
            Mode::PerMessage
                if has(|p| matches!(p, Part::FirstSequence(_) | Part::LastSequence(_))) =>
            {
                return Err(
                    "`{first_sequence}` and `{last_sequence}` are for mode per_batch".into(),
                )
            }
            Mode::PerBatch if !has(|p| matches!(p, Part::FirstSequence(_))) => {
                return Err("a per-batch key needs `{first_sequence}`".into())
            }
            Mode::PerBatch if has(|p| matches!(p, Part::Sequence(_))) => {
                return Err("`{sequence}` is for mode per_message; use `{first_sequence}`".into())
            }
            _ => {}
        }
        let first = parts.first();
        if source.starts_with('/') || matches!(first, Some(Part::Text(t)) if t.starts_with('/')) {
            return Err("a key must not start with `/`".into());
        }
        Ok(Self {
            source: source.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The key for `input`.
    pub fn render(&self, input: &KeyInput<'_>) -> String {
        let (year, month, day, hour) = utc_date(input.timestamp_ns);
        let mut key = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Text(text) => key.push_str(text),
                Part::Stream => key.push_str(&safe(input.stream)),
                Part::Subject => key.push_str(&safe(input.subject)),
                Part::Year => key.push_str(&format!("{year:04}")),
                Part::Month => key.push_str(&format!("{month:02}")),
                Part::Day => key.push_str(&format!("{day:02}")),
                Part::Hour => key.push_str(&format!("{hour:02}")),
                Part::Sequence(width) | Part::FirstSequence(width) => {
                    key.push_str(&format!("{:0width$}", input.first_sequence, width = *width))
                }
                Part::LastSequence(width) => {
                    key.push_str(&format!("{:0width$}", input.last_sequence, width = *width))
                }
            }
        }
        key
    }
}

fn placeholder(name: &str) -> Result<Part, String> {
    let (name, width) = match name.split_once(':') {
        Some((name, spec)) => {
            let digits = spec
                .strip_prefix('0')
                .ok_or_else(|| format!("`{{{name}:{spec}}}`: write a width as :0N"))?;
            let width: usize = digits
                .parse()
                .map_err(|_| format!("`{{{name}:{spec}}}`: bad width"))?;
            if width > 40 {
                return Err(format!("`{{{name}:{spec}}}`: width over 40"));
            }
            (name, Some(width))
        }
        None => (name, None),
    };
    let part = match name {
        "stream" => Part::Stream,
        "subject" => Part::Subject,
        "yyyy" => Part::Year,
        "mm" => Part::Month,
        "dd" => Part::Day,
        "hh" => Part::Hour,
        "sequence" => Part::Sequence(width.unwrap_or(0)),
        "first_sequence" => Part::FirstSequence(width.unwrap_or(0)),
        "last_sequence" => Part::LastSequence(width.unwrap_or(0)),
        other => return Err(format!("unknown placeholder `{{{other}}}`")),
    };
    if width.is_some()
        && !matches!(
            part,
            Part::Sequence(_) | Part::FirstSequence(_) | Part::LastSequence(_)
        )
    {
        return Err(format!("`{{{name}}}` takes no width"));
    }
    Ok(part)
}

/// Letters, digits, `.`, `_` and `-` kept; anything else becomes `_`.
fn safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Year, month, day and hour (UTC) of a timestamp in ns since the epoch
/// (days-to-civil conversion of the proleptic Gregorian calendar).
pub fn utc_date(timestamp_ns: i64) -> (i64, u32, u32, u32) {
    let seconds = timestamp_ns.div_euclid(1_000_000_000);
    let days = seconds.div_euclid(86_400);
    let hour = (seconds.rem_euclid(86_400) / 3600) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> KeyInput<'static> {
        KeyInput {
            stream: "ORDERS",
            subject: "orders.created/é",
            timestamp_ns: 1_700_000_000_123_000_000, // 2023-11-14T22:13:20Z
            first_sequence: 42,
            last_sequence: 141,
        }
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc_date(0), (1970, 1, 1, 0));
        assert_eq!(utc_date(1_700_000_000_123_000_000), (2023, 11, 14, 22));
        assert_eq!(utc_date(951_782_400 * 1_000_000_000), (2000, 2, 29, 0));
        assert_eq!(utc_date(-1), (1969, 12, 31, 23));
    }

    #[test]
    fn templates_render_deterministic_keys() {
        let t = KeyTemplate::parse(crate::config::DEFAULT_MESSAGE_KEY, Mode::PerMessage).unwrap();
        assert_eq!(
            t.render(&input()),
            "ORDERS/2023/11/14/ORDERS-00000000000000000042.json"
        );
        let t = KeyTemplate::parse("{subject}/{hh}/{sequence}", Mode::PerMessage).unwrap();
        assert_eq!(t.render(&input()), "orders.created__/22/42");
        let t = KeyTemplate::parse(crate::config::DEFAULT_BATCH_KEY, Mode::PerBatch).unwrap();
        assert_eq!(
            t.render(&input()),
            "ORDERS/2023/11/14/ORDERS-00000000000000000042-00000000000000000141.jsonl"
        );
    }

    #[test]
    fn bad_templates_say_why() {
        for (source, mode, why) in [
            ("{stream}/x", Mode::PerMessage, "needs `{sequence}`"),
            ("{sequence}/{first_sequence}", Mode::PerMessage, "per_batch"),
            ("{sequence}", Mode::PerBatch, "needs `{first_sequence}`"),
            ("{sequence:20}", Mode::PerMessage, ":0N"),
            ("{stream:05}/{sequence}", Mode::PerMessage, "takes no width"),
            ("{sequence", Mode::PerMessage, "unclosed"),
            ("/{sequence}", Mode::PerMessage, "must not start"),
            ("{sequence}}", Mode::PerMessage, "without `{`"),
        ] {
            let err = KeyTemplate::parse(source, mode).unwrap_err();
            assert!(err.contains(why), "{source}: {err}");
        }
    }
}
