//! Content digests (`ALGORITHM:HEX`) as OCI and Docker's registries use them: `sha256` with
//! 64 lowercase hex digits, or `sha512` with 128.

use std::fmt;
use std::str::FromStr;

/// A digest's algorithm: the only two the OCI image spec registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Hex digits in an encoded digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A content digest, e.g. `sha256:6c3c62...`: the name blobs and manifests are fetched and
/// verified by, and the name a layer is kept under.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} is not ALGORITHM:HEX")]
    Shape(String),
    #[error("digest algorithm {0:?} is not sha256 or sha512")]
    Algorithm(String),
    #[error("digest {digest:?} must have {expected} lowercase hex digits")]
    Hex { digest: String, expected: usize },
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex digits, lowercase: safe as a file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The digest of `bytes` as already computed by the caller (`hex` of the hash): checks
    /// the length and case, as a parsed one is.
    pub fn from_parts(algorithm: Algorithm, hex: &str) -> Result<Self, DigestError> {
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Hex {
                digest: format!("{}:{hex}", algorithm.name()),
                expected: algorithm.hex_len(),
            });
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Shape(s.to_string()))?;
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::Algorithm(other.to_string())),
        };
        Digest::from_parts(algorithm, hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

    #[test]
    fn a_sha256_digest_round_trips() {
        let d: Digest = format!("sha256:{HEX}").parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex(), HEX);
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
    }

    #[test]
    fn malformed_digests_say_what_is_wrong() {
        assert_eq!(
            "sha256".parse::<Digest>(),
            Err(DigestError::Shape("sha256".into()))
        );
        assert_eq!(
            format!("md5:{HEX}").parse::<Digest>(),
            Err(DigestError::Algorithm("md5".into()))
        );
        // Uppercase, short, long, and a path separator are all refused.
        for hex in [
            HEX.to_uppercase(),
            HEX[1..].to_string(),
            format!("{HEX}0"),
            format!("{}/", &HEX[1..]),
        ] {
            assert!(matches!(
                format!("sha256:{hex}").parse::<Digest>(),
                Err(DigestError::Hex { expected: 64, .. })
            ));
        }
        let long = "a".repeat(128);
        assert!(format!("sha512:{long}").parse::<Digest>().is_ok());
    }
}
