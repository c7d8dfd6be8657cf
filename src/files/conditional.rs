//! Conditional requests and ranges, as RFC 9110 §13 and §14 order them:
//! `If-Match`, then `If-Unmodified-Since` (412), then `If-None-Match`,
//! then `If-Modified-Since` (304), then `If-Range` and `Range` (206, 416).

use std::time::SystemTime;

/// The validators of the representation a request is answered with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Validators<'a> {
    /// Its strong entity tag, quoted (`"5f3a-1c"`), if sent.
    pub(crate) etag: Option<&'a str>,
    /// Its last modification, whole seconds, if sent.
    pub(crate) modified: Option<SystemTime>,
}

/// The preconditions of a request.
#[derive(Clone, Copy, Debug, Default)]
#[allow(clippy::struct_field_names, reason = "named after their header fields")]
pub(crate) struct Preconditions<'a> {
    pub(crate) if_match: Option<&'a [u8]>,
    pub(crate) if_unmodified_since: Option<&'a [u8]>,
    pub(crate) if_none_match: Option<&'a [u8]>,
    pub(crate) if_modified_since: Option<&'a [u8]>,
}

/// What the preconditions make of a `GET` or `HEAD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answer as if there were none.
    Proceed,
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// Evaluates `conditions` against the representation's `validators`
/// (RFC 9110 §13.2.2, for `GET` and `HEAD` of a representation that exists).
pub(crate) fn evaluate(conditions: &Preconditions<'_>, validators: Validators<'_>) -> Outcome {
    if let Some(field) = conditions.if_match {
        if !matches_any(field, validators.etag, Compare::Strong) {
            return Outcome::Failed;
        }
    } else if let (Some(field), Some(modified)) =
        (conditions.if_unmodified_since, validators.modified)
        && let Some(since) = date(field)
        && modified > since
    {
        return Outcome::Failed;
    }
    if let Some(field) = conditions.if_none_match {
        if matches_any(field, validators.etag, Compare::Weak) {
            return Outcome::NotModified;
        }
    } else if let (Some(field), Some(modified)) =
        (conditions.if_modified_since, validators.modified)
        && let Some(since) = date(field)
        && modified <= since
    {
        return Outcome::NotModified;
    }
    Outcome::Proceed
}

/// Whether `If-Range` lets the `Range` apply: a strong tag equal to the
/// current one, or a date equal to the last modification (§13.1.5).
pub(crate) fn if_range_holds(field: &[u8], validators: Validators<'_>) -> bool {
    let field = field.trim_ascii();
    if field.first() == Some(&b'"') || field.starts_with(b"W/") {
        return tags(field).any(|tag| {
            tag.is_some_and(|(weak, opaque)| {
                !weak && validators.etag.is_some_and(|own| own.as_bytes() == opaque)
            })
        });
    }
    matches!((date(field), validators.modified), (Some(at), Some(modified)) if at == modified)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Compare {
    Strong,
    Weak,
}

/// Whether an `If-Match` / `If-None-Match` list holds `own` (or is `*`,
/// which any existing representation matches).
fn matches_any(field: &[u8], own: Option<&str>, compare: Compare) -> bool {
    if field.trim_ascii() == b"*" {
        return true;
    }
    let Some(own) = own else { return false };
    tags(field)
        .flatten()
        .any(|(weak, opaque)| opaque == own.as_bytes() && (compare == Compare::Weak || !weak))
}

/// The entity tags of a list: `(weak, "opaque")` with its quotes, or
/// `None` for a malformed member.
fn tags(field: &[u8]) -> impl Iterator<Item = Option<(bool, &[u8])>> {
    field
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|member| !member.is_empty())
        .map(|member| {
            let (weak, tag) = match member.strip_prefix(b"W/") {
                Some(tag) => (true, tag),
                None => (false, member),
            };
            let well_formed = tag.len() >= 2
                && tag[0] == b'"'
                && tag[tag.len() - 1] == b'"'
                && !tag[1..tag.len() - 1].contains(&b'"');
            well_formed.then_some((weak, tag))
        })
}

/// An HTTP-date in any of the three forms a recipient must accept.
fn date(field: &[u8]) -> Option<SystemTime> {
    httpdate::parse_http_date(std::str::from_utf8(field).ok()?.trim()).ok()
}

