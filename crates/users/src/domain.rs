//! Parse, don't validate: an `Email` or `UserName` that exists is valid.

use std::fmt;

/// A trimmed, lower-case email address of plausible shape: [`email_pattern`] exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Email(String);

/// What [`Email::parse`] accepts, as the OpenAPI document's `pattern`: whitespace at either
/// end (trimmed); at most 254 characters besides; a local part of 1 to 64 letters,
/// digits, dots and ``!#$%&'*+/=?^_`{|}~-`` that neither starts nor ends with a dot nor
/// holds two in a row; `@`; two or more dot-separated labels of 1 to 63 of `A-Za-z0-9-`, none
/// starting or ending with `-`, the last with a letter. ASCII only (any case).
pub(crate) fn email_pattern() -> String {
    let ws = kernel::input::WHITESPACE;
    let atom = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]";
    let label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    format!(
        r"^{ws}*(?=[!-~]{{1,254}}{ws}*$){atom}(?:{atom}|\.(?!\.)){{0,63}}(?<!\.)@(?:{label}\.)+(?=[A-Za-z0-9-]*[A-Za-z]){label}{ws}*$"
    )
}

impl Email {
    pub(crate) fn parse(raw: &str) -> Result<Email, String> {
        let trimmed = raw.trim();
        let invalid = |why: &str| Err(format!("{raw:?} is not a valid email address: {why}"));
        if !trimmed.is_ascii() {
            return invalid("only ASCII characters are allowed");
        }
        let email = trimmed.to_ascii_lowercase();
        if email.len() < 3 || email.len() > 254 {
            return invalid("length must be 3 to 254 characters");
        }
        let Some((local, domain)) = email.split_once('@') else {
            return invalid("missing @");
        };
        if local.is_empty() || local.len() > 64 {
            return invalid("the part before @ must be 1 to 64 characters");
        }
        let local_ok = local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok {
            return invalid("the part before @ has a character that is not allowed");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return invalid("the domain needs a dot");
        }
        let labels_ok = labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        let tld_ok = labels
            .last()
            .is_some_and(|tld| tld.chars().any(|c| c.is_ascii_alphabetic()));
        if !labels_ok || !tld_ok {
            return invalid("the domain is malformed");
        }
        Ok(Email(email))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name: [`kernel::input::line`] of at most [`UserName::MAX_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserName(String);

impl UserName {
    pub(crate) const MAX_CHARS: usize = 200;

    pub(crate) fn parse(raw: &str) -> Result<UserName, String> {
        kernel::input::line(raw, Self::MAX_CHARS).map(UserName)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of acceptable length: 10 to 256 characters. Its `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Password(String);

impl Password {
    pub(crate) const MIN_CHARS: usize = 10;
    pub(crate) const MAX_CHARS: usize = 256;

    /// The error never repeats the password.
    pub(crate) fn parse(raw: String) -> Result<Password, String> {
        let chars = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            return Err(format!(
                "must be {} to {} characters, got {chars}",
                Self::MIN_CHARS,
                Self::MAX_CHARS
            ));
        }
        Ok(Password(raw))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        let cases = [
            ("  Ada@Example.COM ", Some("ada@example.com")),
            ("a.b+tag@sub.example.org", Some("a.b+tag@sub.example.org")),
            ("x@y.io", Some("x@y.io")),
            ("plain", None),
            ("@example.com", None),
            ("ada@", None),
            ("ada@example", None),
            ("ada@@example.com", None),
            ("ada@exa mple.com", None),
            ("a da@example.com", None),
            (".ada@example.com", None),
            ("ada..b@example.com", None),
            ("ada@-example.com", None),
            ("ada@example.123", None),
            ("ada@example..com", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Email::parse(input).ok().map(|e| e.to_string()),
                expected.map(str::to_owned),
                "{input:?}"
            );
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(Email::parse(&long_local).is_err());
    }

    #[test]
    fn passwords() {
        let cases = [
            ("x".repeat(9), false),
            ("x".repeat(10), true),
            ("é".repeat(256), true),
            ("x".repeat(257), false),
            (String::new(), false),
        ];
        for (raw, ok) in cases {
            let parsed = Password::parse(raw.clone());
            assert_eq!(parsed.is_ok(), ok, "{} chars", raw.chars().count());
            if let Err(e) = parsed {
                assert!(!e.contains(&raw) || raw.is_empty(), "{e}");
            }
        }
        assert_eq!(
            format!("{:?}", Password::parse("secret-password".into()).unwrap()),
            "Password(…)"
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            UserName::parse("  Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert!(UserName::parse("   ").is_err());
        assert!(UserName::parse(&"é".repeat(200)).is_ok());
        assert!(UserName::parse(&"é".repeat(201)).is_err());
        assert!(UserName::parse("bad\u{0}name").is_err());
    }
}
