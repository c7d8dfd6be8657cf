//! A request path made into a path beneath a static route's directory, or
//! refused: each segment is percent-decoded on its own, and a segment that
//! decodes to a separator (`%2f`, `%5c`), a NUL, a dot segment (`.`,
//! `..`, `%2e%2e`) or bytes that are not UTF-8 (overlong forms such as
//! `%c0%ae` included) is refused before anything is opened. What is left
//! is then opened with `RESOLVE_BENEATH`, so even a path this missed could
//! not leave the directory.

/// Why a path is not looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Malformed or hostile: 400, with this sentence.
    Bad(&'static str),
    /// Names a dotfile, which the route hides: 404.
    Hidden,
}

/// A path beneath the directory: its segments joined by `/` (empty for
/// the directory itself), and whether the request's path ended with `/`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Beneath {
    pub(crate) relative: String,
    pub(crate) slash: bool,
}

/// Makes `raw` (a request path, still percent-encoded, without its query)
/// a path beneath the directory.
pub(crate) fn beneath(raw: &str, dotfiles: bool) -> Result<Beneath, Refused> {
    let mut relative = String::with_capacity(raw.len());
    for segment in raw.split('/') {
        if segment.is_empty() {
            continue;
        }
        let decoded = decode(segment)?;
        if decoded
            .iter()
            .any(|&b| b == b'/' || b == b'\\' || b == 0 || b < 0x20 || b == 0x7f)
        {
            return Err(Refused::Bad(
                "the path holds an encoded separator or a control byte",
            ));
        }
        if decoded == b"." || decoded == b".." {
            return Err(Refused::Bad("the path holds a dot segment"));
        }
        let Ok(decoded) = String::from_utf8(decoded) else {
            return Err(Refused::Bad("the path is not UTF-8"));
        };
        if decoded.starts_with('.') && !dotfiles {
            return Err(Refused::Hidden);
        }
        if !relative.is_empty() {
            relative.push('/');
        }
        relative.push_str(&decoded);
    }
    Ok(Beneath {
        relative,
        slash: raw.ends_with('/'),
    })
}

/// Percent-decodes one segment; a `%` not followed by two hex digits is
/// refused.
fn decode(segment: &str) -> Result<Vec<u8>, Refused> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = |b: u8| char::from(b).to_digit(16);
            let (Some(high), Some(low)) = (
                bytes.get(at + 1).copied().and_then(hex),
                bytes.get(at + 2).copied().and_then(hex),
            ) else {
                return Err(Refused::Bad("the path holds a malformed percent escape"));
            };
            // Two hex digits make a byte.
            #[allow(clippy::cast_possible_truncation, reason = "at most 255")]
            out.push((high * 16 + low) as u8);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{Beneath, Refused, beneath};

    fn ok(raw: &str) -> String {
        beneath(raw, false).unwrap().relative
    }

    #[test]
    fn plain_paths_decode() {
        assert_eq!(ok("/a/b.css"), "a/b.css");
        assert_eq!(ok("//a///b"), "a/b");
        assert_eq!(ok("/caf%C3%A9.txt"), "café.txt");
        assert_eq!(ok("/a%20b"), "a b");
        assert_eq!(
            beneath("/dir/", false),
            Ok(Beneath {
                relative: "dir".into(),
                slash: true
            })
        );
        assert_eq!(ok("/"), "");
    }

    #[test]
    fn hostile_paths_are_refused() {
        for raw in [
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/.%2e/x",
            "/a%2f..%2fb",
            "/a%5c..%5cb",
            "/a\\b",
            "/x%00.txt",
            "/%c0%ae%c0%ae/x",
            "/%ff",
            "/bad%zz",
            "/bad%2",
            "/./a",
            "/a%0a",
        ] {
            assert!(
                matches!(beneath(raw, true), Err(Refused::Bad(_))),
                "{raw} was accepted"
            );
        }
        assert_eq!(beneath("/.env", false), Err(Refused::Hidden));
        assert_eq!(beneath("/a/.git/config", false), Err(Refused::Hidden));
        assert_eq!(beneath("/%2egit", false), Err(Refused::Hidden));
        assert!(beneath("/.well-known/x", true).is_ok());
    }
}
