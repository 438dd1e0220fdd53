//! The one duration syntax of every flag of the three programs: Go's (`time.ParseDuration`,
//! which the classic kube2sky, skydns and exechealthz flags took) plus a bare number meaning
//! seconds. Parsing is `humantime`'s; this module only limits the units to Go's and reads a
//! bare number as seconds.
//!
//! Accepted: `10s`, `500ms`, `1.5s`, `2m`, `1h30m` (or `1h 30m`), `100us`/`100µs`, `5ns`, `10`
//! (seconds), `0`. Rejected: no number, a negative one, another unit (`1d`, `3 days`: Go has
//! none; a day is `24h`), and anything above a year. Zero is accepted; a flag that must be
//! positive says so in its own validation.

use std::time::Duration;

/// Units accepted (Go's `time.ParseDuration` set).
const UNITS: [&str; 8] = ["ns", "us", "µs", "ms", "s", "m", "h", ""];

/// Longest duration any flag takes.
pub const MAX: Duration = Duration::from_secs(365 * 86_400);

/// Why a duration flag's value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No number, or not a duration at all (the flag value).
    #[error("{0:?} is not a duration like 10s, 500ms or 1m30s")]
    Syntax(String),
    /// A unit Go's `time.ParseDuration` does not know.
    #[error("{text:?}: unknown unit {unit:?} (use ns, us, ms, s, m or h)")]
    Unit {
        /// The whole flag value.
        text: String,
        /// The unit found in it.
        unit: String,
    },
    /// Longer than [`MAX`] (a year), or too large to represent (the flag value).
    #[error("{0:?} is out of range (at most a year)")]
    Range(String),
}

/// Parse a duration flag (see the module doc). Usable as clap's `value_parser`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Syntax(text.to_string()));
    }
    // `.5s` as the former parsers read it: `0.5s`.
    let t = &match t.strip_prefix('.') {
        Some(_) => format!("0{t}"),
        None => t.to_string(),
    };
    for unit in t.split(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace()) {
        if !UNITS.contains(&unit) {
            return Err(DurationError::Unit {
                text: text.to_string(),
                unit: unit.to_string(),
            });
        }
    }
    let bare_seconds = t.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let parsed = if bare_seconds {
        humantime::parse_duration(&format!("{t}s"))
    } else {
        humantime::parse_duration(t)
    };
    match parsed {
        Ok(d) if d <= MAX => Ok(d),
        Ok(_) | Err(humantime::DurationError::NumberOverflow) => {
            Err(DurationError::Range(text.to_string()))
        }
        Err(_) => Err(DurationError::Syntax(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn every_spelling_the_three_programs_took() {
        // kube2sky's former parser.
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("10"), Duration::from_secs(10));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        // healthz's former parser.
        assert_eq!(ok("100us"), Duration::from_micros(100));
        assert_eq!(ok("100µs"), Duration::from_micros(100));
        assert_eq!(ok("5ns"), Duration::from_nanos(5));
        assert_eq!(ok(" 2s "), Duration::from_secs(2));
        // skydns's parser (plain seconds with a fraction; it rejects zero itself).
        assert_eq!(ok("3"), Duration::from_secs(3));
        assert_eq!(ok("0.5"), Duration::from_millis(500));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        // Go's compound form.
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1m 30s"), Duration::from_secs(90));
        assert_eq!(ok("8760h"), MAX);
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.5 s"), Duration::from_millis(1500));
    }

    #[test]
    fn rejections() {
        for bad in [
            "",
            " ",
            "fast",
            "soon",
            "-1s",
            "1d",
            "3 days",
            "5 parsecs",
            "1w",
            "s",
            "1..5s",
            "10 s x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(parse("1d"), Err(DurationError::Unit { .. })));
        assert!(matches!(parse("8761h"), Err(DurationError::Range(_))));
        assert!(matches!(
            parse("99999999999999999999s"),
            Err(DurationError::Range(_))
        ));
    }
}
