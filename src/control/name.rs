//! Topic names and patterns.
//!
//! A name is one or more segments of `[A-Za-z0-9_-]` joined by `.`, 1 to
//! [`MAX_TOPIC_NAME_LEN`] bytes: it can never contain `/`, start with `.`
//! or be `..`, so tools may use it in file names. A pattern is a name
//! whose segments may also be `*` (exactly one segment) and whose last
//! segment may be `>` (one or more segments).

/// The longest topic name: short enough that a name with a ring id
/// (`NAME@0123456789abcdef.data`) is a valid file name (255 bytes).
pub const MAX_TOPIC_NAME_LEN: usize = 255 - "@0123456789abcdef.data".len();

/// The longest pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 255;

/// Why a pattern was refused. Positions are byte offsets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Empty pattern.
    #[error("pattern is empty")]
    Empty,
    /// Longer than [`MAX_PATTERN_LEN`] bytes.
    #[error("pattern is {0} bytes long, the limit is {MAX_PATTERN_LEN}")]
    TooLong(usize),
    /// A byte outside `[A-Za-z0-9_.*>-]`.
    #[error("pattern contains {0:?} at byte {1}: only [A-Za-z0-9_-] segments, '*' and a final '>' joined by '.' are allowed")]
    BadChar(char, usize),
    /// `..`, or a leading or trailing `.`.
    #[error("pattern has an empty segment at byte {0} (leading, trailing or doubled '.')")]
    EmptySegment(usize),
    /// `*` or `>` inside a segment (`a*`, `x>`).
    #[error("pattern has {0:?} inside a segment at byte {1}: a wildcard must be a whole segment")]
    WildcardInSegment(char, usize),
    /// `>` before the last segment.
    #[error("pattern has '>' at byte {0}, which is not the last segment: '>' matches the rest")]
    GreaterNotLast(usize),
}

/// Whether `s` is a pattern (has a wildcard) rather than a topic name.
pub fn is_pattern(s: &str) -> bool {
    s.contains(['*', '>'])
}

/// Checks a pattern (a topic name is one too).
///
/// # Errors
/// [`PatternError`] says what is wrong, and where.
pub fn validate_pattern(p: &str) -> Result<(), PatternError> {
    if p.is_empty() {
        return Err(PatternError::Empty);
    }
    if p.len() > MAX_PATTERN_LEN {
        return Err(PatternError::TooLong(p.len()));
    }
    for (i, c) in p.char_indices() {
        if !(c.is_ascii_alphanumeric() || "_-.*>".contains(c)) {
            return Err(PatternError::BadChar(c, i));
        }
    }
    let mut at = 0;
    let n = p.split('.').count();
    for (k, seg) in p.split('.').enumerate() {
        if seg.is_empty() {
            return Err(PatternError::EmptySegment(at));
        }
        match seg {
            "*" => {}
            ">" if k + 1 == n => {}
            ">" => return Err(PatternError::GreaterNotLast(at)),
            s => {
                if let Some(i) = s.find(['*', '>']) {
                    let c = s[i..].chars().next().unwrap_or('*');
                    return Err(PatternError::WildcardInSegment(c, at + i));
                }
            }
        }
        at += seg.len() + 1;
    }
    Ok(())
}

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

/// The longest consumer group name, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 64;

/// Checks a consumer group's name: the topic naming rules
/// (`[A-Za-z0-9_-]` segments joined by `.`), at most
/// [`MAX_GROUP_NAME_LEN`] bytes.
///
/// # Errors
/// What is wrong, for humans.
pub fn validate_group_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_GROUP_NAME_LEN {
        return Err(format!(
            "group name is {} bytes long, the limit is {MAX_GROUP_NAME_LEN}",
            name.len()
        ));
    }
    validate_topic_name(name).map_err(|e| e.to_string().replacen("topic name", "group name", 1))
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
    fn bad_patterns_say_what_and_where() {
        for ok in ["md.>", "md.*.AAPL", ">", "*", "a.b", "*.x.>"] {
            assert_eq!(validate_pattern(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_pattern(""), Err(PatternError::Empty));
        assert_eq!(
            validate_pattern("md..x"),
            Err(PatternError::EmptySegment(3))
        );
        assert_eq!(validate_pattern(".x"), Err(PatternError::EmptySegment(0)));
        assert_eq!(validate_pattern("x."), Err(PatternError::EmptySegment(2)));
        assert_eq!(
            validate_pattern(">.x"),
            Err(PatternError::GreaterNotLast(0))
        );
        assert_eq!(
            validate_pattern("a>"),
            Err(PatternError::WildcardInSegment('>', 1))
        );
        assert_eq!(
            validate_pattern("md.a*b"),
            Err(PatternError::WildcardInSegment('*', 4))
        );
        assert_eq!(validate_pattern("md/x"), Err(PatternError::BadChar('/', 2)));
        assert_eq!(
            validate_pattern(&"a".repeat(256)),
            Err(PatternError::TooLong(256))
        );
        let e = validate_pattern("md..x").unwrap_err().to_string();
        assert!(e.contains("byte 3"), "{e}");
        assert!(is_pattern("md.>") && is_pattern("*") && !is_pattern("md.x"));
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
