//! The values the API accepts, each checked once where it enters: a handler or the
//! WebSocket reader turns client text into one of these types or answers why not, and
//! everything past that point can rely on the type's rule.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a value was refused, in a sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(text: impl Into<String>) -> Invalid {
    Invalid(text.into())
}

/// Text of `min..=max` characters (counted as Unicode scalar values) after trimming,
/// with no control characters.
fn text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    let value = value.trim();
    let count = value.chars().count();
    if count == 0 || count > max {
        return Err(invalid(format!("{field} must be 1 to {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{field} must not hold control characters")));
    }
    Ok(value.to_string())
}

/// A room's id: a positive whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoomId(pub i64);

impl RoomId {
    /// Reads the id in a path.
    pub fn parse(text: &str) -> Result<RoomId, Invalid> {
        match text.parse::<i64>() {
            Ok(n) if n > 0 => Ok(RoomId(n)),
            _ => Err(invalid(format!(
                "room id {:?} is not a positive whole number",
                truncate(text, 40)
            ))),
        }
    }
}

impl std::fmt::Display for RoomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// At most `max` characters of `text`, for quoting a client's value in an error.
pub fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A member's id within the whole server (members of every room share one sequence).
pub type MemberId = i64;

/// A room's name: 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomName(String);

impl RoomName {
    /// Checks a name.
    pub fn parse(value: &str) -> Result<RoomName, Invalid> {
        text("name", value, 100).map(RoomName)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A member's display name: 1 to 50 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Checks a display name.
    pub fn parse(value: &str) -> Result<DisplayName, Invalid> {
        text("display_name", value, 50).map(DisplayName)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The longest media a room may play: a week, in seconds.
pub const MAX_DURATION_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// What a room plays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Media {
    /// The title shown to members.
    pub title: String,
    /// The Plex item key (`/library/metadata/1234`), when the media is in Plex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plex_key: Option<String>,
    /// Its length in seconds, when known; positions are bounded by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
}

impl Media {
    /// Checks what a client sent: a title of 1 to 200 characters, a Plex key of 1 to
    /// 200 printable ASCII characters without spaces, a finite duration above 0 and
    /// at most a week.
    pub fn parse(raw: Media) -> Result<Media, Invalid> {
        let title = text("media.title", &raw.title, 200)?;
        let plex_key = match raw.plex_key {
            None => None,
            Some(k)
                if !k.is_empty() && k.len() <= 200 && k.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Some(k)
            }
            Some(_) => {
                return Err(invalid(
                    "media.plex_key must be 1 to 200 printable ASCII characters without spaces",
                ));
            }
        };
        let duration = match raw.duration {
            None => None,
            Some(d) if d.is_finite() && d > 0.0 && d <= MAX_DURATION_SECONDS => Some(d),
            Some(_) => {
                return Err(invalid(format!(
                    "media.duration must be a number of seconds above 0 and at most {MAX_DURATION_SECONDS}"
                )));
            }
        };
        Ok(Media {
            title,
            plex_key,
            duration,
        })
    }
}

/// A playback position in seconds: finite, not negative, and within the media's
/// duration when that is known (within [`MAX_DURATION_SECONDS`] when it is not).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Position(f64);

impl Position {
    /// Checks a position against the media's duration.
    pub fn parse(value: f64, duration: Option<f64>) -> Result<Position, Invalid> {
        if !value.is_finite() || value < 0.0 {
            return Err(invalid(
                "position must be a finite number of seconds, 0 or more",
            ));
        }
        if value > MAX_DURATION_SECONDS {
            return Err(invalid(format!(
                "position must be at most {MAX_DURATION_SECONDS} seconds (a week)"
            )));
        }
        if let Some(d) = duration
            && value > d
        {
            return Err(invalid(format!(
                "position {value} is past the end of the media ({d} s)"
            )));
        }
        Ok(Position(value))
    }

    /// The seconds.
    pub fn seconds(self) -> f64 {
        self.0
    }
}

/// A playback rate: finite, from 0.25 to 4.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rate(f64);

impl Rate {
    /// Checks a rate.
    pub fn parse(value: f64) -> Result<Rate, Invalid> {
        if value.is_finite() && (0.25..=4.0).contains(&value) {
            Ok(Rate(value))
        } else {
            Err(invalid("rate must be a number from 0.25 to 4"))
        }
    }

