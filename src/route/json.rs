//! JSON in and out with simd-json: the [`Json`] extractor parses the body in
//! place in the read buffer; the responder serializes straight into the
//! connection's write buffer.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::extract::{FromRequest, InputError};
use super::validate::{Tracked, every_error};
use crate::http::describe::Operation;
use crate::http::request::Request;
use crate::http::response::{HttpError, IntoResponse};
use crate::http::status::Status;
use crate::http::write::ResponseWriter;

/// A JSON body: as an argument, the request body parsed into `T`
/// (`415` without a JSON `Content-Type`, `400` saying what and where when
/// the JSON is malformed, `422` listing every field that does not fit
/// `T`); as a return value, `T` serialized with
/// `Content-Type: application/json`.
///
/// Parsing rewrites the body in place, so take the body once: either
/// `Json<T>` or a raw extractor, not both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<S, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = InputError;

    fn describe(operation: &mut Operation) {
        operation.body("application/json", super::schema::of::<T>(), true);
    }

    async fn from_request(request: &mut Request<'_>, _: &S) -> Result<Self, InputError> {
        if !request.header("content-type").is_some_and(is_json) {
            return Err(HttpError::new(
                Status::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/json",
            )
            .into());
        }
        let body = request.body_mut();
        if body.is_empty() {
            return Err(HttpError::bad_request("expected a JSON body, got an empty one").into());
        }
        if body.starts_with(b"\xEF\xBB\xBF") {
            return Err(HttpError::bad_request(
                "invalid JSON: a byte-order mark precedes it (send UTF-8 without one)",
            )
            .into());
        }
        // Malformed syntax (found while building the tape) is a 400 with
        // its byte offset; a value that does not fit `T` is a 422 listing
        // every such field, found by reading the tape again, tracked.
        let mut deserializer = simd_json::Deserializer::from_slice(body).map_err(|e| {
            HttpError::bad_request(format!("invalid JSON at byte {}: {}", e.index(), what(&e)))
        })?;
        match T::deserialize(&mut deserializer) {
            Ok(value) => Ok(Json(value)),
            Err(_) => Err(every_error("body", |tracker| {
                deserializer.restart();
                T::deserialize(Tracked::new(&mut deserializer, tracker)).map(drop)
            })
            .into()),
        }
    }
}

/// The error in words, without simd-json's position suffix (meaningless
/// for type errors) or its enum names.
fn what(error: &simd_json::Error) -> String {
    use simd_json::ErrorType as E;
    let text = match error.error() {
        E::Serde(message) => return message.clone(),
        E::TrailingData => "bytes after the JSON value",
        E::Eof => "the body ends inside the value",
        E::UnterminatedString => "a string is not closed",
        E::InvalidEscape | E::InvalidUnicodeEscape => "an invalid escape in a string",
        E::InvalidUnicodeCodepoint => "an invalid Unicode code point in a string",
        E::InvalidUtf8 => "the body is not UTF-8",
        E::InvalidNumber | E::InvalidExponent => "an invalid number",
        E::KeyMustBeAString | E::BadKeyType => "an object key that is not a string",
        E::ExpectedObjectColon => "a ':' is missing after an object key",
        E::ExpectedMapComma | E::ExpectedArrayComma => "a ',' is missing between values",
        E::ExpectedMapEnd => "an object is not closed",
        E::ExpectedArrayContent | E::ExpectedObjectContent => "a value is missing",
        E::InputTooLarge => "the body is too large to parse",
        E::ExpectedString => "expected a string",
        E::ExpectedInteger | E::ExpectedSigned | E::ExpectedUnsigned => "expected an integer",
        E::ExpectedFloat | E::ExpectedNumber => "expected a number",
        E::ExpectedBoolean | E::ExpectedTrue | E::ExpectedFalse => "expected true or false",
        E::ExpectedNull => "expected null",
        E::ExpectedArray => "expected an array",
        E::ExpectedMap => "expected an object",
        E::ExpectedEnum => "expected one of the allowed values",
        // The structural pass reports trailing bytes and stray characters
        // as these.
        E::InternalError | E::NoStructure | E::Syntax | E::Parser | E::UnexpectedCharacter => {
            "not valid JSON (a stray character, or bytes after the value)"
        }
        _ => "not valid JSON",
    };
    text.to_owned()
}

/// `application/json`, or any `+json` media type, with any parameters.
fn is_json(content_type: &[u8]) -> bool {
    let media_type = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    media_type.eq_ignore_ascii_case(b"application/json")
        || (media_type.len() > 5
            && media_type[media_type.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        writer.send_with(Status::OK, Some("application/json"), [], |out| {
            simd_json::serde::to_writer(out, &self.0)
        });
    }

    fn describe(operation: &mut Operation) {
        operation.response("200", Some("application/json"), serde_json::json!({}));
    }
}

#[cfg(test)]
mod tests {
    use super::{Json, is_json};
    use crate::FromRequest;
    use crate::http::parse::{Decoded, Decoder, Limits};
    use crate::http::request::Request;
    use crate::route::extract::InputError;

    #[derive(serde::Deserialize, Debug)]
    struct Item {
        #[allow(dead_code, reason = "only parsed")]
        name: String,
    }

    /// The detail of the rejection of `body` posted as JSON.
    fn rejection(body: &str) -> String {
        let mut message = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        let mut decoder = Decoder::new(Limits::default());
        let Ok(Decoded::Complete(parsed)) = decoder.decode(&mut message) else {
            panic!("not a request")
        };
        let (head, body) = message.split_at_mut(parsed.head.len);
        let mut request = Request::new(head, body, parsed.head, decoder.headers());
        let extracted = futures_lite::future::block_on(
            <Json<Item> as FromRequest<()>>::from_request(&mut request, &()),
        );
        match extracted {
            Ok(_) => "accepted".into(),
            Err(InputError::Http(error)) => error.detail.into_owned(),
            Err(InputError::Invalid(invalid)) => format!("422 {invalid}"),
        }
    }

    #[test]
    fn rejections_say_what_and_where() {
        assert_eq!(rejection(r#"{"name":"a"}"#), "accepted");
        assert_eq!(
            rejection(r#"{"name":1}"#),
            "422 body.name: Input should be a valid string"
        );
        for (body, says) in [
            (r#"{"name":"a"} x"#, "after the value"),
            ("\u{feff}{\"name\":\"a\"}", "byte-order mark"),
            (r#"{"name":"a\q"}"#, "escape"),
            (r#"{"name" "a"}"#, "':'"),
        ] {
            let said = rejection(body);
            assert!(said.contains(says), "{body}: {said}");
            assert!(!said.contains("Error"), "{body}: {said}");
        }
        assert_eq!(rejection(r"{}"), "422 body.name: Field required");
        assert_eq!(
            rejection(r"[]"),
            "422 body: Input should be a valid dictionary or object"
        );
        assert!(
            rejection(r#"{"name":"a"#).starts_with("invalid JSON at byte"),
            "{}",
            rejection(r#"{"name":"a"#)
        );
    }

    #[test]
    fn json_media_types() {
        assert!(is_json(b"application/json"));
        assert!(is_json(b"Application/JSON; charset=utf-8"));
        assert!(is_json(b"application/problem+json"));
        assert!(!is_json(b"text/plain"));
        assert!(!is_json(b"+json"));
    }
}
