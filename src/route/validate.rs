//! Validation errors the `FastAPI` way: every field of a body, query, path or
//! form that does not fit its type, each with where it is (`loc`), a
//! sentence (`msg`) and a stable kind (`type`).
//!
//! Serde stops at the first error. Extractors deserialize directly first
//! (the fast path, nothing tracked); only when that fails does [`every_error`]
//! run the deserialization again through [`Tracked`], a wrapper that keeps
//! the path to the value being read. Each failing field is recorded, then
//! filled with a neutral placeholder (`0`, `""`, an empty list, `None`…)
//! on the next attempt, until an attempt gets through or fails where it
//! cannot be helped further (a field that rejects even its placeholder).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::{self, Display};

use serde::de::value::{MapDeserializer, SeqDeserializer, StrDeserializer};
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, Expected, IgnoredAny, IntoDeserializer,
    MapAccess, SeqAccess, Unexpected, VariantAccess, Visitor,
};

use crate::http::response::IntoResponse;
use crate::http::write::ResponseWriter;

/// One step of the path to a value: an object key or a list index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loc {
    /// An object key, a form or query field, a path parameter's name.
    Key(String),
    /// A position in a list or tuple.
    Index(usize),
}

impl serde::Serialize for Loc {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Loc::Key(key) => serializer.serialize_str(key),
            Loc::Index(index) => serializer.serialize_u64(*index as u64),
        }
    }
}

/// One field that does not fit its type.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Where: the source (`body`, `query`, `path`, `form`) then the keys
    /// and indices to the value.
    pub loc: Vec<Loc>,
    /// What is wrong, as a sentence for a person.
    pub msg: String,
    /// A stable kind for code: `missing`, `int_type`, `string_type`,
    /// `bool_type`, `float_type`, `list_type`, `dict_type`, `enum`,
    /// `extra_forbidden`, `value_error`…
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// Fields of a request that do not fit their types: answered `422` with
/// `{"detail": [{"loc": [...], "msg": "...", "type": "..."}, ...]}`, or
/// the status set in `limits.validation_status` (`400` for services that
/// prefer it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// Every failing field found, in the order met.
    pub errors: Vec<FieldError>,
}

impl ValidationError {
    /// One error at `loc`.
    pub fn field(loc: Vec<Loc>, msg: impl Into<String>, kind: &'static str) -> Self {
        Self {
            errors: vec![FieldError {
                loc,
                msg: msg.into(),
                kind,
            }],
        }
    }
}

impl Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let loc: Vec<String> = error
                .loc
                .iter()
                .map(|step| match step {
                    Loc::Key(key) => key.clone(),
                    Loc::Index(index) => index.to_string(),
                })
                .collect();
            write!(f, "{}: {}", loc.join("."), error.msg)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

impl IntoResponse for ValidationError {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            detail: &'a [FieldError],
        }
        let status = writer.validation_status();
        writer.send_with(status, Some("application/json"), [], |out| {
            simd_json::serde::to_writer(
                out,
                &Body {
                    detail: &self.errors,
                },
            )
        });
    }
}

/// At most this many fields are reported (and attempts made) per request.
const MAX_ERRORS: usize = 32;

/// Runs `attempt` until it gets through, recording each failing field;
/// `source` (`body`, `query`…) starts every `loc`. Call it after a plain
/// deserialization failed: it returns at least one error when `attempt`
/// fails at all.
pub(crate) fn every_error(
    source: &str,
    mut attempt: impl FnMut(&Tracker) -> Result<(), Failure>,
) -> ValidationError {
    let tracker = Tracker::default();
    let mut errors: Vec<FieldError> = Vec::new();
    while errors.len() < MAX_ERRORS {
        tracker.path.borrow_mut().clear();
        tracker.stash.borrow_mut().take();
        let Err(failure) = attempt(&tracker) else {
            break;
        };
        let loc = failure.loc.unwrap_or_default();
        let helpless = tracker.holes.borrow().iter().any(|hole| match hole.kind {
            Hole::Fill => loc.starts_with(&hole.path),
            Hole::Skip => loc == hole.path,
        });
        if helpless {
            // The error is inside a placeholder (or repeats): nothing more
            // can be learnt by another attempt.
            if errors.is_empty() {
                errors.push(FieldError {
                    loc,
                    msg: failure.msg,
                    kind: failure.kind,
                });
            }
            break;
        }
        let kind = if failure.kind == "extra_forbidden" {
            Hole::Skip
        } else {
            Hole::Fill
        };
        tracker.holes.borrow_mut().push(Placeholder {
            path: loc.clone(),
            kind,
        });
        errors.push(FieldError {
            loc,
            msg: failure.msg,
            kind: failure.kind,
        });
    }
    for error in &mut errors {
        error.loc.insert(0, Loc::Key(source.to_owned()));
    }
    ValidationError { errors }
}

