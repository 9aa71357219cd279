//! The committed corpora replayed without libFuzzer: every input passes its
//! target's checks, and the seeds do what they were written to do.

use std::path::PathBuf;

use ringbus::control::codec::{decode_reply, decode_request};
use ringbus::control::frame::{ErrorCode, Reply};
use ringbus_fuzz::session::Harness;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

#[test]
fn frame_decoder_corpus() {
    for (name, bytes) in corpus("frame_decoder") {
        ringbus_fuzz::frames::check(&bytes);
        if name.starts_with("request-") {
            assert!(decode_request(&bytes).is_ok(), "{name}");
        } else if name.starts_with("reply-") {
            assert!(decode_reply(&bytes).is_ok(), "{name}");
        } else if name.starts_with("bad-") {
            assert!(decode_request(&bytes).is_err(), "{name}");
            assert!(decode_reply(&bytes).is_err(), "{name}");
        }
    }
}

fn kind(r: &Reply) -> String {
    match r {
        Reply::Error { code, .. } => format!("{code:?}"),
        other => format!("{other:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap()
            .to_owned(),
    }
}

#[test]
fn broker_session_corpus() {
    let mut h = Harness::start();
    for (name, bytes) in corpus("broker_session") {
        let out = h.run(&bytes);
        let kinds: Vec<String> = out.replies.iter().map(kind).collect();
        let expected: &[&str] = match name.as_str() {
            "hello-stats" => &["Welcome", "Stats"],
            "publish-subscribe" => &[
                "Welcome",
                "TopicOpened",
                "PublisherAttached",
                "Ready",
                "Welcome",
                "Subscribed",
                "Rings",
                "Topics",
                "Detached",
                "Rings",
                "Detached",
                "Stats",
            ],
            "late-backpressure-ring" => &[
                "Welcome",
                "Welcome",
                "Subscribed",
                "PublisherAttached",
                "Ready",
                "Rings",
                "Stats",
            ],
            "foreign-leases" => &[
                "Welcome",
                "Welcome",
                "PublisherAttached",
                "NotFound",
                "NotFound",
                "NotFound",
                "NotFound",
                "NotFound",
                "Detached",
                "NotFound",
            ],
            "limits" => &[
                "Welcome",
                "TopicOpened",
                "ConfigMismatch",
                "InvalidConfig",
                "InvalidConfig",
                "InvalidConfig",
                "NotFound",
                "PublisherAttached",
                "PublisherAttached",
                "PublisherAttached",
                "PublisherAttached",
                "LimitExceeded",
                "Topics",
            ],
            "hello-versions" => &[
                "UnsupportedVersion",
                "UnsupportedVersion",
                "Welcome",
                "Stats",
            ],
            "no-hello" => &["HelloRequired"],
            "framed" => &[
                "Welcome",
                "Stats",
                "UnknownRequest",
                "BadTopicName",
                "Malformed",
            ],
            "garbage-after-hello" => &["Welcome", "Malformed"],
            "oversized" => &["Welcome", "Malformed", "Malformed"],
            _ => &[],
        };
        if !expected.is_empty() {
            assert_eq!(kinds, expected, "replies to {name}");
        }
        assert_eq!(out.skipped, 0, "{name}");
        assert_eq!(out.stats.clients, 1, "{name}");
    }
    // The pipelined seed: twenty Stats read back at once.
    let out = h.run(&corpus_file("pipelined"));
    assert_eq!(out.replies.len(), 21);
    assert!(out.replies[1..]
        .iter()
        .all(|r| matches!(r, Reply::Stats(_))));
    // A connection the broker dropped after garbage: the next frame on
    // that slot finds it closed.
    let out = h.run(&corpus_file("garbage-after-hello"));
    assert_eq!(out.closed_by_broker, 1);
    assert!(matches!(
        out.replies[1],
        Reply::Error {
            code: ErrorCode::Malformed,
            ..
        }
    ));
}

fn corpus_file(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("corpus/broker_session")
            .join(name),
    )
    .unwrap()
}
