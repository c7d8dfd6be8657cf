//! JSON Schemas from `Deserialize` types, with no derive of their own: the
//! type is read once from a tracing deserializer that answers every
//! request with a neutral value and records what was asked (a struct and
//! its fields, an integer of some width, a list of something…). A field is
//! required when reading the struct without it fails. Done once per route
//! at start-up, never per request.
//!
//! What the tracer cannot see: an enum whose first variant carries data
//! (documented as any value), untagged and flattened types, and checks a
//! type makes in its own `Deserialize` (a neutral value it refuses makes
//! the whole schema "any value"). Those are documented loosely, never
//! wrongly: a loose schema accepts what the server accepts.

use std::cell::RefCell;

use serde::de::value::{MapDeserializer, SeqDeserializer, StrDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};
use serde_json::{Map, Value, json};

/// Nesting past this is documented as any value (a recursive type).
const MAX_DEPTH: usize = 24;

/// The JSON Schema of `T` (`{}`, any value, where it cannot be traced).
pub(crate) fn of<T: DeserializeOwned>() -> Value {
    let omit = RefCell::new(None);
    let Some(mut schema) = trace::<T>(&omit) else {
        return json!({});
    };
    // Requiredness: each struct field, left out in turn.
    let mut fields = Vec::new();
    collect_fields(&schema, &mut Vec::new(), &mut fields);
    for (path, field) in fields {
        *omit.borrow_mut() = Some((path.clone(), field.clone()));
        let optional = trace::<T>(&omit).is_some();
        if !optional {
            mark_required(&mut schema, &path, &field);
        }
    }
    schema
}

fn trace<T: DeserializeOwned>(omit: &RefCell<Option<(Vec<String>, String)>>) -> Option<Value> {
    let out = RefCell::new(None);
    let tracer = Tracer {
        out: &out,
        omit,
        path: Vec::new(),
    };
    T::deserialize(tracer).ok()?;
    out.into_inner()
}

/// Every struct's fields, with the path of property names to the struct.
fn collect_fields(schema: &Value, at: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            out.push((at.clone(), name.clone()));
            at.push(name.clone());
            collect_fields(property, at, out);
            at.pop();
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get(key) {
            at.push(format!("<{key}>"));
            collect_fields(inner, at, out);
            at.pop();
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        for inner in any {
            collect_fields(inner, at, out);
        }
    }
}

fn mark_required(schema: &mut Value, path: &[String], field: &str) {
    let Some(target) = walk(schema, path) else {
        return;
    };
    if let Some(object) = target.as_object_mut() {
        let required = object
            .entry("required")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = required.as_array_mut() {
            list.push(Value::String(field.to_owned()));
        }
    }
}

fn walk<'v>(schema: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    let Some((first, rest)) = path.split_first() else {
        // The struct itself, possibly inside an `anyOf` (an `Option`).
        if schema.get("properties").is_some() {
            return Some(schema);
        }
        return schema
            .get_mut("anyOf")?
            .as_array_mut()?
            .iter_mut()
            .find(|s| s.get("properties").is_some());
    };
    let next = match first.as_str() {
        "<items>" => schema.get_mut("items")?,
        "<additionalProperties>" => schema.get_mut("additionalProperties")?,
        name => {
            let holder = if schema.get("properties").is_some() {
                schema
            } else {
                schema
                    .get_mut("anyOf")?
                    .as_array_mut()?
                    .iter_mut()
                    .find(|s| s.get("properties").is_some())?
            };
            holder.get_mut("properties")?.get_mut(name)?
        }
    };
    walk(next, rest)
}

/// The tracing deserializer: records the schema of what it is asked for
/// into `out`, and hands the visitor a neutral value.
struct Tracer<'t> {
    out: &'t RefCell<Option<Value>>,
    /// The struct field to leave out (path of property names, field).
    omit: &'t RefCell<Option<(Vec<String>, String)>>,
    /// Property names from the root to here.
    path: Vec<String>,
}

#[derive(Debug)]
struct Untraceable(String);

impl std::fmt::Display for Untraceable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Untraceable {}

impl de::Error for Untraceable {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Untraceable(msg.to_string())
    }
}

impl<'t> Tracer<'t> {
    fn record(&self, schema: Value) {
        *self.out.borrow_mut() = Some(schema);
    }

    /// A tracer for a value below this one, whose schema goes to `out`.
    fn below<'o>(&self, out: &'o RefCell<Option<Value>>, step: &str) -> Tracer<'o>
    where
        't: 'o,
    {
        let mut path = self.path.clone();
        path.push(step.to_owned());
        Tracer {
            out,
            omit: self.omit,
            path,
        }
    }

    fn too_deep(&self) -> bool {
        self.path.len() > MAX_DEPTH
    }
}

fn integer(min: i128, max: i128) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max})
}

