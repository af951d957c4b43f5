//! Call deadlines: the client's own, sent as the `grpc-timeout` header,
//! and sessiond's ceiling, `--max-call-duration`. Both end a call with
//! DEADLINE_EXCEEDED (`limits` enforces them, `observe` records them).

use std::time::Duration;

use http::{HeaderMap, HeaderName};

/// The header in which a client sends its deadline, as time left (a
/// `HeaderName`, so that looking it up parses no name).
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The time a client gave its call (`grpc-timeout`), if it gave one that
/// parses: at most 8 ASCII digits and a unit (`H`, `M`, `S`, `m`, `u`,
/// `n`), as the gRPC over HTTP/2 protocol writes it. One that does not
/// parse is ignored, as tonic did.
pub fn client_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Eight digits at most: no overflow in u64.
    let amount = digits.iter().fold(0u64, |sum, digit| sum * 10 + u64::from(digit - b'0'));
    match unit {
        b'H' => Some(Duration::from_secs(amount * 3600)),
        b'M' => Some(Duration::from_secs(amount * 60)),
        b'S' => Some(Duration::from_secs(amount)),
        b'm' => Some(Duration::from_millis(amount)),
        b'u' => Some(Duration::from_micros(amount)),
        b'n' => Some(Duration::from_nanos(amount)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(value: &'static str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, http::HeaderValue::from_static(value));
        client_timeout(&headers)
    }

    #[test]
    fn every_unit_of_the_protocol_parses() {
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout("4S"), Some(Duration::from_secs(4)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(timeout("7n"), Some(Duration::from_nanos(7)));
    }

    #[test]
    fn malformed_timeouts_are_ignored() {
        for value in ["", "S", "10", "123456789S", "1.5S", "-1S", "10x"] {
            assert_eq!(timeout(value), None, "{value:?}");
        }
        assert_eq!(client_timeout(&HeaderMap::new()), None);
    }
}
