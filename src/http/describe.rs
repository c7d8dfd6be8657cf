//! What one route takes and answers, for its OpenAPI operation: filled in
//! by each extractor ([`FromRequest::describe`](crate::FromRequest::describe))
//! and by the handler's return type ([`IntoResponse::describe`](crate::IntoResponse::describe))
//! when the app is frozen, never per request.

use serde_json::{Value, json};

/// One route's OpenAPI operation, as its extractors and return type
/// describe it. An extractor of your own describes itself with the
/// methods below; the defaults describe nothing.
#[derive(Clone, Debug, Default)]
pub struct Operation {
    pub(crate) query: Vec<(String, Value, bool)>,
    pub(crate) headers: Vec<(String, Value, bool)>,
    /// The schema of the path parameters (`Path<T>`), matched to the
    /// pattern's names when the document is built.
    pub(crate) path: Option<Value>,
    pub(crate) body: Option<(String, Value, bool)>,
    pub(crate) security: Vec<&'static str>,
    /// `(status, media type, schema)`; the status is `"200"`, `"2XX"`…
    pub(crate) responses: Vec<(String, Option<String>, Value)>,
}

impl Operation {
    /// A query parameter `name` with `schema`.
    pub fn query_param(&mut self, name: &str, schema: Value, required: bool) {
        self.query.push((name.to_owned(), schema, required));
    }

    /// The query string as one object: each property a parameter.
    pub fn query_object(&mut self, schema: &Value) {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                self.query_param(name, property.clone(), required.contains(&name.as_str()));
            }
        }
    }

    /// A request header `name` with `schema`.
    pub fn header_param(&mut self, name: &str, schema: Value, required: bool) {
        self.headers.push((name.to_owned(), schema, required));
    }

    /// The path parameters' schema: one scalar, a tuple in pattern order,
    /// or an object by name.
    pub fn path_params(&mut self, schema: Value) {
        self.path = Some(schema);
    }

    /// The request body, of `media_type`.
    pub fn body(&mut self, media_type: &str, schema: Value, required: bool) {
        self.body = Some((media_type.to_owned(), schema, required));
    }

    /// The route needs the security scheme `scheme` (`bearer`, `basic`).
    pub fn security(&mut self, scheme: &'static str) {
        if !self.security.contains(&scheme) {
            self.security.push(scheme);
        }
    }

    /// A response with `status` (`"200"`, `"2XX"`), and a body of
    /// `media_type` with `schema`, if it has one.
    pub fn response(&mut self, status: &str, media_type: Option<&str>, schema: Value) {
        self.responses
            .push((status.to_owned(), media_type.map(str::to_owned), schema));
    }

    /// Describes with `describe`, with whatever it adds made optional
    /// (an `Option<T>` extractor).
    pub fn optional(&mut self, describe: impl FnOnce(&mut Operation)) {
        let mut inner = Operation::default();
        describe(&mut inner);
        for (name, schema, _) in inner.query {
            self.query.push((name, schema, false));
        }
        for (name, schema, _) in inner.headers {
            self.headers.push((name, schema, false));
        }
        if let Some((media, schema, _)) = inner.body {
            self.body = Some((media, schema, false));
        }
        if inner.path.is_some() {
            self.path = inner.path;
        }
        // Its security schemes are left out: optional credentials mean
        // the route also works without them.
        self.responses.extend(inner.responses);
    }

    /// Every success response so far, relabelled `2XX` (the status is
    /// chosen at run time: `(Status, T)`).
    pub fn any_success_status(&mut self) {
        for (status, _, _) in &mut self.responses {
            if status.starts_with('2') {
                "2XX".clone_into(status);
            }
        }
    }
}

/// The body of every error percore answers: `{"detail": ...}`.
pub(crate) fn error_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"detail": {}},
        "required": ["detail"],
    })
}