macro_rules! integers {
    ($($method:ident $visit:ident $ty:ty;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
            self.record(integer(i128::from(<$ty>::MIN), i128::from(<$ty>::MAX)));
            visitor.$visit(0)
        }
    )*};
}

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = Untraceable;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.record(json!({}));
        visitor.visit_unit()
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.record(json!({"type": "boolean"}));
        visitor.visit_bool(false)
    }

    integers! {
        deserialize_i8 visit_i8 i8;
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_u8 visit_u8 u8;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.record(json!({"type": "number"}));
        visitor.visit_f32(0.0)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.record(json!({"type": "number"}));
        visitor.visit_f64(0.0)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.record(json!({"type": "string", "minLength": 1, "maxLength": 1}));
        visitor.visit_char('a')
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.record(json!({"type": "string"}));
        visitor.visit_str("")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.record(json!({"type": "string"}));
        visitor.visit_bytes(&[])
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        let inner = RefCell::new(None);
        // The same place: an `Option`'s fields are its inner type's.
        let tracer = Tracer {
            out: &inner,
            omit: self.omit,
            path: self.path.clone(),
        };
        let value = visitor.visit_some(tracer)?;
        let inner = inner.into_inner().unwrap_or_else(|| json!({}));
        self.record(json!({"anyOf": [inner, {"type": "null"}]}));
        Ok(value)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.record(json!({"type": "null"}));
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Untraceable> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Untraceable> {
        let out = self.out;
        let inner = Tracer {
            out,
            omit: self.omit,
            path: self.path,
        };
        visitor.visit_newtype_struct(inner)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        if self.too_deep() {
            self.record(json!({"type": "array"}));
            return visitor.visit_seq(SeqDeserializer::<_, Untraceable>::new(
                std::iter::empty::<()>(),
            ));
        }
        let item = RefCell::new(None);
        let value = visitor.visit_seq(OneItem {
            tracer: Some(self.below(&item, "<items>")),
        })?;
        let item = item.into_inner().unwrap_or_else(|| json!({}));
        self.record(json!({"type": "array", "items": item}));
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Untraceable> {
        let slots: Vec<RefCell<Option<Value>>> = (0..len).map(|_| RefCell::new(None)).collect();
        let value = visitor.visit_seq(Items {
            parent: &self,
            slots: &slots,
            next: 0,
        })?;
        let items: Vec<Value> = slots
            .into_iter()
            .map(|slot| slot.into_inner().unwrap_or_else(|| json!({})))
            .collect();
        self.record(json!({
            "type": "array",
            "prefixItems": items,
            "minItems": len,
            "maxItems": len,
        }));
        Ok(value)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Untraceable> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        if self.too_deep() {
            self.record(json!({"type": "object"}));
            return visitor.visit_map(MapDeserializer::<_, Untraceable>::new(std::iter::empty::<(
                (),
                (),
            )>()));
        }
        let value_schema = RefCell::new(None);
        let value = visitor.visit_map(OneEntry {
            tracer: Some(self.below(&value_schema, "<additionalProperties>")),
            keyed: false,
        })?;
        let inner = value_schema.into_inner().unwrap_or_else(|| json!({}));
        self.record(json!({"type": "object", "additionalProperties": inner}));
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Untraceable> {
        if self.too_deep() {
            self.record(json!({"type": "object"}));
            return visitor.visit_map(MapDeserializer::<_, Untraceable>::new(std::iter::empty::<(
                (),
                (),
            )>()));
        }
        let omitted = self
            .omit
            .borrow()
            .as_ref()
            .filter(|(path, _)| *path == self.path)
            .map(|(_, field)| field.clone());
        let presented: Vec<&'static str> = fields
            .iter()
            .copied()
            .filter(|f| omitted.as_deref() != Some(*f))
            .collect();
        let slots: Vec<RefCell<Option<Value>>> =
            presented.iter().map(|_| RefCell::new(None)).collect();
        let value = visitor.visit_map(Fields {
            parent: &self,
            names: &presented,
            slots: &slots,
            next: 0,
        })?;
        let mut properties = Map::new();
        for (name, slot) in presented.iter().zip(slots) {
            if let Some(schema) = slot.into_inner() {
                properties.insert((*name).to_owned(), schema);
            }
        }
        self.record(json!({"type": "object", "properties": properties}));
        Ok(value)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Untraceable> {
        let unit = std::cell::Cell::new(false);
        let first = variants.first().copied().unwrap_or_default();
        let value = visitor.visit_enum(FirstVariant {
            name: first,
            unit: &unit,
        })?;
        if unit.get() {
            self.record(json!({"type": "string", "enum": variants}));
        } else {
            self.record(json!({}));
        }
        Ok(value)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        visitor.visit_str("")
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        visitor.visit_unit()
    }
}

/// A list of one traced item.
struct OneItem<'t> {
    tracer: Option<Tracer<'t>>,
}

impl<'de> SeqAccess<'de> for OneItem<'_> {
    type Error = Untraceable;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Untraceable> {
        match self.tracer.take() {
            Some(tracer) => seed.deserialize(tracer).map(Some),
            None => Ok(None),
        }
    }
}

/// A tuple's items, each traced into its slot.
struct Items<'p, 't> {
    parent: &'p Tracer<'t>,
    slots: &'p [RefCell<Option<Value>>],
    next: usize,
}

impl<'de> SeqAccess<'de> for Items<'_, '_> {
    type Error = Untraceable;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Untraceable> {
        let Some(slot) = self.slots.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let tracer = self.parent.below(slot, &format!("<{}>", self.next - 1));
        seed.deserialize(tracer).map(Some)
    }
}

/// A map of one entry: an empty key and a traced value.
struct OneEntry<'t> {
    tracer: Option<Tracer<'t>>,
    keyed: bool,
}

