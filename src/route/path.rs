//! Deserializing path parameters into handler types.
//!
//! One parameter deserializes as a scalar (`u64`, `String`, an enum…);
//! several as a tuple in pattern order or as a struct by name. Values are
//! percent-decoded first and parsed from text.

use std::borrow::Cow;

use serde::de::value::{Error, MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, Deserializer, Error as _, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use super::validate::{Failure, Tracked, Tracker};

/// Deserializes `params` (`(name, raw value)` pairs) into `T`.
pub(crate) fn deserialize<T: DeserializeOwned>(params: &[(&str, &str)]) -> Result<T, Error> {
    let decoded = params
        .iter()
        .map(|(name, raw)| percent_decode(raw).map(|value| (*name, value)))
        .collect::<Result<Vec<_>, _>>()?;
    T::deserialize(Params(&decoded))
}

/// Deserializes `params` into `T` through `tracker`, to find every value
/// that does not fit.
pub(crate) fn deserialize_tracked<T: DeserializeOwned>(
    params: &[(&str, &str)],
    tracker: &Tracker,
) -> Result<(), Failure> {
    let decoded = params
        .iter()
        .map(|(name, raw)| percent_decode(raw).map(|value| (*name, value)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::custom(e.to_string()))?;
    T::deserialize(Tracked::new(Params(&decoded), tracker)).map(drop)
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(raw: &str) -> Result<Cow<'_, str>, Error> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            let byte =
                byte.ok_or_else(|| Error::custom(format!("bad percent-escape in '{raw}'")))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| Error::custom(format!("'{raw}' is not UTF-8 once decoded")))
}

struct Params<'a>(&'a [(&'a str, Cow<'a, str>)]);

impl<'a> Params<'a> {
    fn single(&self) -> Result<Value<'a>, Error> {
        match self.0 {
            [(_, value)] => Ok(Value(value)),
            _ => Err(Error::custom(format!(
                "expected 1 parameter, the route has {}",
                self.0.len()
            ))),
        }
    }
}

macro_rules! via_single {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.single()?.$method(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for Params<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(MapDeserializer::new(
            self.0.iter().map(|(n, v)| (*n, Value(v))),
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(SeqDeserializer::new(self.0.iter().map(|(_, v)| Value(v))))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.single()?.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.single()?.deserialize_unit_struct(name, visitor)
    }

    via_single! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_option
        deserialize_unit deserialize_identifier deserialize_ignored_any
    }
}

/// One parameter value, parsed from its text on demand.
struct Value<'a>(&'a Cow<'a, str>);

macro_rules! parse_as {
    ($($method:ident => $visit:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0.parse() {
                Ok(value) => visitor.$visit(value),
                Err(_) => Err(Error::custom(format!(
                    "'{}' is not a valid {}", self.0, &stringify!($visit)["visit_".len()..]
                ))),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Value<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_enum(self.0.as_ref().into_deserializer())
    }

    parse_as! {
        deserialize_bool => visit_bool, deserialize_i8 => visit_i8, deserialize_i16 => visit_i16,
        deserialize_i32 => visit_i32, deserialize_i64 => visit_i64, deserialize_u8 => visit_u8,
        deserialize_u16 => visit_u16, deserialize_u32 => visit_u32, deserialize_u64 => visit_u64,
        deserialize_f32 => visit_f32, deserialize_f64 => visit_f64, deserialize_char => visit_char
    }

    forward_to_deserialize_any! {
        i128 u128 str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Error> for Value<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::deserialize;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Post {
        user: String,
        id: u32,
    }

    #[test]
    fn shapes() {
        assert_eq!(deserialize::<u64>(&[("id", "42")]).unwrap(), 42);
        assert_eq!(deserialize::<String>(&[("name", "a%20b")]).unwrap(), "a b");
        assert_eq!(
            deserialize::<(String, u8)>(&[("a", "x"), ("b", "7")]).unwrap(),
            ("x".into(), 7)
        );
        assert_eq!(
            deserialize::<Post>(&[("user", "ann"), ("id", "3")]).unwrap(),
            Post {
                user: "ann".into(),
                id: 3
            }
        );
    }

    #[test]
    fn errors_say_what() {
        let error = deserialize::<u64>(&[("id", "abc")])
            .unwrap_err()
            .to_string();
        assert_eq!(error, "'abc' is not a valid u64");
        assert!(deserialize::<u64>(&[("a", "1"), ("b", "2")]).is_err());
        assert!(deserialize::<String>(&[("a", "%zz")]).is_err());
        assert!(deserialize::<String>(&[("a", "%ff")]).is_err());
    }
}
