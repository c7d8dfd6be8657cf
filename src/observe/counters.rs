//! Why requests and connections were refused, counted per shard.
//!
//! Each shard owns its counters and is their only reader and writer (plain
//! cells, no atomics); other threads see them in the snapshots a shard
//! sends when asked (see `observe::metrics`).

use std::cell::Cell;

use crate::http::parse::ParseError;

macro_rules! rejections {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// A reason for refusing a request or a connection.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Rejection {
            $(#[doc = $doc] $variant,)*
        }

        impl Rejection {
            /// Every reason, in a stable order.
            pub const ALL: &'static [Rejection] = &[$(Rejection::$variant,)*];

            /// The reason's name, as metrics will label it.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self { $(Rejection::$variant => $name,)* }
            }
        }
    };
}

rejections! {
    Malformed => "malformed", "Request line or header syntax (400).";
    RequestLineTooLong => "request_line_too_long", "Request line over the limit (414).";
    HeadTooLarge => "head_too_large", "Head over the limit (431).";
    TooManyHeaders => "too_many_headers", "More header fields than allowed (431).";
    UnsupportedVersion => "unsupported_version", "Not HTTP/1.0 or 1.1 (505).";
    BadContentLength => "bad_content_length", "Invalid or conflicting Content-Length (400).";
    AmbiguousLength => "ambiguous_length", "Transfer-Encoding with Content-Length (400).";
    BadTransferEncoding => "bad_transfer_encoding", "chunked not last, repeated, or in HTTP/1.0 (400).";
    UnsupportedTransferCoding => "unsupported_transfer_coding", "A coding other than chunked (501).";
    UnsupportedExpectation => "unsupported_expectation", "Expect other than 100-continue (417).";
    BodyTooLarge => "body_too_large", "Body over the limit (413).";
    BadChunk => "bad_chunk", "Broken chunked framing (400).";
    MissingHost => "missing_host", "HTTP/1.1 without Host (400).";
    RepeatedHost => "repeated_host", "More than one Host (400).";
    HeaderTimeout => "header_timeout", "Head not received in time (408).";
    BodyTimeout => "body_timeout", "Body not received in time (408).";
    RequestTimeout => "request_timeout", "Handler ran past its time (504).";
    SendTimeout => "send_timeout", "Client did not take its response in time (dropped).";
    ShardConnectionLimit => "shard_connection_limit", "Connection over the shard's cap (closed).";
    ClientConnectionLimit => "client_connection_limit", "Connection over the per-client cap (closed).";
    TlsHandshake => "tls_handshake", "TLS handshake failed or took too long (closed).";
}

impl From<ParseError> for Rejection {
    fn from(error: ParseError) -> Self {
        match error {
            ParseError::Malformed(_) => Self::Malformed,
            ParseError::RequestLineTooLong => Self::RequestLineTooLong,
            ParseError::HeadTooLarge => Self::HeadTooLarge,
            ParseError::TooManyHeaders => Self::TooManyHeaders,
            ParseError::UnsupportedVersion => Self::UnsupportedVersion,
            ParseError::BadContentLength => Self::BadContentLength,
            ParseError::AmbiguousLength => Self::AmbiguousLength,
            ParseError::BadTransferEncoding => Self::BadTransferEncoding,
            ParseError::UnsupportedTransferCoding => Self::UnsupportedTransferCoding,
            ParseError::UnsupportedExpectation => Self::UnsupportedExpectation,
            ParseError::BodyTooLarge => Self::BodyTooLarge,
            ParseError::BadChunk => Self::BadChunk,
            ParseError::MissingHost => Self::MissingHost,
            ParseError::RepeatedHost => Self::RepeatedHost,
        }
    }
}

/// One shard's rejection counts.
#[derive(Debug)]
pub(crate) struct Counters {
    counts: Box<[Cell<u64>]>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            counts: Rejection::ALL.iter().map(|_| Cell::new(0)).collect(),
        }
    }
}

impl Counters {
    /// Counts one `reason`.
    pub(crate) fn count(&self, reason: Rejection) {
        let cell = &self.counts[reason as usize];
        cell.set(cell.get() + 1);
    }

    /// The count for `reason`.
    #[must_use]
    pub(crate) fn get(&self, reason: Rejection) -> u64 {
        self.counts[reason as usize].get()
    }

    /// Every count, in the order of [`Rejection::ALL`].
    pub(crate) fn all(&self) -> Vec<u64> {
        self.counts.iter().map(Cell::get).collect()
    }
}
