//! The app's OpenAPI 3.1 document, built from its routes as they are
//! frozen (each handler's extractors and return type describe its
//! operation) and the built-in routes of the configuration in force, and
//! the documentation page that shows it. Served at `openapi.path`
//! (`/openapi.json`, as FastAPI) and `openapi.docs_path` (`/docs`).

use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::http::describe::{Operation, error_schema};
use crate::http::parse::Method;

/// The document and the page, rendered once per configuration.
#[derive(Debug)]
pub(crate) struct Document {
    pub(crate) path: String,
    pub(crate) docs_path: String,
    pub(crate) json: Vec<u8>,
    pub(crate) html: Vec<u8>,
}

/// The document for `routes` under `config`; `None` when `openapi.path`
/// is empty (off).
pub(crate) fn document(
    routes: &[(Method, String, Operation)],
    config: &Config,
) -> Option<Document> {
    let settings = &config.openapi;
    if settings.path.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for (method, pattern, operation) in routes {
        let (path, names) = openapi_path(pattern);
        let entry = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(methods) = entry.as_object_mut() {
            let id = format!("{}{}", method.as_str().to_ascii_lowercase(), id_of(pattern));
            methods.insert(
                method.as_str().to_ascii_lowercase(),
                render(operation, &names, &id),
            );
        }
    }
    builtins(config, &mut paths);
    let document = json!({
        "openapi": "3.1.0",
        "info": {"title": settings.title, "version": settings.version},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            }
        },
    });
    Some(Document {
        path: settings.path.clone(),
        docs_path: settings.docs_path.clone(),
        json: serde_json::to_vec(&document).unwrap_or_default(),
        html: page(&settings.title, &settings.path).into_bytes(),
    })
}

/// The router's pattern as an OpenAPI path (`{*rest}` is `{rest}`), and
/// its parameter names in order.
fn openapi_path(pattern: &str) -> (String, Vec<String>) {
    let mut names = Vec::new();
    let path = pattern
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let name = name.trim_start_matches('*').to_owned();
                    let rendered = format!("{{{name}}}");
                    names.push(name);
                    rendered
                }
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/");
    (path, names)
}

/// A stable operation id from a pattern: `/notes/{id}` is `_notes_id`.
fn id_of(pattern: &str) -> String {
    pattern
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn render(operation: &Operation, names: &[String], id: &str) -> Value {
    let mut parameters = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let schema = path_schema(operation.path.as_ref(), name, i, names.len());
        parameters.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
    }
    for (name, schema, required) in &operation.query {
        parameters
            .push(json!({"name": name, "in": "query", "required": required, "schema": schema}));
    }
    for (name, schema, required) in &operation.headers {
        parameters
            .push(json!({"name": name, "in": "header", "required": required, "schema": schema}));
    }
    let mut rendered = Map::new();
    rendered.insert("operationId".into(), json!(id));
    if !parameters.is_empty() {
        rendered.insert("parameters".into(), Value::Array(parameters));
    }
    if let Some((media, schema, required)) = &operation.body {
        rendered.insert(
            "requestBody".into(),
            json!({"required": required, "content": {media.as_str(): {"schema": schema}}}),
        );
    }
    if !operation.security.is_empty() {
        let schemes: Vec<Value> = operation
            .security
            .iter()
            .map(|scheme| json!({ *scheme: [] }))
            .collect();
        rendered.insert("security".into(), Value::Array(schemes));
    }
    rendered.insert("responses".into(), responses(&operation.responses));
    Value::Object(rendered)
}

/// The schema of path parameter `name` (the `index`-th of `count`) from a
/// `Path<T>`'s schema; a string when nothing says more.
fn path_schema(schema: Option<&Value>, name: &str, index: usize, count: usize) -> Value {
    let Some(schema) = schema else {
        return json!({"type": "string"});
    };
    if let Some(property) = schema.get("properties").and_then(|p| p.get(name)) {
        return property.clone();
    }
    if let Some(item) = schema.get("prefixItems").and_then(|p| p.get(index)) {
        return item.clone();
    }
    let scalar = schema
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "object" && t != "array");
    if scalar && count == 1 {
        return schema.clone();
    }
    json!({"type": "string"})
}

fn responses(described: &[(String, Option<String>, Value)]) -> Value {
    let mut responses = Map::new();
    for (status, media, schema) in described {
        let entry = responses
            .entry(status.clone())
            .or_insert_with(|| json!({"description": description(status)}));
        if let Some(media) = media
            && let Some(object) = entry.as_object_mut()
        {
            let content = object
                .entry("content")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(content) = content.as_object_mut() {
                content.insert(media.clone(), json!({"schema": schema}));
            }
        }
    }
    if !responses.keys().any(|status| status.starts_with('2')) {
        responses.insert("2XX".into(), json!({"description": "Success"}));
    }
    // Every error percore answers (400, 401, 404, 405, 413, 415, 422, 429,
    // 500, 503, 504…) has the same shape.
    responses.insert(
        "default".into(),
        json!({
            "description": "An error: {\"detail\": ...}",
            "content": {"application/json": {"schema": error_schema()}},
        }),
    );
    Value::Object(responses)
}

fn description(status: &str) -> &'static str {
    match status {
        "204" => "No Content",
        "201" => "Created",
        _ => "Success",
    }
}

/// The built-in routes the shards serve under `config`.
fn builtins(config: &Config, paths: &mut Map<String, Value>) {
    let status = |values: &[&str]| {
        json!({
            "type": "object",
            "properties": {"status": {"type": "string", "enum": values}},
            "required": ["status"],
        })
    };
    let health = &config.health;
    if !health.liveness_path.is_empty() {
        paths.insert(
            health.liveness_path.clone(),
            json!({"get": {
                "operationId": "percore_liveness",
                "responses": {
                    "200": {"description": "The shard runs", "content": {"application/json": {"schema": status(&["ok"])}}},
                    "default": {"description": "An error", "content": {"application/json": {"schema": error_schema()}}},
                }
            }}),
        );
    }
    if !health.readiness_path.is_empty() {
        paths.insert(
            health.readiness_path.clone(),
            json!({"get": {
                "operationId": "percore_readiness",
                "responses": {
                    "200": {"description": "Ready", "content": {"application/json": {"schema": status(&["ready"])}}},
                    "503": {"description": "Draining, or a readiness check fails", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "default": {"description": "An error", "content": {"application/json": {"schema": error_schema()}}},
                }
            }}),
        );
    }
}

/// The documentation page: Swagger UI (from its CDN, as FastAPI's) over
/// the document.
fn page(title: &str, path: &str) -> String {
    let title = escape(title);
    let path = escape(path);
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API documentation</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
<div id="docs"><p>Loading the documentation of <a href="{path}">{path}</a>...</p></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "{path}", dom_id: "#docs"}});</script>
</body>
</html>
"##
    )
}

/// `text` safe inside HTML text, an attribute and a JavaScript string.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\\' => out.push_str("&#92;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{escape, openapi_path};

    #[test]
    fn patterns_become_openapi_paths() {
        assert_eq!(
            openapi_path("/notes/{id}/files/{*rest}"),
            (
                "/notes/{id}/files/{rest}".to_owned(),
                vec!["id".to_owned(), "rest".to_owned()]
            )
        );
        assert_eq!(
            escape("<a href=\"x\">'"),
            "&lt;a href=&quot;x&quot;&gt;&#39;"
        );
    }
}