/// What the attempts share: the path to the value being read, the failure
/// on its way out, and the places filled or skipped.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    path: RefCell<Vec<Loc>>,
    /// A failure raised inside an inner deserializer's call, carried past
    /// the inner error type (which cannot hold it) to the wrapper above.
    stash: RefCell<Option<Failure>>,
    holes: RefCell<Vec<Placeholder>>,
}

#[derive(Debug)]
struct Placeholder {
    path: Vec<Loc>,
    kind: Hole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hole {
    /// The value at the path is replaced by (or, when missing, given) a
    /// neutral placeholder.
    Fill,
    /// The key is skipped (an unknown field of a strict struct).
    Skip,
}

impl Tracker {
    fn hole(&self, path: &[Loc]) -> Option<Hole> {
        self.holes
            .borrow()
            .iter()
            .find(|hole| hole.path == path)
            .map(|hole| hole.kind)
    }

    /// Names `failure`'s place (if it has none yet) and keeps it, handing
    /// the inner deserializer an error of its own type to unwind with.
    fn stash<E: de::Error>(&self, failure: Failure) -> E {
        let failure = self.placed(failure);
        *self.stash.borrow_mut() = Some(failure);
        E::custom("percore: a tracked field failed")
    }

    fn placed(&self, mut failure: Failure) -> Failure {
        if failure.loc.is_none() {
            let mut loc = self.path.borrow().clone();
            if let Some(field) = failure.field.take() {
                loc.push(Loc::Key(field));
            }
            failure.loc = Some(loc);
        }
        failure
    }

    /// The failure an inner call ended with: the stashed one, or the inner
    /// error itself, described as a failure to read `expected`.
    fn settle<T, E: Display>(&self, result: Result<T, E>, expected: Expect) -> Result<T, Failure> {
        result.map_err(|error| match self.stash.borrow_mut().take() {
            Some(failure) => failure,
            None => self.placed(expected.failure(&error)),
        })
    }
}

/// A failure while reading one value.
#[derive(Debug)]
pub(crate) struct Failure {
    loc: Option<Vec<Loc>>,
    /// A field name to append to the path (missing and unknown fields are
    /// reported by the struct around them).
    field: Option<String>,
    msg: String,
    kind: &'static str,
}

impl Failure {
    fn new(msg: impl Into<String>, kind: &'static str) -> Self {
        Self {
            loc: None,
            field: None,
            msg: msg.into(),
            kind,
        }
    }
}

impl Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Failure {}

impl de::Error for Failure {
    fn custom<T: Display>(msg: T) -> Self {
        Self::new(msg.to_string(), "value_error")
    }

    fn invalid_type(_: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Expect::named(&expected.to_string()).type_failure()
    }

    fn invalid_value(_: Unexpected<'_>, expected: &dyn Expected) -> Self {
        let named = Expect::named(&expected.to_string());
        match named {
            Expect::Other(text) => Self::new(format!("Input should be {text}"), "value_error"),
            other => other.type_failure(),
        }
    }

    fn invalid_length(len: usize, expected: &dyn Expected) -> Self {
        Self::new(
            format!("Input should have {expected}, not {len} items"),
            "length",
        )
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(
            format!(
                "Input should be {}, not '{variant}'",
                one_of(expected.iter().copied())
            ),
            "enum",
        )
    }

    fn unknown_field(field: &str, _: &'static [&'static str]) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new("Extra inputs are not permitted", "extra_forbidden")
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new("Field required", "missing")
        }
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new("Field given more than once", "duplicate")
        }
    }
}

/// `'a'`, `'a' or 'b'`, `'a', 'b' or 'c'`.
fn one_of<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let count = names.len();
    let mut text = String::new();
    for (i, name) in names.enumerate() {
        if i > 0 {
            text.push_str(if i + 1 == count { " or " } else { ", " });
        }
        text.push('\'');
        text.push_str(name);
        text.push('\'');
    }
    text
}

