//! `[http2]`: HTTP/2 (RFC 9113) on the TLS listeners by ALPN, and with
//! prior knowledge (h2c) on the plain ones; limits as nginx's defaults.
//! A connection's request budget is `limits.keepalive_requests`, as for
//! HTTP/1.1 (and as nginx does since 1.19.7): then GOAWAY.

use serde::{Deserialize, Serialize};

/// `[http2]`: HTTP/2 and its limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Http2Config {
    /// Offer `h2` by ALPN on the TLS listeners (preferred to `http/1.1`,
    /// which stays offered).
    pub enabled: bool,
    /// Serve HTTP/2 with prior knowledge on the plain listeners (a client
    /// that opens with the HTTP/2 preface); HTTP/1.1 stays served there.
    pub cleartext: bool,
    /// Streams a client may have open at once (nginx
    /// `http2_max_concurrent_streams`).
    pub max_concurrent_streams: u32,
    /// Largest decoded header list of a request, in bytes (names, values
    /// and 32 per field, RFC 9113 §6.5.2); larger is refused. Also caps
    /// the CONTINUATION frames of one header block.
    pub max_header_list_bytes: u32,
    /// The HPACK dynamic table a client may make this side keep.
    pub header_table_bytes: u32,
    /// Each stream's receive window: how much of a request body a client
    /// may send before this side has taken it.
    pub stream_window_bytes: u32,
    /// The connection's receive window, over all its streams.
    pub connection_window_bytes: u32,
    /// Largest frame payload this side accepts (16384 to 16777215).
    pub max_frame_bytes: u32,
    /// Streams a client may open and cancel before they are answered,
    /// pending at once; more is a rapid-reset attack (CVE-2023-44487) and
    /// ends the connection with `ENHANCE_YOUR_CALM`.
    pub max_pending_resets: usize,
    /// Streams this side may reset because the client broke a rule, per
    /// connection, before the connection is ended instead.
    pub max_error_resets: usize,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            enabled: true,
            cleartext: false,
            max_concurrent_streams: 128,
            max_header_list_bytes: 32 << 10,
            header_table_bytes: 4096,
            stream_window_bytes: 256 << 10,
            connection_window_bytes: 1 << 20,
            max_frame_bytes: 16 << 10,
            max_pending_resets: 20,
            max_error_resets: 256,
        }
    }
}

impl Http2Config {
    /// Every problem of these settings.
    pub(crate) fn problems(&self, check: &mut impl FnMut(bool, &str, &str)) {
        check(
            (1..=10_000).contains(&self.max_concurrent_streams),
            "http2.max_concurrent_streams",
            "must be from 1 to 10000",
        );
        check(
            (1024..=16 << 20).contains(&self.max_header_list_bytes),
            "http2.max_header_list_bytes",
            "must be from 1024 to 16777216",
        );
        check(
            self.header_table_bytes <= 1 << 20,
            "http2.header_table_bytes",
            "must be at most 1048576",
        );
        check(
            (65_535..=(1 << 31) - 1).contains(&self.stream_window_bytes),
            "http2.stream_window_bytes",
            "must be from 65535 to 2147483647 (RFC 9113 §6.9.1)",
        );
        check(
            (65_535..=(1 << 31) - 1).contains(&self.connection_window_bytes),
            "http2.connection_window_bytes",
            "must be from 65535 to 2147483647 (RFC 9113 §6.9.1)",
        );
        check(
            (16_384..=16_777_215).contains(&self.max_frame_bytes),
            "http2.max_frame_bytes",
            "must be from 16384 to 16777215 (RFC 9113 §6.5.2)",
        );
        check(
            self.max_pending_resets >= 1,
            "http2.max_pending_resets",
            "must be at least 1",
        );
    }
}