/// Most ranges answered in one multipart response; more (after merging)
/// get the whole file, as RFC 9110 §14.2 allows.
pub(crate) const MAX_RANGES: usize = 16;

/// What a `Range` field asks of a representation of `length` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ranges {
    /// The whole representation (no field, another unit, bad syntax, or
    /// too many ranges).
    Whole,
    /// These byte ranges (inclusive), in order; one is a plain 206.
    Some(Vec<(u64, u64)>),
    /// None overlaps the representation: 416.
    Unsatisfiable,
}

/// Parses `Range` against a representation of `length` bytes.
pub(crate) fn ranges(field: &[u8], length: u64) -> Ranges {
    let Ok(field) = std::str::from_utf8(field) else {
        return Ranges::Whole;
    };
    let Some((unit, specs)) = field.trim().split_once('=') else {
        return Ranges::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranges::Whole;
    }
    let mut wanted = Vec::new();
    let mut any = false;
    for spec in specs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        any = true;
        let Some((first, last)) = spec.split_once('-') else {
            return Ranges::Whole;
        };
        let number = |text: &str| crate::http::framing::parse_decimal(text.as_bytes());
        match (first.trim(), last.trim()) {
            ("", suffix) => {
                let Some(suffix) = number(suffix) else {
                    return Ranges::Whole;
                };
                if suffix > 0 && length > 0 {
                    wanted.push((length.saturating_sub(suffix), length - 1));
                }
            }
            (first, "") => {
                let Some(first) = number(first) else {
                    return Ranges::Whole;
                };
                if first < length {
                    wanted.push((first, length - 1));
                }
            }
            (first, last) => {
                let (Some(first), Some(last)) = (number(first), number(last)) else {
                    return Ranges::Whole;
                };
                if first > last {
                    return Ranges::Whole;
                }
                if first < length {
                    wanted.push((first, last.min(length - 1)));
                }
            }
        }
    }
    if !any {
        return Ranges::Whole;
    }
    if wanted.is_empty() {
        return Ranges::Unsatisfiable;
    }
    let merged = merge(wanted);
    if merged.len() > MAX_RANGES {
        return Ranges::Whole;
    }
    Ranges::Some(merged)
}

