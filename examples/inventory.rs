//! A service that talks to the world from its shards: items in
//! PostgreSQL, read through a Redis cache, priced by another HTTP service.
//! Each shard builds its own pool, cache connection and HTTP client before
//! it serves; `/health/ready` names whichever is down.
//!
//! ```text
//! INVENTORY_DATABASE_URL=postgres://app@127.0.0.1/app \
//! INVENTORY_REDIS_URL=redis://127.0.0.1:6379 \
//! INVENTORY_PRICING_URL=http://127.0.0.1:9000 \
//!   cargo run --release --example inventory
//! curl -XPOST localhost:8080/items -H 'content-type: application/json' -d '{"name":"tea","stock":3}'
//! curl localhost:8080/items/1            # from PostgreSQL, then from Redis
//! curl localhost:8080/items/1/quote      # stock plus the pricing service's answer
//! curl localhost:8080/health/ready
//! ```
//!
//! `tests/inventory_example.rs` runs it against real servers.

use percore::client::{Client, ClientError, ClientResponse};
use percore::postgres::{Pg, PgConfig, PgError};
use percore::redis::{Redis, RedisConfig, RedisError};
use percore::{
    App, HttpError, IntoResponse, Json, Path, ResponseWriter, Startup, StartupError, State, Status,
};

/// `[app]`, or `INVENTORY_*` variables.
#[derive(serde::Deserialize)]
struct InventorySettings {
    database_url: String,
    redis_url: String,
    pricing_url: String,
    /// Seconds an item stays cached.
    #[serde(default = "thirty")]
    cache_secs: u64,
}

fn thirty() -> u64 {
    30
}

/// What each shard owns.
#[derive(Clone)]
struct Shard {
    db: Pg,
    cache: Redis,
    pricing: Client,
    pricing_url: String,
    cache_secs: u64,
}

#[derive(serde::Deserialize, serde::Serialize, Clone)]
struct Item {
    id: i32,
    name: String,
    stock: i32,
}

#[derive(serde::Deserialize)]
struct NewItem {
    name: String,
    stock: i32,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Price {
    cents: i64,
    currency: String,
}

#[derive(serde::Serialize)]
struct Quote {
    item: Item,
    price: Price,
}

/// Any failure of a dependency, answered as its own error type says
/// (503 when it is unreachable, 502/504 for the pricing service).
enum Failure {
    Db(PgError),
    Cache(RedisError),
    Pricing(ClientError),
}

impl From<PgError> for Failure {
    fn from(e: PgError) -> Self {
        Self::Db(e)
    }
}
impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Self::Cache(e)
    }
}
impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Self::Pricing(e)
    }
}

impl IntoResponse for Failure {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        match self {
            Self::Db(e) => e.write_response(writer),
            Self::Cache(e) => e.write_response(writer),
            Self::Pricing(e) => e.write_response(writer),
        }
    }
}

/// Connects everything a shard needs; the schema is made once, under an
/// advisory lock, whichever shard comes first.
async fn build(startup: Startup) -> Result<Shard, StartupError> {
    let percore::Settings(settings) = startup.settings::<InventorySettings>()?;
    let db = Pg::connect(PgConfig::new(&settings.database_url))
        .await
        .map_err(|e| StartupError::new("postgres", e))?;
    let mut lease = db
        .lease()
        .await
        .map_err(|e| StartupError::new("postgres", e))?;
    let schema = async {
        let tx = lease.begin().await?;
        tx.execute("SELECT pg_advisory_xact_lock(7411)", &[])
            .await?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS items (id SERIAL PRIMARY KEY, name TEXT NOT NULL, stock INT NOT NULL)",
            &[],
        )
        .await?;
        tx.commit().await
    };
    schema.await.map_err(|e| StartupError::new("postgres", e))?;
    drop(lease);
    let cache = Redis::connect(RedisConfig::new(&settings.redis_url))
        .await
        .map_err(|e| StartupError::new("redis", e))?;
    Ok(Shard {
        db,
        cache,
        pricing: Client::new(),
        pricing_url: settings.pricing_url.trim_end_matches('/').to_owned(),
        cache_secs: settings.cache_secs,
    })
}