impl<'de> MapAccess<'de> for OneEntry<'_> {
    type Error = Untraceable;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Untraceable> {
        if self.keyed || self.tracer.is_none() {
            return Ok(None);
        }
        self.keyed = true;
        // A key of whatever type the map wants, traced and dropped.
        let ignored = RefCell::new(None);
        let key_tracer = Tracer {
            out: &ignored,
            omit: &RefCell::new(None),
            path: Vec::new(),
        };
        // The key tracer borrows locals; it is used and dropped here.
        let key = seed.deserialize(KeyTracer(key_tracer));
        key.map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Untraceable> {
        let tracer = self
            .tracer
            .take()
            .ok_or_else(|| Untraceable("a value without a key".into()))?;
        seed.deserialize(tracer)
    }
}

/// A tracer for map keys: strings are given as `""`.
struct KeyTracer<'t>(Tracer<'t>);

impl<'de> Deserializer<'de> for KeyTracer<'_> {
    type Error = Untraceable;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        visitor.visit_str("")
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.0.deserialize_u8(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.0.deserialize_u16(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.0.deserialize_u32(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.0.deserialize_u64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.0.deserialize_i32(visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Untraceable> {
        self.0.deserialize_i64(visitor)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Untraceable> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i128 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// A struct's fields, each traced into its slot.
struct Fields<'p, 't> {
    parent: &'p Tracer<'t>,
    names: &'p [&'static str],
    slots: &'p [RefCell<Option<Value>>],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_, '_> {
    type Error = Untraceable;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Untraceable> {
        let Some(name) = self.names.get(self.next) else {
            return Ok(None);
        };
        let key: StrDeserializer<'_, Untraceable> = name.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Untraceable> {
        let at = self.next;
        self.next += 1;
        let name = self.names.get(at).copied().unwrap_or_default();
        let tracer = self.parent.below(&self.slots[at], name);
        seed.deserialize(tracer)
    }
}

/// An enum's first variant, traced only as far as whether it is a unit.
struct FirstVariant<'u> {
    name: &'static str,
    unit: &'u std::cell::Cell<bool>,
}

impl<'de, 'u> EnumAccess<'de> for FirstVariant<'u> {
    type Error = Untraceable;
    type Variant = FirstVariant<'u>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self), Untraceable> {
        let name: StrDeserializer<'_, Untraceable> = self.name.into_deserializer();
        seed.deserialize(name).map(|value| (value, self))
    }
}

impl<'de> VariantAccess<'de> for FirstVariant<'_> {
    type Error = Untraceable;

    fn unit_variant(self) -> Result<(), Untraceable> {
        self.unit.set(true);
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _: T) -> Result<T::Value, Untraceable> {
        Err(Untraceable("a data-carrying variant".into()))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Untraceable> {
        Err(Untraceable("a data-carrying variant".into()))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Untraceable> {
        Err(Untraceable("a data-carrying variant".into()))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::of;

    #[derive(Deserialize)]
    #[allow(dead_code, reason = "only traced")]
    struct Note {
        title: String,
        stars: u8,
        due: Option<u64>,
        #[serde(default)]
        tags: Vec<String>,
        colour: Colour,
        author: Author,
    }

    #[derive(Deserialize)]
    #[allow(dead_code, reason = "only traced")]
    enum Colour {
        Red,
        Blue,
    }

    #[derive(Deserialize)]
    #[allow(dead_code, reason = "only traced")]
    struct Author {
        name: String,
        #[serde(default)]
        email: Option<String>,
    }

    #[test]
    fn a_struct_becomes_an_object_with_its_required_fields() {
        let schema = of::<Note>();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["properties"]["title"], json!({"type": "string"}));
        assert_eq!(
            schema["properties"]["stars"],
            json!({"type": "integer", "minimum": 0, "maximum": 255})
        );
        assert_eq!(
            schema["properties"]["tags"],
            json!({"type": "array", "items": {"type": "string"}})
        );
        assert_eq!(
            schema["properties"]["colour"],
            json!({"type": "string", "enum": ["Red", "Blue"]})
        );
        assert_eq!(
            schema["properties"]["due"]["anyOf"][1],
            json!({"type": "null"})
        );
        assert_eq!(
            schema["required"],
            json!(["title", "stars", "colour", "author"])
        );
        assert_eq!(schema["properties"]["author"]["required"], json!(["name"]));
    }

    #[test]
    fn scalars_and_tuples() {
        assert_eq!(of::<u64>()["minimum"], 0);
        assert_eq!(
            of::<(u32, String)>()["prefixItems"][1],
            json!({"type": "string"})
        );
        assert_eq!(
            of::<std::collections::HashMap<String, bool>>()["additionalProperties"],
            json!({"type": "boolean"})
        );
    }
}