/// The ranges as asked when they are ascending and apart; else sorted with
/// overlapping and adjacent ones merged (so no byte is sent twice).
fn merge(mut wanted: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    if wanted.windows(2).all(|w| w[0].1.saturating_add(1) < w[1].0) {
        return wanted;
    }
    wanted.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(wanted.len());
    for (first, last) in wanted {
        match merged.last_mut() {
            Some(previous) if first <= previous.1.saturating_add(1) => {
                previous.1 = previous.1.max(last);
            }
            _ => merged.push((first, last)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::{Outcome, Preconditions, Ranges, Validators, evaluate, if_range_holds, ranges};
    use std::time::{Duration, SystemTime};

    const TAG: &str = "\"abc\"";
    const MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn validators() -> Validators<'static> {
        Validators {
            etag: Some(TAG),
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)),
        }
    }

    fn check(conditions: Preconditions<'_>) -> Outcome {
        evaluate(&conditions, validators())
    }

    #[test]
    fn the_precondition_order_of_rfc_9110() {
        let none = Preconditions::default();
        assert_eq!(check(none), Outcome::Proceed);
        let im = |v: &'static str| Preconditions {
            if_match: Some(v.as_bytes()),
            ..none
        };
        assert_eq!(check(im("\"abc\"")), Outcome::Proceed);
        assert_eq!(check(im("\"x\", \"abc\"")), Outcome::Proceed);
        assert_eq!(check(im("*")), Outcome::Proceed);
        assert_eq!(check(im("\"x\"")), Outcome::Failed);
        // If-Match compares strongly.
        assert_eq!(check(im("W/\"abc\"")), Outcome::Failed);
        let ius = |v: &'static str| Preconditions {
            if_unmodified_since: Some(v.as_bytes()),
            ..none
        };
        assert_eq!(check(ius(MODIFIED)), Outcome::Proceed);
        assert_eq!(check(ius("Sun, 06 Nov 1994 08:49:36 GMT")), Outcome::Failed);
        assert_eq!(check(ius("not a date")), Outcome::Proceed);
        // If-Match present: If-Unmodified-Since is not looked at.
        assert_eq!(
            check(Preconditions {
                if_unmodified_since: Some(b"Sun, 06 Nov 1994 08:49:36 GMT"),
                ..im("\"abc\"")
            }),
            Outcome::Proceed
        );
        let inm = |v: &'static str| Preconditions {
            if_none_match: Some(v.as_bytes()),
            ..none
        };
        assert_eq!(check(inm("\"abc\"")), Outcome::NotModified);
        // If-None-Match compares weakly.
        assert_eq!(check(inm("W/\"abc\"")), Outcome::NotModified);
        assert_eq!(check(inm("*")), Outcome::NotModified);
        assert_eq!(check(inm("\"x\"")), Outcome::Proceed);
        let ims = |v: &'static str| Preconditions {
            if_modified_since: Some(v.as_bytes()),
            ..none
        };
        assert_eq!(check(ims(MODIFIED)), Outcome::NotModified);
        // The obsolete forms are accepted too.
        assert_eq!(
            check(ims("Sunday, 06-Nov-94 08:49:37 GMT")),
            Outcome::NotModified
        );
        assert_eq!(check(ims("Sun Nov  6 08:49:37 1994")), Outcome::NotModified);
        assert_eq!(
            check(ims("Sun, 06 Nov 1994 08:49:36 GMT")),
            Outcome::Proceed
        );
        // If-None-Match present: If-Modified-Since is ignored.
        assert_eq!(
            check(Preconditions {
                if_modified_since: Some(MODIFIED.as_bytes()),
                ..inm("\"x\"")
            }),
            Outcome::Proceed
        );
        // A failed If-Match wins over a matching If-None-Match.
        assert_eq!(
            check(Preconditions {
                if_none_match: Some(b"\"abc\""),
                ..im("\"x\"")
            }),
            Outcome::Failed
        );
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        assert!(if_range_holds(b"\"abc\"", validators()));
        assert!(!if_range_holds(b"W/\"abc\"", validators()));
        assert!(!if_range_holds(b"\"x\"", validators()));
        assert!(if_range_holds(MODIFIED.as_bytes(), validators()));
        assert!(!if_range_holds(
            b"Sun, 06 Nov 1994 08:49:38 GMT",
            validators()
        ));
        assert!(!if_range_holds(b"garbage", validators()));
    }

    #[test]
    fn ranges_of_rfc_9110() {
        let some = |v: &[(u64, u64)]| Ranges::Some(v.to_vec());
        assert_eq!(ranges(b"bytes=0-499", 10_000), some(&[(0, 499)]));
        assert_eq!(ranges(b"bytes=9500-", 10_000), some(&[(9500, 9999)]));
        assert_eq!(ranges(b"bytes=-500", 10_000), some(&[(9500, 9999)]));
        assert_eq!(ranges(b"bytes=-20000", 10_000), some(&[(0, 9999)]));
        assert_eq!(
            ranges(b"bytes=0-0,-1", 10_000),
            some(&[(0, 0), (9999, 9999)])
        );
        assert_eq!(
            ranges(b"bytes=500-600,601-999", 10_000),
            some(&[(500, 999)])
        );
        assert_eq!(
            ranges(b"bytes=500-700,601-999", 10_000),
            some(&[(500, 999)])
        );
        assert_eq!(ranges(b"bytes=0-99999", 10_000), some(&[(0, 9999)]));
        assert_eq!(ranges(b"Bytes = 1-2", 10), some(&[(1, 2)]));
        assert_eq!(ranges(b"bytes=10000-", 10_000), Ranges::Unsatisfiable);
        assert_eq!(ranges(b"bytes=-0", 10_000), Ranges::Unsatisfiable);
        assert_eq!(ranges(b"bytes=0-", 0), Ranges::Unsatisfiable);
        assert_eq!(ranges(b"bytes=5-1", 10_000), Ranges::Whole);
        assert_eq!(ranges(b"bytes=a-b", 10_000), Ranges::Whole);
        assert_eq!(ranges(b"items=0-1", 10_000), Ranges::Whole);
        assert_eq!(ranges(b"bytes=", 10_000), Ranges::Whole);
        let many = (0..40)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            ranges(format!("bytes={many}").as_bytes(), 10_000),
            Ranges::Whole
        );
    }
}
