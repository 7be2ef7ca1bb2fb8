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

/// Parses a CORS origin as a browser sends it in `Origin`: `scheme://host[:port]`, no path
/// (a trailing slash would never match), or `*` for any origin.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(text.to_owned());
    }
    let invalid =
        |why: &str| format!("invalid origin {text:?}: {why}; expected scheme://host[:port] or *");
    let uri: http::Uri = text.parse().map_err(|_| invalid("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("the scheme must be http or https"));
    }
    if uri
        .authority()
        .is_none_or(|a| a.host().is_empty() || a.as_str().contains('@'))
    {
        return Err(invalid("no host"));
    }
    if text.ends_with('/') || uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(invalid("an origin has no path, not even a trailing slash"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_origins() {
        let cases = [
            ("https://shop.example", true),
            ("http://localhost:3000", true),
            (" https://shop.example ", true),
            ("*", true),
            ("https://shop.example/", false),
            ("https://shop.example/path", false),
            ("shop.example", false),
            ("ftp://shop.example", false),
            ("https://user@shop.example", false),
            ("", false),
        ];
        for (input, valid) in cases {
            assert_eq!(
                parse_origin(input).is_ok(),
                valid,
                "{input:?}: {:?}",
                parse_origin(input)
            );
        }
    }

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
