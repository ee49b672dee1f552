//! Keeps chat tokens out of logs: the request span (tower-http's TraceLayer logs the URI at
//! debug) shows `/chat?token=<redacted>`. The parameter name is compared the way the query
//! extractor will read it (percent-decoded), and case-insensitively for good measure.

use std::borrow::Cow;

use axum::http::{Request, Uri};

const REDACTED: &str = "<redacted>";

/// The span of one HTTP request, as tower-http's default (method, URI, version) but with any
/// token in the query redacted.
pub fn request_span<B>(request: &Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        uri = %redacted_uri(request.uri()),
        version = ?request.version(),
    )
}

pub fn redacted_uri(uri: &Uri) -> Cow<'_, str> {
    let Some(query) = uri.query() else {
        return Cow::Owned(uri.to_string());
    };
    if !query.split('&').any(is_token_pair) {
        return Cow::Owned(uri.to_string());
    }
    let redacted: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_token_pair(pair) => Cow::Owned(format!("{name}={REDACTED}")),
            None if is_token_pair(pair) => Cow::Borrowed(REDACTED),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(format!("{}?{}", uri.path(), redacted.join("&")))
}

fn is_token_pair(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(n, _)| n);
    percent_decoded(name).eq_ignore_ascii_case("token")
}

/// `%XX` and `+` decoded; anything malformed is kept as it is.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|b| (*b as char).to_digit(16))
                .map(|d| d as u8)
        };
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(uri: &str) -> String {
        redacted_uri(&uri.parse::<Uri>().unwrap()).into_owned()
    }

    #[test]
    fn tokens_are_redacted_however_the_name_is_spelled() {
        assert_eq!(r("/chat?token=eyJ.abc.def"), "/chat?token=<redacted>");
        assert_eq!(
            r("/chat?x=1&token=eyJ.a.b&y=2"),
            "/chat?x=1&token=<redacted>&y=2"
        );
        assert_eq!(r("/chat?%74oken=eyJ.a.b"), "/chat?%74oken=<redacted>");
        assert_eq!(r("/chat?TOKEN=eyJ.a.b"), "/chat?TOKEN=<redacted>");
        assert_eq!(
            r("/chat?token=a&token=b"),
            "/chat?token=<redacted>&token=<redacted>"
        );
        assert_eq!(r("/chat?token"), "/chat?<redacted>");
    }

    #[test]
    fn other_uris_are_untouched() {
        assert_eq!(r("/api/current_stats"), "/api/current_stats");
        assert_eq!(
            r("/api/socket.io/?EIO=4&transport=polling"),
            "/api/socket.io/?EIO=4&transport=polling"
        );
        assert_eq!(r("/chat?tokens=1&my_token=2"), "/chat?tokens=1&my_token=2");
    }
}
