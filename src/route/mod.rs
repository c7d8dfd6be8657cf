//! Routing and handlers: the route table, extractors that turn a request
//! into typed arguments, and JSON in and out.

pub mod extract;
pub mod handler;
pub mod json;
mod path;
pub mod router;
pub mod service;
