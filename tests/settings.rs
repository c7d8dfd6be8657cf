//! The app's own settings: the `[app]` table, typed, checked with key
//! paths at start and reload, read by handlers with `Settings<T>`.

mod support;

use percore::{App, Config, Settings};
use support::{Client, addr, get};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Notes {
    title: String,
    max_notes: u32,
}

fn app() -> App {
    App::new()
        .settings::<Notes>("NOTES_TEST")
        .get("/", async |Settings(notes): Settings<Notes>| {
            format!("{} {}", notes.title, notes.max_notes)
        })
}

fn config(app_table: &str) -> Config {
    let mut config = support::config();
    config.app = app_table.parse().unwrap();
    config
}

#[test]
fn handlers_read_the_settings_in_force_and_a_reload_changes_them() {
    let mut server = app()
        .start(&config("title = \"Notes\"\nmax_notes = 10"))
        .unwrap();
    let mut client = Client::connect(addr(&server));
    assert_eq!(client.request(&get("/")).text(), "Notes 10");

    // A reload with settings that do not fit is refused, naming the key;
    // the old ones stay.
    let error = server
        .reload(&config("title = \"Notes\"\nmax_notes = -1"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("app.max_notes"), "{error}");
    assert_eq!(client.request(&get("/")).text(), "Notes 10");

    server
        .reload(&config("title = \"Jots\"\nmax_notes = 20"))
        .unwrap();
    // New connections see the new settings.
    let mut client = Client::connect(addr(&server));
    assert_eq!(client.request(&get("/")).text(), "Jots 20");
    server.stop().unwrap();
}

#[test]
fn settings_that_do_not_fit_stop_the_start_with_their_key() {
    let error = app()
        .start(&config("title = \"Notes\"\nmax_notes = \"many\""))
        .unwrap_err()
        .to_string();
    assert!(error.contains("app.max_notes"), "{error}");
    let error = app()
        .start(&config("title = \"Notes\"\nmax_notes = 1\ncolour = 2"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("colour"), "{error}");
    // An [app] table for an app that reads none is a mistake, not ignored.
    let error = App::new()
        .get("/", async || "x")
        .start(&config("title = \"x\""))
        .unwrap_err()
        .to_string();
    assert!(error.contains("[app]"), "{error}");
}
