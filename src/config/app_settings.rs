//! The app's own settings: the `[app]` table of the configuration file,
//! overridden by environment variables with the app's prefix
//! (`NOTES_DATABASE_URL` is `app.database_url`; a double underscore nests,
//! `NOTES_POOL__SIZE` is `app.pool.size`), deserialized into the app's type
//! and validated with key paths like the rest of the file.

use std::any::Any;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::Problem;

/// Parsed settings, as shards hand them to handlers.
pub(crate) type Parsed = Arc<dyn Any + Send + Sync>;

/// How an app reads its settings.
pub(crate) type Reader = Arc<dyn Fn(&toml::Table) -> Result<Parsed, Vec<Problem>> + Send + Sync>;

/// A reader of `T` from the `[app]` table and the variables with `prefix`
/// (read from the process environment each time it runs: at start and at
/// every reload).
pub(crate) fn reader<T: DeserializeOwned + Send + Sync + 'static>(prefix: &str) -> Reader {
    let prefix = format!("{}_", prefix.trim_end_matches('_'));
    Arc::new(move |table| {
        let parsed: T = read(table, &prefix, std::env::vars())?;
        Ok(Arc::new(parsed))
    })
}

/// `T` from `table` with the variables of `env` that start with `prefix`
/// applied.
///
/// # Errors
/// Every problem, named by its key path (and the variable it came from).
pub(crate) fn read<T: DeserializeOwned>(
    table: &toml::Table,
    prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, Vec<Problem>> {
    let mut table = table.clone();
    // Each variable's value is read as TOML (a number, a boolean, a list)
    // when it parses as one, else as a string; a key whose typed value the
    // type refuses is tried again as the string.
    let mut from_env: Vec<(Vec<String>, String, String)> = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        set(&mut table, &path, typed(&value));
        from_env.push((path, name, value));
    }
    let mut as_text: Vec<Vec<String>> = Vec::new();
    loop {
        match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(table.clone())) {
            Ok(value) => return Ok(value),
            Err(error) => {
                let path: Vec<String> = error
                    .path()
                    .iter()
                    .filter_map(|segment| match segment {
                        serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                        _ => None,
                    })
                    .collect();
                let variable = from_env.iter().find(|(p, _, _)| *p == path);
                if let Some((path, _, raw)) = variable
                    && !as_text.contains(path)
                {
                    as_text.push(path.clone());
                    set(&mut table, path, toml::Value::String(raw.clone()));
                    continue;
                }
                let message = error.inner().to_string();
                let first_line = message.lines().next().unwrap_or_default();
                let key = if error.path().to_string() == "." {
                    "app".to_owned()
                } else {
                    format!("app.{}", error.path())
                };
                let message = match variable {
                    Some((_, name, _)) => format!("{first_line} (from {name})"),
                    None => first_line.to_owned(),
                };
                return Err(vec![Problem::new(key, message)]);
            }
        }
    }
}

/// `raw` as a TOML value when it is one, else as a string.
fn typed(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Sets `path` in `table` to `value`, making the tables on the way.
fn set(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut here = table;
    for key in parents {
        let entry = here
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        here = next;
    }
    here.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::read;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Notes {
        database_url: String,
        title: String,
        pool: Pool,
        #[serde(default)]
        beta: bool,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Pool {
        size: u32,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_file_and_the_app_prefix_make_the_settings() {
        let table: toml::Table =
            "database_url = \"postgres://file\"\ntitle = \"x\"\n[pool]\nsize = 4"
                .parse()
                .unwrap();
        let notes: Notes = read(
            &table,
            "NOTES_",
            env(&[
                ("NOTES_POOL__SIZE", "16"),
                ("NOTES_TITLE", "123"),
                ("NOTES_BETA", "true"),
                ("OTHER_TITLE", "no"),
            ]),
        )
        .unwrap();
        assert_eq!(notes.pool.size, 16);
        // A number-looking value for a string field stays the string.
        assert_eq!(notes.title, "123");
        assert!(notes.beta);
        assert_eq!(notes.database_url, "postgres://file");
    }

    #[test]
    fn problems_name_the_key_and_the_variable() {
        let table: toml::Table = "database_url = \"u\"\ntitle = \"t\"\n[pool]\nsize = 4"
            .parse()
            .unwrap();
        let problems =
            read::<Notes>(&table, "NOTES_", env(&[("NOTES_POOL__SIZE", "many")])).unwrap_err();
        assert_eq!(problems[0].key, "app.pool.size");
        assert!(
            problems[0].message.contains("NOTES_POOL__SIZE"),
            "{}",
            problems[0].message
        );
        let table: toml::Table = "title = \"t\"\ncolour = 1\n[pool]\nsize = 4"
            .parse()
            .unwrap();
        let problems = read::<Notes>(&table, "NOTES_", env(&[])).unwrap_err();
        assert!(problems[0].key.starts_with("app"), "{problems:?}");
    }
}
