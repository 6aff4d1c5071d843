//! Image references in Docker's syntax, `[REGISTRY[:PORT]/]NAME[:TAG|@sha256:DIGEST]`,
//! parsed by the grammar of Docker's `distribution/reference` and normalized as `docker
//! pull` does: a first component that looks like a host (a `.` or a `:` in it, or exactly
//! `localhost`) names the registry, else the agent's default registry (`--image-registry`)
//! is meant; on Docker Hub a one-component name is an official image (`busybox` is
//! `library/busybox`); no tag and no digest means `latest`. A digest pins the content: it is
//! what is pulled, and the tag beside it is only a label.

use std::fmt;
use std::net::IpAddr;

use crate::digest::{Digest, DigestError};

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's registry API host.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The tag meant when a reference names none.
pub const DEFAULT_TAG: &str = "latest";
/// Longest repository name with its registry, as Docker allows.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag, as Docker allows.
pub const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error("image registry {0:?} is not HOST or HOST:PORT")]
    Registry(String),
    #[error("image repository {0:?} must be lowercase")]
    Uppercase(String),
    #[error("image repository {0:?} is not lowercase letters and digits separated by '/', '.', '_', '__' or '-'")]
    Repository(String),
    #[error("image tag {0:?} is not up to {MAX_TAG_LEN} letters, digits, '_', '.' or '-' (not starting with '.' or '-')")]
    Tag(String),
    #[error("image digest: {0}")]
    Digest(#[from] DigestError),
}

impl ImageRef {
    /// Parses `text`, meaning `default_registry` when it names no registry.
    pub fn parse(text: &str, default_registry: &str) -> Result<Self, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name_and_tag, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(d.parse::<Digest>()?)),
            None => (text, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_and_tag[..at], Some(&name_and_tag[at + 1..]))
            }
            None => (name_and_tag, None),
        };
        if name.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(text.to_string()));
        }
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(ReferenceError::Tag(tag.to_string()));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if names_a_host(first) => (first, rest),
            _ => (default_registry, name),
        };
        let registry = normalize_registry(registry)?;
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(path.to_string()));
        }
        if !valid_path(path) {
            return Err(ReferenceError::Repository(path.to_string()));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(text.to_string()));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry as written in references (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) the registry's HTTP API answers on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository within the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry's manifest endpoint for: the digest when there is one (it
    /// pins the content), else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }
}

impl fmt::Display for ImageRef {
    /// The fully qualified form, which parses back to the same reference.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether a reference's first component names a registry host rather than a repository
/// path: Docker's rule.
fn names_a_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// A registry `HOST[:PORT]` checked and put in the form references use (`index.docker.io`
/// is Docker Hub's old name).
pub fn normalize_registry(registry: &str) -> Result<String, ReferenceError> {
    let bad = || ReferenceError::Registry(registry.to_string());
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (registry, None),
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if port.parse::<u32>().map_or(true, |p| p == 0 || p > 65_535) {
            return Err(bad());
        }
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(bad());
    }
    if registry == "index.docker.io" {
        return Ok(DOCKER_HUB.to_string());
    }
    Ok(registry.to_string())
}

/// Path components: lowercase letters and digits, separated within a component by one
/// `.`, one or two `_`, or any number of `-`.
fn valid_path(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or '-'+.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// How the agent speaks to a registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Https,
    /// Plain HTTP: a registry on this host's loopback, or one the operator named insecure.
    Http,
}

impl Transport {
    /// Plain HTTP for a loopback registry (as Docker allows) or one named in `insecure`
    /// (`HOST` or `HOST:PORT`, as `--insecure-registries` lists them); TLS for every other.
    pub fn for_registry(registry: &str, insecure: &[String]) -> Transport {
        let host = match registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => registry,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if loopback || insecure.iter().any(|i| i == registry || i == host) {
            Transport::Http
        } else {
            Transport::Https
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

    fn parse(s: &str) -> Result<ImageRef, ReferenceError> {
        ImageRef::parse(s, DOCKER_HUB)
    }

    #[test]
    fn docker_hub_names_are_normalized_as_docker_pull_does() {
        for (given, canonical) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("user/app", "docker.io/user/app:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/user/app:v2", "docker.io/user/app:v2"),
        ] {
            let r = parse(given).unwrap();
            assert_eq!(r.to_string(), canonical, "{given}");
        }
        assert_eq!(parse("busybox").unwrap().api_host(), "registry-1.docker.io");
    }

    #[test]
    fn a_first_component_with_a_dot_a_port_or_localhost_is_the_registry() {
        let r = parse("localhost:5000/tools/busybox:musl").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("localhost:5000", "tools/busybox", Some("musl"))
        );
        assert_eq!(r.api_host(), "localhost:5000");
        assert_eq!(parse("localhost/app").unwrap().registry(), "localhost");
        assert_eq!(
            parse("registry.example.com/app").unwrap().registry(),
            "registry.example.com"
        );
        // No dot, no port: a path component on the default registry.
        let r = ImageRef::parse("team/app", "127.0.0.1:5000").unwrap();
        assert_eq!(
            (r.registry(), r.repository()),
            ("127.0.0.1:5000", "team/app")
        );
        // The default registry is not Docker Hub: no `library/`.
        let r = ImageRef::parse("app", "127.0.0.1:5000").unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/app:latest");
    }

