//! The two body encodings of Mesos' v1 HTTP APIs, as media types: what a `Content-Type`
//! names and what an `Accept` asks for. Shared by every transport that speaks them (the
//! master's scheduler and operator APIs, the agent's executor API, the Rust client).

/// How a body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    Json,
    Protobuf,
}

impl Encoding {
    /// Its media type.
    pub fn mime(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Protobuf => "application/x-protobuf",
        }
    }

    /// A media type (parameters ignored); none for any other.
    pub fn parse(media_type: &str) -> Option<Encoding> {
        let bare = media_type.split(';').next().unwrap_or("").trim();
        if bare.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else if bare.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Encoding::Protobuf)
        } else {
            None
        }
    }

    /// What an `Accept` header's value asks for: the first type listed that is one of the
    /// two (a wildcard is `default`); none if it lists only others or is not text. No
    /// `Accept`: `default`.
    pub fn accepted(accept: Option<&[u8]>, default: Encoding) -> Option<Encoding> {
        let Some(accept) = accept else {
            return Some(default);
        };
        let accept = std::str::from_utf8(accept).ok()?;
        accept.split(',').find_map(|range| {
            let bare = range.split(';').next().unwrap_or("").trim();
            if bare == "*/*" || bare.eq_ignore_ascii_case("application/*") {
                Some(default)
            } else {
                Encoding::parse(bare)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_and_accept() {
        assert_eq!(
            Encoding::parse("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::parse("APPLICATION/X-PROTOBUF"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::parse("text/plain"), None);
        assert_eq!(
            Encoding::accepted(None, Encoding::Protobuf),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::accepted(Some(b"text/html, */*;q=0.1"), Encoding::Json),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::accepted(Some(b"application/x-protobuf"), Encoding::Json),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::accepted(Some(b"text/html"), Encoding::Json), None);
        assert_eq!(Encoding::accepted(Some(b"\xff"), Encoding::Json), None);
    }
}
