//! W3C Trace Context: the `traceparent` a caller sends, so the request's log lines can be
//! joined with the caller's trace. Only read, never answered: a malformed one is ignored.

/// A valid `traceparent` (<https://www.w3.org/TR/trace-context/#traceparent-header>):
/// `version-trace_id-parent_id-flags`, lower-case hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 hex digits, not all zero.
    pub trace_id: String,
    /// The caller's span: 16 hex digits, not all zero.
    pub parent_id: String,
    /// The caller's `sampled` flag.
    pub sampled: bool,
}

impl TraceParent {
    /// The header's value, or `None` when it is not a valid one. A version above `00` may
    /// carry more fields after the four known ones (the specification's forward
    /// compatibility); version `ff` is invalid.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let mut fields = value.split('-');
        let (version, trace_id, parent_id, flags) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || fields.next().is_none())
            && hex(trace_id, 32)
            && !zero(trace_id)
            && hex(parent_id, 16)
            && !zero(parent_id)
            && hex(flags, 2);
        valid.then(|| TraceParent {
            trace_id: trace_id.to_owned(),
            parent_id: parent_id.to_owned(),
            sampled: u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_traceparents_and_ignores_the_rest() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let parent = "00f067aa0ba902b7";
        let valid = [
            (format!("00-{trace}-{parent}-01"), true),
            (format!("00-{trace}-{parent}-00"), false),
            (format!(" 00-{trace}-{parent}-01 "), true),
            (format!("01-{trace}-{parent}-01-more"), true),
        ];
        for (header, sampled) in valid {
            assert_eq!(
                TraceParent::parse(&header),
                Some(TraceParent {
                    trace_id: trace.to_owned(),
                    parent_id: parent.to_owned(),
                    sampled
                }),
                "{header}"
            );
        }
        let invalid = [
            String::new(),
            "garbage".to_owned(),
            format!("00-{trace}-{parent}"),
            format!("00-{trace}-{parent}-01-more"),
            format!("ff-{trace}-{parent}-01"),
            format!("00-{}-{parent}-01", "0".repeat(32)),
            format!("00-{trace}-{}-01", "0".repeat(16)),
            format!("00-{}-{parent}-01", trace.to_uppercase()),
            format!("00-{}-{parent}-01", &trace[1..]),
            format!("00-{trace}-{parent}-1"),
            format!("0-{trace}-{parent}-01"),
        ];
        for header in invalid {
            assert_eq!(TraceParent::parse(&header), None, "{header:?}");
        }
    }
}