/// What a wrapper call was asked to read, to describe an inner error.
#[derive(Debug, Clone)]
enum Expect {
    Bool,
    Int(&'static str),
    Float,
    Text,
    List,
    Object,
    Choice,
    /// One of these enum variants.
    Variants(&'static [&'static str]),
    /// Anything else: the inner error's own words.
    Other(Cow<'static, str>),
}

impl Expect {
    /// The kind a visitor's `expecting` text names.
    fn named(text: &str) -> Self {
        const INTS: [&str; 12] = [
            "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        ];
        if let Some(int) = INTS.iter().find(|int| **int == text) {
            Expect::Int(int)
        } else if text == "f32" || text == "f64" {
            Expect::Float
        } else if text == "a boolean" {
            Expect::Bool
        } else if matches!(
            text,
            "a string" | "a borrowed string" | "a character" | "char"
        ) {
            Expect::Text
        } else if text.starts_with("a sequence") || text.starts_with("a tuple") {
            Expect::List
        } else if text.starts_with("struct ") || text.starts_with("a map") {
            Expect::Object
        } else if text.starts_with("enum ") || text.ends_with(" identifier") {
            Expect::Choice
        } else {
            Expect::Other(Cow::Owned(text.to_owned()))
        }
    }

    fn type_failure(self) -> Failure {
        match self {
            Expect::Bool => Failure::new("Input should be a valid boolean", "bool_type"),
            Expect::Int(name) => Failure::new(
                match range(name) {
                    Some((low, high)) => {
                        format!("Input should be a valid integer from {low} to {high}")
                    }
                    None => "Input should be a valid integer".to_owned(),
                },
                "int_type",
            ),
            Expect::Float => Failure::new("Input should be a valid number", "float_type"),
            Expect::Text => Failure::new("Input should be a valid string", "string_type"),
            Expect::List => Failure::new("Input should be a valid list", "list_type"),
            Expect::Object => {
                Failure::new("Input should be a valid dictionary or object", "dict_type")
            }
            Expect::Choice => Failure::new("Input should be one of the allowed values", "enum"),
            Expect::Variants(names) => Failure::new(
                format!("Input should be {}", one_of(names.iter().copied())),
                "enum",
            ),
            Expect::Other(text) => Failure::new(format!("Input should be {text}"), "type_error"),
        }
    }

    /// An inner deserializer's error while reading this kind of value.
    fn failure(self, error: &dyn Display) -> Failure {
        match self {
            Expect::Other(_) => Failure::new(error.to_string(), "value_error"),
            kind => kind.type_failure(),
        }
    }
}

/// The bounds of the narrower integer types, worth telling the client.
fn range(name: &str) -> Option<(i64, i64)> {
    Some(match name {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        _ => return None,
    })
}

/// A deserializer that keeps the path to the value it reads.
pub(crate) struct Tracked<'t, D> {
    inner: D,
    tracker: &'t Tracker,
}

impl<'t, D> Tracked<'t, D> {
    pub(crate) fn new(inner: D, tracker: &'t Tracker) -> Self {
        Self { inner, tracker }
    }
}

macro_rules! tracked_methods {
    ($($method:ident => $expect:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
            let tracker = self.tracker;
            tracker.settle(self.inner.$method(Visit::of(visitor, tracker)), $expect)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tracked<'_, D> {
    type Error = Failure;

    tracked_methods! {
        deserialize_any => Expect::Other(Cow::Borrowed("a value"));
        deserialize_bool => Expect::Bool;
        deserialize_i8 => Expect::Int("i8");
        deserialize_i16 => Expect::Int("i16");
        deserialize_i32 => Expect::Int("i32");
        deserialize_i64 => Expect::Int("i64");
        deserialize_i128 => Expect::Int("i128");
        deserialize_u8 => Expect::Int("u8");
        deserialize_u16 => Expect::Int("u16");
        deserialize_u32 => Expect::Int("u32");
        deserialize_u64 => Expect::Int("u64");
        deserialize_u128 => Expect::Int("u128");
        deserialize_f32 => Expect::Float;
        deserialize_f64 => Expect::Float;
        deserialize_char => Expect::Text;
        deserialize_str => Expect::Text;
        deserialize_string => Expect::Text;
        deserialize_bytes => Expect::Other(Cow::Borrowed("bytes"));
        deserialize_byte_buf => Expect::Other(Cow::Borrowed("bytes"));
        deserialize_option => Expect::Other(Cow::Borrowed("a value or null"));
        deserialize_unit => Expect::Other(Cow::Borrowed("null"));
        deserialize_seq => Expect::List;
        deserialize_map => Expect::Object;
        deserialize_identifier => Expect::Choice;
        deserialize_ignored_any => Expect::Other(Cow::Borrowed("a value"));
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        let tracker = self.tracker;
        let result = self
            .inner
            .deserialize_unit_struct(name, Visit::of(visitor, tracker));
        tracker.settle(result, Expect::Other(Cow::Borrowed("null")))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        let tracker = self.tracker;
        let result = self
            .inner
            .deserialize_newtype_struct(name, Visit::of(visitor, tracker));
        tracker.settle(result, Expect::Other(Cow::Borrowed("a value")))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        let tracker = self.tracker;
        let result = self
            .inner
            .deserialize_tuple(len, Visit::of(visitor, tracker));
        tracker.settle(result, Expect::List)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        let tracker = self.tracker;
        let result = self
            .inner
            .deserialize_tuple_struct(name, len, Visit::of(visitor, tracker));
        tracker.settle(result, Expect::List)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Failure> {
        let tracker = self.tracker;
        let result = self
            .inner
            .deserialize_struct(name, fields, Visit::object(visitor, tracker));
        tracker.settle(result, Expect::Object)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Failure> {
        let tracker = self.tracker;
        let result = self
            .inner
            .deserialize_enum(name, variants, Visit::of(visitor, tracker));
        tracker.settle(result, Expect::Variants(variants))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor whose values' inner parts are read through [`Tracked`].
struct Visit<'t, V> {
    visitor: V,
    tracker: &'t Tracker,
    /// A struct is being read: a list is reported as the wrong shape,
    /// not read by position.
    object: bool,
}

macro_rules! visit_scalars {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
            let tracker = self.tracker;
            self.visitor.$method(value).map_err(|failure| tracker.stash(failure))
        }
    )*};
}

impl<'t, V> Visit<'t, V> {
    fn of(visitor: V, tracker: &'t Tracker) -> Self {
        Self {
            visitor,
            tracker,
            object: false,
        }
    }

    /// For a struct: a list is the wrong shape, not fields by position.
    fn object(visitor: V, tracker: &'t Tracker) -> Self {
        Self {
            visitor,
            tracker,
            object: true,
        }
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    visit_scalars! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        let tracker = self.tracker;
        self.visitor
            .visit_none()
            .map_err(|failure| tracker.stash(failure))
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        let tracker = self.tracker;
        self.visitor
            .visit_unit()
            .map_err(|failure| tracker.stash(failure))
    }

    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        let tracker = self.tracker;
        self.visitor
            .visit_some(Tracked { inner, tracker })
            .map_err(|failure| tracker.stash(failure))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        let tracker = self.tracker;
        self.visitor
            .visit_newtype_struct(Tracked { inner, tracker })
            .map_err(|failure| tracker.stash(failure))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        let tracker = self.tracker;
        if self.object {
            return Err(tracker.stash(Expect::Object.type_failure()));
        }
        self.visitor
            .visit_seq(TrackedSeq {
                inner,
                tracker,
                index: 0,
            })
            .map_err(|failure| tracker.stash(failure))
    }

    fn visit_map<A: MapAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        let tracker = self.tracker;
        self.visitor
            .visit_map(TrackedMap {
                inner,
                tracker,
                key: None,
                seen: Vec::new(),
                done: false,
            })
            .map_err(|failure| tracker.stash(failure))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        // Inside an enum the inner deserializer's errors are reported at
        // the enum's place.
        self.visitor.visit_enum(data)
    }
}

/// A seed whose value is read through [`Tracked`].
struct TrackedSeed<'t, T> {
    seed: T,
    tracker: &'t Tracker,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for TrackedSeed<'_, T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<T::Value, D::Error> {
        let tracker = self.tracker;
        self.seed
            .deserialize(Tracked { inner, tracker })
            .map_err(|failure| tracker.stash(failure))
    }
}