    /// The factor.
    pub fn factor(self) -> f64 {
        self.0
    }
}

/// A chat line: 1 to 500 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatText(String);

impl ChatText {
    /// Checks a chat line.
    pub fn parse(value: &str) -> Result<ChatText, Invalid> {
        text("text", value, 500).map(ChatText)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A room's passphrase as the creator chose it: 1 to 128 characters, compared after
/// hashing with argon2id.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(String);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(***)")
    }
}

impl Passphrase {
    /// Checks a passphrase (not trimmed: spaces are part of it).
    pub fn parse(value: &str) -> Result<Passphrase, Invalid> {
        let count = value.chars().count();
        if count == 0 || count > 128 {
            return Err(invalid("passphrase must be 1 to 128 characters"));
        }
        Ok(Passphrase(value.to_string()))
    }

    /// The argon2id hash in PHC form, with a fresh salt. Slow on purpose (tens of
    /// milliseconds): call it off the async threads.
    pub fn hash(&self) -> Result<String, String> {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| format!("no randomness: {e}"))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        argon2::Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    }

    /// Whether this passphrase matches a stored hash (false for a damaged hash).
    pub fn matches(&self, stored: &str) -> bool {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(stored).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(self.0.as_bytes(), &h)
                .is_ok()
        })
    }
}

/// A member's secret: 32 random bytes as 64 hex digits. The database keeps only its
/// SHA-256, so a leaked table lets no one in.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    /// A new random token.
    pub fn generate() -> Result<Token, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
        Ok(Token(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// Reads a token a client sent: exactly 64 lowercase hex digits.
    pub fn parse(value: &str) -> Result<Token, Invalid> {
        if value.len() == 64
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            Ok(Token(value.to_string()))
        } else {
            Err(invalid("token must be the 64 hex digits the join answered"))
        }
    }

    /// The token's text, for the one answer that hands it out.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// What the database stores.
    pub fn digest(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            RoomName::parse("  Movie night ").unwrap().as_str(),
            "Movie night"
        );
        assert!(RoomName::parse("   ").is_err());
        assert!(RoomName::parse(&"é".repeat(100)).is_ok());
        assert!(RoomName::parse(&"é".repeat(101)).is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
        assert!(DisplayName::parse(&"x".repeat(51)).is_err());
    }

    #[test]
    fn positions_are_finite_non_negative_and_within_the_media() {
        assert!(Position::parse(0.0, None).is_ok());
        assert!(Position::parse(-0.1, None).is_err());
        assert!(Position::parse(f64::NAN, None).is_err());
        assert!(Position::parse(f64::INFINITY, None).is_err());
        assert!(Position::parse(1e300, None).is_err());
        assert!(Position::parse(7200.0, Some(7200.0)).is_ok());
        let err = Position::parse(7200.5, Some(7200.0)).unwrap_err();
        assert!(err.0.contains("past the end"), "{err}");
        assert!(Rate::parse(0.2).is_err());
        assert!(Rate::parse(4.0).is_ok());
        assert!(Rate::parse(f64::NAN).is_err());
    }

    #[test]
    fn media_is_checked() {
        let m = |title: &str, key: Option<&str>, duration: Option<f64>| {
            Media::parse(Media {
                title: title.into(),
                plex_key: key.map(Into::into),
                duration,
            })
        };
        assert!(m("Alien", Some("/library/metadata/12"), Some(7020.0)).is_ok());
        assert!(m("", None, None).is_err());
        assert!(m("Alien", Some("has space"), None).is_err());
        assert!(m("Alien", None, Some(0.0)).is_err());
        assert!(m("Alien", None, Some(f64::INFINITY)).is_err());
        assert!(m("Alien", None, Some(MAX_DURATION_SECONDS + 1.0)).is_err());
    }

    #[test]
    fn room_ids_are_positive_numbers() {
        assert_eq!(RoomId::parse("12").unwrap(), RoomId(12));
        assert!(RoomId::parse("0").is_err());
        assert!(RoomId::parse("-3").is_err());
        assert!(RoomId::parse("abc").is_err());
        assert!(RoomId::parse("99999999999999999999").is_err());
    }

    #[test]
    fn passphrases_hash_and_verify_and_tokens_round_trip() {
        let p = Passphrase::parse("open sesame").unwrap();
        let h = p.hash().unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(p.matches(&h));
        assert!(!Passphrase::parse("open sesame!").unwrap().matches(&h));
        assert!(!p.matches("not a hash"));
        let t = Token::generate().unwrap();
        assert_eq!(Token::parse(t.reveal()).unwrap(), t);
        assert_eq!(t.digest().len(), 32);
        assert!(Token::parse("ABC").is_err());
        assert_ne!(Token::generate().unwrap(), t);
        assert_eq!(format!("{p:?} {t:?}"), "Passphrase(***) Token(***)");
    }
}
