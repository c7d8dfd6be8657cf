//! The HTTP/1.1 protocol, sans-IO: bytes in, requests out; responses in,
//! bytes out. Nothing here touches a socket or an executor.

pub(crate) mod base64;
pub(crate) mod body;
pub(crate) mod compress;
pub(crate) mod date;
pub(crate) mod describe;
pub(crate) mod framing;
pub(crate) mod incoming;
pub(crate) mod parse;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod status;
pub(crate) mod write;
