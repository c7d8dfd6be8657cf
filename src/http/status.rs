//! HTTP status codes and their reason phrases.
//!
//! A `Status` is a checked three-digit code; `reason` gives the phrase that
//! goes on the status line.

use std::fmt;

/// An HTTP status code between 100 and 999.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Status(u16);

macro_rules! statuses {
    ($($name:ident = $code:literal, $reason:literal;)*) => {
        impl Status {
            $(
                #[doc = concat!("`", stringify!($code), " ", $reason, "`")]
                pub const $name: Status = Status($code);
            )*

            /// The reason phrase for this code, or `""` for codes without one.
            #[must_use]
            pub const fn reason(self) -> &'static str {
                match self.0 {
                    $($code => $reason,)*
                    _ => "",
                }
            }
        }
    };
}

statuses! {
    CONTINUE = 100, "Continue";
    SWITCHING_PROTOCOLS = 101, "Switching Protocols";
    PROCESSING = 102, "Processing";
    EARLY_HINTS = 103, "Early Hints";
    OK = 200, "OK";
    CREATED = 201, "Created";
    ACCEPTED = 202, "Accepted";
    NON_AUTHORITATIVE_INFORMATION = 203, "Non-Authoritative Information";
    NO_CONTENT = 204, "No Content";
    RESET_CONTENT = 205, "Reset Content";
    PARTIAL_CONTENT = 206, "Partial Content";
    MULTI_STATUS = 207, "Multi-Status";
    ALREADY_REPORTED = 208, "Already Reported";
    IM_USED = 226, "IM Used";
    MULTIPLE_CHOICES = 300, "Multiple Choices";
    MOVED_PERMANENTLY = 301, "Moved Permanently";
    FOUND = 302, "Found";
    SEE_OTHER = 303, "See Other";
    NOT_MODIFIED = 304, "Not Modified";
    USE_PROXY = 305, "Use Proxy";
    TEMPORARY_REDIRECT = 307, "Temporary Redirect";
    PERMANENT_REDIRECT = 308, "Permanent Redirect";
    BAD_REQUEST = 400, "Bad Request";
    UNAUTHORIZED = 401, "Unauthorized";
    PAYMENT_REQUIRED = 402, "Payment Required";
    FORBIDDEN = 403, "Forbidden";
    NOT_FOUND = 404, "Not Found";
    METHOD_NOT_ALLOWED = 405, "Method Not Allowed";
    NOT_ACCEPTABLE = 406, "Not Acceptable";
    PROXY_AUTHENTICATION_REQUIRED = 407, "Proxy Authentication Required";
    REQUEST_TIMEOUT = 408, "Request Timeout";
    CONFLICT = 409, "Conflict";
    GONE = 410, "Gone";
    LENGTH_REQUIRED = 411, "Length Required";
    PRECONDITION_FAILED = 412, "Precondition Failed";
    PAYLOAD_TOO_LARGE = 413, "Content Too Large";
    URI_TOO_LONG = 414, "URI Too Long";
    UNSUPPORTED_MEDIA_TYPE = 415, "Unsupported Media Type";
    RANGE_NOT_SATISFIABLE = 416, "Range Not Satisfiable";
    EXPECTATION_FAILED = 417, "Expectation Failed";
    IM_A_TEAPOT = 418, "I'm a teapot";
    MISDIRECTED_REQUEST = 421, "Misdirected Request";
    UNPROCESSABLE_ENTITY = 422, "Unprocessable Content";
    LOCKED = 423, "Locked";
    FAILED_DEPENDENCY = 424, "Failed Dependency";
    TOO_EARLY = 425, "Too Early";
    UPGRADE_REQUIRED = 426, "Upgrade Required";
    PRECONDITION_REQUIRED = 428, "Precondition Required";
    TOO_MANY_REQUESTS = 429, "Too Many Requests";
    REQUEST_HEADER_FIELDS_TOO_LARGE = 431, "Request Header Fields Too Large";
    UNAVAILABLE_FOR_LEGAL_REASONS = 451, "Unavailable For Legal Reasons";
    INTERNAL_SERVER_ERROR = 500, "Internal Server Error";
    NOT_IMPLEMENTED = 501, "Not Implemented";
    BAD_GATEWAY = 502, "Bad Gateway";
    SERVICE_UNAVAILABLE = 503, "Service Unavailable";
    GATEWAY_TIMEOUT = 504, "Gateway Timeout";
    HTTP_VERSION_NOT_SUPPORTED = 505, "HTTP Version Not Supported";
    VARIANT_ALSO_NEGOTIATES = 506, "Variant Also Negotiates";
    INSUFFICIENT_STORAGE = 507, "Insufficient Storage";
    LOOP_DETECTED = 508, "Loop Detected";
    NOT_EXTENDED = 510, "Not Extended";
    NETWORK_AUTHENTICATION_REQUIRED = 511, "Network Authentication Required";
}

impl Status {
    /// The status for `code`, or `None` when it is not a three-digit code.
    #[must_use]
    pub const fn from_u16(code: u16) -> Option<Status> {
        if code >= 100 && code <= 999 {
            Some(Status(code))
        } else {
            None
        }
    }

    /// The numeric code.
    #[must_use]
    pub const fn code(self) -> u16 {
        self.0
    }

    /// Whether a response with this status may carry a body (RFC 9110 §6.4.1).
    #[must_use]
    pub const fn allows_body(self) -> bool {
        !(self.0 < 200 || self.0 == 204 || self.0 == 304)
    }

    /// The three ASCII digits of the code.
    #[must_use]
    pub(crate) const fn digits(self) -> [u8; 3] {
        // Codes are 100..=999, so each digit fits in a u8; the casts are exact.
        #[allow(clippy::cast_possible_truncation, reason = "each digit is below 10")]
        [
            b'0' + (self.0 / 100) as u8,
            b'0' + (self.0 / 10 % 10) as u8,
            b'0' + (self.0 % 10) as u8,
        ]
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn digits_and_reason() {
        assert_eq!(&Status::NOT_FOUND.digits(), b"404");
        assert_eq!(Status::OK.reason(), "OK");
        assert_eq!(Status::from_u16(799).map(Status::reason), Some(""));
        assert_eq!(Status::from_u16(99), None);
        assert!(!Status::NO_CONTENT.allows_body());
    }
}
