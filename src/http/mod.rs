//! The HTTP/1.1 protocol, sans-IO: bytes in, requests out; responses in,
//! bytes out. Nothing here touches a socket or an executor.

pub mod body;
pub mod date;
mod framing;
pub mod parse;
pub mod request;
pub mod response;
pub mod status;
pub mod write;
