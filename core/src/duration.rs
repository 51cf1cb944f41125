//! Durations as users type them on the command line and in config files.

use std::fmt;

/// Error for a duration that cannot be parsed; the message names the value
/// and shows the accepted forms.
#[derive(Debug, thiserror::Error)]
#[error("invalid duration {value:?}: {reason}; use a number with a unit such as 90s, 15m, 1.5h, 2d or 48h2m10s")]
pub struct DurationError {
    value: String,
    reason: &'static str,
}

/// Longest duration accepted: 100 years, in seconds. Longer values would
/// overflow the timers that use them.
pub const MAX_SECONDS: f64 = 100.0 * 365.0 * 86400.0;

/// Parses `90s`, `15m`, `1.5h`, `2d`, `48h2m10s` or a bare number of seconds
/// into seconds. A leading `-` gives a negative duration, which only
/// `--lifetime` accepts (an experiment that is already expired).
pub fn parse_seconds(text: &str) -> Result<f64, DurationError> {
    let seconds = parse_unchecked(text)?;
    if seconds.abs() > MAX_SECONDS {
        return Err(DurationError {
            value: text.to_string(),
            reason: "it is longer than 100 years",
        });
    }
    Ok(seconds)
}

fn parse_unchecked(text: &str) -> Result<f64, DurationError> {
    let error = |reason| DurationError {
        value: text.to_string(),
        reason,
    };
    let trimmed = text.trim();
    let (sign, body) = match trimmed.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, trimmed),
    };
    if body.is_empty() {
        return Err(error("it is empty"));
    }
    if let Ok(seconds) = body.parse::<f64>() {
        if !seconds.is_finite() {
            return Err(error("it is not a finite number"));
        }
        return Ok(sign * seconds);
    }

    let mut total = 0.0;
    let mut number = String::new();
    for character in body.chars() {
        if character.is_ascii_digit() || character == '.' {
            number.push(character);
            continue;
        }
        let unit = match character {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            'w' => 7.0 * 86400.0,
            _ => return Err(error("it has an unknown unit (known: s, m, h, d, w)")),
        };
        if number.is_empty() {
            return Err(error("a unit has no number before it"));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| error("it has a malformed number"))?;
        total += value * unit;
        number.clear();
    }
    if !number.is_empty() {
        return Err(error("the last number has no unit"));
    }
    Ok(sign * total)
}

/// Formats seconds the way `parse_seconds` reads them back, for tables and
/// messages: `45s`, `12m05s`, `3h02m`, `2d04h`.
pub fn format_seconds(seconds: f64) -> String {
    Short(seconds).to_string()
}

struct Short(f64);

impl fmt::Display for Short {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let negative = self.0 < 0.0;
        let total = self.0.abs();
        let sign = if negative { "-" } else { "" };
        if total < 10.0 {
            return write!(formatter, "{sign}{total:.1}s");
        }
        let whole = total.round() as u64;
        let (days, hours, minutes, seconds) = (
            whole / 86400,
            whole % 86400 / 3600,
            whole % 3600 / 60,
            whole % 60,
        );
        if days > 0 {
            write!(formatter, "{sign}{days}d{hours:02}h")
        } else if hours > 0 {
            write!(formatter, "{sign}{hours}h{minutes:02}m")
        } else if minutes > 0 {
            write!(formatter, "{sign}{minutes}m{seconds:02}s")
        } else {
            write!(formatter, "{sign}{seconds}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_accepted_forms() {
        let cases = [
            ("90s", 90.0),
            ("15m", 900.0),
            ("1.5h", 5400.0),
            ("2d", 172800.0),
            ("48h2m10s", 48.0 * 3600.0 + 130.0),
            ("30", 30.0),
            ("0.5", 0.5),
            ("-10m", -600.0),
            ("1w", 604800.0),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_seconds(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_forms() {
        for text in [
            "",
            "-",
            "10x",
            "m",
            "10m5",
            "1..5h",
            "inf",
            "NaN",
            "99999999999999999999d",
            "1e30",
        ] {
            let message = parse_seconds(text).unwrap_err().to_string();
            assert!(message.contains(&format!("{text:?}")), "{message}");
        }
    }

    #[test]
    fn formats_short_forms() {
        assert_eq!(format_seconds(1.25), "1.2s");
        assert_eq!(format_seconds(45.0), "45s");
        assert_eq!(format_seconds(725.0), "12m05s");
        assert_eq!(format_seconds(3.0 * 3600.0 + 130.0), "3h02m");
        assert_eq!(format_seconds(2.0 * 86400.0 + 4.0 * 3600.0), "2d04h");
    }
}