/// The item, from the cache when it is there, else from PostgreSQL (then
/// cached).
async fn item(shard: &Shard, id: i32) -> Result<Option<Item>, Failure> {
    let key = format!("item:{id}");
    if let Some(mut cached) = shard.cache.get::<Vec<u8>>(&key).await?
        && let Ok(item) = simd_json::serde::from_slice::<Item>(&mut cached)
    {
        return Ok(Some(item));
    }
    let Some(row) = shard
        .db
        .query_opt("SELECT id, name, stock FROM items WHERE id = $1", &[&id])
        .await?
    else {
        return Ok(None);
    };
    let item = Item {
        id: row.get(0),
        name: row.get(1),
        stock: row.get(2),
    };
    if let Ok(json) = simd_json::serde::to_vec(&item) {
        shard.cache.set_ex(&key, json, shard.cache_secs).await?;
    }
    Ok(Some(item))
}

async fn get_item(State(shard): State<Shard>, Path(id): Path<i32>) -> Result<Json<Item>, Response> {
    match item(&shard, id).await {
        Ok(Some(item)) => Ok(Json(item)),
        Ok(None) => Err(Response::NotFound),
        Err(e) => Err(Response::Failed(e)),
    }
}

async fn create_item(
    State(shard): State<Shard>,
    Json(new): Json<NewItem>,
) -> Result<(Status, Json<Item>), Failure> {
    let row = shard
        .db
        .query_one(
            "INSERT INTO items (name, stock) VALUES ($1, $2) RETURNING id",
            &[&new.name, &new.stock],
        )
        .await?;
    let item = Item {
        id: row.get(0),
        name: new.name,
        stock: new.stock,
    };
    Ok((Status::CREATED, Json(item)))
}

/// The item with the pricing service's price for it (retried on its
/// 502/503/504 and connect failures, with backoff).
async fn quote(State(shard): State<Shard>, Path(id): Path<i32>) -> Result<Json<Quote>, Response> {
    let item = match item(&shard, id).await {
        Ok(Some(item)) => item,
        Ok(None) => return Err(Response::NotFound),
        Err(e) => return Err(Response::Failed(e)),
    };
    let price = shard
        .pricing
        .get(&format!("{}/prices/{}", shard.pricing_url, item.id))
        .send()
        .await
        .and_then(ClientResponse::error_for_status)
        .map_err(|e| Response::Failed(e.into()))?
        .json::<Price>()
        .await
        .map_err(|e| Response::Failed(e.into()))?;
    Ok(Json(Quote { item, price }))
}

/// A missing item, or a dependency's failure.
enum Response {
    NotFound,
    Failed(Failure),
}

impl IntoResponse for Response {
    fn write_response(self, writer: &mut ResponseWriter<'_>) {
        match self {
            Self::NotFound => {
                HttpError::new(Status::NOT_FOUND, "no such item").write_response(writer);
            }
            Self::Failed(f) => f.write_response(writer),
        }
    }
}

fn app() -> App<Shard> {
    App::with_async_state(build)
        .settings::<InventorySettings>("INVENTORY")
        .readiness_check("postgres", |s: &Shard| s.db.is_healthy())
        .readiness_check("redis", |s: &Shard| s.cache.is_healthy())
        .on_shutdown(|s: &Shard| {
            let (db, pricing) = (s.db.clone(), s.pricing.clone());
            async move {
                pricing.close_idle();
                db.close();
            }
        })
        .get("/items/{id}", get_item)
        .post("/items", create_item)
        .get("/items/{id}/quote", quote)
}

fn main() -> std::process::ExitCode {
    percore::main(app)
}
