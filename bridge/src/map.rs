//! Names across the bridge: ringbus topic `a.b.c` <-> Zenoh key
//! `PREFIX/a/b/c`, pattern `a.*.>` <-> key expression `PREFIX/a/*/**`.
//!
//! Every ringbus name is a valid Zenoh key (segments are
//! `[A-Za-z0-9_-]+`), but not every Zenoh key is a ringbus name: a key
//! from a foreign publisher is checked before it becomes a topic.

use ringbus::control::{validate_pattern, validate_topic_name};

/// Why a name could not cross the bridge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The prefix is empty, has a wildcard or an empty chunk.
    #[error("prefix {0:?} must be one or more non-empty key chunks without wildcards ('*', '$', '?', '#')")]
    BadPrefix(String),
    /// The key is not under the prefix.
    #[error("key {0:?} is not under the prefix")]
    NotUnderPrefix(String),
    /// The rest of the key is not a ringbus topic name.
    #[error("key {key:?} is not a ringbus topic: {why}")]
    NotATopic {
        /// The key.
        key: String,
        /// What the topic-name check said.
        why: String,
    },
    /// A ringbus pattern that does not validate.
    #[error("bad pattern {pattern:?}: {why}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// What the pattern check said.
        why: String,
    },
}

/// Checks a key prefix (`ringbus`, `site/a/ringbus`).
///
/// # Errors
/// [`MapError::BadPrefix`].
pub fn validate_prefix(prefix: &str) -> Result<(), MapError> {
    let ok = !prefix.is_empty()
        && prefix.split('/').all(|c| {
            !c.is_empty()
                && !c.contains(['*', '$', '?', '#'])
                && !c.chars().any(char::is_whitespace)
        });
    if ok {
        Ok(())
    } else {
        Err(MapError::BadPrefix(prefix.to_owned()))
    }
}

/// The key of a (valid) topic name.
pub fn topic_to_key(prefix: &str, topic: &str) -> String {
    let mut k = String::with_capacity(prefix.len() + 1 + topic.len());
    k.push_str(prefix);
    for seg in topic.split('.') {
        k.push('/');
        k.push_str(seg);
    }
    k
}

/// The key expression of a ringbus pattern: `*` stays `*` (one chunk),
/// a final `>` becomes `**`. Zenoh's `**` also matches zero chunks, so
/// an importer still checks each key's topic against the pattern
/// ([`ringbus::control::pattern_matches`]).
///
/// # Errors
/// [`MapError::BadPattern`].
pub fn pattern_to_key_expr(prefix: &str, pattern: &str) -> Result<String, MapError> {
    validate_pattern(pattern).map_err(|e| MapError::BadPattern {
        pattern: pattern.to_owned(),
        why: e.to_string(),
    })?;
    let mut k = String::from(prefix);
    for seg in pattern.split('.') {
        k.push('/');
        k.push_str(if seg == ">" { "**" } else { seg });
    }
    Ok(k)
}

/// The topic of a key under `prefix`, checked against the topic-name rules.
///
/// # Errors
/// [`MapError::NotUnderPrefix`], [`MapError::NotATopic`].
pub fn key_to_topic(prefix: &str, key: &str) -> Result<String, MapError> {
    let rest = key
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| MapError::NotUnderPrefix(key.to_owned()))?;
    let topic = rest.replace('/', ".");
    // A chunk holding '.' would merge two segments into one topic name
    // that maps back to another key: refuse it.
    if rest.contains('.') {
        return Err(MapError::NotATopic {
            key: key.to_owned(),
            why: "a key chunk contains '.'".into(),
        });
    }
    validate_topic_name(&topic).map_err(|e| MapError::NotATopic {
        key: key.to_owned(),
        why: e.to_string(),
    })?;
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbus::control::pattern_matches;

    #[test]
    fn topics_round_trip() {
        for t in ["a", "md.eu.px", "x-1.y_2.Z"] {
            let k = topic_to_key("ringbus", t);
            assert_eq!(key_to_topic("ringbus", &k).unwrap(), t);
        }
        assert_eq!(topic_to_key("site/ringbus", "a.b"), "site/ringbus/a/b");
    }

    #[test]
    fn patterns_map_to_key_exprs() {
        assert_eq!(
            pattern_to_key_expr("ringbus", "md.>").unwrap(),
            "ringbus/md/**"
        );
        assert_eq!(pattern_to_key_expr("ringbus", ">").unwrap(), "ringbus/**");
        assert_eq!(pattern_to_key_expr("p", "a.*.c").unwrap(), "p/a/*/c");
        assert!(pattern_to_key_expr("p", "a.>.c").is_err());
        assert!(pattern_to_key_expr("p", "a/b").is_err());
    }

    #[test]
    fn foreign_keys_are_checked() {
        assert!(matches!(
            key_to_topic("ringbus", "other/a"),
            Err(MapError::NotUnderPrefix(_))
        ));
        assert!(matches!(
            key_to_topic("ringbus", "ringbusx/a"),
            Err(MapError::NotUnderPrefix(_))
        ));
        assert!(matches!(
            key_to_topic("ringbus", "ringbus"),
            Err(MapError::NotUnderPrefix(_))
        ));
        for bad in [
            "ringbus/a.b",
            "ringbus/a b",
            "ringbus/é",
            "ringbus/a//b",
            "ringbus/a/",
        ] {
            assert!(
                matches!(
                    key_to_topic("ringbus", bad),
                    Err(MapError::NotATopic { .. })
                ),
                "{bad}"
            );
        }
        let long = format!("ringbus/{}", "x".repeat(300));
        assert!(key_to_topic("ringbus", &long).is_err());
        // `**` matches zero chunks too: `ringbus/md` is `md`, which `md.>`
        // does not match; the importer checks.
        let t = key_to_topic("ringbus", "ringbus/md").unwrap();
        assert!(!pattern_matches("md.>", &t));
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(validate_prefix("ringbus").is_ok());
        assert!(validate_prefix("a/b").is_ok());
        for bad in ["", "a/", "/a", "a/*", "a/**", "a$b", "a b"] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
    }
}
