use std::time::Duration;

/// `DATABASE_URL` when it is not set, for the app, its tests and xtask alike.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/emporium";

/// Parses a human duration: a whole number followed by `ms`, `s`, `m`, `h` or `d`
/// (`"30m"`, `"90s"`, `"2h"`). A bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected a number and a unit such as 30m")
    })?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(value)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {text:?}: use ms, s, m, h or d"
            ));
        }
    };
    value
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// [`parse_duration`], but more than zero: how often something runs.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!(
            "invalid interval {text:?}: it must be more than zero"
        )),
        interval => Ok(interval),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        let cases = [
            ("30m", Some(Duration::from_secs(1800))),
            ("90s", Some(Duration::from_secs(90))),
            ("2h", Some(Duration::from_secs(7200))),
            ("1d", Some(Duration::from_secs(86_400))),
            ("250ms", Some(Duration::from_millis(250))),
            ("45", Some(Duration::from_secs(45))),
            ("", None),
            ("m", None),
            ("10 parsecs", None),
            ("-5m", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input).ok(), expected, "input {input:?}");
        }
    }

    #[test]
    fn an_interval_is_more_than_zero() {
        for (input, expected) in [
            ("5s", Some(Duration::from_secs(5))),
            ("1ms", Some(Duration::from_millis(1))),
            ("0s", None),
            ("0", None),
            ("0ms", None),
        ] {
            assert_eq!(parse_interval(input).ok(), expected, "input {input:?}");
        }
    }
}
