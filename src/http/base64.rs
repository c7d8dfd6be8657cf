//! Standard base64 decoding, for `Authorization: Basic` and configured keys.

/// Standard base64 with padding (RFC 4648 §4); `None` when malformed.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - padding] {
            n = (n << 6) | value(c)?;
        }
        for _ in 0..padding {
            n <<= 6;
        }
        let [_, a, b, c] = n.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn base64_decodes_with_and_without_padding_and_refuses_junk() {
        assert_eq!(
            decode("QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap(),
            b"Aladdin:open sesame"
        );
        assert_eq!(decode("YTpi").unwrap(), b"a:b");
        assert_eq!(decode("YQ==").unwrap(), b"a");
        assert_eq!(decode("").unwrap(), b"");
        for junk in ["YQ=", "Y===", "YQ==YQ==", "Y!Q=", "YQ"] {
            assert_eq!(decode(junk), None, "{junk}");
        }
    }
}