struct TrackedSeq<'t, A> {
    inner: A,
    tracker: &'t Tracker,
    index: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for TrackedSeq<'_, A> {
    type Error = Failure;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Failure> {
        let tracker = self.tracker;
        tracker.path.borrow_mut().push(Loc::Index(self.index));
        self.index += 1;
        let filled = tracker.hole(&tracker.path.borrow()) == Some(Hole::Fill);
        let result = if filled {
            match tracker.settle(self.inner.next_element::<IgnoredAny>(), Expect::List) {
                Ok(Some(_)) => seed.deserialize(Neutral).map(Some),
                Ok(None) => Ok(None),
                Err(failure) => Err(failure),
            }
        } else {
            let result = self.inner.next_element_seed(TrackedSeed { seed, tracker });
            tracker.settle(result, Expect::List)
        };
        tracker.path.borrow_mut().pop();
        result
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct TrackedMap<'t, A> {
    inner: A,
    tracker: &'t Tracker,
    /// The key whose value comes next, and whether it is one the input
    /// lacks (a placeholder for a missing field).
    key: Option<(String, bool)>,
    seen: Vec<String>,
    done: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for TrackedMap<'_, A> {
    type Error = Failure;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Failure> {
        let tracker = self.tracker;
        while !self.done {
            let key = tracker.settle(self.inner.next_key::<String>(), Expect::Object)?;
            let Some(key) = key else {
                self.done = true;
                break;
            };
            let mut path = tracker.path.borrow().clone();
            path.push(Loc::Key(key.clone()));
            if tracker.hole(&path) == Some(Hole::Skip) {
                tracker.settle(self.inner.next_value::<IgnoredAny>(), Expect::Object)?;
                continue;
            }
            let value = seed.deserialize(StrDeserializer::<Failure>::new(&key))?;
            self.seen.push(key.clone());
            self.key = Some((key, false));
            return Ok(Some(value));
        }
        // The input is done: give the fields it lacks their placeholders.
        let missing = {
            let path = tracker.path.borrow();
            tracker.holes.borrow().iter().find_map(|hole| {
                let (last, parent) = hole.path.split_last()?;
                match last {
                    Loc::Key(name)
                        if hole.kind == Hole::Fill
                            && parent == path.as_slice()
                            && !self.seen.contains(name) =>
                    {
                        Some(name.clone())
                    }
                    _ => None,
                }
            })
        };
        let Some(name) = missing else {
            return Ok(None);
        };
        let value = seed.deserialize(StrDeserializer::<Failure>::new(&name))?;
        self.seen.push(name.clone());
        self.key = Some((name, true));
        Ok(Some(value))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Failure> {
        let tracker = self.tracker;
        let (key, missing) = self
            .key
            .take()
            .ok_or_else(|| Failure::new("a value without its key", "value_error"))?;
        tracker.path.borrow_mut().push(Loc::Key(key));
        let filled = missing || tracker.hole(&tracker.path.borrow()) == Some(Hole::Fill);
        let result = if filled {
            let skipped = if missing {
                Ok(())
            } else {
                tracker
                    .settle(self.inner.next_value::<IgnoredAny>(), Expect::Object)
                    .map(drop)
            };
            skipped.and_then(|()| seed.deserialize(Neutral))
        } else {
            let result = self.inner.next_value_seed(TrackedSeed { seed, tracker });
            tracker.settle(result, Expect::Object)
        };
        tracker.path.borrow_mut().pop();
        result
    }
}

/// A neutral value of whatever type asks: `false`, `0`, `""`, `None`, an
/// empty list or map, a struct of neutral fields, an enum's first variant.
struct Neutral;

impl<'de> Deserializer<'de> for Neutral {
    type Error = Failure;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_unit()
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_bool(false)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_i8(0)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_i16(0)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_i32(0)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_i64(0)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_u8(0)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_u16(0)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_u32(0)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_u64(0)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_f32(0.0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_f64(0.0)
    }
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_char(' ')
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_str("")
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_bytes(&[])
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_bytes(&[])
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_none()
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_seq(SeqDeserializer::<_, Failure>::new(std::iter::empty::<()>()))
    }
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        visitor.visit_seq(NeutralSeq(len))
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Failure> {
        visitor.visit_seq(NeutralSeq(len))
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_map(MapDeserializer::<_, Failure>::new(std::iter::empty::<(
            (),
            (),
        )>()))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Failure> {
        visitor.visit_map(NeutralStruct { fields, next: 0 })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Failure> {
        visitor.visit_enum(NeutralEnum(variants.first().copied().unwrap_or_default()))
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_str("")
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_unit()
    }
}

struct NeutralSeq(usize);

impl<'de> SeqAccess<'de> for NeutralSeq {
    type Error = Failure;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Failure> {
        if self.0 == 0 {
            return Ok(None);
        }
        self.0 -= 1;
        seed.deserialize(Neutral).map(Some)
    }
}

struct NeutralStruct {
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for NeutralStruct {
    type Error = Failure;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Failure> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize(field.into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Failure> {
        seed.deserialize(Neutral)
    }
}

struct NeutralEnum(&'static str);

impl<'de> EnumAccess<'de> for NeutralEnum {
    type Error = Failure;
    type Variant = Neutral;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Neutral), Failure> {
        let variant: StrDeserializer<'_, Failure> = self.0.into_deserializer();
        seed.deserialize(variant).map(|value| (value, Neutral))
    }
}

impl<'de> VariantAccess<'de> for Neutral {
    type Error = Failure;

    fn unit_variant(self) -> Result<(), Failure> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Failure> {
        seed.deserialize(Neutral)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Failure> {
        visitor.visit_seq(NeutralSeq(len))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Failure> {
        visitor.visit_map(NeutralStruct { fields, next: 0 })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::{Loc, Tracked, ValidationError, every_error};

    #[derive(Deserialize, Debug)]
    #[allow(dead_code, reason = "only parsed")]
    struct Tag {
        name: String,
        weight: u8,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code, reason = "only parsed")]
    #[serde(deny_unknown_fields)]
    struct Note {
        title: String,
        pinned: bool,
        stars: u32,
        tags: Vec<Tag>,
        colour: Colour,
        due: Option<u64>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "lowercase")]
    enum Colour {
        Red,
        Blue,
    }

    fn json_errors(body: &str) -> ValidationError {
        let mut bytes = body.as_bytes().to_vec();
        let mut deserializer = simd_json::Deserializer::from_slice(&mut bytes).unwrap();
        assert!(Note::deserialize(&mut deserializer).is_err(), "{body} fits");
        every_error("body", |tracker| {
            deserializer.restart();
            Note::deserialize(Tracked::new(&mut deserializer, tracker)).map(drop)
        })
    }

    fn locs(invalid: &ValidationError) -> Vec<String> {
        invalid
            .errors
            .iter()
            .map(|e| {
                let loc: Vec<String> = e
                    .loc
                    .iter()
                    .map(|l| match l {
                        Loc::Key(k) => k.clone(),
                        Loc::Index(i) => i.to_string(),
                    })
                    .collect();
                format!("{} {}", loc.join("."), e.kind)
            })
            .collect()
    }

    #[test]
    fn every_failing_field_is_listed() {
        let invalid = json_errors(
            r#"{"title": 5, "pinned": "yes", "tags": [{"name": "a", "weight": 300}, {"weight": 1}],
                "colour": "green", "extra": 1, "due": "soon"}"#,
        );
        assert_eq!(
            locs(&invalid),
            [
                "body.title string_type",
                "body.pinned bool_type",
                "body.tags.0.weight int_type",
                "body.tags.1.name missing",
                "body.colour enum",
                "body.extra extra_forbidden",
                "body.due int_type",
                "body.stars missing",
            ],
            "{invalid}"
        );
        let weight = &invalid.errors[2];
        assert_eq!(weight.msg, "Input should be a valid integer from 0 to 255");
        assert!(
            invalid.errors[4].msg.contains("'red' or 'blue'"),
            "{invalid}"
        );
        assert_eq!(invalid.errors[7].msg, "Field required");
    }

    #[test]
    fn the_wrong_shape_is_one_error_at_its_place() {
        assert_eq!(locs(&json_errors("[1, 2]")), ["body dict_type"]);
        assert_eq!(
            locs(&json_errors(
                r#"{"title":"t","pinned":true,"stars":1,"tags":{},"colour":"red"}"#
            )),
            ["body.tags list_type"]
        );
    }

    #[test]
    fn urlencoded_fields_are_parsed_from_text() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code, reason = "only parsed")]
        struct Listing {
            page: u32,
            size: u8,
            q: String,
            exact: bool,
        }
        let input = b"page=two&size=1000&exact=maybe";
        assert!(serde_urlencoded::from_bytes::<Listing>(input).is_err());
        let invalid = every_error("query", |tracker| {
            let inner = serde_urlencoded::Deserializer::new(form_urlencoded::parse(input));
            Listing::deserialize(Tracked::new(inner, tracker)).map(drop)
        });
        assert_eq!(
            locs(&invalid),
            [
                "query.page int_type",
                "query.size int_type",
                "query.exact bool_type",
                "query.q missing"
            ],
            "{invalid}"
        );
    }
}
