//! Limits small enough that fuzz inputs reach them.

use percore::Limits;

pub fn limits() -> Limits {
    Limits {
        max_request_line_bytes: 1024,
        max_head_bytes: 4096,
        max_headers: 32,
        max_body_bytes: 1 << 16,
        max_chunk_extension_bytes: 256,
    }
}
