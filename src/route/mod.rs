//! Routing and handlers: the route table, extractors that turn a request
//! into typed arguments, and JSON in and out.

pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod cookies;
pub(crate) mod cors;
pub(crate) mod extract;
pub(crate) mod handler;
pub(crate) mod json;
pub(crate) mod layer;
pub(crate) mod openapi;
mod path;
pub(crate) mod pooled;
pub(crate) mod router;
pub(crate) mod schema;
pub(crate) mod service;
pub(crate) mod shutdown;
pub(crate) mod sse;
pub(crate) mod startup;
pub(crate) mod validate;
