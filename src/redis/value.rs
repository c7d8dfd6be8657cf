//! Replies as one type for RESP2 and RESP3, and typed conversions.

use redis_protocol::{resp2, resp3};

use super::error::{RedisError, RedisErrorKind};

/// One reply (RESP2 and RESP3 alike; RESP3's richer types are kept).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `nil` (a missing key).
    Nil,
    /// An integer.
    Int(i64),
    /// A binary-safe string (bulk, verbatim or big-number text).
    Bulk(bytes::Bytes),
    /// A status line such as `OK`.
    Status(String),
    /// An error the server answered with (`ERR …`, `WRONGTYPE …`).
    Error(String),
    /// An array (or a RESP3 set).
    Array(Vec<Value>),
    /// A RESP3 map, in the order received.
    Map(Vec<(Value, Value)>),
    /// A RESP3 double.
    Double(f64),
    /// A RESP3 boolean.
    Bool(bool),
    /// A RESP3 push (pub/sub messages, invalidations).
    Push(Vec<Value>),
}

impl Value {
    pub(crate) fn from_resp2(frame: resp2::types::OwnedFrame) -> Self {
        use resp2::types::OwnedFrame as F;
        match frame {
            F::SimpleString(s) => Self::Status(String::from_utf8_lossy(&s).into_owned()),
            F::Error(e) => Self::Error(e),
            F::Integer(i) => Self::Int(i),
            F::BulkString(b) => Self::Bulk(b.into()),
            F::Array(items) => Self::Array(items.into_iter().map(Self::from_resp2).collect()),
            F::Null => Self::Nil,
        }
    }

    pub(crate) fn from_resp3(frame: resp3::types::OwnedFrame) -> Self {
        use resp3::types::OwnedFrame as F;
        match frame {
            F::BlobString { data, .. }
            | F::BigNumber { data, .. }
            | F::VerbatimString { data, .. } => Self::Bulk(data.into()),
            F::BlobError { data, .. } => Self::Error(String::from_utf8_lossy(&data).into_owned()),
            F::SimpleString { data, .. } => {
                Self::Status(String::from_utf8_lossy(&data).into_owned())
            }
            F::SimpleError { data, .. } => Self::Error(data),
            F::Boolean { data, .. } => Self::Bool(data),
            F::Null => Self::Nil,
            F::Number { data, .. } => Self::Int(data),
            F::Double { data, .. } => Self::Double(data),
            F::Array { data, .. } => Self::Array(data.into_iter().map(Self::from_resp3).collect()),
            F::Set { data, .. } => Self::Array(data.into_iter().map(Self::from_resp3).collect()),
            F::Map { data, .. } => Self::Map(
                data.into_iter()
                    .map(|(k, v)| (Self::from_resp3(k), Self::from_resp3(v)))
                    .collect(),
            ),
            F::Push { data, .. } => Self::Push(data.into_iter().map(Self::from_resp3).collect()),
            // HELLO's own frame and chunked-stream markers: kept as text.
            other => Self::Status(format!("{other:?}")),
        }
    }

    /// The text of a bulk or status reply.
    #[must_use]
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bulk(b) => Some(b),
            Self::Status(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

/// A type a reply converts into.
pub trait FromRedis: Sized {
    /// Converts `value`, or says why it cannot.
    ///
    /// # Errors
    /// A [`RedisError`] of kind `Type`.
    fn from_redis(value: Value) -> Result<Self, RedisError>;
}

/// A number written as text in a bulk or status reply.
fn parsed<T: std::str::FromStr>(value: &Value) -> Result<T, RedisError> {
    std::str::from_utf8(value.as_bytes().unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| mismatch::<T>(value))
}

fn mismatch<T>(value: &Value) -> RedisError {
    RedisError::new(
        RedisErrorKind::Type,
        format_args!("cannot read {value:?} as {}", std::any::type_name::<T>()),
    )
}

impl FromRedis for Value {
    fn from_redis(value: Value) -> Result<Self, RedisError> {
        Ok(value)
    }
}

impl FromRedis for () {
    fn from_redis(_: Value) -> Result<Self, RedisError> {
        Ok(())
    }
}

impl FromRedis for i64 {
    fn from_redis(value: Value) -> Result<Self, RedisError> {
        match &value {
            Value::Int(i) => Ok(*i),
            Value::Bulk(_) | Value::Status(_) => parsed(&value),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

impl FromRedis for u64 {
    fn from_redis(value: Value) -> Result<Self, RedisError> {
        let n = i64::from_redis(value)?;
        u64::try_from(n)
            .map_err(|_| RedisError::new(RedisErrorKind::Type, format_args!("{n} is negative")))
    }
}

impl FromRedis for f64 {
    fn from_redis(value: Value) -> Result<Self, RedisError> {
        match &value {
            Value::Double(d) => Ok(*d),
            #[allow(
                clippy::cast_precision_loss,
                reason = "a Redis integer read as a float"
            )]
            Value::Int(i) => Ok(*i as f64),
            Value::Bulk(_) | Value::Status(_) => parsed(&value),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

impl FromRedis for bool {
    fn from_redis(value: Value) -> Result<Self, RedisError> {
        match value {
            Value::Bool(b) => Ok(b),
            Value::Int(i) => Ok(i != 0),
            Value::Status(s) => Ok(s == "OK"),
            Value::Nil => Ok(false),
            other => Err(mismatch::<Self>(&other)),
        }
    }
}

impl FromRedis for bytes::Bytes {
    fn from_redis(value: Value) -> Result<Self, RedisError> {
        match value {
            Value::Bulk(b) => Ok(b),
            Value::Status(s) => Ok(s.into()),
            Value::Int(i) => Ok(i.to_string().into()),
            other => Err(mismatch::<Self>(&other)),
        }
    }
}

impl FromRedis for Vec<u8> {
    fn from_redis(value: Value) -> Result<Self, RedisError> {
        bytes::Bytes::from_redis(value).map(|b| b.to_vec())
    }
}

impl FromRedis for String {
    fn from_redis(value: Value) -> Result<Self, RedisError> {
        let bytes = bytes::Bytes::from_redis(value)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| RedisError::new(RedisErrorKind::Type, "the reply is not UTF-8"))
    }
}

impl<T: FromRedis> FromRedis for Option<T> {
    fn from_redis(value: Value) -> Result<Self, RedisError> {
        match value {
            Value::Nil => Ok(None),
            other => T::from_redis(other).map(Some),
        }
    }
}

impl<T: FromRedis> FromRedis for Vec<T> {
    fn from_redis(value: Value) -> Result<Self, RedisError> {
        match value {
            Value::Array(items) | Value::Push(items) => {
                items.into_iter().map(T::from_redis).collect()
            }
            Value::Nil => Ok(Vec::new()),
            other => Err(mismatch::<Self>(&other)),
        }
    }
}
