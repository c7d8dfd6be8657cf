//! Cookies from outside: plain cookies round-trip through `TestClient`'s
//! jar, signed ones resist tampering, private ones are unreadable by the
//! client, and a missing or bad key is named.

use futures_lite::future::block_on;
use percore::cookie::Cookie;
use percore::{App, Config, Cookies, HttpError, TestClient};

/// 32 bytes, base64.
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn app() -> App {
    App::new()
        .get("/visit", async |mut cookies: Cookies| {
            let visits: u32 = cookies
                .get("visits")
                .and_then(|c| c.value().parse().ok())
                .unwrap_or(0);
            cookies.add(Cookie::build(("visits", (visits + 1).to_string())).path("/"));
            (cookies, format!("visit {}", visits + 1))
        })
        .get(
            "/login",
            async |mut cookies: Cookies| -> Result<_, HttpError> {
                cookies.add_signed(Cookie::build(("user", "ada")).path("/").http_only(true))?;
                cookies.add_private(Cookie::build(("secret", "s3cr3t value")).path("/"))?;
                Ok((cookies, "in"))
            },
        )
        .get("/whoami", async |cookies: Cookies| {
            let user = cookies.get_signed("user");
            let secret = cookies.get_private("secret");
            format!(
                "{} {}",
                user.as_ref().map_or("nobody", |c| c.value()),
                secret.as_ref().map_or("none", |c| c.value())
            )
        })
        .get("/logout", async |mut cookies: Cookies| {
            cookies.remove(Cookie::build("visits").path("/"));
            (cookies, "out")
        })
}

fn keyed() -> TestClient {
    let mut config = Config::default();
    KEY.clone_into(&mut config.cookies.key);
    TestClient::with_config(app(), config).unwrap()
}

#[test]
fn plain_cookies_round_trip_and_are_removed() {
    let client = TestClient::new(app());
    block_on(async {
        let first = client.get("/visit").send().await;
        assert_eq!(first.text(), "visit 1");
        assert_eq!(first.header("set-cookie"), Some("visits=1; Path=/"));
        assert_eq!(client.get("/visit").send().await.text(), "visit 2");
        let out = client.get("/logout").send().await;
        let removal = out.header("set-cookie").unwrap();
        assert!(
            removal.starts_with("visits=; Path=/; Max-Age=0"),
            "{removal}"
        );
        assert_eq!(client.get("/visit").send().await.text(), "visit 1");
    });
}

#[test]
fn signed_cookies_resist_tampering_and_private_ones_are_sealed() {
    let client = keyed();
    block_on(async {
        let login = client.get("/login").send().await;
        let set: Vec<&str> = login.header_values("set-cookie").collect();
        assert_eq!(set.len(), 2, "{set:?}");
        let signed = set.iter().find(|c| c.starts_with("user=")).unwrap();
        let private = set.iter().find(|c| c.starts_with("secret=")).unwrap();
        // The signed value is readable; the private one is not.
        assert!(signed.contains("ada"), "{signed}");
        assert!(!private.contains("s3cr3t"), "{private}");
        assert_eq!(
            client.get("/whoami").send().await.text(),
            "ada s3cr3t value"
        );

        // Another client (no jar) with the same key: the cookies as sent
        // verify; a forged signed cookie and a garbled private one read
        // as absent.
        let other = keyed();
        let value = signed.split(';').next().unwrap();
        let sealed = private.split(';').next().unwrap();
        let reply = other
            .get("/whoami")
            .header("cookie", format!("{value}; {sealed}"))
            .send()
            .await;
        assert_eq!(reply.text(), "ada s3cr3t value");
        let forged = value.replace("ada", "eve");
        let reply = other
            .get("/whoami")
            .header("cookie", format!("{forged}; secret=garbage"))
            .send()
            .await;
        assert_eq!(reply.text(), "nobody none");
    });
}

#[test]
fn no_key_is_a_500_naming_it_and_a_bad_key_fails_at_start() {
    let client = TestClient::new(app());
    block_on(async {
        let reply = client.get("/login").send().await;
        assert_eq!(reply.status().code(), 500);
        assert!(reply.text().contains("cookies.key"), "{}", reply.text());
        assert_eq!(client.get("/whoami").send().await.text(), "nobody none");
    });
    let mut config = Config::default();
    "c2hvcnQ=".clone_into(&mut config.cookies.key);
    let error = TestClient::with_config(app(), config)
        .unwrap_err()
        .to_string();
    assert!(error.contains("cookies.key"), "{error}");
    assert!(error.contains("32 bytes"), "{error}");
}
