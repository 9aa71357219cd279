//! Topic names and patterns.
//!
//! A name is one or more segments of `[A-Za-z0-9_-]` joined by `.`, 1 to
//! [`MAX_TOPIC_NAME_LEN`] bytes. Names double as file names in the broker's
//! data directory, so they can never contain `/`, start with `.` or be
//! `..`.

/// The longest topic name: a ring's file is `NAME@RINGID.data` (16 hex
/// digits of ring id), and a file name has at most 255 bytes.
pub const MAX_TOPIC_NAME_LEN: usize = 255 - "@0123456789abcdef.data".len();

/// Why a topic name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// Empty name.
    #[error("topic name is empty")]
    Empty,
    /// Longer than [`MAX_TOPIC_NAME_LEN`] bytes.
    #[error("topic name is {0} bytes long, the limit is {MAX_TOPIC_NAME_LEN} (names are file names in the broker's data directory)")]
    TooLong(usize),
    /// A byte outside `[A-Za-z0-9_.-]`.
    #[error("topic name contains {0:?} at byte {1}: only [A-Za-z0-9_-] segments joined by '.' are allowed")]
    BadChar(char, usize),
    /// `..`, or a leading or trailing `.`.
    #[error("topic name has an empty segment (leading, trailing or doubled '.')")]
    EmptySegment,
}

/// Checks a topic name against the naming rules.
///
/// # Errors
/// [`TopicNameError`] says what is wrong.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TopicNameError::TooLong(name.len()));
    }
    for (i, c) in name.char_indices() {
        if !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
            return Err(TopicNameError::BadChar(c, i));
        }
    }
    if name.split('.').any(str::is_empty) {
        return Err(TopicNameError::EmptySegment);
    }
    Ok(())
}

/// Whether `name` matches `pattern`: segments compare literally, `*`
/// matches exactly one segment and a final `>` matches one or more
/// remaining segments (NATS-style). `>` alone matches everything.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let mut pat = pattern.split('.');
    let mut seg = name.split('.');
    loop {
        match (pat.next(), seg.next()) {
            (Some(">"), Some(_)) => return pat.next().is_none(),
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_topic_name("md.AAPL").is_ok());
        assert!(validate_topic_name("a-b_c.9").is_ok());
        assert_eq!(validate_topic_name(""), Err(TopicNameError::Empty));
        assert_eq!(
            validate_topic_name("a/b"),
            Err(TopicNameError::BadChar('/', 1))
        );
        assert_eq!(validate_topic_name(".."), Err(TopicNameError::EmptySegment));
        assert_eq!(validate_topic_name(".a"), Err(TopicNameError::EmptySegment));
        assert_eq!(validate_topic_name("a."), Err(TopicNameError::EmptySegment));
        assert_eq!(MAX_TOPIC_NAME_LEN, 233);
        assert_eq!(
            validate_topic_name(&"a".repeat(234)),
            Err(TopicNameError::TooLong(234))
        );
        assert!(validate_topic_name(&"a".repeat(233)).is_ok());
        assert!(validate_topic_name("é").is_err());
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("md.AAPL", "md.AAPL"));
        assert!(!pattern_matches("md.AAPL", "md.AAPL.x"));
        assert!(pattern_matches("md.*", "md.AAPL"));
        assert!(!pattern_matches("md.*", "md.AAPL.x"));
        assert!(!pattern_matches("md.*", "md"));
        assert!(pattern_matches("md.>", "md.a.b"));
        assert!(!pattern_matches("md.>", "md"));
        assert!(pattern_matches(">", "x"));
        assert!(pattern_matches("*.x.>", "a.x.b"));
        assert!(!pattern_matches("md.>.x", "md.a.x"));
    }
}