    #[test]
    fn a_digest_pins_the_content_and_a_tag_beside_it_is_a_label() {
        let r = parse(&format!("busybox@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        let r = parse(&format!("busybox:1.36@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), Some("1.36"));
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        assert_eq!(parse("busybox").unwrap().manifest_reference(), "latest");
    }

    #[test]
    fn bad_references_name_what_is_wrong() {
        assert_eq!(parse(""), Err(ReferenceError::Empty));
        assert_eq!(
            parse("BusyBox"),
            Err(ReferenceError::Uppercase("BusyBox".into()))
        );
        assert!(matches!(
            parse("busy box"),
            Err(ReferenceError::Repository(_))
        ));
        assert!(matches!(parse("a//b"), Err(ReferenceError::Repository(_))));
        assert!(matches!(parse("a..b"), Err(ReferenceError::Repository(_))));
        assert!(matches!(parse("a___b"), Err(ReferenceError::Repository(_))));
        assert!(matches!(parse("-a"), Err(ReferenceError::Repository(_))));
        assert!(matches!(parse("busybox:"), Err(ReferenceError::Tag(_))));
        assert!(matches!(parse("busybox:.x"), Err(ReferenceError::Tag(_))));
        assert!(matches!(
            parse(&format!("busybox:{}", "t".repeat(129))),
            Err(ReferenceError::Tag(_))
        ));
        assert!(matches!(
            parse("localhost:99999/app"),
            Err(ReferenceError::Registry(_))
        ));
        assert!(matches!(
            parse("bad_host.com/app"),
            Err(ReferenceError::Registry(_))
        ));
        assert!(matches!(
            parse("busybox@sha256:abc"),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(
            parse(&"a".repeat(300)),
            Err(ReferenceError::TooLong(_))
        ));
        // Separators Docker allows.
        for ok in ["a.b", "a_b", "a__b", "a---b", "a-b/c.d_e"] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn loopback_registries_may_be_plain_http_others_only_when_named() {
        let none: Vec<String> = vec![];
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.8.9.1",
            "[::1]:5000",
        ] {
            assert_eq!(Transport::for_registry(r, &none), Transport::Http, "{r}");
        }
        assert_eq!(
            Transport::for_registry("registry.lan:5000", &none),
            Transport::Https
        );
        assert_eq!(
            Transport::for_registry("docker.io", &none),
            Transport::Https
        );
        let named = vec!["registry.lan:5000".to_string(), "other.lan".to_string()];
        assert_eq!(
            Transport::for_registry("registry.lan:5000", &named),
            Transport::Http
        );
        assert_eq!(
            Transport::for_registry("registry.lan:6000", &named),
            Transport::Https
        );
        assert_eq!(
            Transport::for_registry("other.lan:443", &named),
            Transport::Http
        );
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,4}(([._]|__|-{1,2})[a-z0-9]{1,4}){0,2}"
    }

    proptest! {
        /// Whatever parses prints in a form that parses back to itself.
        #[test]
        fn the_canonical_form_parses_back_to_the_same_reference(
            registry in prop::option::of("(localhost|[a-z]{1,8}\\.[a-z]{2,3})(:[1-9][0-9]{0,3})?"),
            path in prop::collection::vec(component(), 1..4),
            tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            digest in prop::option::of("[0-9a-f]{64}"),
        ) {
            // Without a registry, a first component with a dot names one (Docker's rule).
            prop_assume!(registry.is_some() || path.len() == 1 || !names_a_host(&path[0]));
            let mut text = String::new();
            if let Some(r) = &registry { text.push_str(r); text.push('/'); }
            text.push_str(&path.join("/"));
            if let Some(t) = &tag { text.push(':'); text.push_str(t); }
            if let Some(d) = &digest { text.push_str("@sha256:"); text.push_str(d); }
            let r = ImageRef::parse(&text, DOCKER_HUB).unwrap();
            let again = ImageRef::parse(&r.to_string(), "elsewhere.example").unwrap();
            prop_assert_eq!(&again, &r);
            prop_assert_eq!(r.tag().is_none(), tag.is_none() && digest.is_some());
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,80}") {
            let _ = ImageRef::parse(&text, DOCKER_HUB);
        }
    }
}
